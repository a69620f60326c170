package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"
)

// ---- the ceiling: the operator at saturation against a plain load generator ----

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
	if err := sleep(ctx, c.CeilWarmup); err != nil {
		return err
	}
	pids := map[string]int{"operator": b.op.pid(), "kube-apiserver": b.cp.apiPid, "etcd": b.cp.etcdPid, "bench": os.Getpid()}
	m0, err := b.op.scrape()
	if err != nil {
		return err
	}
	cpu := startCPU(pids)
	calls0 := b.sb.TotalCalls()
	t0 := time.Now()
	if err := sleep(ctx, c.CeilWindow); err != nil {
		return err
	}
	t1 := time.Now()
	opCPU, opBusy := cpu.stop()
	m1, err := b.op.scrape()
	if err != nil {
		return err
	}
	calls := b.sb.TotalCalls() - calls0
	refreshes := len(b.track.changesIn(ns, t0, t1))
	window := t1.Sub(t0).Seconds()
	opRate := float64(refreshes) / window
	rs := reconcileDelta(m0, m1)
	busy := 0.0
	if rs.MaxWorkers > 0 {
		busy = rs.BusySeconds / (window * rs.MaxWorkers)
	}
	exp := b.track.exposure(ns, t0, t1)
	b.track.setActive(ns, false)
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	all, err := b.apiRequests(phase, t0, t1, refreshes)
	if err != nil {
		return err
	}
	logf("ceiling: operator %.1f refreshes/s (%d ready of %d), workers %.0f%% busy, operator %.2f cores, apiserver %.2f, etcd %.2f, bench %.2f, machine %.0f%%",
		opRate, ready, n, 100*busy, opCPU["operator"].Cores, opCPU["kube-apiserver"].Cores, opCPU["etcd"].Cores, opCPU["bench"].Cores, 100*opBusy)

	// The operator stops; the generator does one refresh's writes on the
	// same objects as fast as the machine allows.
	if err := b.op.stop(); err != nil {
		b.note("ceiling: stopping the manager: %v", err)
	}
	operatorStopped = true
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	gen, err := newLoadGen(ctx, b.cp.loadCfg, b.k8s, ns)
	if err != nil {
		return err
	}
	delete(pids, "operator")
	cpu = startCPU(pids)
	g0 := time.Now()
	done, failed, gerr := gen.run(ctx, c.CeilWorkers, c.CeilWindow)
	g1 := time.Now()
	genCPU, genBusy := cpu.stop()
	if gerr != nil {
		b.note("ceiling: the load generator's first failed write: %v", gerr)
	}
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	b.audit.sync()
	genReqs := b.audit.count(true, g0, g1.Add(time.Second), nil)
	if err := b.audit.checkCounted("ceiling: load generator", 0, genReqs); err != nil {
		return err
	}
	if done > 0 && genReqs.Total == 0 {
		return fmt.Errorf("ceiling: the load generator completed %d refreshes' writes but the audit log counted none of its requests", done)
	}
	ceiling := float64(done) / g1.Sub(g0).Seconds()
	share := opRate / math.Max(ceiling, 1e-9)
	logf("ceiling: load generator %.1f refreshes' writes/s (%d, %d failed), apiserver %.2f cores, etcd %.2f, bench %.2f, machine %.0f%%; operator's share %.2f",
		ceiling, done, failed, genCPU["kube-apiserver"].Cores, genCPU["etcd"].Cores, genCPU["bench"].Cores, 100*genBusy, share)

	b.fig(phase, "ceiling: one refresh's writes per second, plain load generator", round(ceiling, 1),
		fmt.Sprintf("%.1f/s (%d in %.0fs, %d workers; %s; machine %.0f%% busy)", ceiling, done, g1.Sub(g0).Seconds(), c.CeilWorkers, genReqs.perEach(done), 100*genBusy), "", "", nil)
	b.fig(phase, "operator refreshes per second at saturation", round(opRate, 1),
		fmt.Sprintf("%.1f/s (%d credentials, %s tokens; %d calls; workers %.0f%% busy; machine %.0f%% busy)", opRate, n, c.CeilLifetime, calls, 100*busy, 100*opBusy), "", "", nil)
	b.fig(phase, "operator's share of the ceiling", round(share, 3),
		fmt.Sprintf("%.2f", share), "", ">= 0.8", boolp(share >= 0.8))
	b.detail(phase, map[string]any{
		"credentials": n, "ready": ready, "token_lifetime": c.CeilLifetime.String(), "window_seconds": round(window, 1),
		"operator": map[string]any{
			"refreshes": refreshes, "refreshes_per_second": round(opRate, 2), "provider_calls": calls,
			"cpu": opCPU, "machine_cpu_busy_fraction": round(opBusy, 3), "reconcile": rs, "worker_busy_fraction": round(busy, 3),
			"api_requests": all, "api_requests_per_refresh": all.perRefreshMap(refreshes), "exposure": exp,
		},
		"load_generator": map[string]any{
			"workers": c.CeilWorkers, "completed": done, "failed": failed, "per_second": round(ceiling, 2),
			"window_seconds": round(g1.Sub(g0).Seconds(), 1), "cpu": genCPU, "machine_cpu_busy_fraction": round(genBusy, 3),
			"api_requests": genReqs, "api_requests_per_refresh": genReqs.perRefreshMap(done),
			"method": "the operator stopped; for each credential in turn, one update of its target Secret (a new token of the same length, new issued-at and expires-at) and one JSON merge patch of its status (client.MergeFrom, the fields a refresh changes), with controller-runtime's client (JSON) as its own user, no client-side rate limit; one refresh's writes counted when both succeeded",
		},
		"share": round(share, 3),
	})
	return nil
}
