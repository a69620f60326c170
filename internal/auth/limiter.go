package auth

import (
	"sync"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

const (
	// DefaultHostRequestsPerMinute is the per-host budget when Options leaves
	// it at zero: well under the per-IP thresholds providers document, while
	// still serving a few dozen credentials per host.
	DefaultHostRequestsPerMinute = 120

	limiterWindow = time.Minute

	// Bounds of the backoff applied after a 429 that carries no usable
	// Retry-After: the refresh policy's backoff (docs/reference.md).
	cooldownBase = refresh.BackoffBase
	cooldownMax  = refresh.BackoffMax

	// retryAfterJitter spreads callers that all read the same Retry-After, so
	// they do not return at the same instant.
	retryAfterJitter = 0.2

	// DefaultHostMaxInFlight is how many requests to one host may be in
	// flight at once when Options leaves it at zero: enough for one
	// provider serving thousands of credentials at tens of milliseconds per
	// token, while a host that hangs until the timeout ties up this many
	// workers at most, and one once its first request has failed.
	DefaultHostMaxInFlight = 16
	// slotRetry is when a caller held back by a full bulkhead, or by a
	// probe in flight, asks again at the latest; a freed slot wakes the
	// most urgent waiter sooner (Options.OnHostSlotFree).
	slotRetry = 5 * time.Second
	// probeInterval is the time between two probes of a failing host: the
	// refresh floor, so that a host costs at most one call per 10 s in an
	// outage and an expired token is retried within 10 s of its recovery.
	probeInterval = refresh.Floor
)

// hostLimiter is shared by every caller of one Client. It never blocks: it
// answers "go" or "come back in d", so a reconciler can requeue instead of
// holding a worker.
type hostLimiter struct {
	perMinute   int // <0: unlimited
	maxInFlight int
	rand        func() float64
	// recovered is called, without the lock, when a failing host answers;
	// freed when a request to a host ends and its slot is free again.
	recovered, freed func(host string)

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	// sent holds the send times inside the current window, oldest first; at
	// most perMinute entries, so memory is bounded per host.
	sent          []time.Time
	cooldownUntil time.Time
	consecutive   int // 429s in a row without a success in between
	inFlight      int
	// failing is set by a transient failure (5xx, timeout, connection or
	// TLS failure) and cleared by any answer: while it is set, the host is
	// probed by one request at a time, at most one per probeInterval.
	failing bool
	probing bool
	probeAt time.Time
}

func newHostLimiter(perMinute, maxInFlight int, rnd func() float64) *hostLimiter {
	if perMinute == 0 {
		perMinute = DefaultHostRequestsPerMinute
	}
	if maxInFlight <= 0 {
		maxInFlight = DefaultHostMaxInFlight
	}
	return &hostLimiter{perMinute: perMinute, maxInFlight: maxInFlight, rand: rnd, hosts: map[string]*hostState{}}
}

// slot is a request slot taken from acquire; release gives it back.
type slot struct {
	host  string
	probe bool
}

// acquire takes a request slot for host at now, or reports how long to wait.
// A slot taken is spent even when the request later fails: the provider saw
// (or may have seen) it.
func (l *hostLimiter) acquire(host string, now time.Time) (slot, bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(host, now)
	if wait := l.hold(st, now); wait > 0 {
		return slot{}, false, wait
	}
	if l.perMinute >= 0 {
		st.sent = append(st.sent, now)
	}
	st.inFlight++
	s := slot{host: host, probe: st.failing}
	if s.probe {
		st.probing = true
	}
	return s, true, 0
}

// hold is how long a request to st must wait at now; 0: it may go. The
// order says what a caller waits for first: the 429 cool-down, a failing
// host's probe, the bulkhead, the budget.
func (l *hostLimiter) hold(st *hostState, now time.Time) time.Duration {
	switch {
	case now.Before(st.cooldownUntil):
		return st.cooldownUntil.Sub(now)
	case st.failing && st.probing:
		return slotRetry
	case st.failing && now.Before(st.probeAt):
		return st.probeAt.Sub(now)
	case st.inFlight >= l.maxInFlight:
		return slotRetry
	}
	if l.perMinute < 0 {
		return 0
	}
	st.expire(now)
	if len(st.sent) >= l.perMinute {
		// The slot frees when the oldest send leaves the window.
		return st.sent[0].Add(limiterWindow).Sub(now)
	}
	return 0
}

// holdUntil is when a request to host could go, without taking a slot; the
// zero time when it could go now.
func (l *hostLimiter) holdUntil(host string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.hosts[host]
	if !ok {
		return time.Time{}
	}
	if wait := l.hold(st, now); wait > 0 {
		return now.Add(wait)
	}
	return time.Time{}
}

// release gives a slot back with the request's outcome: transient is true
// when the host did not answer usefully (5xx, 408, timeout, connection or
// TLS failure). A transient outcome starts (or continues) probing; any
// other answer ends it and calls recovered.
func (l *hostLimiter) release(s slot, now time.Time, transient bool) {
	l.mu.Lock()
	st := l.state(s.host, now)
	st.inFlight = max(st.inFlight-1, 0)
	if s.probe {
		st.probing = false
	}
	wasFailing := st.failing
	if transient {
		if !st.failing || s.probe {
			st.probeAt = now.Add(probeInterval)
		}
		st.failing = true
	} else {
		st.failing = false
	}
	recovered, freed, failing := l.recovered, l.freed, st.failing
	l.mu.Unlock()
	switch {
	case wasFailing && !transient && recovered != nil:
		recovered(s.host)
	case !failing && freed != nil:
		freed(s.host)
	}
}

// expire drops sends older than the window. A send at exactly now-1m is
// outside: the window is the half-open interval (now-1m, now].
func (st *hostState) expire(now time.Time) {
	cut := now.Add(-limiterWindow)
	i := 0
	for i < len(st.sent) && !st.sent[i].After(cut) {
		i++
	}
	if i > 0 {
		st.sent = append(st.sent[:0], st.sent[i:]...)
	}
}

// throttled records a 429 for host and returns the cool-down it applies to
// every caller. With a Retry-After the wait is that value plus 0-20 %;
// without one it is full-jitter exponential backoff over consecutive 429s.
// An existing longer cool-down is never shortened.
func (l *hostLimiter) throttled(host string, now time.Time, retryAfter time.Duration, hasRetryAfter bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(host, now)
	st.consecutive++
	var wait time.Duration
	if hasRetryAfter {
		wait = retryAfter + time.Duration(float64(retryAfter)*retryAfterJitter*l.rnd())
	} else {
		wait = refresh.FullJitter(st.consecutive, cooldownBase, cooldownMax, l.rnd())
	}
	if until := now.Add(wait); until.After(st.cooldownUntil) {
		st.cooldownUntil = until
	}
	return st.cooldownUntil.Sub(now)
}

// succeeded resets the 429 streak of host, so the next 429 starts the
// backoff from its base again.
func (l *hostLimiter) succeeded(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st, ok := l.hosts[host]; ok {
		st.consecutive = 0
	}
}

// rnd is called with l.mu held, so a caller-supplied generator that is not
// safe for concurrent use is still called from one goroutine at a time.
func (l *hostLimiter) rnd() float64 {
	r := l.rand()
	if r < 0 || r >= 1 || r != r {
		return 0
	}
	return r
}

// state returns host's entry, creating it. Idle hosts are swept when the map
// grows, so a long-running operator that has talked to many hosts over time
// does not keep them all.
func (l *hostLimiter) state(host string, now time.Time) *hostState {
	st, ok := l.hosts[host]
	if ok {
		return st
	}
	if len(l.hosts) >= maxTrackedHosts {
		l.sweep(now)
	}
	st = &hostState{}
	l.hosts[host] = st
	return st
}

// maxTrackedHosts triggers a sweep of idle entries; it is not a hard cap.
const maxTrackedHosts = 1024

// sweep forgets hosts with no send in the window, no cool-down and no 429
// streak: forgetting them changes no future answer.
func (l *hostLimiter) sweep(now time.Time) {
	for h, st := range l.hosts {
		st.expire(now)
		if len(st.sent) == 0 && st.consecutive == 0 && !now.Before(st.cooldownUntil) && st.inFlight == 0 && !st.failing {
			delete(l.hosts, h)
		}
	}
}
