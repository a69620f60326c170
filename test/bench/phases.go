package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

func randomString(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// mergePatch sends a JSON merge patch to an APICredential.
func (b *bench) mergePatch(ctx context.Context, ns, name, patch string) error {
	c := &authv1alpha1.APICredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return b.k8s.Patch(ctx, c, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// ---- phase 1: one refresh cycle costs one call and at most two writes ----

func (b *bench) phaseCycle(ctx context.Context) (err error) {
	const phase = "cycle"
	c := b.cfg
	ns := "bench-cycle"
	n := c.CycleN
	lifetime := c.CycleLifetime
	b.sb.SetLifetime("B", lifetime)
	clients := make([]string, n)
	for i := range clients {
		clients[i] = fmt.Sprintf("cycle-%02d", i)
	}
	if err := b.setupNamespace(ctx, ns, clients); err != nil {
		return err
	}
	defer func() {
		if cerr := b.cleanup(context.WithoutCancel(ctx), ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	calls0 := b.sb.AllCalls()
	b.track.setActive(ns, true)
	start := time.Now()
	if err := b.createCredentials(ctx, ns, n, func(i int) string { return clients[i] }); err != nil {
		return err
	}
	ready, err := b.waitReady(ctx, ns, n, time.Minute)
	if err != nil {
		return err
	}
	if ready < n {
		b.note("cycle: only %d of %d credentials became Ready within 1m", ready, n)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	t0 := time.Now()
	hs0 := b.sb.Handshakes()
	logf("cycle: %d credentials Ready, %s tokens; measuring for %s", ready, lifetime, c.CycleWindow)
	if err := sleep(ctx, c.CycleWindow); err != nil {
		return err
	}
	t1 := time.Now()
	// Freeze: suspended credentials make no calls and no writes, so every
	// call made so far has produced its token by the time we count.
	if err := parallel(ctx, n, 8, func(i int) error {
		return b.mergePatch(ctx, ns, credName(i), `{"spec":{"suspend":true}}`)
	}); err != nil {
		return err
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	end := time.Now()
	b.track.setActive(ns, false)

	calls := b.sb.AllCalls()
	tokens := b.track.tokensPerSecret(ns)
	type perCred struct {
		Calls  int     `json:"calls"`
		Tokens int     `json:"tokens"`
		Ratio  float64 `json:"calls_per_token"`
	}
	per := map[string]perCred{}
	exact := true
	totalCalls, totalTokens := 0, 0
	minRatio, maxRatio := math.Inf(1), math.Inf(-1)
	for i := range n {
		cl := calls[clients[i]] - calls0[clients[i]]
		tk := tokens[targetName(i)]
		r := math.Inf(1)
		if tk > 0 {
			r = float64(cl) / float64(tk)
		}
		per[credName(i)] = perCred{Calls: cl, Tokens: tk, Ratio: round(r, 3)}
		exact = exact && cl == tk && tk > 0
		totalCalls += cl
		totalTokens += tk
		minRatio, maxRatio = min(minRatio, r), max(maxRatio, r)
	}
	overall := float64(totalCalls) / math.Max(1, float64(totalTokens))
	b.fig(phase, "provider calls per refresh cycle (overall)", round(overall, 3),
		fmt.Sprintf("%.2f (%d calls / %d tokens)", overall, totalCalls, totalTokens), "", "exactly 1.00", boolp(exact))
	b.fig(phase, "provider calls per refresh cycle (per credential, min-max)", round(maxRatio, 3),
		fmt.Sprintf("%.2f-%.2f over %d credentials", minRatio, maxRatio, n), "", "exactly 1.00 each", boolp(exact))

	exp := b.track.exposure(ns, start, end)
	b.fig(phase, "expired-token exposure (samples)", float64(exp.ExpiredSamples),
		fmt.Sprintf("%d of %d", exp.ExpiredSamples, exp.Samples), "", "0", boolp(exp.ExpiredSamples == 0))

	rb := refresh.DefaultRefreshBefore(lifetime, false)
	changes := b.track.changesIn(ns, start, end)
	b.minRemainingFigure(phase, changes, rb)

	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	refreshes := len(b.track.changesIn(ns, t0, t1))
	all, err := b.apiRequests(phase, t0, t1, refreshes)
	if err != nil {
		return err
	}
	writes := b.audit.count(false, t0, t1, inNamespace(ns)).writes()
	cycleWrites, cycles := b.audit.perRefresh(ns, t0, t1)
	wpr := float64(cycleWrites.Total) / math.Max(1, float64(cycles))
	b.fig(phase, "API writes per refresh", round(wpr, 3),
		fmt.Sprintf("%.2f (%d writes / %d refreshes: %s)", wpr, cycleWrites.Total, cycles, cycleWrites), "", "<= 2", boolp(cycles > 0 && wpr <= 2))
	hs := b.sb.Handshakes() - hs0
	// Reported without the bar: 20 credentials created together refresh in
	// bursts a few seconds apart, about two refreshes a second in all; the
	// bar applies at the scale phase's steady state.
	b.fig(phase, "provider TLS handshakes per refresh (20 credentials, bursts)", round(float64(hs)/math.Max(1, float64(refreshes)), 3),
		fmt.Sprintf("%.3f (%d handshakes / %d refreshes)", float64(hs)/math.Max(1, float64(refreshes)), hs, refreshes), "", "", nil)

	b.detail(phase, map[string]any{
		"credentials": n, "token_lifetime": lifetime.String(), "window_seconds": seconds(t1.Sub(t0)),
		"calls_and_tokens_counted":  "from creation to the end of the window, the initial token included; credentials were then suspended and counted 3 s later",
		"per_credential":            per,
		"exposure":                  exp,
		"refreshes_in_window":       refreshes,
		"operator_writes":           writes,
		"writes_per_refresh_method": "per credential, every operator write between its first and last successful Secret update in the window, over the refresh cycles those bound (audit log); operator_writes / refreshes_in_window is the raw window count, with edge effects",
		"complete_refresh_cycles":   cycles,
		"writes_in_complete_cycles": cycleWrites,
		"refresh_before":            rb.String(),
		"api_requests_in_window":    all,
		"api_requests_per_refresh":  all.perRefreshMap(refreshes),
		"provider_tls_handshakes":   hs,
	})
	return nil
}

// ---- phase 2: no-op reconciles and a restart cost nothing ----

func (b *bench) phaseRestart(ctx context.Context) (err error) {
	const phase = "restart"
	c := b.cfg
	ns := "bench-restart"
	n := c.RestartN
	b.sb.SetLifetime("B", c.RestartLifetime)
	if err := b.setupNamespace(ctx, ns, []string{"restart"}); err != nil {
		return err
	}
	defer func() {
		if cerr := b.cleanup(context.WithoutCancel(ctx), ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b.track.setActive(ns, true)
	start := time.Now()
	if err := b.createCredentials(ctx, ns, n, func(int) string { return "restart" }); err != nil {
		return err
	}
	ready, err := b.waitReady(ctx, ns, n, 2*time.Minute)
	if err != nil {
		return err
	}
	if ready < n {
		b.note("restart: only %d of %d credentials became Ready within 2m", ready, n)
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}

	// No-op: an unrelated annotation on every APICredential.
	m0, err := b.op.scrape()
	if err != nil {
		return err
	}
	calls0 := b.sb.TotalCalls()
	t0 := time.Now()
	stamp := t0.UTC().Format(time.RFC3339Nano)
	if err := parallel(ctx, n, 8, func(i int) error {
		return b.mergePatch(ctx, ns, credName(i), fmt.Sprintf(`{"metadata":{"annotations":{"bench.tokenwarden.io/noop":%q}}}`, stamp))
	}); err != nil {
		return err
	}
	if err := sleep(ctx, c.NoopWindow); err != nil {
		return err
	}
	t1 := time.Now()
	m1, err := b.op.scrape()
	if err != nil {
		return err
	}
	noopCalls := b.sb.TotalCalls() - calls0
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	b.audit.sync()
	noopAll := b.audit.count(false, t0, t1, nil)
	if err := b.audit.checkCounted("restart: the no-op window", 0, noopAll); err != nil {
		return err
	}
	noopWrites := b.audit.count(false, t0, t1, inNamespace(ns)).writes()
	initialAll := b.audit.count(false, start, t0, inNamespace(ns))
	if err := b.audit.checkCounted("restart: creating the credentials", n, initialAll); err != nil {
		return err
	}
	initialWrites := initialAll.writes()
	rs := reconcileDelta(m0, m1)
	perNoop := float64(noopWrites.Total) / math.Max(1, rs.Reconciles)
	b.fig(phase, "API writes per no-op reconcile", round(perNoop, 3),
		fmt.Sprintf("%.2f (%d writes / %.0f reconciles)", perNoop, noopWrites.Total, rs.Reconciles), "", "0", boolp(noopWrites.Total == 0 && rs.Reconciles > 0))
	b.fig(phase, "provider calls during no-op reconciles", float64(noopCalls), "", "", "0", boolp(noopCalls == 0))

	// Restart with every token valid.
	callsR0 := b.sb.TotalCalls()
	tStop := time.Now()
	if err := b.op.stop(); err != nil {
		b.note("restart: stopping the manager: %v", err)
	}
	if err := b.op.start(ctx, "--host-requests-per-minute=-1"); err != nil {
		return err
	}
	tStart := time.Now()
	if err := sleep(ctx, c.RestartWindow); err != nil {
		return err
	}
	tEnd := time.Now()
	restartCalls := b.sb.TotalCalls() - callsR0
	mR, _ := b.op.scrape()
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	b.audit.sync()
	restartAll := b.audit.count(false, tStop, tEnd, nil)
	restartWrites := b.audit.count(false, tStop, tEnd, inNamespace(ns)).writes()
	b.fig(phase, fmt.Sprintf("provider calls in the %s after a restart", c.RestartWindow), float64(restartCalls),
		fmt.Sprintf("%d (%d credentials)", restartCalls, n), "", "0", boolp(restartCalls == 0))
	b.fig(phase, fmt.Sprintf("API writes in the %s after a restart", c.RestartWindow), float64(restartWrites.Total),
		fmt.Sprintf("%d (%.0f reconciles)", restartWrites.Total, mR.sum("controller_runtime_reconcile_total", ctrlName)), "", "", nil)
	exp := b.track.exposure(ns, start, time.Now())
	b.track.setActive(ns, false)
	b.detail(phase, map[string]any{
		"credentials": n, "token_lifetime": c.RestartLifetime.String(),
		"initial_operator_writes": initialWrites,
		"noop": map[string]any{
			"window_seconds": seconds(t1.Sub(t0)), "operator_writes": noopWrites, "operator_requests": noopAll, "reconciles": rs,
			"provider_calls": noopCalls,
		},
		"restart": map[string]any{
			"stop_to_ready_seconds": seconds(tStart.Sub(tStop)), "window_seconds": seconds(tEnd.Sub(tStart)),
			"provider_calls": restartCalls, "operator_writes": restartWrites, "operator_requests": restartAll,
			"reconciles_by_new_process": mR.sum("controller_runtime_reconcile_total", ctrlName),
		},
		"exposure": exp,
	})
	return nil
}

// ---- phase 3: the scale series ----

type scaleResult struct {
	N                 int                `json:"n"`
	CreateSeconds     float64            `json:"create_seconds"`
	Ready             int                `json:"ready"`
	ReadyP50          float64            `json:"time_to_ready_p50_seconds"`
	ReadyP99          float64            `json:"time_to_ready_p99_seconds"`
	ReadyMax          float64            `json:"time_to_ready_max_seconds"`
	WindowSeconds     float64            `json:"window_seconds"`
	Exposure          exposure           `json:"exposure"`
	Refreshes         int                `json:"refreshes"`
	RefreshesPerSec   float64            `json:"refreshes_per_second"`
	DemandPerSec      float64            `json:"expected_refreshes_per_second"`
	Calls             int                `json:"provider_calls"`
	CallsPerRefresh   float64            `json:"calls_per_refresh"`
	Writes            requestCount       `json:"operator_writes"`
	CycleWrites       requestCount       `json:"writes_in_complete_refresh_cycles"`
	Requests          requestCount       `json:"operator_requests"`
	RequestsPer       map[string]float64 `json:"operator_requests_per_refresh"`
	Handshakes        int                `json:"provider_tls_handshakes"`
	HandshakesPer     float64            `json:"provider_tls_handshakes_per_refresh"`
	CPUPerRefresh     float64            `json:"operator_cpu_seconds_per_refresh"`
	WritesPerRefresh  float64            `json:"writes_per_refresh"`
	MinRemainingObs   float64            `json:"min_remaining_validity_observed_seconds"`
	CPU               map[string]cpuUse  `json:"cpu"`
	MachineBusy       float64            `json:"machine_cpu_busy_fraction"`
	OperatorRSS       float64            `json:"operator_rss_bytes"`
	OperatorHeap      float64            `json:"operator_heap_inuse_bytes"`
	Reconcile         reconcileStats     `json:"reconcile"`
	WorkerBusy        float64            `json:"reconcile_worker_busy_fraction"`
	MaxQueueDepth     float64            `json:"max_workqueue_depth"`
	APIServerLatency  map[string]float64 `json:"apiserver_mean_latency_ms,omitempty"`
	Saturation        string             `json:"saturation"`
	SaturationNumbers string             `json:"saturation_numbers"`
}

func (b *bench) phaseScale(ctx context.Context) error {
	const phase = "scale"
	c := b.cfg
	largest := c.ScaleNs[len(c.ScaleNs)-1]
	var results []scaleResult
	holds := 0
	var firstFail *scaleResult
	for _, n := range c.ScaleNs {
		r, err := b.scaleStep(ctx, n, n == largest)
		if err != nil {
			b.detail(phase, results)
			return fmt.Errorf("at N=%d: %w", n, err)
		}
		results = append(results, r)
		ok := r.Exposure.ExpiredSamples == 0 && r.Ready == n
		if ok && firstFail == nil {
			holds = n
		}
		if !ok && firstFail == nil {
			firstFail = &results[len(results)-1]
		}
		exp := r.Exposure
		b.fig(phase, fmt.Sprintf("N=%d expired-token exposure", n), float64(exp.ExpiredSamples),
			fmt.Sprintf("%d samples, %d Secrets, max %.0fs late", exp.ExpiredSamples, exp.ExpiredSecrets, exp.MaxLateSeconds), "",
			map[bool]string{true: "0", false: "0 (bar at N=5000)"}[n == 5000], map[bool]*bool{true: boolp(exp.ExpiredSamples == 0), false: nil}[n == 5000])
		b.fig(phase, fmt.Sprintf("N=%d refreshes/s (calls/refresh, writes/refresh)", n), r.RefreshesPerSec,
			fmt.Sprintf("%.1f of %.1f due (%.2f, %.2f)", r.RefreshesPerSec, r.DemandPerSec, r.CallsPerRefresh, r.WritesPerRefresh), "", "", nil)
		b.fig(phase, fmt.Sprintf("N=%d API requests per refresh (all)", n), round(float64(r.Requests.Total)/math.Max(1, float64(r.Refreshes)), 3),
			fmt.Sprintf("%.2f: %s", float64(r.Requests.Total)/math.Max(1, float64(r.Refreshes)), r.Requests.perEach(r.Refreshes)), "", "", nil)
		b.fig(phase, fmt.Sprintf("N=%d provider TLS handshakes per refresh / operator CPU-seconds per refresh", n), r.HandshakesPer,
			fmt.Sprintf("%.3f (%d / %d) / %.4f s", r.HandshakesPer, r.Handshakes, r.Refreshes, r.CPUPerRefresh), "", "<= 0.05 handshakes", boolp(r.Refreshes > 0 && r.HandshakesPer <= 0.05))
		b.fig(phase, fmt.Sprintf("N=%d CPU cores: operator / kube-apiserver / etcd / bench", n), r.CPU["operator"].Cores,
			fmt.Sprintf("%.2f / %.2f / %.2f / %.2f (machine %.0f%% busy)", r.CPU["operator"].Cores, r.CPU["kube-apiserver"].Cores,
				r.CPU["etcd"].Cores, r.CPU["bench"].Cores, 100*r.MachineBusy), "", "", nil)
		b.fig(phase, fmt.Sprintf("N=%d operator RSS / reconcile workers busy", n), r.OperatorRSS/(1<<20),
			fmt.Sprintf("%.0f MiB / %.0f%%", r.OperatorRSS/(1<<20), 100*r.WorkerBusy), "", "", nil)
		var met *bool
		bar := ""
		if n == 1000 {
			bar = "p99 < 5s"
			met = boolp(r.Ready == n && r.ReadyP99 < 5)
		}
		b.fig(phase, fmt.Sprintf("N=%d time to Ready p50 / p99", n), r.ReadyP99,
			fmt.Sprintf("%.2fs / %.2fs (%d/%d Ready)", r.ReadyP50, r.ReadyP99, r.Ready, n), "", bar, met)
	}
	text := fmt.Sprintf("%d", holds)
	if holds == 0 {
		text = "none"
	}
	var met *bool
	bar := "5000"
	if largest >= 5000 {
		met = boolp(holds >= 5000)
	} else {
		bar = "5000 (full run only)"
	}
	b.fig(phase, "largest N with zero exposure", float64(holds), text, "", bar, met)
	at := &results[len(results)-1]
	if firstFail != nil {
		at = firstFail
	}
	b.add(figure{Phase: phase, Name: "what saturates first", Text: at.Saturation, Bar: "the API server, not the operator"})
	b.note("scale, what saturates first: %s", at.SaturationNumbers)
	b.detail(phase, results)
	return nil
}

func (b *bench) scaleStep(ctx context.Context, n int, largest bool) (r scaleResult, err error) {
	c := b.cfg
	r.N = n
	ns := fmt.Sprintf("bench-scale-%d", n)
	clientID := fmt.Sprintf("scale-%d", n)
	b.sb.SetLifetime("B", c.ScaleLifetime)
	if err := b.setupNamespace(ctx, ns, []string{clientID}); err != nil {
		return r, err
	}
	defer func() {
		if cerr := b.cleanup(context.WithoutCancel(ctx), ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b.track.setActive(ns, true)
	logf("scale: creating %d credentials", n)
	tc := time.Now()
	if err := b.createCredentials(ctx, ns, n, func(int) string { return clientID }); err != nil {
		return r, err
	}
	r.CreateSeconds = seconds(time.Since(tc))
	if r.Ready, err = b.waitReady(ctx, ns, n, c.ReadyTimeout); err != nil {
		return r, err
	}
	ttr, _ := b.track.timesToReady(ns)
	r.ReadyP50, r.ReadyP99 = seconds(percentile(ttr, 0.50)), seconds(percentile(ttr, 0.99))
	if len(ttr) > 0 {
		r.ReadyMax = seconds(ttr[len(ttr)-1])
	}
	logf("scale: N=%d created in %.1fs, %d Ready (p50 %.2fs, p99 %.2fs); measuring for %s", n, r.CreateSeconds, r.Ready, r.ReadyP50, r.ReadyP99, c.ScaleWindow)

	pids := map[string]int{"operator": b.op.pid(), "kube-apiserver": b.cp.apiPid, "etcd": b.cp.etcdPid, "bench": os.Getpid()}
	m0, err := b.op.scrape()
	if err != nil {
		return r, err
	}
	var a0 metrics
	if raw, err := b.cp.apiserverMetrics(ctx); err == nil {
		a0 = parseMetrics(raw)
	}
	cpu := startCPU(pids)
	calls0 := b.sb.TotalCalls()
	hs0 := b.sb.Handshakes()
	t0 := time.Now()
	var profile chan []byte
	if largest {
		// A CPU profile of the operator over most of the window at the
		// largest N: where it spends its time, if anywhere.
		profile = make(chan []byte, 1)
		go func() {
			p, err := b.op.cpuProfile(ctx, min(60*time.Second, c.ScaleWindow-10*time.Second))
			if err != nil {
				b.note("scale N=%d: no operator CPU profile: %v", n, err)
			}
			profile <- p
		}()
	}
	for time.Since(t0) < c.ScaleWindow {
		if err := sleep(ctx, min(5*time.Second, c.ScaleWindow-time.Since(t0))); err != nil {
			return r, err
		}
		if err := b.op.alive(); err != nil {
			return r, err
		}
		if m, err := b.op.scrape(); err == nil {
			r.MaxQueueDepth = max(r.MaxQueueDepth, m.sum("workqueue_depth", `name="apicredential"`))
		}
	}
	t1 := time.Now()
	r.CPU, r.MachineBusy = cpu.stop()
	if profile != nil {
		if p := <-profile; len(p) > 0 {
			b.saveFile(fmt.Sprintf("%s-%s-operator-cpu-N%d.pprof", b.stamp, c.Scale, n), string(p))
		}
	}
	r.Calls = b.sb.TotalCalls() - calls0
	r.Handshakes = b.sb.Handshakes() - hs0
	m1, err := b.op.scrape()
	if err != nil {
		return r, err
	}
	r.OperatorRSS, _ = rssBytes(b.op.pid())
	r.OperatorHeap = m1.sum("go_memstats_heap_inuse_bytes")
	r.WindowSeconds = seconds(t1.Sub(t0))
	r.Reconcile = reconcileDelta(m0, m1)
	if r.Reconcile.MaxWorkers > 0 {
		r.WorkerBusy = round(r.Reconcile.BusySeconds/(r.WindowSeconds*r.Reconcile.MaxWorkers), 3)
	}
	if raw, err := b.cp.apiserverMetrics(ctx); err == nil {
		a1 := parseMetrics(raw)
		if a0 != nil {
			r.APIServerLatency = map[string]float64{}
			for _, q := range []struct{ key, verb, res, sub string }{
				{"PUT secrets", "PUT", "secrets", ""},
				{"POST secrets", "POST", "secrets", ""},
				{"PATCH apicredentials/status", "PATCH", "apicredentials", "status"},
			} {
				ms, cnt := meanLatency(a0, a1, "apiserver_request_duration_seconds",
					`verb="`+q.verb+`"`, `resource="`+q.res+`"`, `subresource="`+q.sub+`"`)
				if cnt > 0 {
					r.APIServerLatency[q.key] = ms
				}
			}
		}
		if largest {
			b.saveFile(fmt.Sprintf("%s-%s-apiserver-metrics-N%d.txt", b.stamp, c.Scale, n),
				fmt.Sprintf("# kube-apiserver GET /metrics at the end of the N=%d window (%s), filtered to %s\n",
					n, t1.UTC().Format(time.RFC3339), strings.Join(apiserverFamilies, ", "))+filterExposition(raw, apiserverFamilies))
			if opRaw, err := b.op.scrapeRaw(); err == nil {
				b.saveFile(fmt.Sprintf("%s-%s-operator-metrics-N%d.txt", b.stamp, c.Scale, n),
					fmt.Sprintf("# manager GET /metrics at the end of the N=%d window (%s), filtered to %s\n",
						n, t1.UTC().Format(time.RFC3339), strings.Join(operatorFamilies, ", "))+filterExposition(opRaw, operatorFamilies))
			}
		}
	} else {
		b.note("scale N=%d: could not read the API server's metrics: %v", n, err)
	}
	r.Exposure = b.track.exposure(ns, t0, t1)
	changes := b.track.changesIn(ns, t0, t1)
	r.Refreshes = len(changes)
	r.RefreshesPerSec = round(float64(r.Refreshes)/r.WindowSeconds, 2)
	// Each credential refreshes every L - refreshBefore - jitter (mean 5% of L).
	rb := refresh.DefaultRefreshBefore(c.ScaleLifetime, false)
	interval := c.ScaleLifetime - rb - time.Duration(refresh.JitterFraction/2*float64(c.ScaleLifetime))
	interval = max(interval, min(refresh.Floor, c.ScaleLifetime/2))
	r.DemandPerSec = round(float64(n)/interval.Seconds(), 1)
	r.CallsPerRefresh = round(float64(r.Calls)/math.Max(1, float64(r.Refreshes)), 3)
	if obs, _, ok := minRemaining(changes); ok {
		r.MinRemainingObs = seconds(obs)
	}
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	b.audit.sync()
	r.Requests = b.audit.count(false, t0, t1, nil)
	if err := b.audit.checkCounted(fmt.Sprintf("scale N=%d", n), r.Refreshes, r.Requests); err != nil {
		return r, err
	}
	r.RequestsPer = r.Requests.perRefreshMap(r.Refreshes)
	r.HandshakesPer = round(float64(r.Handshakes)/math.Max(1, float64(r.Refreshes)), 4)
	r.CPUPerRefresh = round(r.CPU["operator"].Seconds/math.Max(1, float64(r.Refreshes)), 5)
	r.Writes = b.audit.count(false, t0, t1, inNamespace(ns)).writes()
	var cycles int
	r.CycleWrites, cycles = b.audit.perRefresh(ns, t0, t1)
	r.WritesPerRefresh = round(float64(r.CycleWrites.Total)/math.Max(1, float64(cycles)), 3)
	r.Saturation, r.SaturationNumbers = saturation(r)
	logf("scale: N=%d %d refreshes (%.1f/s of %.1f/s due), exposure %d samples; operator %.2f cores, apiserver %.2f, etcd %.2f, bench %.2f, machine %.0f%%; worker busy %.0f%%, max queue %.0f",
		n, r.Refreshes, r.RefreshesPerSec, r.DemandPerSec, r.Exposure.ExpiredSamples, r.CPU["operator"].Cores, r.CPU["kube-apiserver"].Cores,
		r.CPU["etcd"].Cores, r.CPU["bench"].Cores, 100*r.MachineBusy, 100*r.WorkerBusy, r.MaxQueueDepth)
	b.track.setActive(ns, false)
	return r, nil
}

// saturation names what ran out first over a scale window, from the
// numbers alone: a short verdict for the table and the figures behind it.
func saturation(r scaleResult) (verdict, numbers string) {
	op, api, etcd := r.CPU["operator"].Cores, r.CPU["kube-apiserver"].Cores, r.CPU["etcd"].Cores
	numbers = fmt.Sprintf("N=%d: operator %.2f cores, kube-apiserver %.2f, etcd %.2f, bench %.2f, machine %.0f%% busy (other users' processes included); "+
		"reconcile workers busy %.0f%% (of %.0f), mean reconcile %.1f ms, mean queue wait %.0f ms, max queue depth %.0f; %.1f refreshes/s of %.1f/s due",
		r.N, op, api, etcd, r.CPU["bench"].Cores, 100*r.MachineBusy, 100*r.WorkerBusy, r.Reconcile.MaxWorkers,
		r.Reconcile.MeanReconcileMs, r.Reconcile.MeanQueueWaitMs, r.MaxQueueDepth, r.RefreshesPerSec, r.DemandPerSec)
	behind := r.RefreshesPerSec < 0.9*r.DemandPerSec || r.Exposure.ExpiredSamples > 0 || r.Ready < r.N
	switch {
	case !behind && r.WorkerBusy >= 0.7:
		verdict = fmt.Sprintf("nothing yet at N=%d; nearest its limit: the operator's reconcile workers (%.0f%% busy, machine %.0f%%)", r.N, 100*r.WorkerBusy, 100*r.MachineBusy)
	case !behind && r.MachineBusy >= 0.7:
		verdict = fmt.Sprintf("nothing yet at N=%d; nearest its limit: the machine's CPU (%.0f%% busy)", r.N, 100*r.MachineBusy)
	case !behind:
		verdict = fmt.Sprintf("nothing at N=%d", r.N)
	case r.WorkerBusy >= 0.85 && r.MachineBusy < 0.9:
		verdict = fmt.Sprintf("the operator at N=%d: its %.0f reconcile workers are %.0f%% busy (operator %.2f cores) while the machine is %.0f%% busy", r.N, r.Reconcile.MaxWorkers, 100*r.WorkerBusy, op, 100*r.MachineBusy)
	case r.MachineBusy >= 0.9 && api+etcd > op:
		verdict = fmt.Sprintf("the machine's CPU at N=%d, mostly kube-apiserver+etcd (%.2f cores vs operator %.2f)", r.N, api+etcd, op)
	case r.MachineBusy >= 0.9:
		verdict = fmt.Sprintf("the machine's CPU at N=%d, mostly the operator (%.2f cores vs kube-apiserver+etcd %.2f)", r.N, op, api+etcd)
	default:
		verdict = fmt.Sprintf("falls behind at N=%d without a saturated CPU or worker: see the API server's latency", r.N)
	}
	return verdict, numbers
}

// ---- phase 4: memory does not grow with unrelated Secrets ----

type memSample struct {
	RSS       float64 `json:"rss_bytes"`
	RSSMetric float64 `json:"process_resident_memory_bytes"`
	HeapInuse float64 `json:"go_memstats_heap_inuse_bytes"`
	HeapAlloc float64 `json:"go_memstats_heap_alloc_bytes"`
}

func (b *bench) memSample(ctx context.Context) (memSample, error) {
	var s memSample
	// Three reads 2 s apart; the last one counts (the first ones let a
	// pending GC cycle finish).
	for i := range 3 {
		if i > 0 {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return s, err
			}
		}
		m, err := b.op.scrape()
		if err != nil {
			return s, err
		}
		s.RSS, _ = rssBytes(b.op.pid())
		s.RSSMetric = m.sum("process_resident_memory_bytes")
		s.HeapInuse = m.sum("go_memstats_heap_inuse_bytes")
		s.HeapAlloc = m.sum("go_memstats_heap_alloc_bytes")
	}
	return s, nil
}

func (b *bench) phaseMemory(ctx context.Context) (err error) {
	const phase = "memory"
	c := b.cfg
	var series []map[string]any
	var xs, ys []float64
	for idx, n := range c.MemSeries {
		// A fresh process for every N: memory a process once held is not
		// always given back, so an N measured after a larger one would
		// report the larger one.
		if err := b.op.stop(); err != nil {
			b.note("memory: stopping the manager: %v", err)
		}
		if err := b.op.start(ctx, "--host-requests-per-minute=-1"); err != nil {
			return err
		}
		row, err := b.memoryStep(ctx, n, idx == 0)
		if err != nil {
			b.detail(phase, series)
			return fmt.Errorf("at N=%d: %w", n, err)
		}
		series = append(series, row)
		rss := row["rss_bytes"].(float64)
		xs, ys = append(xs, float64(n)), append(ys, rss)
		b.fig(phase, fmt.Sprintf("operator RSS at N=%d (fresh process, 10 min tokens)", n), round(rss/(1<<20), 1),
			fmt.Sprintf("%.1f MiB (heap in use %.1f MiB)", rss/(1<<20), row["heap_inuse_bytes"].(float64)/(1<<20)), "", "", nil)
	}
	base, per := slope(xs, ys)
	b.fig(phase, "operator RSS per credential (least squares over the series)", round(per/1024, 1),
		fmt.Sprintf("%.1f KiB per credential on top of %.1f MiB", per/1024, base/(1<<20)), "", "", nil)
	limit, gomem := deploymentMemory(b.root)
	largest := xs[len(xs)-1]
	at := ys[len(ys)-1]
	if limit > 0 {
		headroom := 1 - at/float64(limit)
		b.fig(phase, fmt.Sprintf("headroom of the shipped memory limit at N=%.0f", largest), round(100*headroom, 1),
			fmt.Sprintf("%.0f%% (RSS %.0f MiB of limits.memory %d MiB, GOMEMLIMIT %s)", 100*headroom, at/(1<<20), limit>>20, gomem), "", ">= 30%", boolp(headroom >= 0.3))
	}
	b.detail(phase, map[string]any{
		"series": series, "rss_intercept_bytes": round(base, 0), "rss_bytes_per_credential": round(per, 0),
		"deployment_memory_limit_bytes": limit, "deployment_gomemlimit": gomem,
		"method": "for each N a fresh manager process; N flow-B credentials with 10 min tokens created at once; RSS from /proc/<pid>/status (VmRSS) and heap from the manager's metrics, the last of three reads 2 s apart, 10 s after all were Ready; the unrelated-Secrets figure on the first (smallest) N",
	})
	return nil
}

// memoryStep measures one N of the memory series; with unrelated it also
// adds the unrelated Secrets and measures again.
func (b *bench) memoryStep(ctx context.Context, n int, unrelated bool) (row map[string]any, err error) {
	const phase = "memory"
	c := b.cfg
	ns, other := fmt.Sprintf("bench-memory-%d", n), "bench-memory-unrelated"
	b.sb.SetLifetime("B", c.MemLifetime)
	client := fmt.Sprintf("memory-%d", n)
	if err := b.setupNamespace(ctx, ns, []string{client}); err != nil {
		return nil, err
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		if unrelated {
			if cerr := b.deleteAllSecrets(bg, other); cerr != nil && err == nil {
				err = cerr
			}
		}
		if cerr := b.cleanup(bg, ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b.track.setActive(ns, true)
	defer b.track.setActive(ns, false)
	tc := time.Now()
	if err := b.createCredentials(ctx, ns, n, func(int) string { return client }); err != nil {
		return nil, err
	}
	ready, err := b.waitReady(ctx, ns, n, c.ReadyTimeout+time.Duration(n/20)*time.Second)
	if err != nil {
		return nil, err
	}
	readyAfter := time.Since(tc)
	if err := sleep(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	before, err := b.memSample(ctx)
	if err != nil {
		return nil, err
	}
	logf("memory: N=%d, %d Ready after %.0fs, operator RSS %.1f MiB", n, ready, readyAfter.Seconds(), before.RSS/(1<<20))
	row = map[string]any{"n": n, "ready": ready, "ready_after_seconds": seconds(readyAfter),
		"rss_bytes": before.RSS, "heap_inuse_bytes": before.HeapInuse, "sample": before}
	if ready < n {
		return row, fmt.Errorf("only %d of %d credentials became Ready", ready, n)
	}
	if !unrelated {
		return row, nil
	}
	logf("memory: adding %d unrelated %d KiB Secrets", c.MemSecrets, c.MemSecretSize>>10)
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return row, err
	}
	payload := make([]byte, c.MemSecretSize)
	_, _ = rand.Read(payload)
	tu := time.Now()
	if err := parallel(ctx, c.MemSecrets, 4, func(i int) error {
		data := make([]byte, len(payload))
		copy(data, payload)
		copy(data, fmt.Sprintf("unrelated-%06d", i)) // each one distinct
		_, err := b.cs.CoreV1().Secrets(other).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i)},
			Data:       map[string][]byte{"blob": data},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return row, err
	}
	createSecs := time.Since(tu).Seconds()
	if err := sleep(ctx, 20*time.Second); err != nil {
		return row, err
	}
	after, err := b.memSample(ctx)
	if err != nil {
		return row, err
	}
	growth := after.RSS - before.RSS
	heapGrowth := after.HeapInuse - before.HeapInuse
	const mib = 1 << 20
	b.fig(phase, fmt.Sprintf("operator RSS growth with %d unrelated %d KiB Secrets", c.MemSecrets, c.MemSecretSize>>10), round(growth/mib, 1),
		fmt.Sprintf("%+.1f MiB (%.1f -> %.1f, %d credentials, fresh process)", growth/mib, before.RSS/mib, after.RSS/mib, n), "", "< 20 MiB", boolp(growth < 20*mib))
	b.fig(phase, "operator heap in use growth", round(heapGrowth/mib, 1),
		fmt.Sprintf("%+.1f MiB (%.1f -> %.1f)", heapGrowth/mib, before.HeapInuse/mib, after.HeapInuse/mib), "", "", nil)
	row["unrelated"] = map[string]any{"secrets": c.MemSecrets, "secret_bytes": c.MemSecretSize,
		"create_seconds": round(createSecs, 1), "before": before, "after": after}
	return row, nil
}

// deleteAllSecrets deletes every Secret of ns, retrying as cleanup does.
func (b *bench) deleteAllSecrets(ctx context.Context, ns string) error {
	var err error
	for range 5 {
		if err = b.k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)); err == nil {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return err
}

// ---- phase 5: behaviour under the provider's per-IP throttle ----

type callSample struct {
	at    time.Time
	calls int
	r429  float64 // the operator's 429 counter, read every second
}

func (b *bench) phaseThrottle(ctx context.Context) (err error) {
	const phase = "throttle"
	c := b.cfg
	ns := "bench-throttle"
	k, n := c.ThrottleK, c.ThrottleN

	if err := b.op.stop(); err != nil {
		b.note("throttle: stopping the manager: %v", err)
	}
	b.sb.SetThrottle(k, c.ThrottleRetryAfter)
	defer b.sb.SetThrottle(0, "")
	if err := b.op.start(ctx, fmt.Sprintf("--host-requests-per-minute=%d", c.ThrottleHostLimit)); err != nil {
		return err
	}
	b.sb.SetLifetime("B", c.ThrottleLifetime)
	if err := b.setupNamespace(ctx, ns, []string{"throttle"}); err != nil {
		return err
	}
	defer func() {
		if cerr := b.cleanup(context.WithoutCancel(ctx), ns); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b.track.setActive(ns, true)

	base := b.sb.TotalCalls()
	// Calls every 100 ms; the operator's own 429 counter every second.
	var series []callSample
	var first429Metric time.Time
	sampleCtx, stopSampling := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		i := 0
		r429 := 0.0
		for {
			select {
			case <-sampleCtx.Done():
				return
			case now := <-tk.C:
				if i%10 == 0 {
					if m, err := b.op.scrape(); err == nil {
						r429 = m.sum("tokenwarden_provider_rate_limited_total")
						if r429 > 0 && first429Metric.IsZero() {
							first429Metric = now
						}
					}
				}
				i++
				series = append(series, callSample{at: now, calls: b.sb.TotalCalls() - base, r429: r429})
			}
		}
	}()
	start := time.Now()
	if err := b.createCredentials(ctx, ns, n, func(int) string { return "throttle" }); err != nil {
		stopSampling()
		<-done
		return err
	}
	logf("throttle: %d credentials created, K=%d/min, Retry-After %q; running for %s", n, k, c.ThrottleRetryAfter, c.ThrottleRun)
	allReadyAt := time.Time{}
	for time.Since(start) < c.ThrottleRun {
		if err := sleep(ctx, time.Second); err != nil {
			stopSampling()
			<-done
			return err
		}
		if err := b.op.alive(); err != nil {
			stopSampling()
			<-done
			return err
		}
		if allReadyAt.IsZero() {
			if ready, _ := b.track.readyCount(ns); ready >= n {
				allReadyAt = time.Now()
			}
		}
	}
	stopSampling()
	<-done
	end := time.Now()
	m, _ := b.op.scrape()
	rateLimited := m.sum("tokenwarden_provider_rate_limited_total")

	// The first 429: the sandbox answers 429 to the (K+1)-th request of a
	// one-minute window that starts with the first request, so it is the
	// moment the count passed K within the first minute; otherwise the
	// operator's own 429 counter (read every second) says when.
	first429 := time.Time{}
	if len(series) > 0 {
		var firstCall time.Time
		for _, s := range series {
			if s.calls > 0 && firstCall.IsZero() {
				firstCall = s.at
			}
			if s.calls > k && !firstCall.IsZero() && s.at.Sub(firstCall) <= time.Minute+200*time.Millisecond {
				first429 = s.at
				break
			}
		}
	}
	if first429.IsZero() || (!first429Metric.IsZero() && first429Metric.Before(first429)) {
		first429 = first429Metric
	}
	ready, _ := b.track.readyCount(ns)
	exp := b.track.exposure(ns, start, end)
	b.track.setActive(ns, false)

	var maxWin int
	var maxAt time.Duration
	var win429 float64
	perMinute := []int{}
	if !first429.IsZero() {
		i0 := sort.Search(len(series), func(i int) bool { return !series[i].at.Before(first429) })
		j := i0
		for i := i0; i < len(series); i++ {
			for j+1 < len(series) && series[j+1].at.Sub(series[i].at) <= time.Minute {
				j++
			}
			if w := series[j].calls - series[i].calls; w > maxWin {
				maxWin, maxAt = w, series[i].at.Sub(first429)
				win429 = series[j].r429 - series[i].r429
			}
		}
		// Calls in consecutive minutes after the first 429, for the record.
		prev := series[i0].calls
		next := first429.Add(time.Minute)
		for _, s := range series[i0:] {
			if !s.at.Before(next) {
				perMinute = append(perMinute, s.calls-prev)
				prev = s.calls
				next = next.Add(time.Minute)
			}
		}
		b.fig(phase, "max provider calls in any 60 s after the first 429", float64(maxWin),
			fmt.Sprintf("%d (~%.0f of them 429s; K=%d/min; window from %.0fs after the first 429)", maxWin, win429, k, maxAt.Seconds()), "", fmt.Sprintf("<= K = %d", k), boolp(maxWin <= k))
	} else {
		b.add(figure{Phase: phase, Name: "max provider calls in any 60 s after the first 429", Text: "no 429 happened", Bar: fmt.Sprintf("<= K = %d", k)})
	}
	b.fig(phase, "credentials that expired while Ready", float64(exp.ReadyExpired),
		fmt.Sprintf("%d of %d (%d Secrets seen expired, %d expired samples)", exp.ReadyExpired, n, exp.ExpiredSecrets, exp.ExpiredSamples), "", "0", boolp(exp.ReadyExpired == 0 && exp.ExpiredSamples == 0))
	readyText := fmt.Sprintf("%d of %d", ready, n)
	if !allReadyAt.IsZero() {
		readyText += fmt.Sprintf(", all after %.0fs", allReadyAt.Sub(start).Seconds())
	}
	b.fig(phase, "credentials Ready under the throttle", float64(ready), readyText, "", "", nil)
	total := 0
	if len(series) > 0 {
		total = series[len(series)-1].calls
	}
	b.detail(phase, map[string]any{
		"credentials": n, "k_per_minute": k, "retry_after": c.ThrottleRetryAfter, "token_lifetime": c.ThrottleLifetime.String(),
		"host_requests_per_minute": c.ThrottleHostLimit, "run_seconds": seconds(end.Sub(start)),
		"provider_calls": total, "operator_429s": rateLimited,
		"max_calls_in_60s_after_first_429": maxWin, "429s_in_that_window_approx": win429, "calls_in_each_complete_minute_after_first_429": perMinute,
		"exposure": exp,
		"method":   "sandbox TotalCalls (429s included) sampled every 100 ms; windows slide over those samples from the first 429 on; the sandbox's own windows are fixed minutes starting at the first request",
	})
	if !first429.IsZero() {
		b.mu.Lock()
		b.details[phase].(map[string]any)["first_429_after_seconds"] = seconds(first429.Sub(start))
		b.mu.Unlock()
	}
	if c.ThrottleRun < c.ThrottleLifetime {
		b.note("throttle: the run (%s) is shorter than one token lifetime (%s), so no token could expire in it; the expiry figure is only meaningful in the full run.", c.ThrottleRun, c.ThrottleLifetime)
	}
	// Back to the unlimited manager for whatever follows.
	if err := b.op.stop(); err != nil {
		b.note("throttle: stopping the manager: %v", err)
	}
	return b.op.start(ctx, "--host-requests-per-minute=-1")
}
