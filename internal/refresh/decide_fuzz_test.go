package refresh

import (
	"math"
	"testing"
	"time"
)

// maxTokenLifetime is the longest lifetime the token client accepts from a
// provider (auth's maxLifetime, one year).
const maxTokenLifetime = 365 * 24 * time.Hour

// FuzzDecide checks Decide's invariants over arbitrary inputs. Every time is
// base plus an int64 offset in nanoseconds, so the whole ±292-year range
// around base is reachable; class is taken mod 6 (the six classes).
func FuzzDecide(f *testing.F) {
	h := int64(time.Hour)
	m := int64(time.Minute)
	s := int64(time.Second)
	// now, issued, expires, refreshBefore, jitter, class, retryAt,
	// lastAttempt, cooldown, hasToken, changed, invalidates, hasRetry,
	// hasLastAttempt, hasCooldown.
	f.Add(int64(0), int64(0), h, int64(0), 0.0, 0, int64(0), int64(0), int64(0), false, false, false, false, false, false)
	f.Add(m, int64(0), h, int64(0), 0.5, 0, int64(0), int64(0), int64(0), true, false, false, false, false, false)
	f.Add(50*m, int64(0), h, int64(0), 0.999, 0, int64(0), 49*m, int64(0), true, false, false, false, true, false)
	f.Add(2*s, int64(0), m, m, 0.9, 0, int64(0), int64(0), int64(0), true, false, false, false, true, false)
	f.Add(m, int64(0), h, int64(0), 0.1, 1, 2*m, m-s, 90*s, true, true, false, true, true, true)
	f.Add(2*h, int64(0), h, int64(0), 0.3, 2, 2*h+20*s, 2*h, int64(0), true, false, false, true, true, false)
	f.Add(m, int64(0), h, int64(0), 0.0, 3, 10*m, int64(0), int64(0), true, false, true, true, true, false)
	f.Add(m, int64(0), h, int64(0), 0.0, 3, 10*m, m-s, int64(0), true, true, true, true, true, false)
	f.Add(m, int64(0), h, int64(0), 0.0, 4, int64(0), int64(0), int64(0), true, false, false, false, false, false)
	f.Add(m, int64(0), h, int64(0), 0.0, 5, 10*m, int64(0), 5*m, false, false, false, true, false, true)
	f.Add(int64(0), int64(math.MinInt64), int64(math.MaxInt64), int64(math.MaxInt64), math.NaN(), -7, int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64), true, false, true, true, true, true)
	f.Add(int64(math.MaxInt64), int64(0), h, int64(-1), math.Inf(1), 11, int64(0), int64(math.MaxInt64-1), int64(0), true, true, false, true, true, true)

	f.Fuzz(func(t *testing.T, nowOff, issuedOff, expiresOff, refreshBefore int64, jitter float64, class int,
		retryOff, lastOff, cooldownOff int64, hasToken, changed, invalidates, hasRetry, hasLast, hasCooldown bool) {
		cls := Class(((class % 7) + 7) % 7)
		in := Input{
			Now:                 base.Add(time.Duration(nowOff)),
			Changed:             changed,
			RefreshBefore:       time.Duration(refreshBefore),
			InvalidatesPrevious: invalidates,
			Jitter:              jitter,
			LastFailure:         cls,
		}
		if hasToken {
			in.Token = Token{IssuedAt: base.Add(time.Duration(issuedOff)), ExpiresAt: base.Add(time.Duration(expiresOff))}
		}
		if hasRetry {
			in.RetryAt = base.Add(time.Duration(retryOff))
		}
		if hasLast {
			in.LastAttempt = base.Add(time.Duration(lastOff))
		}
		if hasCooldown {
			in.HostHoldUntil = base.Add(time.Duration(cooldownOff))
		}

		d := Decide(in)
		if again := Decide(in); again != d {
			t.Fatalf("not deterministic: %+v then %+v", d, again)
		}
		// The floor counts from the later of the last attempt and the
		// token's issue time.
		last := in.LastAttempt
		if in.Token.IssuedAt.After(last) {
			last = in.Token.IssuedAt
		}
		floored := !last.IsZero()
		floorEnd := last.Add(MinInterval(in.Token, last))

		switch d.Action {
		case Wait:
			if d.At.IsZero() {
				// Waiting for a change: only after a spec failure.
				if changed || cls != Spec {
					t.Fatalf("Wait for a change without a spec failure: %+v", in)
				}
				return
			}
			if !d.At.After(in.Now) {
				t.Fatalf("Wait at %v not after now %v", d.At, in.Now)
			}
			if floored && d.At.Before(floorEnd) {
				t.Fatalf("Wait at %v before LastAttempt+Floor %v", d.At, floorEnd)
			}
			if d.At.Before(in.HostHoldUntil) {
				t.Fatalf("Wait at %v before host cool-down end %v", d.At, in.HostHoldUntil)
			}
			// Waiting needs a reason: the floor, the cool-down, a failure's
			// RetryAt or the token's schedule.
			reason := (floored && in.Now.Before(floorEnd)) || in.Now.Before(in.HostHoldUntil) ||
				(!changed && cls != None && hasRetry && in.Now.Before(in.RetryAt)) ||
				(!changed && in.Token.Valid(in.Now))
			if !reason {
				t.Fatalf("Wait at %v without a reason: %+v", d.At, in)
			}
		case Refresh:
			if !d.At.Equal(in.Now) {
				t.Fatalf("Refresh at %v, not now %v", d.At, in.Now)
			}
			if floored && in.Now.Before(floorEnd) {
				t.Fatalf("Refresh at %v inside the floor (LastAttempt %v)", in.Now, in.LastAttempt)
			}
			if in.Now.Before(in.HostHoldUntil) {
				t.Fatalf("Refresh at %v inside the host cool-down (until %v)", in.Now, in.HostHoldUntil)
			}
			if !changed && cls != None && hasRetry && in.Now.Before(in.RetryAt) {
				t.Fatalf("Refresh at %v before RetryAt %v without a change (class %d)", in.Now, in.RetryAt, cls)
			}
		default:
			t.Fatalf("unknown action %d", d.Action)
		}

		// Nothing holds a credential back: Refresh. A change, a missing or
		// expired token with no pending retry must reach the provider once
		// the floor and cool-down allow it.
		free := (!floored || !in.Now.Before(floorEnd)) && !in.Now.Before(in.HostHoldUntil)
		noFailureHold := changed || cls == None || !hasRetry || !in.Now.Before(in.RetryAt)
		if free && noFailureHold && (changed || !in.Token.Valid(in.Now)) && d.Action != Refresh {
			t.Fatalf("%v at %v, want Refresh: %+v", d.Action, d.At, in)
		}

		// Valid token, no failure, no change: Refresh only at or after
		// RefreshAt, and with nothing else in the way Wait exactly until it.
		if hasToken && !changed && cls == None && in.Token.Valid(in.Now) {
			ra := RefreshAt(in.Token.IssuedAt, in.Token.ExpiresAt, in.RefreshBefore, in.InvalidatesPrevious, in.Jitter)
			if d.Action == Refresh && in.Now.Before(ra) {
				t.Fatalf("Refresh at %v before RefreshAt %v", in.Now, ra)
			}
			if d.Action == Wait && d.At.Before(ra) {
				t.Fatalf("Wait until %v, before RefreshAt %v", d.At, ra)
			}
			if !hasLast && !hasCooldown {
				due := ra
				if floorEnd.After(due) { // the token's own issue time floors it
					due = floorEnd
				}
				want := Decision{Action: Refresh, At: in.Now}
				if in.Now.Before(due) {
					want = Decision{Action: Wait, At: due}
				}
				if d.Action != want.Action || !d.At.Equal(want.At) {
					t.Fatalf("%v at %v, want %v at %v", d.Action, d.At, want.Action, want.At)
				}
			}
		}

		// RefreshAt lies in [issuedAt, expiresAt]. Checked for the lifetimes
		// the token client can produce (at most a year). Not for lifetimes
		// of centuries: there refreshBefore (up to L) plus up to 10 % of L
		// of jitter can overflow int64 in RefreshAt and land after expiry,
		// e.g. a zero IssuedAt with refreshBefore near 292 years.
		if hasToken {
			iss, exp := in.Token.IssuedAt, in.Token.ExpiresAt
			if l := exp.Sub(iss); l > 0 && l <= maxTokenLifetime {
				ra := RefreshAt(iss, exp, in.RefreshBefore, in.InvalidatesPrevious, in.Jitter)
				if ra.Before(iss) || ra.After(exp) {
					t.Fatalf("RefreshAt %v outside [%v, %v]", ra, iss, exp)
				}
			}
		}
	})
}
