package refresh

import (
	"math"
	"testing"
	"time"
)

// base is the fixed instant every test builds its times from.
var base = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func TestDefaultRefreshBefore(t *testing.T) {
	tests := []struct {
		name        string
		lifetime    time.Duration
		invalidates bool
		want        time.Duration
		// wantAfter is how long after issue the token is due (jitter 0):
		// lifetime - want.
		wantAfter time.Duration
	}{
		// min(0.6·5m=3m, max(3m, 1m40s)=3m) = 3m: a new token after 2 minutes.
		{name: "5m token", lifetime: 5 * time.Minute, want: 3 * time.Minute, wantAfter: 2 * time.Minute},
		// min(0.6·10m=6m, max(3m, 3m20s)=3m20s) = 3m20s: a new token after
		// 6m40s (docs/reference.md, Refresh timing); "after about 7" rounds it;
		// the formula is what is asserted here.
		{name: "10m token", lifetime: 10 * time.Minute, want: 3*time.Minute + 20*time.Second, wantAfter: 6*time.Minute + 40*time.Second},
		// min(36m, max(3m, 20m)=20m) = 20m: a new token after 40 minutes.
		{name: "1h token", lifetime: time.Hour, want: 20 * time.Minute, wantAfter: 40 * time.Minute},
		// min(0.6·6s=3.6s, max(3m, 2s)=3m) = 3.6s: after 2.4 s (the 10 s
		// floor in Decide then limits the call rate).
		{name: "6s token", lifetime: 6 * time.Second, want: 3600 * time.Millisecond, wantAfter: 2400 * time.Millisecond},
		// min(54s, 3m) = 54s.
		{name: "90s token", lifetime: 90 * time.Second, want: 54 * time.Second, wantAfter: 36 * time.Second},
		// min(9m, max(3m, 5m)) = 5m.
		{name: "15m token", lifetime: 15 * time.Minute, want: 5 * time.Minute, wantAfter: 10 * time.Minute},
		// min(14h24m, max(3m, 8h)) = 8h.
		{name: "24h token", lifetime: 24 * time.Hour, want: 8 * time.Hour, wantAfter: 16 * time.Hour},
		{name: "zero lifetime", lifetime: 0, want: 0, wantAfter: 0},

		// invalidatesPrevious: max(30s, L/10).
		{name: "invalidates 5m", lifetime: 5 * time.Minute, invalidates: true, want: 30 * time.Second, wantAfter: 4*time.Minute + 30*time.Second},
		{name: "invalidates 1h", lifetime: time.Hour, invalidates: true, want: 6 * time.Minute, wantAfter: 54 * time.Minute},
		{name: "invalidates 1m (30s minimum)", lifetime: time.Minute, invalidates: true, want: 30 * time.Second, wantAfter: 30 * time.Second},
		{name: "invalidates 24h", lifetime: 24 * time.Hour, invalidates: true, want: 144 * time.Minute, wantAfter: 24*time.Hour - 144*time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultRefreshBefore(tc.lifetime, tc.invalidates)
			if got != tc.want {
				t.Fatalf("DefaultRefreshBefore(%v, %v) = %v, want %v", tc.lifetime, tc.invalidates, got, tc.want)
			}
			if after := tc.lifetime - got; after != tc.wantAfter {
				t.Fatalf("new token after %v, want %v", after, tc.wantAfter)
			}
			// With jitter 0, RefreshAt is exactly that far after issue, less
			// the landing lead (at most half of it).
			if tc.lifetime > 0 {
				ra := RefreshAt(base, base.Add(tc.lifetime), 0, tc.invalidates, 0)
				if want := base.Add(tc.wantAfter - min(LandingLead, tc.wantAfter/2)); !ra.Equal(want) {
					t.Fatalf("RefreshAt = %v, want %v", ra, want)
				}
			}
		})
	}
}

// The default formula against an independent integer computation over a
// range of lifetimes: never negative, never over 0.6·L, and at least 3m
// (or L/3) unless 0.6·L is smaller.
func TestDefaultRefreshBeforeFormula(t *testing.T) {
	for l := time.Second; l <= 48*time.Hour; l += 7*time.Second + 3*time.Millisecond {
		got := DefaultRefreshBefore(l, false)
		sixty := l * 6 / 10
		want := min(sixty, max(3*time.Minute, l/3))
		// 0.6 is not exact in binary: allow one nanosecond of rounding.
		if d := got - want; d < -1 || d > 1 {
			t.Fatalf("L=%v: got %v, want %v", l, got, want)
		}
		if got > sixty+1 || got <= 0 {
			t.Fatalf("L=%v: %v outside (0, 0.6·L]", l, got)
		}
		inv := DefaultRefreshBefore(l, true)
		if want := max(30*time.Second, l/10); inv != want {
			t.Fatalf("L=%v invalidatesPrevious: got %v, want %v", l, inv, want)
		}
	}
}

func TestRefreshBefore(t *testing.T) {
	tests := []struct {
		name        string
		lifetime    time.Duration
		spec        time.Duration
		invalidates bool
		want        time.Duration
	}{
		{name: "unset uses default", lifetime: time.Hour, spec: 0, want: 20 * time.Minute},
		{name: "unset uses invalidatesPrevious default", lifetime: time.Hour, spec: 0, invalidates: true, want: 6 * time.Minute},
		{name: "negative treated as unset", lifetime: time.Hour, spec: -time.Minute, want: 20 * time.Minute},
		{name: "spec used when set", lifetime: time.Hour, spec: 5 * time.Minute, want: 5 * time.Minute},
		{name: "spec wins over invalidatesPrevious default", lifetime: time.Hour, spec: 15 * time.Minute, invalidates: true, want: 15 * time.Minute},
		{name: "spec larger than default", lifetime: time.Hour, spec: 50 * time.Minute, want: 50 * time.Minute},
		{name: "spec just under lifetime", lifetime: time.Hour, spec: time.Hour - time.Nanosecond, want: time.Hour - time.Nanosecond},
		// At or over the lifetime the spec asks for the impossible: the
		// default applies instead.
		{name: "spec equal to lifetime: default", lifetime: time.Hour, spec: time.Hour, want: 20 * time.Minute},
		{name: "spec over lifetime: default", lifetime: 5 * time.Minute, spec: 10 * time.Minute, want: 3 * time.Minute},
		{name: "spec far over lifetime: default", lifetime: 6 * time.Second, spec: 24 * time.Hour, want: 3600 * time.Millisecond},
		{name: "spec over lifetime, invalidatesPrevious default", lifetime: 5 * time.Minute, spec: time.Hour, invalidates: true, want: 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RefreshBefore(tc.lifetime, tc.spec, tc.invalidates)
			if got != tc.want {
				t.Fatalf("RefreshBefore(%v, %v, %v) = %v, want %v", tc.lifetime, tc.spec, tc.invalidates, got, tc.want)
			}
			if got > tc.lifetime {
				t.Fatalf("RefreshBefore %v over lifetime %v", got, tc.lifetime)
			}
		})
	}
}

func TestRefreshAt(t *testing.T) {
	tests := []struct {
		name        string
		issued      time.Time
		expires     time.Time
		spec        time.Duration
		invalidates bool
		jitter      float64
		want        time.Time
	}{
		{name: "1h jitter 0", issued: base, expires: at(time.Hour), want: at(40*time.Minute - LandingLead)},
		// 0.999 · 10% · 1h = 5m59.64s earlier.
		{name: "1h jitter 0.999", issued: base, expires: at(time.Hour), jitter: 0.999,
			want: at(40*time.Minute - 5*time.Minute - 59640*time.Millisecond - LandingLead)},
		{name: "1h jitter 0.5", issued: base, expires: at(time.Hour), jitter: 0.5, want: at(37*time.Minute - LandingLead)},
		{name: "5m jitter 0", issued: base, expires: at(5 * time.Minute), want: at(2*time.Minute - LandingLead)},
		// 0.999 · 30s = 29.97s earlier.
		{name: "5m jitter 0.999", issued: base, expires: at(5 * time.Minute), jitter: 0.999,
			want: at(2*time.Minute - 29970*time.Millisecond - LandingLead)},
		{name: "invalidates 1h jitter 0", issued: base, expires: at(time.Hour), invalidates: true, want: at(54*time.Minute - LandingLead)},
		{name: "invalidates 1h jitter 0.5", issued: base, expires: at(time.Hour), invalidates: true, jitter: 0.5, want: at(51*time.Minute - LandingLead)},
		{name: "spec 10m on 1h", issued: base, expires: at(time.Hour), spec: 10 * time.Minute, want: at(50*time.Minute - LandingLead)},
		// Issue time not at base: only the difference matters.
		{name: "issued later", issued: at(3 * time.Hour), expires: at(4 * time.Hour), want: at(3*time.Hour + 40*time.Minute - LandingLead)},

		// A spec at or over the lifetime falls back to the default.
		{name: "spec over lifetime -> default", issued: base, expires: at(5 * time.Minute), spec: time.Hour, want: at(2*time.Minute - LandingLead)},
		{name: "spec equal lifetime -> default", issued: base, expires: at(5 * time.Minute), spec: 5 * time.Minute, want: at(2*time.Minute - LandingLead)},
		// Jitter takes at most half of the 10 s between issue and L-spec:
		// 27 s of jitter shrinks to 5 s, so the refresh is after issue.
		{name: "spec near lifetime plus jitter -> half the room", issued: base, expires: at(5 * time.Minute), spec: 4*time.Minute + 50*time.Second, jitter: 0.9, want: at(5 * time.Second)},
		// 6 s token: 3.6 s + 2 s lead + 0.999·0.6 s, capped at half the
		// 2.4 s room: 4.8 s before expiry.
		{name: "6s jitter 0.999", issued: base, expires: at(6 * time.Second), jitter: 0.999, want: at(1200 * time.Millisecond)},

		// Zero and negative lifetime: issuedAt.
		{name: "zero lifetime", issued: base, expires: base, want: base},
		{name: "negative lifetime", issued: base, expires: at(-time.Minute), want: base},
		{name: "negative lifetime with spec and jitter", issued: at(time.Hour), expires: base, spec: time.Minute, jitter: 0.7, want: at(time.Hour)},

		// Out-of-range jitter is clamped into [0,1).
		{name: "negative jitter as 0", issued: base, expires: at(time.Hour), jitter: -3, want: at(40*time.Minute - LandingLead)},
		{name: "NaN jitter as 0", issued: base, expires: at(time.Hour), jitter: math.NaN(), want: at(40*time.Minute - LandingLead)},
		// clamp01 maps >= 1 to 0.999999: 0.0999999·1h = 5m59.99964s.
		{name: "jitter 1 below 10%", issued: base, expires: at(time.Hour), jitter: 1,
			want: at(40*time.Minute - 5*time.Minute - 59999640*time.Microsecond - LandingLead)},
		{name: "+Inf jitter below 10%", issued: base, expires: at(time.Hour), jitter: math.Inf(1),
			want: at(40*time.Minute - 5*time.Minute - 59999640*time.Microsecond - LandingLead)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RefreshAt(tc.issued, tc.expires, tc.spec, tc.invalidates, tc.jitter)
			if !got.Equal(tc.want) {
				t.Fatalf("RefreshAt = %v, want %v (diff %v)", got, tc.want, got.Sub(tc.want))
			}
			if got.Before(tc.issued) {
				t.Fatalf("RefreshAt %v before issuedAt %v", got, tc.issued)
			}
		})
	}
}

// Over a grid of realistic lifetimes, spec values and jitters, RefreshAt
// lies in [issuedAt, expiresAt], jitter moves it earlier by less than 10 %
// of the lifetime, and more jitter never makes it later.
func TestRefreshAtBounds(t *testing.T) {
	lifetimes := []time.Duration{time.Second, 6 * time.Second, 10 * time.Second, time.Minute,
		5 * time.Minute, 10 * time.Minute, time.Hour, 12 * time.Hour, 365 * 24 * time.Hour}
	specs := []time.Duration{0, time.Second, 30 * time.Second, 3 * time.Minute, time.Hour, 48 * time.Hour}
	jitters := []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999}
	for _, l := range lifetimes {
		for _, spec := range specs {
			for _, inv := range []bool{false, true} {
				expires := base.Add(l)
				noJitter := RefreshAt(base, expires, spec, inv, 0)
				rb := RefreshBefore(l, spec, inv)
				if want := expires.Add(-rb - min(LandingLead, (l-rb)/2)); !noJitter.Equal(want) {
					t.Fatalf("L=%v spec=%v inv=%v: jitter 0 gives %v, want expiry-RefreshBefore-LandingLead %v", l, spec, inv, noJitter, want)
				}
				prev := noJitter
				for _, j := range jitters {
					got := RefreshAt(base, expires, spec, inv, j)
					if got.Before(base) || got.After(expires) {
						t.Fatalf("L=%v spec=%v inv=%v j=%v: %v outside [%v, %v]", l, spec, inv, j, got, base, expires)
					}
					if got.After(prev) {
						t.Fatalf("L=%v spec=%v inv=%v j=%v: more jitter made it later (%v after %v)", l, spec, inv, j, got, prev)
					}
					if early := noJitter.Sub(got); float64(early) >= JitterFraction*float64(l) {
						t.Fatalf("L=%v spec=%v inv=%v j=%v: moved earlier by %v, not under 10%% of L", l, spec, inv, j, early)
					}
					prev = got
				}
			}
		}
	}
}

// A refreshBefore of centuries must not overflow into a refresh time after
// expiry.
func TestRefreshAtHugeValuesDoNotOverflow(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := base.Add(time.Duration(math.MaxInt64))
	got := RefreshAt(base, exp, time.Duration(math.MaxInt64), false, 0.5)
	if got.Before(base) || !got.Before(exp) {
		t.Fatalf("RefreshAt = %v, want within [%v, %v)", got, base, exp)
	}
}
