package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// The provider-side cases of §7 at scale: a host that answers 503 for a
// while under many credentials (or one), and hosts that never answer next to
// a healthy one. Each test logs the figures it measured.

const (
	// outageProbeInterval is §7's spacing of the probes of a failing host:
	// at most one request every 10 s (jittered, so later, never earlier).
	outageProbeInterval = 10 * time.Second
	// outageRecovery is §7's promise after a provider recovers: every
	// expired token is retried (as the probe or released by it) within 10 s.
	outageRecovery = 10 * time.Second
	// outageTiming is what the call-time recorder and the polls can be off
	// by on a loaded 2-core machine under -race.
	outageTiming = 250 * time.Millisecond
)

// callTimes records when a provider's call counter grows. The sandbox counts
// calls but keeps no times, so the counter is polled every 10 ms; a time is
// when the poll saw the call, up to about 10 ms (more under load) after it
// arrived.
type callTimes struct {
	mu    sync.Mutex
	times []time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func recordCallTimes(t *testing.T, count func() int) *callTimes {
	t.Helper()
	c := &callTimes{stop: make(chan struct{}), done: make(chan struct{})}
	last := count()
	go func() {
		defer close(c.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-tk.C:
			}
			if n := count(); n > last {
				now := time.Now()
				c.mu.Lock()
				for range n - last {
					c.times = append(c.times, now)
				}
				c.mu.Unlock()
				last = n
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *callTimes) close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

// between returns the recorded times in [from, to).
func (c *callTimes) between(from, to time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, ts := range c.times {
		if !ts.Before(from) && ts.Before(to) {
			out = append(out, ts)
		}
	}
	return out
}

// maxCallsInWindow is the largest number of times (sorted) inside any half-open
// window of length w.
func maxCallsInWindow(ts []time.Time, w time.Duration) int {
	best, i := 0, 0
	for j := range ts {
		for ts[j].Sub(ts[i]) >= w {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// outageTarget is one target Secret as the uncached client saw it.
type outageTarget struct {
	token    string
	issuedAt time.Time
	expires  time.Time
}

// listOutageTargets reads the target Secrets of the namespace through the
// uncached client, by name.
func listOutageTargets(ctx context.Context, ns string) (map[string]outageTarget, error) {
	var list corev1.SecretList
	if err := k8s.List(ctx, &list, client.InNamespace(ns),
		client.MatchingLabels{authv1alpha1.LabelManagedBy: authv1alpha1.ManagedByValue}); err != nil {
		return nil, err
	}
	out := make(map[string]outageTarget, len(list.Items))
	for _, s := range list.Items {
		st := outageTarget{token: string(s.Data["token"])}
		if st.token != "" {
			secrets.add(st.token)
		}
		st.issuedAt, _ = time.Parse(time.RFC3339, s.Annotations[authv1alpha1.AnnotationIssuedAt])
		st.expires, _ = time.Parse(time.RFC3339, string(s.Data["expires-at"]))
		out[s.Name] = st
	}
	return out, nil
}

// outageTargetWatch lists the target Secrets every few hundred milliseconds and
// records every sample in which one that had a token holds none (Secret
// gone or token key empty): the last good token must stay.
type outageTargetWatch struct {
	mu      sync.Mutex
	samples int
	errors  int
	lost    int
	first   []string // the first few losses, for the failure message
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func watchOutageTargets(t *testing.T, ns string, targets []string, every time.Duration) *outageTargetWatch {
	t.Helper()
	w := &outageTargetWatch{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(w.done)
		had := map[string]bool{}
		for {
			got, err := listOutageTargets(context.Background(), ns)
			w.mu.Lock()
			if err != nil {
				w.errors++
			} else {
				w.samples++
				for _, n := range targets {
					st, ok := got[n]
					switch {
					case ok && st.token != "":
						had[n] = true
					case had[n]:
						w.lost++
						if len(w.first) < 5 {
							w.first = append(w.first, fmt.Sprintf("%s at +%s (Secret present %v)", n, time.Since(start).Round(time.Millisecond), ok))
						}
					}
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *outageTargetWatch) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// check stops the watch and fails the test on a lost token.
func (w *outageTargetWatch) check(t *testing.T) (samples int) {
	t.Helper()
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost > 0 {
		t.Errorf("%d samples (of %d) where a target Secret that had a token held none, want 0 (the last good token stays): %s",
			w.lost, w.samples, strings.Join(w.first, "; "))
	}
	if w.samples == 0 {
		t.Errorf("the target watch took no sample (%d list errors)", w.errors)
	}
	return w.samples
}

// outageAllReady waits until every named APICredential is Ready=True.
func (h *harness) outageAllReady(names []string, timeout time.Duration) {
	h.t.Helper()
	h.eventually(timeout, func() string {
		var list authv1alpha1.APICredentialList
		if err := k8s.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
			return err.Error()
		}
		ready := map[string]bool{}
		for i := range list.Items {
			if c := condition(&list.Items[i], authv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
				ready[list.Items[i].Name] = true
			}
		}
		var missing []string
		for _, n := range names {
			if !ready[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("%d of %d credentials not Ready, e.g. %s", len(missing), len(names), missing[0])
		}
		return ""
	})
}

// outageFigures is what an outage and its recovery cost and took.
type outageFigures struct {
	calls       int             // provider calls during the outage
	maxWindow   int             // most calls in any 10 s window of the outage
	onset       int             // calls within 1 s of the first outage call
	probes      []time.Duration // the later calls, as offsets from the injection
	minGap      time.Duration   // least spacing between two of the later calls
	firstAfter  time.Duration   // first call after the recovery
	slowest     time.Duration   // every target fresh
	median      time.Duration
	callsToGood int // provider calls from the recovery until every target is fresh
}

// runOutage makes the sandbox answer 503 for d, then recovers it, and
// measures the calls during the outage and the time until every target
// holds a token issued after the recovery.
func (h *harness) runOutage(targets []string, d time.Duration) outageFigures {
	h.t.Helper()
	t := h.t
	var f outageFigures
	watch := watchOutageTargets(t, h.ns, targets, 200*time.Millisecond)
	rec := recordCallTimes(t, h.sb.TotalCalls)

	h.sb.Inject(sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, Times: -1})
	injectedAt := time.Now()
	atInject := h.sb.TotalCalls()
	// The scenario is a duration: the refreshes come due and the tokens
	// expire while the provider is down.
	time.Sleep(d)
	before, err := listOutageTargets(context.Background(), h.ns)
	if err != nil {
		t.Fatalf("listing targets: %v", err)
	}
	atClear := h.sb.TotalCalls()
	h.sb.ClearFaults()
	clearedAt := time.Now()
	f.calls = atClear - atInject

	var latestExpiry time.Time
	for _, n := range targets {
		st := before[n]
		if st.token == "" {
			t.Fatalf("%s holds no token at the end of the outage", n)
		}
		if st.expires.After(latestExpiry) {
			latestExpiry = st.expires
		}
	}
	if !latestExpiry.Before(clearedAt) {
		t.Fatalf("a token (expires %s) outlived the outage (%s to %s): the scenario is void",
			latestExpiry.Format(time.RFC3339), injectedAt.Format(time.RFC3339), clearedAt.Format(time.RFC3339))
	}

	fresh := map[string]time.Duration{}
	deadline := clearedAt.Add(90 * time.Second)
	for len(fresh) < len(targets) && time.Now().Before(deadline) {
		got, err := listOutageTargets(context.Background(), h.ns)
		seen := time.Since(clearedAt)
		if err == nil {
			for _, n := range targets {
				if _, ok := fresh[n]; ok {
					continue
				}
				st := got[n]
				if st.token == "" || st.token == before[n].token || !h.sb.Valid(st.token) {
					continue
				}
				// Every call of the outage got a 503, so a new token is
				// one issued after the recovery; issued-at says so too.
				if st.issuedAt.Before(clearedAt.Truncate(time.Second)) {
					t.Errorf("%s: new token issued at %s, before the recovery at %s", n, st.issuedAt.Format(time.RFC3339), clearedAt.Format(time.RFC3339Nano))
				}
				fresh[n] = seen
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	allFreshAt := time.Now()
	f.callsToGood = h.sb.TotalCalls() - atClear
	if len(fresh) < len(targets) {
		t.Fatalf("%d of %d targets hold a token issued after the recovery, 90s after it (outage calls %d)", len(fresh), len(targets), f.calls)
	}
	watch.check(t)
	rec.close()

	during := rec.between(injectedAt, clearedAt)
	f.maxWindow = maxCallsInWindow(during, outageProbeInterval)
	if len(during) > 0 {
		for _, ts := range during {
			if ts.Sub(during[0]) < time.Second {
				f.onset++
				continue
			}
			f.probes = append(f.probes, ts.Sub(injectedAt))
		}
		f.minGap = -1
		prev := during[f.onset-1]
		for _, ts := range during[f.onset:] {
			if gap := ts.Sub(prev); f.minGap < 0 || gap < f.minGap {
				f.minGap = gap
			}
			prev = ts
		}
	}
	if after := rec.between(clearedAt, allFreshAt.Add(time.Second)); len(after) > 0 {
		f.firstAfter = after[0].Sub(clearedAt)
	}
	each := make([]time.Duration, 0, len(fresh))
	for _, d := range fresh {
		each = append(each, d)
	}
	slices.Sort(each)
	f.slowest, f.median = each[len(each)-1], each[len(each)/2]
	return f
}

func roundOffsets(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(100 * time.Millisecond).String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// checkOutageCalls asserts §7's probing: O(1) calls for the host, one at a
// time, at most one per 10 s. The requests already in flight when the first
// 503 comes back (at most the bulkhead) are the onset: they were sent while
// the host was not yet known to be failing, and count as the one call the
// "+1" of the bar allows. After it only probes go out.
func checkOutageCalls(t *testing.T, f outageFigures, d time.Duration) {
	t.Helper()
	bar := int(d/outageProbeInterval) + 1
	if n := f.calls - f.onset + 1; n > bar {
		t.Errorf("%d provider calls during the %s outage (onset %d, later calls at %s), want <= %d with the onset counted as one (one per %s, plus one)",
			f.calls, d, f.onset, roundOffsets(f.probes), bar, outageProbeInterval)
	}
	if f.calls == 0 {
		t.Errorf("no provider call during the %s outage: the scenario is void", d)
	}
	if f.onset > auth.DefaultHostMaxInFlight {
		t.Errorf("%d calls within 1 s at the start of the outage, want <= %d (the bulkhead)", f.onset, auth.DefaultHostMaxInFlight)
	}
	if len(f.probes) > 0 && f.minGap < outageProbeInterval-outageTiming {
		t.Errorf("two calls %s apart during the outage, want >= %s after the onset (later calls at %s)",
			f.minGap.Round(time.Millisecond), outageProbeInterval, roundOffsets(f.probes))
	}
}

func TestFaultProviderOutageManyCredentials(t *testing.T) {
	// The harness's budget (600 requests a minute) and the default bulkhead
	// (auth.DefaultHostMaxInFlight): 50 calls on recovery need no pacing by
	// the budget.
	h := newHarness(t)
	h.sb.SetLifetime("B", 20*time.Second)
	const creds = 50
	const outage = 60 * time.Second
	// 10 s after the recovery (§7), plus 2 s for 50 passes (a Secret write
	// and a status write each) by 4 workers on a loaded 2-core machine.
	const recoveryBar = outageRecovery + 2*time.Second

	names := make([]string, creds)
	targets := make([]string, creds)
	for i := range names {
		// One sandbox client per credential, so the calls are also counted
		// per credential.
		names[i] = fmt.Sprintf("outage-%02d", i)
		targets[i] = names[i] + "-token"
		h.client(names[i])
		h.credential(names[i], authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(names[i]), Target: targetSpec(targets[i])})
	}
	h.outageAllReady(names, 90*time.Second)

	f := h.runOutage(targets, outage)
	checkOutageCalls(t, f, outage)
	if f.slowest > recoveryBar {
		t.Errorf("every target fresh %s after the recovery (median %s, first call %s after it), want <= %s (%s, plus %s for 50 passes)",
			f.slowest.Round(time.Millisecond), f.median.Round(time.Millisecond), f.firstAfter.Round(time.Millisecond),
			recoveryBar, outageRecovery, recoveryBar-outageRecovery)
	}
	h.outageAllReady(names, readyWait)
	t.Logf("%d credentials, 20s tokens, 503 for %s: %d provider calls during the outage (bar %d with the onset counted as one; onset %d, later calls at %s after the injection, least spacing %s; most in any 10s window %d); "+
		"after the recovery: first call at %s, every target fresh at %s (median %s; bar %s), %d provider calls until then",
		creds, outage, f.calls, int(outage/outageProbeInterval)+1, f.onset, roundOffsets(f.probes), f.minGap.Round(time.Millisecond), f.maxWindow,
		f.firstAfter.Round(time.Millisecond), f.slowest.Round(time.Millisecond), f.median.Round(time.Millisecond), recoveryBar, f.callsToGood)
}

func TestFaultProviderOutageOneCredential(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 20*time.Second)
	const outage = 45 * time.Second
	// 10 s after the recovery (§7), plus 1 s for one pass and the poll.
	const recoveryBar = outageRecovery + time.Second
	h.client("outage-one")
	h.credential("outage-one", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("outage-one"), Target: targetSpec("outage-one-token")})
	h.waitCondition("outage-one", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)

	f := h.runOutage([]string{"outage-one-token"}, outage)
	checkOutageCalls(t, f, outage)
	if f.slowest > recoveryBar {
		t.Errorf("fresh token %s after the recovery (its call %s after it), want <= %s (%s, plus %s for the pass)",
			f.slowest.Round(time.Millisecond), f.firstAfter.Round(time.Millisecond), recoveryBar, outageRecovery, recoveryBar-outageRecovery)
	}
	h.waitCondition("outage-one", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	t.Logf("one credential, 20s tokens, 503 for %s: %d provider calls during the outage (bar %d with the onset counted as one; onset %d, later calls at %s after the injection, least spacing %s); fresh token %s after the recovery (its call at %s; bar %s)",
		outage, f.calls, int(outage/outageProbeInterval)+1, f.onset, roundOffsets(f.probes), f.minGap.Round(time.Millisecond),
		f.slowest.Round(time.Millisecond), f.firstAfter.Round(time.Millisecond), recoveryBar)
}

// tcpBlackhole accepts TCP connections and never sends a byte: a TLS client
// waits for the ServerHello until its timeout. It reads what it is sent,
// so clients never block on a full window, and counts connections; no
// handshake ever completes, so no connection is kept for reuse and every
// request dials anew: the count is the number of requests.
type tcpBlackhole struct {
	ln net.Listener
	mu sync.Mutex
	n  int
	cs map[net.Conn]struct{}
	wg sync.WaitGroup
}

func startTCPBlackhole(t *testing.T) *tcpBlackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("blackhole listen: %v", err)
	}
	b := &tcpBlackhole{ln: ln, cs: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.n++
			b.cs[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
				b.mu.Lock()
				delete(b.cs, c)
				b.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *tcpBlackhole) addr() string { return b.ln.Addr().String() }

func (b *tcpBlackhole) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *tcpBlackhole) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func TestFaultSlowOrBlackholedProviderDoesNotDelayOthers(t *testing.T) {
	// The harness's budget (600 a minute) and the default bulkhead
	// (auth.DefaultHostMaxInFlight per host). The harness runs 4 workers
	// where production runs 64: the first requests to 3 hung hosts can hold
	// every worker for the timeout, so this is stricter than production.
	h := newHarness(t)
	h.sb.SetLifetime("B", 30*time.Second)
	const (
		healthy  = 10
		perHost  = 60
		window   = 2 * time.Minute
		refreshN = 3
	)
	timeout := auth.DefaultTimeout

	// Three hosts that never answer: two TCP blackholes (the TLS handshake
	// never completes) and a sandbox that completes TLS and then holds
	// every request (signed by the harness's CA, so the credentials trust
	// it through the same CA bundle).
	holes := []*tcpBlackhole{startTCPBlackhole(t), startTCPBlackhole(t)}
	hung, err := sandbox.Start(sandbox.Options{CA: h.sb.CA})
	if err != nil {
		t.Fatalf("starting the hanging sandbox: %v", err)
	}
	t.Cleanup(hung.Close)
	hung.Inject(sandbox.Fault{Kind: sandbox.FaultHang, Times: -1})
	type badHost struct {
		name  string
		url   string
		calls func() int
	}
	bad := []badHost{
		{"tcp-blackhole-1", "https://" + holes[0].addr() + sandbox.PathFlowB, holes[0].count},
		{"tcp-blackhole-2", "https://" + holes[1].addr() + sandbox.PathFlowB, holes[1].count},
		{"tls-then-hang", hung.URL + sandbox.PathFlowB, hung.TotalCalls},
	}

	names := make([]string, healthy)
	for i := range names {
		names[i] = fmt.Sprintf("healthy-%d", i)
		h.client(names[i])
		h.credential(names[i], authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(names[i]), Target: targetSpec(names[i] + "-token")})
	}
	h.outageAllReady(names, 60*time.Second)

	// Sample the healthy targets every 200 ms from before the blackholed
	// credentials exist until the end of the window.
	type sampleLog struct {
		mu      sync.Mutex
		samples int
		expired int
		errors  int
		first   []string
		tokens  map[string][]string // distinct tokens seen, in order
		least   time.Duration       // least remaining lifetime seen
	}
	sl := &sampleLog{tokens: map[string][]string{}, least: -1}
	stop, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for {
			for _, n := range names {
				s := &corev1.Secret{}
				err := k8s.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: n + "-token"}, s)
				now := time.Now()
				sl.mu.Lock()
				if err != nil {
					sl.errors++
					sl.mu.Unlock()
					continue
				}
				sl.samples++
				tok := string(s.Data["token"])
				exp, perr := time.Parse(time.RFC3339, string(s.Data["expires-at"]))
				if tok == "" || perr != nil || !now.Before(exp) {
					sl.expired++
					if len(sl.first) < 5 {
						sl.first = append(sl.first, fmt.Sprintf("%s at +%s (expires-at %q)", n, now.Sub(start).Round(time.Millisecond), s.Data["expires-at"]))
					}
				} else if left := exp.Sub(now); sl.least < 0 || left < sl.least {
					sl.least = left
				}
				if seen := sl.tokens[n]; tok != "" && (len(seen) == 0 || seen[len(seen)-1] != tok) {
					sl.tokens[n] = append(seen, tok)
					secrets.add(tok)
				}
				sl.mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	stopSampling := sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(stopSampling)

	// 60 credentials per bad host, created round-robin over the hosts, with
	// the default per-call timeout spelled out. They share one client
	// Secret: none of them ever reaches a provider that could check it.
	h.secret("blackholed-client", map[string]string{"id": "blackholed", "secret": randomValue("secret")})
	callsBefore := make([]int, len(bad))
	for i, b := range bad {
		callsBefore[i] = b.calls()
	}
	for i := range perHost * len(bad) {
		b := bad[i%len(bad)]
		name := fmt.Sprintf("%s-%02d", b.name, i/len(bad))
		h.credential(name, authv1alpha1.APICredentialSpec{
			TokenRequest: &authv1alpha1.TokenRequest{
				URL:       b.url,
				Method:    authv1alpha1.MethodPOST,
				BasicAuth: &authv1alpha1.BasicAuth{SecretName: "blackholed-client", UsernameKey: "id", PasswordKey: "secret"},
				Form:      []authv1alpha1.Parameter{{Name: "grant_type", Value: ptr.To("client_credentials")}},
				CABundle:  h.caBundle(),
				Timeout:   &metav1.Duration{Duration: timeout},
			},
			Target: targetSpec(name + "-token"),
		})
	}
	created := time.Since(start)
	healthyBefore := make([]int, healthy)
	for i, n := range names {
		healthyBefore[i] = h.sb.Calls(n)
	}
	// The scenario is a duration.
	time.Sleep(time.Until(start.Add(window)))
	stopSampling()
	elapsed := time.Since(start)

	badCalls := make([]int, len(bad))
	var perBad []string
	// The first wave fills the bulkhead; then one probe at a time, each
	// hanging for the timeout and followed by at least the probe interval.
	badBar := auth.DefaultHostMaxInFlight + int(window/(outageProbeInterval+timeout)) + 1
	for i, b := range bad {
		badCalls[i] = b.calls() - callsBefore[i]
		perBad = append(perBad, fmt.Sprintf("%s %d", b.name, badCalls[i]))
		if badCalls[i] == 0 {
			t.Errorf("%s received no request: the scenario is void", b.name)
		}
		if badCalls[i] > badBar {
			t.Errorf("%s received %d requests from %d credentials in %s, want <= %d (the bulkhead of %d, then one probe per %s timeout + %s interval)",
				b.name, badCalls[i], perHost, elapsed.Round(time.Second), badBar, auth.DefaultHostMaxInFlight, timeout, outageProbeInterval)
		}
	}

	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.expired > 0 {
		t.Errorf("%d of %d samples of the healthy targets held an expired (or no) token, want 0: %s", sl.expired, sl.samples, strings.Join(sl.first, "; "))
	}
	if sl.samples < healthy*int(window/time.Second) {
		t.Errorf("only %d samples of the healthy targets in %s (%d read errors)", sl.samples, elapsed.Round(time.Second), sl.errors)
	}
	refreshes := make([]int, healthy)
	var perHealthy []string
	least := refreshN * 100
	for i, n := range names {
		refreshes[i] = len(sl.tokens[n]) - 1
		least = min(least, refreshes[i])
		perHealthy = append(perHealthy, fmt.Sprintf("%d", refreshes[i]))
	}
	if least < refreshN {
		t.Errorf("healthy credentials refreshed %v times in %s, want >= %d each", refreshes, elapsed.Round(time.Second), refreshN)
	}
	healthyCalls := 0
	for i, n := range names {
		healthyCalls += h.sb.Calls(n) - healthyBefore[i]
	}
	t.Logf("%d credentials on 3 hosts that never answer (timeout %s) next to %d healthy ones (30s tokens), 4 workers, for %s (blackholed credentials created in %s): "+
		"%d of %d healthy samples expired; least remaining lifetime seen %s; refreshes per healthy credential [%s] (bar >= %d); "+
		"healthy provider calls %d; requests received by the bad hosts: %s (bar <= %d each)",
		perHost*len(bad), timeout, healthy, elapsed.Round(time.Second), created.Round(time.Millisecond),
		sl.expired, sl.samples, sl.least.Round(time.Millisecond), strings.Join(perHealthy, " "), refreshN,
		healthyCalls, strings.Join(perBad, ", "), badBar)
}
