package refresh

import (
	"time"
)

// Token is the token currently in the target Secret, read from its
// annotations. A zero Token means there is none.
type Token struct {
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Valid reports whether there is a token that has not expired at now.
func (t Token) Valid(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.Before(t.ExpiresAt)
}

// Input is everything the decision depends on.
type Input struct {
	Now time.Time
	// Token in the target Secret.
	Token Token
	// Changed is true when the token in the target Secret was not minted
	// from the current spec and source Secrets, or a refresh was requested
	// through the annotation: the old credentials may be revoked, so ask now.
	Changed bool
	// RefreshBefore from the spec; 0 means the default.
	RefreshBefore       time.Duration
	InvalidatesPrevious bool
	// Jitter in [0,1), stable for one token so that every pass computes the
	// same refresh time.
	Jitter float64
	// Failure history, from status.
	LastFailure Class
	// RetryAt is when the failure policy allows the next attempt (status
	// nextRefreshTime after a failure); zero when not failing.
	RetryAt time.Time
	// LastAttempt is when this credential last called the provider.
	LastAttempt time.Time
	// HostHoldUntil is when the token host lets the next request go: the
	// end of its shared 429 cool-down, a failing host's next probe, a free
	// in-flight slot or a free slot of the per-host budget.
	HostHoldUntil time.Time
}

// Action is what to do now.
type Action int

const (
	// Wait until Decision.At, then decide again.
	Wait Action = iota
	// Refresh: ask the provider for a new token now.
	Refresh
)

func (a Action) String() string {
	return [...]string{"Wait", "Refresh"}[a]
}

// Decision is the outcome: an action and, for Wait, when to look again.
type Decision struct {
	Action Action
	// At is when the next provider call is planned (Wait), or now
	// (Refresh). A zero At with Wait means only a change of the inputs can
	// lead to a call (after a spec failure).
	At time.Time
}

// Decide says what to do now for a token-request credential.
func Decide(in Input) Decision {
	if !in.Changed && in.LastFailure == Spec {
		// The same spec fails the same way; it is found before any call.
		return Decision{Action: Wait}
	}
	due := in.Now // when the schedule alone wants a new token
	if !in.Changed && in.Token.Valid(in.Now) {
		due = Schedule(in.Token, in.RefreshBefore, in.InvalidatesPrevious, in.Jitter)
	}
	// The failure policy holds back attempts after a failure; a change of
	// spec or sources lifts it (the fix may be in), except for the limits
	// that protect the provider.
	if !in.Changed && in.LastFailure != None && !in.RetryAt.IsZero() {
		due = latest(due, in.RetryAt)
	}
	at := latest(due, in.HostHoldUntil)
	// The token's issue time counts as an attempt too: a pass that read a
	// status older than the token it finds still respects the floor.
	if last := latest(in.LastAttempt, in.Token.IssuedAt); !last.IsZero() {
		at = latest(at, last.Add(MinInterval(in.Token, last)))
	}
	if !at.After(in.Now) {
		return Decision{Action: Refresh, At: in.Now}
	}
	return Decision{Action: Wait, At: at}
}

// MinInterval is the shortest time between two provider calls of one
// credential: Floor (10 s), or half the lifetime of the token that the last
// call produced when that is shorter. A provider that hands out 6 s tokens
// must be asked every few seconds or pods hold expired tokens; a credential
// whose last call failed, or whose refreshBefore is at least the lifetime,
// still cannot loop faster than every Floor, or half a lifetime.
func MinInterval(token Token, lastAttempt time.Time) time.Duration {
	lifetime := token.ExpiresAt.Sub(token.IssuedAt)
	if lifetime > 0 && !token.IssuedAt.Before(lastAttempt) {
		return min(Floor, lifetime/2)
	}
	return Floor
}

// Failure describes a failed attempt, for NextAttempt.
type Failure struct {
	Class Class
	// Attempt counts consecutive failures, this one included.
	Attempt int
	// Cooldown is the host cool-down the token client applied after a 429
	// (the provider's Retry-After plus jitter, or its own backoff).
	Cooldown time.Duration
	// Recovering is true when the same inputs have produced a token before:
	// a Broken answer is then more likely a passing fault of the provider
	// than a wrong URL or mapping, and is retried like a Transient one.
	Recovering bool
}

// NextAttempt is when to try again after a failure at now; zero means only
// on a change.
//   - Transient (and Broken while Recovering): full-jitter backoff from
//     BackoffBase to BackoffMax, never so long that the current token expires
//     without one more try, and at most ExpiredBackoffMax once it has expired.
//   - Broken: Doubling from BackoffBase to BackoffMax, then SlowRetry.
//   - RateLimited: the host's cool-down, or full-jitter backoff without one.
//   - Credentials and Conflict: SlowRetry (they also retry at once on a
//     change). Spec: only on a change.
//
// No wait is shorter than Floor. rnd is in [0,1).
func NextAttempt(f Failure, now time.Time, token Token, rnd float64) time.Time {
	var wait time.Duration
	class := f.Class
	if class == Broken && f.Recovering {
		class = Transient
	}
	switch class {
	case None, Spec:
		return time.Time{}
	case Credentials, Conflict:
		wait = SlowRetry
	case RateLimited:
		wait = f.Cooldown
		if wait <= 0 {
			wait = FullJitter(f.Attempt, BackoffBase, BackoffMax, rnd)
		}
	case Broken:
		var ok bool
		if wait, ok = Doubling(f.Attempt, BackoffBase, Floor, BackoffMax, rnd); !ok {
			wait = SlowRetry
		}
	case Transient:
		ceiling := BackoffMax
		if token.Valid(now) {
			// Leave room for at least one more try before expiry.
			ceiling = min(ceiling, max(token.ExpiresAt.Sub(now)/2, Floor))
		} else {
			ceiling = ExpiredBackoffMax
		}
		wait = FullJitter(f.Attempt, BackoffBase, ceiling, rnd)
	}
	return now.Add(max(wait, Floor))
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
