package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

func TestHostLimiterWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	l := newHostLimiter(3, 0, fixedRand(0.5))
	for i := 0; i < 3; i++ {
		if ok, _ := l.take("h:443", t0.Add(time.Duration(i)*10*time.Second)); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	if ok, wait := l.take("h:443", t0.Add(30*time.Second)); ok || wait != 30*time.Second {
		t.Fatalf("4th request: ok=%v wait=%v; want refused for 30s (until the first leaves the window)", ok, wait)
	}
	if ok, _ := l.take("other:443", t0.Add(30*time.Second)); !ok {
		t.Fatal("another host must have its own budget")
	}
	if ok, wait := l.take("h:443", t0.Add(time.Minute-time.Nanosecond)); ok || wait != time.Nanosecond {
		t.Fatalf("just before the slot frees: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.take("h:443", t0.Add(time.Minute)); !ok {
		t.Fatal("the slot must free exactly one minute after the first request")
	}
	if ok, _ := l.take("h:443", t0.Add(time.Minute)); ok {
		t.Fatal("only one slot freed")
	}
}

func TestHostLimiterDefaultsAndUnlimited(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	l := newHostLimiter(0, 0, fixedRand(0))
	n := 0
	for ok := true; ok; n++ {
		ok, _ = l.take("h:443", t0)
	}
	if n-1 != DefaultHostRequestsPerMinute {
		t.Fatalf("default budget = %d, want %d", n-1, DefaultHostRequestsPerMinute)
	}
	u := newHostLimiter(-1, 0, fixedRand(0))
	for i := 0; i < 10000; i++ {
		if ok, _ := u.take("h:443", t0); !ok {
			t.Fatal("an unlimited limiter refused a request")
		}
	}
	u.throttled("h:443", t0, 5*time.Second, true)
	if ok, wait := u.take("h:443", t0); ok || wait != 5*time.Second {
		t.Fatalf("an unlimited limiter must still honour a 429 cool-down: ok=%v wait=%v", ok, wait)
	}
}

func TestHostLimiterCooldown(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	l := newHostLimiter(-1, 0, fixedRand(0.5))
	// Without Retry-After: full jitter over 2s·2^(n-1), capped at 2m; rnd 0.5
	// gives half the ceiling.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 32 * time.Second, time.Minute, time.Minute} {
		now := t0.Add(time.Duration(i) * time.Hour)
		if got := l.throttled("h:443", now, 0, false); got != want {
			t.Fatalf("429 #%d: cool-down %v, want %v", i+1, got, want)
		}
		if got := l.holdUntil("h:443", now); !got.Equal(now.Add(want)) {
			t.Fatalf("holdUntil = %v, want %v", got, now.Add(want))
		}
	}
	l.succeeded("h:443")
	t1 := t0.Add(24 * time.Hour)
	if got := l.throttled("h:443", t1, 0, false); got != time.Second {
		t.Fatalf("after a success the backoff restarts: got %v, want 1s", got)
	}
	// A Retry-After gets 0-20 % on top (10 % at rnd 0.5), and a shorter
	// later cool-down never cuts a longer one short.
	t2 := t1.Add(time.Hour)
	if got := l.throttled("h:443", t2, 60*time.Second, true); got != 66*time.Second {
		t.Fatalf("Retry-After 60: cool-down %v, want 66s", got)
	}
	if got := l.throttled("h:443", t2.Add(time.Second), time.Second, true); got != 65*time.Second {
		t.Fatalf("a shorter Retry-After shortened the cool-down: %v remaining, want 65s", got)
	}
	if ok, wait := l.take("h:443", t2.Add(time.Minute)); ok || wait != 6*time.Second {
		t.Fatalf("during the cool-down: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.take("h:443", t2.Add(66*time.Second)); !ok {
		t.Fatal("the cool-down must end on time")
	}
	if !l.holdUntil("h:443", t2.Add(66*time.Second)).IsZero() {
		t.Fatal("holdUntil must be zero once the cool-down has passed")
	}
}

// TestLimiterConcurrentCallers is the shared-budget contract: 50 goroutines
// hammer one throttled sandbox host through one Client while a fake clock
// advances. The provider never sees more than the configured rate in any
// one-minute window, and after a 429 nobody reaches it until the cool-down
// ends.
func TestLimiterConcurrentCallers(t *testing.T) {
	const (
		perMinute = 10
		callers   = 50
	)
	fx := loadFixtures(t)
	clk := newFakeClock()
	s, err := sandbox.Start(sandbox.Options{CA: fx.ca, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddClient(secretKeyID, secretClient)
	// The sandbox throttles at the same rate: if our limiter let one request
	// too many through, the sandbox would answer 429 and the test would see it.
	s.SetThrottle(perMinute, "30")
	// The bulkhead is out of the way: this is about the budget.
	c := NewClient(Options{Clock: clk, Rand: fixedRand(0.5), AllowPrivateNetworks: true, HostRequestsPerMinute: perMinute, HostMaxInFlight: 1000})
	e := &fetchEnv{fx: fx}
	req := e.flowB(s)
	host, _ := HostOf(req.URL)

	// round runs one Fetch per caller, all at the same fake instant, and
	// returns how many reached the provider.
	round := func(phase string) (reached int) {
		t.Helper()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Fetch(context.Background(), req)
				mu.Lock()
				defer mu.Unlock()
				errs = append(errs, err)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			var rl *RateLimitedError
			switch {
			case err == nil:
				reached++
			case errors.As(err, &rl) && rl.Local:
				if rl.RetryAfter <= 0 {
					t.Fatalf("%s: local refusal without a wait: %v", phase, err)
				}
			default:
				t.Fatalf("%s: unexpected error: %v", phase, err)
			}
		}
		return reached
	}

	// Phase 1: 40 rounds, 5 s apart.
	var sent []time.Time
	for i := 0; i < 40; i++ {
		n := round("steady")
		for j := 0; j < n; j++ {
			sent = append(sent, clk.Now())
		}
		clk.Step(5 * time.Second)
	}
	if got := s.TotalCalls(); got != len(sent) {
		t.Fatalf("the provider saw %d calls, the callers report %d", got, len(sent))
	}
	sort.Slice(sent, func(i, j int) bool { return sent[i].Before(sent[j]) })
	for i := range sent {
		inWindow := 0
		for j := i; j < len(sent) && sent[j].Sub(sent[i]) < time.Minute; j++ {
			inWindow++
		}
		if inWindow > perMinute {
			t.Fatalf("%d requests in the minute from %v; cap is %d", inWindow, sent[i], perMinute)
		}
	}
	// 200 s of fake time at 10/min: the budget is used, not just refused.
	if len(sent) < 3*perMinute {
		t.Fatalf("only %d requests got through in 200 s; the limiter is too strict", len(sent))
	}

	// Phase 2: one 429 with Retry-After: 30 shuts the host for 33 s (rnd 0.5
	// adds 10 %) for every caller.
	clk.Step(time.Minute)
	s.Inject(sandbox.Fault{Kind: sandbox.FaultRespond, Status: 429, Header: map[string]string{"Retry-After": "30"}})
	_, err = c.Fetch(context.Background(), req)
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.Local || rl.RetryAfter != 33*time.Second {
		t.Fatalf("err = %v, want the provider's 429 with a 33 s cool-down", err)
	}
	throttledAt := clk.Now()
	if got := c.HoldUntil(host); !got.Equal(throttledAt.Add(33 * time.Second)) {
		t.Fatalf("HoldUntil = %v, want %v", got, throttledAt.Add(33*time.Second))
	}
	calls := s.TotalCalls()
	for _, at := range []time.Duration{0, 10 * time.Second, 33*time.Second - time.Millisecond} {
		clk.Step(throttledAt.Add(at).Sub(clk.Now()))
		if n := round("cool-down"); n != 0 {
			t.Fatalf("%d callers got through %v into the cool-down", n, at)
		}
	}
	if got := s.TotalCalls(); got != calls {
		t.Fatalf("the provider saw %d calls during the cool-down", got-calls)
	}
	clk.Step(throttledAt.Add(33 * time.Second).Sub(clk.Now()))
	// The 429'd request still holds one slot of this minute.
	if n := round("after the cool-down"); n != perMinute-1 {
		t.Fatalf("%d callers got through after the cool-down, want %d", n, perMinute-1)
	}
}

// take acquires a slot and releases it at once with a good answer: the
// budget and cool-down tests count sends, not requests in flight.
func (l *hostLimiter) take(host string, now time.Time) (bool, time.Duration) {
	s, ok, wait := l.acquire(host, now)
	if ok {
		l.release(s, now, false)
	}
	return ok, wait
}

func TestHostLimiterBulkhead(t *testing.T) {
	l := newHostLimiter(-1, 2, fixedRand(0))
	t0 := time.Unix(1_700_000_000, 0)
	a, ok1, _ := l.acquire("slow:443", t0)
	_, ok2, _ := l.acquire("slow:443", t0)
	if !ok1 || !ok2 {
		t.Fatal("the first two requests were held")
	}
	if _, ok, wait := l.acquire("slow:443", t0); ok || wait != slotRetry {
		t.Fatalf("a third request in flight: ok %v, wait %v", ok, wait)
	}
	if ok, _ := l.take("fast:443", t0); !ok {
		t.Fatal("a hanging host held back another host")
	}
	if got := l.holdUntil("slow:443", t0); !got.Equal(t0.Add(slotRetry)) {
		t.Fatalf("holdUntil = %v with the bulkhead full", got)
	}
	l.release(a, t0, false)
	if !l.holdUntil("slow:443", t0).IsZero() {
		t.Fatal("still held after a release")
	}
}

// A failing host is probed by one request at a time, at most one per
// probeInterval; the first answer releases everyone.
func TestHostLimiterProbesAFailingHost(t *testing.T) {
	l := newHostLimiter(-1, 0, fixedRand(0))
	var recovered []string
	l.recovered = func(h string) { recovered = append(recovered, h) }
	t0 := time.Unix(1_700_000_000, 0)
	s, _, _ := l.acquire("down:443", t0)
	l.release(s, t0, true)
	if _, ok, wait := l.acquire("down:443", t0.Add(time.Second)); ok || wait != probeInterval-time.Second {
		t.Fatalf("a request 1 s after a failure: ok %v, wait %v", ok, wait)
	}
	probe, ok, _ := l.acquire("down:443", t0.Add(probeInterval))
	if !ok || !probe.probe {
		t.Fatalf("no probe after %v", probeInterval)
	}
	if _, ok, _ := l.acquire("down:443", t0.Add(probeInterval)); ok {
		t.Fatal("a second request while the probe is in flight")
	}
	l.release(probe, t0.Add(probeInterval+15*time.Second), true) // timed out
	if _, ok, _ := l.acquire("down:443", t0.Add(probeInterval+16*time.Second)); ok {
		t.Fatal("a request right after a failed probe")
	}
	probe, ok, _ = l.acquire("down:443", t0.Add(2*probeInterval+15*time.Second))
	if !ok {
		t.Fatal("no second probe")
	}
	l.release(probe, t0.Add(2*probeInterval+16*time.Second), false)
	if len(recovered) != 1 || recovered[0] != "down:443" {
		t.Fatalf("recovered %v", recovered)
	}
	if !l.holdUntil("down:443", t0.Add(2*probeInterval+16*time.Second)).IsZero() {
		t.Fatal("still held after the host answered")
	}
}

// A host is marked failing by its own faults (a 503), not by a request that
// distrusts its certificate: another credential's CA bundle may trust it.
func TestFailingHostIsTheHostsFault(t *testing.T) {
	fx := loadFixtures(t)
	clk := newFakeClock()
	s, err := sandbox.Start(sandbox.Options{CA: fx.ca, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddClient(secretKeyID, secretClient)
	c := NewClient(Options{Clock: clk, Rand: fixedRand(0), AllowPrivateNetworks: true})
	e := &fetchEnv{fx: fx}
	host, _ := HostOf(s.URL)

	untrusting := e.flowB(s)
	untrusting.RootCAs = x509.NewCertPool() // trusts nothing
	if _, err := c.Fetch(context.Background(), untrusting); failure.ReasonOf(err) != failure.ProviderUnavailable {
		t.Fatalf("untrusted server certificate: %v", err)
	}
	if got := c.HoldUntil(host); !got.IsZero() {
		t.Fatalf("a request that distrusts the certificate marked the host failing until %v", got)
	}
	s.Inject(sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503})
	if _, err := c.Fetch(context.Background(), e.flowB(s)); failure.ReasonOf(err) != failure.ProviderUnavailable {
		t.Fatalf("503: %v", err)
	}
	if got := c.HoldUntil(host); !got.Equal(clk.Now().Add(probeInterval)) {
		t.Fatalf("after a 503 the host is held until %v, want the next probe at %v", got, clk.Now().Add(probeInterval))
	}
}
