package refresh

import (
	"testing"
	"time"
)

// hourToken is a 1-hour token issued at base: due at base+40m with jitter 0.
var hourToken = Token{IssuedAt: base, ExpiresAt: at(time.Hour)}

func TestTokenValid(t *testing.T) {
	tests := []struct {
		name  string
		token Token
		now   time.Time
		want  bool
	}{
		{name: "zero token", token: Token{}, now: base, want: false},
		{name: "before expiry", token: hourToken, now: at(59 * time.Minute), want: true},
		{name: "at expiry", token: hourToken, now: at(time.Hour), want: false},
		{name: "after expiry", token: hourToken, now: at(2 * time.Hour), want: false},
		{name: "expiry only", token: Token{ExpiresAt: at(time.Minute)}, now: base, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.token.Valid(tc.now); got != tc.want {
				t.Fatalf("Valid = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Wait: "Wait", Refresh: "Refresh"} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(a), got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	refresh := func(now time.Time) Decision { return Decision{Action: Refresh, At: now} }
	wait := func(until time.Time) Decision { return Decision{Action: Wait, At: until} }

	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		// Schedule only.
		{name: "no token", in: Input{Now: base}, want: refresh(base)},
		{name: "no token, spec refreshBefore and jitter irrelevant",
			in: Input{Now: base, RefreshBefore: time.Minute, Jitter: 0.5}, want: refresh(base)},
		{name: "valid token outside window waits for the exact RefreshAt",
			in: Input{Now: at(time.Minute), Token: hourToken}, want: wait(at(40*time.Minute - LandingLead))},
		{name: "restart right after issue waits",
			in: Input{Now: base, Token: hourToken}, want: wait(at(40*time.Minute - LandingLead))},
		{name: "one nanosecond before RefreshAt waits",
			in: Input{Now: at(40*time.Minute - LandingLead - 1), Token: hourToken}, want: wait(at(40*time.Minute - LandingLead))},
		{name: "at RefreshAt refreshes",
			in: Input{Now: at(40 * time.Minute), Token: hourToken}, want: refresh(at(40 * time.Minute))},
		{name: "inside window refreshes",
			in: Input{Now: at(50 * time.Minute), Token: hourToken}, want: refresh(at(50 * time.Minute))},
		{name: "jitter 0.5 moves RefreshAt 3m earlier",
			in: Input{Now: at(time.Minute), Token: hourToken, Jitter: 0.5}, want: wait(at(37*time.Minute - LandingLead))},
		{name: "jitter 0.5, inside the jittered window",
			in: Input{Now: at(38 * time.Minute), Token: hourToken, Jitter: 0.5}, want: refresh(at(38 * time.Minute))},
		{name: "spec refreshBefore",
			in: Input{Now: at(time.Minute), Token: hourToken, RefreshBefore: 10 * time.Minute}, want: wait(at(50*time.Minute - LandingLead))},
		{name: "invalidatesPrevious refreshes late",
			in: Input{Now: at(time.Minute), Token: hourToken, InvalidatesPrevious: true}, want: wait(at(54*time.Minute - LandingLead))},
		{name: "5m token waits 2m",
			in: Input{Now: base, Token: Token{IssuedAt: base, ExpiresAt: at(5 * time.Minute)}}, want: wait(at(2*time.Minute - LandingLead))},
		{name: "expired token",
			in: Input{Now: at(time.Hour), Token: hourToken}, want: refresh(at(time.Hour))},
		{name: "long expired token",
			in: Input{Now: at(30 * time.Hour), Token: hourToken}, want: refresh(at(30 * time.Hour))},

		// Changed: ask now.
		{name: "changed with a valid token refreshes now",
			in: Input{Now: at(time.Minute), Token: hourToken, Changed: true}, want: refresh(at(time.Minute))},
		{name: "changed without token",
			in: Input{Now: base, Changed: true}, want: refresh(base)},

		// Floor: 10 s after the last attempt, whatever else.
		{name: "floor delays a due refresh",
			in:   Input{Now: at(50 * time.Minute), Token: hourToken, LastAttempt: at(50*time.Minute - 3*time.Second)},
			want: wait(at(50*time.Minute + 7*time.Second))},
		{name: "floor delays a missing token",
			in: Input{Now: at(time.Second), LastAttempt: base}, want: wait(at(Floor))},
		{name: "floor delays an expired token",
			in:   Input{Now: at(time.Hour + time.Second), Token: hourToken, LastAttempt: at(time.Hour)},
			want: wait(at(time.Hour + Floor))},
		{name: "floor holds even when changed",
			in:   Input{Now: at(time.Minute), Token: hourToken, Changed: true, LastAttempt: at(time.Minute - time.Second)},
			want: wait(at(time.Minute + 9*time.Second))},
		{name: "floor over: refresh at exactly LastAttempt+10s",
			in: Input{Now: at(Floor), Changed: true, LastAttempt: base}, want: refresh(at(Floor))},
		{name: "floor one nanosecond short",
			in: Input{Now: at(Floor - 1), Changed: true, LastAttempt: base}, want: wait(at(Floor))},
		{name: "floor does not move a later RefreshAt",
			in: Input{Now: at(time.Minute), Token: hourToken, LastAttempt: base}, want: wait(at(40*time.Minute - LandingLead))},
		// refreshBefore >= lifetime asks for the impossible: the default
		// applies (min(0.6·1m, 3m) = 36 s before expiry), not a loop.
		{name: "no hot loop when refreshBefore equals lifetime",
			in:   Input{Now: at(time.Second), Token: Token{IssuedAt: base, ExpiresAt: at(time.Minute)}, RefreshBefore: time.Minute, LastAttempt: base},
			want: wait(at(24*time.Second - LandingLead))},
		// The default for 30 s is 18 s before expiry, 2.7 s of jitter: due
		// at 9.3 s, which the 10 s floor moves to 10 s.
		{name: "no hot loop when refreshBefore over lifetime",
			in:   Input{Now: at(100 * time.Millisecond), Token: Token{IssuedAt: base, ExpiresAt: at(30 * time.Second)}, RefreshBefore: time.Hour, Jitter: 0.9, LastAttempt: base},
			want: wait(at(Floor))},
		// A token that lives under 20 s is due sooner than every 10 s; the
		// interval shrinks to half its lifetime, never below.
		{name: "6s token minted by the last call: half its lifetime",
			in:   Input{Now: at(3 * time.Second), Token: Token{IssuedAt: base, ExpiresAt: at(6 * time.Second)}, LastAttempt: base},
			want: refresh(at(3 * time.Second))},
		{name: "6s token, refreshBefore over lifetime: no faster than half its lifetime",
			in:   Input{Now: at(time.Second), Token: Token{IssuedAt: base, ExpiresAt: at(6 * time.Second)}, RefreshBefore: time.Hour, LastAttempt: base},
			want: wait(at(3 * time.Second))},
		{name: "6s token, but the last call failed after it: full floor",
			in:   Input{Now: at(4 * time.Second), Token: Token{IssuedAt: base, ExpiresAt: at(6 * time.Second)}, LastAttempt: at(2 * time.Second)},
			want: wait(at(2*time.Second + Floor))},

		{name: "a token newer than the last attempt in status counts as an attempt",
			in:   Input{Now: at(time.Second), Changed: true, Token: Token{IssuedAt: base, ExpiresAt: at(time.Hour)}, LastAttempt: at(-time.Hour)},
			want: wait(at(Floor))},

		// Host cool-down (429 shared by every credential of the host).
		{name: "cool-down delays a due refresh",
			in:   Input{Now: at(50 * time.Minute), Token: hourToken, HostHoldUntil: at(51 * time.Minute)},
			want: wait(at(51 * time.Minute))},
		{name: "cool-down delays a changed refresh",
			in:   Input{Now: at(time.Minute), Token: hourToken, Changed: true, HostHoldUntil: at(2 * time.Minute)},
			want: wait(at(2 * time.Minute))},
		{name: "cool-down delays a missing token",
			in: Input{Now: base, HostHoldUntil: at(30 * time.Second)}, want: wait(at(30 * time.Second))},
		{name: "cool-down over",
			in:   Input{Now: at(50 * time.Minute), Token: hourToken, HostHoldUntil: at(50 * time.Minute)},
			want: refresh(at(50 * time.Minute))},
		{name: "cool-down in the past",
			in:   Input{Now: at(50 * time.Minute), Token: hourToken, HostHoldUntil: at(time.Minute)},
			want: refresh(at(50 * time.Minute))},
		{name: "cool-down does not move a later RefreshAt",
			in:   Input{Now: at(time.Minute), Token: hourToken, HostHoldUntil: at(2 * time.Minute)},
			want: wait(at(40*time.Minute - LandingLead))},
		{name: "floor later than cool-down",
			in: Input{Now: base, LastAttempt: base, HostHoldUntil: at(5 * time.Second)}, want: wait(at(Floor))},
		{name: "cool-down later than floor",
			in: Input{Now: base, LastAttempt: base, HostHoldUntil: at(time.Minute)}, want: wait(at(time.Minute))},

		// Spec failure: found locally, retried slowly or on a change.
		{name: "credentials failure waits for RetryAt",
			in: Input{Now: base, LastFailure: Credentials, RetryAt: at(SlowRetry)}, want: wait(at(SlowRetry))},
		{name: "credentials failure waits with a token in its window",
			in: Input{Now: at(50 * time.Minute), Token: hourToken, LastFailure: Credentials, RetryAt: at(60 * time.Minute)}, want: wait(at(60 * time.Minute))},
		{name: "spec failure waits for a change, whatever RetryAt says",
			in: Input{Now: at(time.Hour), LastFailure: Spec, RetryAt: at(time.Minute)}, want: Decision{Action: Wait}},
		{name: "spec failure waits for a change with a token due",
			in: Input{Now: at(50 * time.Minute), Token: hourToken, LastFailure: Spec}, want: Decision{Action: Wait}},
		{name: "spec failure lifted by change",
			in: Input{Now: base, LastFailure: Spec, RetryAt: at(SlowRetry), Changed: true}, want: refresh(base)},
		{name: "spec failure lifted by change, floor still applies",
			in: Input{Now: at(2 * time.Second), LastFailure: Spec, Changed: true, LastAttempt: base}, want: wait(at(Floor))},

		// Credentials failure: slow retry, lifted by a change.
		{name: "credentials failure waits for RetryAt",
			in:   Input{Now: base, LastFailure: Credentials, RetryAt: at(SlowRetry), LastAttempt: base},
			want: wait(at(SlowRetry))},
		{name: "credentials failure with expired token still waits",
			in:   Input{Now: at(2 * time.Hour), Token: hourToken, LastFailure: Credentials, RetryAt: at(2*time.Hour + SlowRetry)},
			want: wait(at(2*time.Hour + SlowRetry))},
		{name: "credentials failure: RetryAt reached",
			in:   Input{Now: at(SlowRetry), LastFailure: Credentials, RetryAt: at(SlowRetry), LastAttempt: base},
			want: refresh(at(SlowRetry))},
		{name: "credentials failure: RetryAt before RefreshAt keeps the schedule",
			in:   Input{Now: at(time.Minute), Token: hourToken, LastFailure: Credentials, RetryAt: at(11 * time.Minute)},
			want: wait(at(40*time.Minute - LandingLead))},
		{name: "credentials failure lifted by change",
			in:   Input{Now: at(time.Minute), LastFailure: Credentials, RetryAt: at(SlowRetry), LastAttempt: base, Changed: true},
			want: refresh(at(time.Minute))},
		{name: "credentials failure lifted by change, but not the floor",
			in:   Input{Now: at(time.Second), LastFailure: Credentials, RetryAt: at(SlowRetry), LastAttempt: base, Changed: true},
			want: wait(at(Floor))},
		{name: "credentials failure lifted by change, but not the cool-down",
			in:   Input{Now: at(time.Minute), LastFailure: Credentials, RetryAt: at(SlowRetry), Changed: true, HostHoldUntil: at(90 * time.Second)},
			want: wait(at(90 * time.Second))},
		{name: "credentials failure without RetryAt",
			in: Input{Now: at(time.Minute), LastFailure: Credentials, LastAttempt: base}, want: refresh(at(time.Minute))},

		// Conflict: like credentials.
		{name: "conflict waits for RetryAt",
			in:   Input{Now: base, Token: hourToken, LastFailure: Conflict, RetryAt: at(50 * time.Minute)},
			want: wait(at(50 * time.Minute))},
		{name: "conflict lifted by change",
			in: Input{Now: base, LastFailure: Conflict, RetryAt: at(SlowRetry), Changed: true}, want: refresh(base)},

		// Transient and rate limited: wait for RetryAt.
		{name: "transient waits for RetryAt",
			in:   Input{Now: at(41 * time.Minute), Token: hourToken, LastFailure: Transient, RetryAt: at(42 * time.Minute), LastAttempt: at(41 * time.Minute)},
			want: wait(at(42 * time.Minute))},
		{name: "transient with expired token waits for RetryAt",
			in:   Input{Now: at(time.Hour), Token: hourToken, LastFailure: Transient, RetryAt: at(time.Hour + 25*time.Second)},
			want: wait(at(time.Hour + 25*time.Second))},
		{name: "transient RetryAt reached",
			in:   Input{Now: at(42 * time.Minute), Token: hourToken, LastFailure: Transient, RetryAt: at(42 * time.Minute), LastAttempt: at(41 * time.Minute)},
			want: refresh(at(42 * time.Minute))},
		{name: "transient RetryAt earlier than floor",
			in:   Input{Now: at(41 * time.Minute), Token: hourToken, LastFailure: Transient, RetryAt: at(41*time.Minute + 2*time.Second), LastAttempt: at(41 * time.Minute)},
			want: wait(at(41*time.Minute + Floor))},
		{name: "rate limited waits for RetryAt",
			in:   Input{Now: base, LastFailure: RateLimited, RetryAt: at(30 * time.Second), LastAttempt: base},
			want: wait(at(30 * time.Second))},
		{name: "rate limited lifted by change except cool-down",
			in:   Input{Now: at(15 * time.Second), LastFailure: RateLimited, RetryAt: at(time.Minute), LastAttempt: base, Changed: true, HostHoldUntil: at(20 * time.Second)},
			want: wait(at(20 * time.Second))},
		{name: "None ignores a stale RetryAt",
			in: Input{Now: base, LastFailure: None, RetryAt: at(time.Hour)}, want: refresh(base)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.in)
			if got.Action != tc.want.Action || !got.At.Equal(tc.want.At) {
				t.Fatalf("Decide = %v at %v, want %v at %v", got.Action, got.At, tc.want.Action, tc.want.At)
			}
		})
	}
}

// A full token life with a fixed clock stepping through it: no provider
// call outside the window, one refresh in it, then the floor.
func TestDecideSequence(t *testing.T) {
	tok := Token{IssuedAt: base, ExpiresAt: at(10 * time.Minute)}
	// 10m token: refreshBefore 3m20s, the landing lead 2 s, jitter 0.5
	// moves it 30 s earlier.
	due := at(6*time.Minute + 10*time.Second - LandingLead)
	for now := base; now.Before(due); now = now.Add(7 * time.Second) {
		d := Decide(Input{Now: now, Token: tok, Jitter: 0.5})
		if d.Action != Wait || !d.At.Equal(due) {
			t.Fatalf("at +%v: %v at %v, want Wait at %v", now.Sub(base), d.Action, d.At, due)
		}
	}
	if d := Decide(Input{Now: due, Token: tok, Jitter: 0.5}); d.Action != Refresh {
		t.Fatalf("at due: %v, want Refresh", d.Action)
	}
	// The attempt failed transiently: the floor then RetryAt hold it.
	in := Input{Now: due.Add(time.Second), Token: tok, Jitter: 0.5, LastAttempt: due,
		LastFailure: Transient, RetryAt: NextAttempt(Failure{Class: Transient, Attempt: 1}, due, tok, 0.999)}
	d := Decide(in)
	if d.Action != Wait || d.At.Before(due.Add(Floor)) || !d.At.Equal(in.RetryAt) {
		t.Fatalf("after failure: %v at %v, want Wait at RetryAt %v", d.Action, d.At, in.RetryAt)
	}
	in.Now = in.RetryAt
	if d := Decide(in); d.Action != Refresh {
		t.Fatalf("at RetryAt: %v, want Refresh", d.Action)
	}
}

func TestNextAttempt(t *testing.T) {
	now := at(time.Hour)
	farToken := Token{IssuedAt: base, ExpiresAt: now.Add(time.Hour)}
	soonToken := Token{IssuedAt: base, ExpiresAt: now.Add(40 * time.Second)}
	expired := Token{IssuedAt: base, ExpiresAt: now.Add(-time.Second)}

	tests := []struct {
		name  string
		f     Failure
		token Token
		rnd   float64
		want  time.Time
	}{
		{name: "none", f: Failure{Class: None}, token: farToken, rnd: 0.5, want: time.Time{}},
		{name: "spec: only on a change", f: Failure{Class: Spec, Attempt: 3}, token: farToken, rnd: 0.5, want: time.Time{}},
		// Broken: 10 s, 10 s, 16 s, 32 s, 64 s, 2 min (+0-10 %), then 10 min.
		{name: "broken, attempt 1", f: Failure{Class: Broken, Attempt: 1}, token: Token{}, rnd: 0, want: now.Add(Floor)},
		{name: "broken, attempt 3", f: Failure{Class: Broken, Attempt: 3}, token: Token{}, rnd: 0.5, want: now.Add(16*time.Second + 800*time.Millisecond)},
		{name: "broken, attempt 6", f: Failure{Class: Broken, Attempt: 6}, token: Token{}, rnd: 0, want: now.Add(BackoffMax)},
		{name: "broken, attempt 7: slow", f: Failure{Class: Broken, Attempt: 7}, token: Token{}, rnd: 0.5, want: now.Add(SlowRetry)},
		// Once the inputs produced a token, a broken answer is a passing fault.
		{name: "broken, recovering, expired", f: Failure{Class: Broken, Attempt: 30, Recovering: true}, token: expired, rnd: 0.5, want: now.Add(Floor)},
		{name: "credentials", f: Failure{Class: Credentials, Attempt: 1}, token: farToken, rnd: 0.5, want: now.Add(10 * time.Minute)},
		{name: "credentials, expired token", f: Failure{Class: Credentials, Attempt: 7}, token: expired, rnd: 0, want: now.Add(10 * time.Minute)},
		{name: "conflict", f: Failure{Class: Conflict, Attempt: 2}, token: Token{}, rnd: 0.9, want: now.Add(10 * time.Minute)},
		{name: "rate limited, cooldown under floor", f: Failure{Class: RateLimited, Attempt: 1, Cooldown: 5 * time.Second}, token: farToken, rnd: 0.5, want: now.Add(Floor)},
		{name: "rate limited, cooldown 30s", f: Failure{Class: RateLimited, Attempt: 1, Cooldown: 30 * time.Second}, token: farToken, rnd: 0.5, want: now.Add(30 * time.Second)},
		{name: "rate limited, cooldown 10m", f: Failure{Class: RateLimited, Attempt: 1, Cooldown: 10 * time.Minute}, token: soonToken, rnd: 0.5, want: now.Add(10 * time.Minute)},
		// Without a cool-down: full jitter, 2s·2^(n-1) capped at 2m, floored at 10s.
		{name: "rate limited, no cooldown, attempt 1", f: Failure{Class: RateLimited, Attempt: 1}, token: farToken, rnd: 0.999, want: now.Add(Floor)},
		{name: "rate limited, no cooldown, attempt 5", f: Failure{Class: RateLimited, Attempt: 5}, token: farToken, rnd: 0.5, want: now.Add(16 * time.Second)},
		{name: "rate limited, no cooldown, attempt 20", f: Failure{Class: RateLimited, Attempt: 20}, token: farToken, rnd: 0.5, want: now.Add(time.Minute)},
		{name: "transient, far expiry, attempt 6", f: Failure{Class: Transient, Attempt: 6}, token: farToken, rnd: 0.5, want: now.Add(32 * time.Second)},
		{name: "transient, far expiry, attempt 30", f: Failure{Class: Transient, Attempt: 30}, token: farToken, rnd: 0.5, want: now.Add(time.Minute)},
		// Expiring in 40s: ceiling max(20s, 10s) = 20s.
		{name: "transient, expiring in 40s", f: Failure{Class: Transient, Attempt: 30}, token: soonToken, rnd: 0.5, want: now.Add(Floor)},
		{name: "transient, expiring in 40s, high rnd", f: Failure{Class: Transient, Attempt: 30}, token: soonToken, rnd: 0.75, want: now.Add(15 * time.Second)},
		// Expired: ceiling 10 s, the floor: retried every 10 s.
		{name: "transient, expired", f: Failure{Class: Transient, Attempt: 30}, token: expired, rnd: 0.5, want: now.Add(Floor)},
		{name: "transient, no token", f: Failure{Class: Transient, Attempt: 30}, token: Token{}, rnd: 0.9, want: now.Add(Floor)},
		{name: "transient, attempt 0 as 1", f: Failure{Class: Transient, Attempt: 0}, token: farToken, rnd: 0.999, want: now.Add(Floor)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NextAttempt(tc.f, now, tc.token, tc.rnd)
			if !got.Equal(tc.want) {
				t.Fatalf("NextAttempt = %v, want %v (diff %v)", got, tc.want, got.Sub(tc.want))
			}
		})
	}
}

// NextAttempt bounds over a grid of attempts and random values.
func TestNextAttemptBounds(t *testing.T) {
	now := at(time.Hour)
	rnds := []float64{0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 0.999999}
	attempts := []int{-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 64, 1000, int(^uint(0) >> 1)}

	check := func(t *testing.T, f Failure, tok Token, lo, hi time.Duration) {
		t.Helper()
		for _, r := range rnds {
			for _, a := range attempts {
				f.Attempt = a
				got := NextAttempt(f, now, tok, r).Sub(now)
				if got < lo || got > hi {
					t.Fatalf("%+v rnd=%v: wait %v outside [%v, %v]", f, r, got, lo, hi)
				}
			}
		}
	}

	t.Run("rate limited without cooldown in [floor, 2m]", func(t *testing.T) {
		check(t, Failure{Class: RateLimited}, Token{IssuedAt: base, ExpiresAt: now.Add(time.Hour)}, Floor, BackoffMax)
		check(t, Failure{Class: RateLimited}, Token{}, Floor, BackoffMax)
	})
	t.Run("transient far from expiry in [floor, 2m]", func(t *testing.T) {
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(time.Hour)}, Floor, BackoffMax)
	})
	t.Run("transient expiring in 40s leaves room for a try", func(t *testing.T) {
		// Never later than expiry minus a try's room: max(40s/2, 10s) = 20s.
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(40 * time.Second)}, Floor, 20*time.Second)
	})
	t.Run("transient expiring in 4m capped at 2m", func(t *testing.T) {
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(4 * time.Minute)}, Floor, BackoffMax)
	})
	t.Run("transient expiring in 90s capped at 45s", func(t *testing.T) {
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(90 * time.Second)}, Floor, 45*time.Second)
	})
	t.Run("transient expiring in 5s: the floor wins", func(t *testing.T) {
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(5 * time.Second)}, Floor, Floor)
	})
	t.Run("transient expired within 30s", func(t *testing.T) {
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now.Add(-time.Minute)}, Floor, ExpiredBackoffMax)
		check(t, Failure{Class: Transient}, Token{IssuedAt: base, ExpiresAt: now}, Floor, ExpiredBackoffMax)
		check(t, Failure{Class: Transient}, Token{}, Floor, ExpiredBackoffMax)
	})
	t.Run("credentials and conflict exactly 10m", func(t *testing.T) {
		check(t, Failure{Class: Credentials}, Token{}, SlowRetry, SlowRetry)
		check(t, Failure{Class: Conflict}, Token{IssuedAt: base, ExpiresAt: now.Add(time.Hour)}, SlowRetry, SlowRetry)
	})
	t.Run("rate limited cooldown respected, at least the floor", func(t *testing.T) {
		for _, cd := range []time.Duration{time.Nanosecond, time.Second, Floor - 1, Floor, 11 * time.Second, time.Minute, 10 * time.Minute} {
			check(t, Failure{Class: RateLimited, Cooldown: cd}, Token{}, max(cd, Floor), max(cd, Floor))
		}
	})
	t.Run("none is zero", func(t *testing.T) {
		for _, c := range []Class{None} {
			for _, a := range attempts {
				if got := NextAttempt(Failure{Class: c, Attempt: a, Cooldown: time.Minute}, now, Token{}, 0.5); !got.IsZero() {
					t.Fatalf("class %d: %v, want zero", c, got)
				}
			}
		}
	})
}

// With a fixed random value, a transient backoff grows with the attempt
// number up to the 2m cap and never shrinks.
func TestNextAttemptTransientGrows(t *testing.T) {
	now := at(time.Hour)
	tok := Token{IssuedAt: base, ExpiresAt: now.Add(time.Hour)}
	const rnd = 0.999
	prev := time.Duration(0)
	var waits []time.Duration
	for a := 1; a <= 12; a++ {
		w := NextAttempt(Failure{Class: Transient, Attempt: a}, now, tok, rnd).Sub(now)
		if w < prev {
			t.Fatalf("attempt %d: wait %v shorter than attempt %d's %v", a, w, a-1, prev)
		}
		if w < Floor || w > BackoffMax {
			t.Fatalf("attempt %d: wait %v outside [%v, %v]", a, w, Floor, BackoffMax)
		}
		prev = w
		waits = append(waits, w)
	}
	// 2s·2^(n-1)·0.999: the floor up to attempt 3, then 15.984s, 31.968s,
	// 63.936s, and 119.88s (the 2m cap) from attempt 7 on.
	want := map[int]time.Duration{
		1: Floor, 3: Floor,
		4:  15984 * time.Millisecond,
		5:  31968 * time.Millisecond,
		6:  63936 * time.Millisecond,
		7:  119880 * time.Millisecond,
		12: 119880 * time.Millisecond,
	}
	for a, w := range want {
		if got := waits[a-1]; got != w {
			t.Errorf("attempt %d: wait %v, want %v", a, got, w)
		}
	}
	if waits[6] <= waits[3] {
		t.Errorf("no growth: attempt 7 %v, attempt 4 %v", waits[6], waits[3])
	}
}
