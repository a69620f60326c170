package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// apiRequests counts every request the operator sent in [t0, t1), in any
// namespace (reads, writes, watches, events and leases), and fails when
// refreshes happened but the audit log counted nothing.
func (b *bench) apiRequests(phase string, t0, t1 time.Time, refreshes int) (requestCount, error) {
	b.audit.sync()
	all := b.audit.count(false, t0, t1, nil)
	if err := b.audit.checkCounted(phase, refreshes, all); err != nil {
		return all, err
	}
	per := float64(all.Total) / math.Max(1, float64(refreshes))
	b.fig(phase, "API requests per refresh (all: reads, writes, events, leases)", round(per, 3),
		fmt.Sprintf("%.2f (%d requests / %d refreshes): %s", per, all.Total, refreshes, all.perEach(refreshes)), "", "", nil)
	return all, nil
}

// minRemainingFigure adds the smallest remaining validity of a replaced
// token, when its replacement was observed, against the configured
// refreshBefore: jitter and the landing lead only move refreshes earlier, so
// the bar is refreshBefore itself.
func (b *bench) minRemainingFigure(phase string, changes []tokenChange, rb time.Duration) {
	barText := fmt.Sprintf(">= refreshBefore = %s", rb)
	obs, ann, ok := minRemaining(changes)
	if !ok {
		b.add(figure{Phase: phase, Name: "min remaining validity when a new token landed", Text: "no refresh observed", Bar: barText, Met: boolp(false)})
		return
	}
	b.fig(phase, "min remaining validity when a new token landed (observed by a watch)", seconds(obs),
		fmt.Sprintf("%.2f (%d refreshes)", obs.Seconds(), len(changes)), "s", barText, boolp(obs >= rb))
	b.fig(phase, "min remaining validity at the new token's issued-at (annotations, whole seconds)", seconds(ann),
		fmt.Sprintf("%.0f", ann.Seconds()), "s", barText, boolp(ann >= rb))
}

// slope fits y = a + b·x by least squares and returns a and b.
func slope(xs, ys []float64) (intercept, perX float64) {
	n := float64(len(xs))
	if n < 2 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, 0
	}
	perX = (n*sxy - sx*sy) / d
	return (sy - perX*sx) / n, perX
}

// deploymentMemory reads the manager container's limits.memory (bytes) and
// GOMEMLIMIT from the shipped Deployment, config/manager/manager.yaml.
func deploymentMemory(root string) (limit int64, gomemlimit string) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		return 0, ""
	}
	text := string(raw)
	if m := regexp.MustCompile(`limits:\s*\{[^}]*memory:\s*(\d+)Mi`).FindStringSubmatch(text); m != nil {
		mi, _ := strconv.ParseInt(m[1], 10, 64)
		limit = mi << 20
	}
	if m := regexp.MustCompile(`name: GOMEMLIMIT\s*\n\s*value:\s*(\S+)`).FindStringSubmatch(text); m != nil {
		gomemlimit = m[1]
	}
	return limit, gomemlimit
}
