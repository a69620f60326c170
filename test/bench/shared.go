package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// ---- several hosts with the default per-host budget ----

func (b *bench) phaseHosts(ctx context.Context) (err error) {
	const phase = "hosts"
	c := b.cfg
	budget := auth.DefaultHostRequestsPerMinute
	// The operator with --host-requests-per-minute left at its default.
	if err := b.op.stop(); err != nil {
		b.note("hosts: stopping the manager: %v", err)
	}
	if err := b.op.start(ctx); err != nil {
		return err
	}
	defer func() {
		if serr := b.op.stop(); serr != nil {
			b.note("hosts: stopping the manager: %v", serr)
		}
		if serr := b.op.start(ctx, "--host-requests-per-minute=-1"); serr != nil && err == nil {
			err = serr
		}
	}()
	type host struct {
		sb     *sandbox.Server
		ns     string
		series []callSample
	}
	hosts := make([]*host, c.HostsN)
	for h := range hosts {
		sb, err := sandbox.Start(sandbox.Options{CA: b.sb.CA, LifetimeB: c.HostsLifetime})
		if err != nil {
			return err
		}
		defer sb.Close()
		hosts[h] = &host{sb: sb, ns: fmt.Sprintf("bench-hosts-%d", h)}
	}
	for h, hs := range hosts {
		clientID := fmt.Sprintf("hosts-%d", h)
		if err := b.setupNamespaceOn(ctx, hs.sb, hs.ns, []string{clientID}); err != nil {
			return err
		}
		defer func() {
			if cerr := b.cleanup(context.WithoutCancel(ctx), hs.ns); cerr != nil && err == nil {
				err = cerr
			}
		}()
		b.track.setActive(hs.ns, true)
	}
	// Calls per host every 100 ms.
	var mu sync.Mutex
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case now := <-tk.C:
				mu.Lock()
				for _, hs := range hosts {
					hs.series = append(hs.series, callSample{at: now, calls: hs.sb.TotalCalls()})
				}
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	for h, hs := range hosts {
		clientID := fmt.Sprintf("hosts-%d", h)
		url := hs.sb.FlowURL("B")
		if err := b.createEach(ctx, hs.ns, c.HostsPerHost, func(i int) *authv1alpha1.APICredential {
			return &authv1alpha1.APICredential{
				ObjectMeta: metav1.ObjectMeta{Namespace: hs.ns, Name: credName(i)},
				Spec: authv1alpha1.APICredentialSpec{
					TokenRequest: flowB(url, clientID, credName(i)),
					Target:       authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(targetName(i))},
				},
			}
		}); err != nil {
			stopSampling()
			<-sampled
			return err
		}
	}
	logf("hosts: %d hosts x %d credentials, %s tokens, default budget %d/min per host; running for %s", c.HostsN, c.HostsPerHost, c.HostsLifetime, budget, c.HostsRun)
	if err := sleep(ctx, c.HostsRun); err != nil {
		stopSampling()
		<-sampled
		return err
	}
	stopSampling()
	<-sampled
	end := time.Now()
	rb := refresh.DefaultRefreshBefore(c.HostsLifetime, false)
	worst := 0
	var perHost []map[string]any
	var totalInv, totalPairs int
	for h, hs := range hosts {
		mu.Lock()
		series := hs.series
		mu.Unlock()
		most, at := maxInWindow(series, time.Minute)
		worst = max(worst, most)
		exp := b.track.exposure(hs.ns, start, end)
		ready, _ := b.track.readyCount(hs.ns)
		changes := b.track.changesIn(hs.ns, start, end)
		inv, pairs := expiryOrderInversions(changes, rb+refresh.LandingLead, 2*time.Second)
		totalInv += inv
		totalPairs += pairs
		calls := 0
		if len(series) > 0 {
			calls = series[len(series)-1].calls
		}
		perHost = append(perHost, map[string]any{
			"host": h, "credentials": c.HostsPerHost, "ready": ready, "provider_calls": calls,
			"max_calls_in_60s": most, "max_window_starts_after_seconds": seconds(at.Sub(start)),
			"refreshes": len(changes), "expiry_order_inversions": inv, "waiting_pairs": pairs, "exposure": exp,
		})
		b.fig(phase, fmt.Sprintf("host %d: most provider calls in any 60 s", h), float64(most),
			fmt.Sprintf("%d (%d calls in %.0fs; %d of %d Ready; %d expired samples)", most, calls, end.Sub(start).Seconds(), ready, c.HostsPerHost, exp.ExpiredSamples),
			"", fmt.Sprintf("<= budget %d", budget), boolp(most <= budget))
		for _, hs := range hosts {
			b.track.setActive(hs.ns, false)
		}
	}
	share := 0.0
	if totalPairs > 0 {
		share = float64(totalInv) / float64(totalPairs)
	}
	b.fig(phase, "waiting credentials served out of expiry order", round(share, 4),
		fmt.Sprintf("%d of %d pairs (both due, the later-expiring served first by more than 2 s)", totalInv, totalPairs), "", "earliest expiry first", boolp(totalPairs > 0 && share <= 0.01))
	b.detail(phase, map[string]any{
		"hosts": perHost, "budget_per_minute": budget, "token_lifetime": c.HostsLifetime.String(), "run_seconds": seconds(end.Sub(start)),
		"refresh_before": rb.String(),
		"method":         "one sandbox server per host (same CA, its own port: the budget is per host:port); calls counted by each server, sampled every 100 ms, windows slide over the samples; order: for every two refreshes of one host observed at t1 < t2, where the second credential's token was due by t1 at the latest (its expiry minus refreshBefore minus the landing lead), an inversion is the first one's previous token expiring more than 2 s after the second's",
	})
	return nil
}

// maxInWindow is the most calls in any window of d over cumulative samples,
// and where that window starts.
func maxInWindow(series []callSample, d time.Duration) (int, time.Time) {
	most, at := 0, time.Time{}
	j := 0
	for i := range series {
		for j+1 < len(series) && series[j+1].at.Sub(series[i].at) <= d {
			j++
		}
		if w := series[j].calls - series[i].calls; w > most {
			most, at = w, series[i].at
		}
	}
	return most, at
}

// expiryOrderInversions counts pairs of refreshes (observed at t1 < t2)
// where the second one was already due at t1, yet the first one's previous
// token expired more than tolerance after the second one's: a waiting
// credential served after one that could have waited longer.
func expiryOrderInversions(changes []tokenChange, lead, tolerance time.Duration) (inversions, pairs int) {
	cs := append([]tokenChange(nil), changes...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].at.Before(cs[j].at) })
	for i := range cs {
		for j := i + 1; j < len(cs); j++ {
			due := cs[j].oldExpires.Add(-lead) // at the latest
			if cs[j].oldExpires.IsZero() || cs[i].oldExpires.IsZero() || due.After(cs[i].at) {
				continue
			}
			pairs++
			if cs[i].oldExpires.Sub(cs[j].oldExpires) > tolerance {
				inversions++
			}
		}
	}
	return inversions, pairs
}

// ---- one provider, many consumers ----

func (b *bench) phaseProviders(ctx context.Context) (err error) {
	const phase = "providers"
	c := b.cfg
	home := "bench-providers"
	const provider = "payments"
	clientID := "provider"
	consumerLabel := "bench.tokenwarden.io/consumer"
	if err := b.op.stop(); err != nil {
		b.note("providers: stopping the manager: %v", err)
	}
	if err := b.op.start(ctx, "--host-requests-per-minute=-1", "--cluster-resource-namespace="+home); err != nil {
		return err
	}
	b.sb.SetLifetime("B", c.ProvLifetime)
	if err := b.setupNamespace(ctx, home, []string{clientID}); err != nil {
		return err
	}
	nss := make([]string, c.ProvNamespaces)
	for i := range nss {
		nss[i] = fmt.Sprintf("bench-prov-%02d", i)
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		b.logTokensOff()
		for _, ns := range nss {
			if cerr := b.cleanup(bg, ns); cerr != nil && err == nil {
				err = cerr
			}
		}
		if cerr := b.k8s.DeleteAllOf(bg, &authv1alpha1.ClusterTokenProvider{}); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := b.cleanup(bg, home); cerr != nil && err == nil {
			err = cerr
		}
		if serr := b.op.stop(); serr != nil {
			b.note("providers: stopping the manager: %v", serr)
		}
		if serr := b.op.start(ctx, "--host-requests-per-minute=-1"); serr != nil && err == nil {
			err = serr
		}
	}()
	b.track.logTokens("bench-prov")
	for _, ns := range nss {
		if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{consumerLabel: "yes"}}}); err != nil {
			return err
		}
		b.track.setActive(ns, true)
	}
	b.track.setActive(home, true)
	calls0 := b.sb.AllCalls()[clientID]
	start := time.Now()
	ctp := &authv1alpha1.ClusterTokenProvider{
		ObjectMeta: metav1.ObjectMeta{Name: provider},
		Spec: authv1alpha1.ClusterTokenProviderSpec{
			TokenProviderSpec: authv1alpha1.TokenProviderSpec{TokenRequest: *flowB(b.sb.FlowURL("B"), clientID, provider)},
			AllowedNamespaces: &authv1alpha1.AllowedNamespaces{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{consumerLabel: "yes"}}},
		},
	}
	if err := b.k8s.Create(ctx, ctp); err != nil {
		return err
	}
	n := c.ProvNamespaces * c.ProvPerNS
	for _, ns := range nss {
		if err := b.createEach(ctx, ns, c.ProvPerNS, func(i int) *authv1alpha1.APICredential {
			return &authv1alpha1.APICredential{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credName(i)},
				Spec: authv1alpha1.APICredentialSpec{
					ProviderRef: &authv1alpha1.ProviderReference{Kind: authv1alpha1.KindClusterTokenProvider, Name: provider},
					Target:      authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(targetName(i))},
				},
			}
		}); err != nil {
			return err
		}
	}
	logf("providers: one ClusterTokenProvider, %d consumers in %d namespaces, %s tokens; running for %s", n, c.ProvNamespaces, c.ProvLifetime, c.ProvRun)
	if err := sleep(ctx, c.ProvRun); err != nil {
		return err
	}
	end := time.Now()
	// Freeze the provider, then count: every call made has produced its token.
	if err := b.k8s.Patch(ctx, &authv1alpha1.ClusterTokenProvider{ObjectMeta: metav1.ObjectMeta{Name: provider}},
		client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"suspend":true}}`))); err != nil {
		return err
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	calls := b.sb.AllCalls()[clientID] - calls0
	providerTokens := b.track.tokensPerSecret(home)[provider+"-token"]
	log := b.track.logTokens("")
	// Copy delays: each provider token's first sighting to each consumer's.
	first := map[[16]byte]time.Time{}
	for _, s := range log {
		if _, ok := first[s.hash]; !ok && s.ns == home {
			first[s.hash] = s.at
		}
	}
	var all []time.Duration
	last := map[[16]byte]time.Duration{}
	copies := map[[16]byte]int{}
	for _, s := range log {
		t0, ok := first[s.hash]
		if !ok || s.ns == home {
			continue
		}
		d := max(0, s.at.Sub(t0))
		all = append(all, d)
		copies[s.hash]++
		last[s.hash] = max(last[s.hash], d)
	}
	var lasts []time.Duration
	complete := 0
	for h, d := range last {
		if copies[h] >= n {
			lasts = append(lasts, d)
			complete++
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	sort.Slice(lasts, func(i, j int) bool { return lasts[i] < lasts[j] })
	exp := exposure{}
	for _, ns := range nss {
		e := b.track.exposure(ns, start, end)
		exp.Samples += e.Samples
		exp.ExpiredSamples += e.ExpiredSamples
		b.track.setActive(ns, false)
	}
	b.track.setActive(home, false)
	lifetimes := end.Sub(start).Seconds() / c.ProvLifetime.Seconds()
	perToken := float64(calls) / math.Max(1, float64(providerTokens))
	b.fig(phase, fmt.Sprintf("provider calls per provider token (%d consumers in %d namespaces)", n, c.ProvNamespaces), round(perToken, 3),
		fmt.Sprintf("%.2f (%d calls, %d tokens over %.1f lifetimes)", perToken, calls, providerTokens, lifetimes), "", "1 call per lifetime", boolp(providerTokens > 0 && calls == providerTokens))
	b.fig(phase, "new provider token to a consumer's copy, p50 / p99 (all copies)", seconds(percentile(all, 0.99)),
		fmt.Sprintf("%.2fs / %.2fs (%d copies)", percentile(all, 0.5).Seconds(), percentile(all, 0.99).Seconds(), len(all)), "", "", nil)
	b.fig(phase, "new provider token to the last consumer's copy, p50 / p99", seconds(percentile(lasts, 0.99)),
		fmt.Sprintf("%.2fs / %.2fs (%d tokens copied to all %d consumers)", percentile(lasts, 0.5).Seconds(), percentile(lasts, 0.99).Seconds(), complete, n), "", "", nil)
	b.fig(phase, "consumers' expired-token exposure (samples)", float64(exp.ExpiredSamples),
		fmt.Sprintf("%d of %d", exp.ExpiredSamples, exp.Samples), "", "0", boolp(exp.ExpiredSamples == 0))
	b.detail(phase, map[string]any{
		"consumers": n, "namespaces": c.ProvNamespaces, "token_lifetime": c.ProvLifetime.String(), "run_seconds": seconds(end.Sub(start)),
		"provider_calls": calls, "provider_tokens": providerTokens, "copies": len(all), "tokens_copied_to_all": complete,
		"copy_p50_seconds": seconds(percentile(all, 0.5)), "copy_p99_seconds": seconds(percentile(all, 0.99)),
		"last_copy_p50_seconds": seconds(percentile(lasts, 0.5)), "last_copy_p99_seconds": seconds(percentile(lasts, 0.99)),
		"exposure": exp,
		"method":   "times are when the bench's informer saw each Secret with a token (a hash of it, in memory); a copy's delay is from the provider Secret's first sighting of that token; the provider was suspended at the end and calls counted 3 s later",
	})
	return nil
}

func (b *bench) logTokensOff() { b.track.logTokens("") }
