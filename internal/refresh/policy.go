// Package refresh decides when tokenwarden asks a provider for a new token.
// Everything here is a pure function of its inputs (spec, the token in the
// target Secret, the failure history, the host's cool-down and the time), so
// the whole schedule is table-tested and fuzzed without a cluster.
package refresh

import (
	"time"
)

const (
	// Floor is the shortest time between two provider calls of one
	// credential, whatever the numbers say: no hot loop when refreshBefore
	// is at least the token's lifetime.
	Floor = 10 * time.Second
	// JitterFraction of the lifetime by which a refresh moves earlier, at
	// most, so that credentials created together spread out.
	JitterFraction = 0.10
	// SlowRetry is the retry interval after a credentials failure, in case
	// the provider fixed something on its side.
	SlowRetry = 10 * time.Minute
	// BackoffBase is where the exponential backoff of transient failures,
	// broken answers and 429s without a usable Retry-After starts.
	BackoffBase = 2 * time.Second
	// BackoffMax caps that backoff.
	BackoffMax = 2 * time.Minute
	// ExpiredBackoffMax caps the backoff once the token has expired, so pods
	// get a token within 10 s of the provider's recovery (the host's probe,
	// one request per 10 s, keeps an outage cheap for the provider).
	ExpiredBackoffMax = 10 * time.Second
)

// Class is a failure class in the terms of the retry policy: how an attempt
// that failed is retried.
type Class int

const (
	// None: the last attempt succeeded (or there was none).
	None Class = iota
	// RateLimited: the provider answered 429.
	RateLimited
	// Transient: 5xx, timeouts, connection and TLS failures.
	Transient
	// Broken: an answer that cannot be a passing fault of a working
	// configuration (a 3xx, a 404, no usable token or expiry). While the
	// inputs have never produced a token it backs off by Doubling, then
	// slowly; once they have (Failure.Recovering) it is retried like
	// Transient.
	Broken
	// Credentials: the provider refused the credentials, or a source Secret,
	// key or client certificate is missing or unusable. Retried on a change
	// and slowly.
	Credentials
	// Spec: the spec is inconsistent, or the operator's address policy
	// refuses the URL. Found before any provider call; retried only when the
	// spec changes (the controller also re-checks once per operator start,
	// which picks up new policy flags).
	Spec
	// Conflict: the target Secret is not ours to write; retried when it or
	// the spec changes, and slowly.
	Conflict
)

// DefaultRefreshBefore is how long before expiry a new token must be in the
// target Secret when the spec does not say: min(0.6·L, max(3m, L/3)), or
// max(30s, L/10) for providers that revoke the previous token on every issue.
func DefaultRefreshBefore(lifetime time.Duration, invalidatesPrevious bool) time.Duration {
	if invalidatesPrevious {
		return max(30*time.Second, lifetime/10)
	}
	return min(time.Duration(0.6*float64(lifetime)), max(3*time.Minute, lifetime/3))
}

// RefreshBefore is the spec's value when set and shorter than the lifetime,
// else the default: a refreshBefore at or above the lifetime asks for the
// impossible, and the default is what the user gets instead (as cert-manager
// does with a renewBefore at or above the duration).
func RefreshBefore(lifetime, spec time.Duration, invalidatesPrevious bool) time.Duration {
	if spec > 0 && spec < lifetime {
		return spec
	}
	return min(DefaultRefreshBefore(lifetime, invalidatesPrevious), lifetime)
}

// LandingLead is how much earlier than refreshBefore a refresh starts, so
// that the provider call and the Secret write are done, and the new token
// is in the target Secret, refreshBefore ahead of expiry: refreshBefore is
// a promise about the Secret, not about when the call begins.
const LandingLead = 2 * time.Second

// RefreshAt is when a token issued at issued and expiring at expires is due
// for a refresh: refreshBefore plus LandingLead ahead of expiry, moved
// earlier by jitter (in [0,1)) times 10 % of the lifetime. Lead and jitter
// together never take more than half of the time between issue and
// lifetime-refreshBefore, so the refresh always comes after the issue time.
func RefreshAt(issued, expires time.Time, spec time.Duration, invalidatesPrevious bool, jitter float64) time.Time {
	lifetime := expires.Sub(issued)
	if lifetime <= 0 {
		return issued
	}
	rb := RefreshBefore(lifetime, spec, invalidatesPrevious)
	room := lifetime - rb // > 0 unless the lifetime is tiny and rounding ate it
	if room <= 0 {
		return issued
	}
	j := LandingLead + time.Duration(clamp01(jitter)*JitterFraction*float64(lifetime))
	j = min(j, room/2)
	return expires.Add(-(rb + j))
}

// Schedule is when the next provider call for a token is due: its RefreshAt,
// but never before the minimum interval after the call that produced it.
// Decide and the controller both plan with it, so a token written by one
// pass is planned the same way by every later pass.
func Schedule(token Token, spec time.Duration, invalidatesPrevious bool, jitter float64) time.Time {
	at := RefreshAt(token.IssuedAt, token.ExpiresAt, spec, invalidatesPrevious, jitter)
	return latest(at, token.IssuedAt.Add(MinInterval(token, token.IssuedAt)))
}

func clamp01(f float64) float64 {
	switch {
	case f != f || f < 0: // NaN or negative
		return 0
	case f >= 1:
		return 0.999999
	}
	return f
}
