package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"
)

// ---- the ceiling: the operator at saturation against a plain load generator ----

// ceilingRound is one operator window followed by one load-generator window.
type ceilingRound struct {
	Operator map[string]any `json:"operator"`
	Load     map[string]any `json:"load_generator"`
	Share    float64        `json:"share"`
	// The window opened once every credential had a new token from the
	// running operator: SettledSeconds after it started, with
	// RefreshedSinceStart of them refreshed by then.
	SettledSeconds      float64 `json:"settled_seconds_after_operator_start"`
	RefreshedSinceStart int     `json:"credentials_refreshed_since_operator_start"`

	opRate, genRate float64
	opRequests      requestCount
	opRefreshes     int
	genRequests     requestCount
	genDone         int
}

func (b *bench) phaseCeiling(ctx context.Context) (err error) {
	const phase = "ceiling"
	c := b.cfg
	n := c.CeilN
	ns := "bench-ceiling"
	clientID := "ceiling"
	b.sb.SetLifetime("B", c.CeilLifetime)
	if err := b.setupNamespace(ctx, ns, []string{clientID}); err != nil {
		return err
	}
	operatorStopped := false
	defer func() {
		if cerr := b.cleanup(context.WithoutCancel(ctx), ns); cerr != nil && err == nil {
			err = cerr
		}
		if operatorStopped {
			if serr := b.op.start(ctx, "--host-requests-per-minute=-1"); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	b.track.setActive(ns, true)
	logf("ceiling: creating %d credentials with %s tokens (more refreshes due than the machine can take)", n, c.CeilLifetime)
	if err := b.createCredentials(ctx, ns, n, func(int) string { return clientID }); err != nil {
		return err
	}
	ready, err := b.waitReady(ctx, ns, n, c.ReadyTimeout)
	if err != nil {
		return err
	}
	var rounds []ceilingRound
	for i := range c.CeilRounds {
		if i > 0 {
			// The operator again, on the objects the generator left: every
			// token is due (and its Secret's token no longer matches its
			// fingerprint), so it is saturated at once.
			if err := b.op.start(ctx, "--host-requests-per-minute=-1"); err != nil {
				return err
			}
			operatorStopped = false
		}
		settled, refreshed, err := b.settle(ctx, ns, n, b.op.startedAt, c.CeilSettle)
		if err != nil {
			return err
		}
		if err := sleep(ctx, c.CeilWarmup); err != nil {
			return err
		}
		r, err := b.ceilingRound(ctx, ns, i)
		r.SettledSeconds, r.RefreshedSinceStart = round(settled.Seconds(), 1), refreshed
		operatorStopped = true
		if err != nil {
			return err
		}
		rounds = append(rounds, r)
	}
	var opSum, genSum float64
	opReq, genReq := newRequestCount(), newRequestCount()
	opRefreshes, genDone := 0, 0
	for _, r := range rounds {
		opSum += r.opRate
		genSum += r.genRate
		opRefreshes += r.opRefreshes
		genDone += r.genDone
		for k, v := range r.opRequests.ByVerb {
			opReq.ByVerb[k] += v
			opReq.Total += v
		}
		for k, v := range r.genRequests.ByVerb {
			genReq.ByVerb[k] += v
			genReq.Total += v
		}
	}
	opRate, ceiling := opSum/float64(len(rounds)), genSum/float64(len(rounds))
	share := opRate / math.Max(ceiling, 1e-9)
	b.fig(phase, "ceiling: one refresh's writes per second, plain load generator", round(ceiling, 1),
		fmt.Sprintf("%.1f/s (mean of %d windows of %s, %d workers; per refresh %s)", ceiling, len(rounds), c.CeilWindow, c.CeilWorkers, genReq.perEach(genDone)), "", "", nil)
	b.fig(phase, "operator refreshes per second at saturation", round(opRate, 1),
		fmt.Sprintf("%.1f/s (mean of %d windows; %d credentials, %s tokens)", opRate, len(rounds), n, c.CeilLifetime), "", "", nil)
	b.fig(phase, "API requests per refresh at saturation (all)", round(float64(opReq.Total)/math.Max(1, float64(opRefreshes)), 3),
		fmt.Sprintf("%.2f: %s", float64(opReq.Total)/math.Max(1, float64(opRefreshes)), opReq.perEach(opRefreshes)), "", "", nil)
	b.fig(phase, "operator's share of the ceiling", round(share, 3),
		fmt.Sprintf("%.2f (windows: %s)", share, shares(rounds)), "", ">= 0.8", boolp(share >= 0.8))
	b.detail(phase, map[string]any{
		"credentials": n, "ready": ready, "token_lifetime": c.CeilLifetime.String(), "window": c.CeilWindow.String(),
		"rounds": rounds, "operator_refreshes_per_second": round(opRate, 2), "ceiling_per_second": round(ceiling, 2), "share": round(share, 3),
		"method": "rounds of one operator window and one load-generator window, each operator window opened once every credential had a new token from the running operator (its restart backlog done) and the warmup passed, alternated so that neither always runs on the larger database; the load generator runs with the operator stopped: for each credential in turn, one update of its target Secret (a new token of the same length, new issued-at and expires-at) and one JSON merge patch of its status (the fields a refresh changes, sent by the operator's own controller.PatchStatus, which asks for metadata only in return), with controller-runtime's client (protobuf for Secrets, JSON for the CRD, as the operator) as its own user, no client-side rate limit; one refresh's writes counted when both succeeded",
	})
	return nil
}

// settle waits until each of the n credentials of ns has had a new token
// since the operator started, at most limit after since. Right after a
// restart the operator first works through its backlog of initial passes
// (every informer's initial list, a new Event series per object); a window
// opened then would measure that, not sustained saturation. It returns how
// long after since that was, and how many credentials had a new token.
func (b *bench) settle(ctx context.Context, ns string, n int, since time.Time, limit time.Duration) (time.Duration, int, error) {
	for {
		refreshed := b.track.tokensSince(ns, since)
		if refreshed >= n || time.Since(since) > limit {
			if refreshed < n {
				b.note("ceiling: %d of %d credentials had a new token %s after the operator started; measuring anyway", refreshed, n, limit)
			}
			return time.Since(since), refreshed, nil
		}
		if err := sleep(ctx, time.Second); err != nil {
			return 0, 0, err
		}
	}
}

func shares(rs []ceilingRound) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.1f/%.1f = %.2f", r.opRate, r.genRate, r.Share)
	}
	return out
}

// ceilingRound measures the running operator for one window, stops it, and
// measures the load generator for one window. The operator is stopped when
// it returns.
func (b *bench) ceilingRound(ctx context.Context, ns string, idx int) (ceilingRound, error) {
	c := b.cfg
	var r ceilingRound
	pids := map[string]int{"operator": b.op.pid(), "kube-apiserver": b.cp.apiPid, "etcd": b.cp.etcdPid, "bench": os.Getpid()}
	m0, err := b.op.scrape()
	if err != nil {
		return r, err
	}
	cpu := startCPU(pids)
	calls0, hs0 := b.sb.TotalCalls(), b.sb.Handshakes()
	t0 := time.Now()
	if err := sleep(ctx, c.CeilWindow); err != nil {
		return r, err
	}
	t1 := time.Now()
	opCPU, opBusy := cpu.stop()
	m1, err := b.op.scrape()
	if err != nil {
		return r, err
	}
	calls, hs := b.sb.TotalCalls()-calls0, b.sb.Handshakes()-hs0
	refreshes := len(b.track.changesIn(ns, t0, t1))
	window := t1.Sub(t0).Seconds()
	r.opRate = float64(refreshes) / window
	rs := reconcileDelta(m0, m1)
	busy := 0.0
	if rs.MaxWorkers > 0 {
		busy = rs.BusySeconds / (window * rs.MaxWorkers)
	}
	if err := b.op.stop(); err != nil {
		b.note("ceiling: stopping the manager: %v", err)
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return r, err
	}
	b.audit.sync()
	r.opRequests = b.audit.count(false, t0, t1, nil)
	if err := b.audit.checkCounted(fmt.Sprintf("ceiling round %d: operator", idx+1), refreshes, r.opRequests); err != nil {
		return r, err
	}
	r.opRefreshes = refreshes
	logf("ceiling round %d: operator %.1f refreshes/s, workers %.0f%% busy, operator %.2f cores, apiserver %.2f, etcd %.2f, bench %.2f, machine %.0f%%",
		idx+1, r.opRate, 100*busy, opCPU["operator"].Cores, opCPU["kube-apiserver"].Cores, opCPU["etcd"].Cores, opCPU["bench"].Cores, 100*opBusy)

	gen, err := newLoadGen(ctx, b.cp.loadCfg, b.k8s, ns)
	if err != nil {
		return r, err
	}
	delete(pids, "operator")
	cpu = startCPU(pids)
	g0 := time.Now()
	done, failed, gerr := gen.run(ctx, c.CeilWorkers, c.CeilWindow)
	g1 := time.Now()
	genCPU, genBusy := cpu.stop()
	if gerr != nil {
		b.note("ceiling round %d: the load generator's first failed write: %v", idx+1, gerr)
	}
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	b.audit.sync()
	r.genRequests = b.audit.count(true, g0, g1.Add(time.Second), nil)
	if err := b.audit.checkCounted(fmt.Sprintf("ceiling round %d: load generator", idx+1), 0, r.genRequests); err != nil {
		return r, err
	}
	if done > 0 && r.genRequests.Total == 0 {
		return r, fmt.Errorf("ceiling round %d: the load generator completed %d refreshes' writes but the audit log counted none of its requests", idx+1, done)
	}
	r.genDone = done
	r.genRate = float64(done) / g1.Sub(g0).Seconds()
	r.Share = round(r.opRate/math.Max(r.genRate, 1e-9), 3)
	logf("ceiling round %d: load generator %.1f refreshes' writes/s (%d, %d failed), apiserver %.2f cores, etcd %.2f, bench %.2f, machine %.0f%%; share %.2f",
		idx+1, r.genRate, done, failed, genCPU["kube-apiserver"].Cores, genCPU["etcd"].Cores, genCPU["bench"].Cores, 100*genBusy, r.Share)
	r.Operator = map[string]any{
		"window_seconds": round(window, 1), "refreshes": refreshes, "refreshes_per_second": round(r.opRate, 2),
		"provider_calls": calls, "provider_tls_handshakes": hs, "cpu": opCPU, "machine_cpu_busy_fraction": round(opBusy, 3),
		"reconcile": rs, "worker_busy_fraction": round(busy, 3),
		"api_requests": r.opRequests, "api_requests_per_refresh": r.opRequests.perRefreshMap(refreshes),
		"operator_cpu_seconds_per_refresh": round(opCPU["operator"].Seconds/math.Max(1, float64(refreshes)), 5),
	}
	r.Load = map[string]any{
		"workers": c.CeilWorkers, "completed": done, "failed": failed, "per_second": round(r.genRate, 2),
		"window_seconds": round(g1.Sub(g0).Seconds(), 1), "cpu": genCPU, "machine_cpu_busy_fraction": round(genBusy, 3),
		"api_requests": r.genRequests, "api_requests_per_refresh": r.genRequests.perRefreshMap(done),
	}
	return r, nil
}
