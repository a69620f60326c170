package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/demo"
)

// operator is the built manager running as a child process, with plain-HTTP
// metrics the bench scrapes.
type operator struct {
	binary, kubeconfig, logPath string
	proc                        *demo.Process
	metricsAddr, probeAddr      string
	pprofAddr                   string
	args                        []string
	http                        *http.Client
	// startedAt is when the running process was started.
	startedAt time.Time
}

// start runs bin/manager with the bench's flags plus extra (which may
// override --host-requests-per-minute) and waits for /readyz.
func (o *operator) start(ctx context.Context, extra ...string) error {
	var err error
	if o.metricsAddr, err = demo.FreeAddr(); err != nil {
		return err
	}
	if o.probeAddr, err = demo.FreeAddr(); err != nil {
		return err
	}
	if o.pprofAddr, err = demo.FreeAddr(); err != nil {
		return err
	}
	o.args = append([]string{
		// Leader election as shipped, so that its Lease requests are
		// counted with the rest.
		"--leader-elect=true",
		"--leader-election-namespace=kube-system",
		"--allow-private-networks",
		"--metrics-secure=false",
		"--metrics-bind-address=" + o.metricsAddr,
		"--health-probe-bind-address=" + o.probeAddr,
		"--pprof-bind-address=" + o.pprofAddr,
	}, extra...)
	o.startedAt = time.Now()
	o.proc, err = demo.StartManager(demo.ManagerOptions{
		Binary: o.binary, Kubeconfig: o.kubeconfig, Args: o.args, LogPath: o.logPath,
	})
	if err != nil {
		return err
	}
	o.http = &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ok, err := o.proc.Exited(); ok {
			return fmt.Errorf("manager exited during start-up (%w); see %s", err, o.logPath)
		}
		resp, err := o.http.Get("http://" + o.probeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// Metrics are served by the same manager; wait for them too.
				if _, err := o.scrape(); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("manager not ready within 60s; see %s", o.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (o *operator) stop() error {
	if o.proc == nil {
		return nil
	}
	err := o.proc.Stop(15 * time.Second)
	o.proc = nil
	return err
}

func (o *operator) pid() int {
	if o.proc == nil {
		return 0
	}
	return o.proc.Pid()
}

// alive reports an error when the manager has exited unexpectedly.
func (o *operator) alive() error {
	if o.proc == nil {
		return fmt.Errorf("manager not running")
	}
	if ok, err := o.proc.Exited(); ok {
		return fmt.Errorf("manager exited (%w); see %s", err, o.logPath)
	}
	return nil
}

func (o *operator) scrapeRaw() (string, error) {
	resp, err := o.http.Get("http://" + o.metricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(body), nil
}

func (o *operator) scrape() (metrics, error) {
	raw, err := o.scrapeRaw()
	if err != nil {
		return nil, err
	}
	return parseMetrics(raw), nil
}

// metrics is a parsed Prometheus text exposition: series name to samples.
type metrics map[string][]sample

type sample struct {
	labels string // the text between the braces, as exposed
	value  float64
}

func parseMetrics(text string) metrics {
	m := metrics{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		var name, labels, rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, labels, rest = line[:i], line[i+1:j], line[j+1:]
		} else {
			sp := strings.IndexByte(line, ' ')
			if sp < 0 {
				continue
			}
			name, rest = line[:sp], line[sp:]
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			continue
		}
		m[name] = append(m[name], sample{labels: labels, value: v})
	}
	return m
}

// sum adds the samples of name whose labels contain every one of matchers
// (each written as it appears in the exposition, e.g. `controller="x"`).
func (m metrics) sum(name string, matchers ...string) float64 {
	total := 0.0
	for _, s := range m[name] {
		ok := true
		for _, want := range matchers {
			if !strings.Contains(s.labels, want) {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
		}
	}
	return total
}

// filterExposition keeps the lines (HELP, TYPE and samples) of the metric
// families whose names start with one of prefixes.
func filterExposition(text string, prefixes []string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		name := line
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			name = line[7:]
		} else if strings.HasPrefix(line, "#") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				b.WriteString(line)
				b.WriteByte('\n')
				break
			}
		}
	}
	return b.String()
}

// reconcileStats are the controller-runtime figures that tell whether the
// single reconcile worker is the limit.
type reconcileStats struct {
	Reconciles      float64 `json:"reconciles"`
	ReconcileErrors float64 `json:"reconcile_errors"`
	BusySeconds     float64 `json:"worker_busy_seconds"`
	MeanReconcileMs float64 `json:"mean_reconcile_ms"`
	MeanQueueWaitMs float64 `json:"mean_queue_wait_ms"`
	MaxWorkers      float64 `json:"max_concurrent_reconciles"`
}

const ctrlName = `controller="apicredential"`

func reconcileDelta(a, b metrics) reconcileStats {
	d := func(name string, match ...string) float64 { return b.sum(name, match...) - a.sum(name, match...) }
	s := reconcileStats{
		Reconciles:      d("controller_runtime_reconcile_total", ctrlName),
		ReconcileErrors: d("controller_runtime_reconcile_errors_total", ctrlName),
		BusySeconds:     round(d("controller_runtime_reconcile_time_seconds_sum", ctrlName), 2),
		MaxWorkers:      b.sum("controller_runtime_max_concurrent_reconciles", ctrlName),
	}
	if n := d("controller_runtime_reconcile_time_seconds_count", ctrlName); n > 0 {
		s.MeanReconcileMs = round(1000*s.BusySeconds/n, 2)
	}
	if n := d("workqueue_queue_duration_seconds_count", `name="apicredential"`); n > 0 {
		s.MeanQueueWaitMs = round(1000*d("workqueue_queue_duration_seconds_sum", `name="apicredential"`)/n, 2)
	}
	return s
}

// cpuProfile fetches a CPU profile of the operator over d.
func (o *operator) cpuProfile(ctx context.Context, d time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", o.pprofAddr, int(d.Seconds())), nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: d + 30*time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pprof answered %d", resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}
