package refresh

import (
	"testing"
	"time"
)

func TestFullJitter(t *testing.T) {
	const base, ceil = 2 * time.Second, 2 * time.Minute
	tests := []struct {
		name    string
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{"first attempt, rnd 0", 1, 0, 0},
		{"first attempt, half", 1, 0.5, time.Second},
		{"second attempt doubles the ceiling", 2, 0.5, 2 * time.Second},
		{"third attempt", 3, 0.5, 4 * time.Second},
		{"sixth attempt", 6, 0.5, 32 * time.Second},
		{"seventh attempt hits the cap", 7, 0.5, time.Minute},
		{"far attempt stays capped", 1000, 0.5, time.Minute},
		{"attempt 0 counts as 1", 0, 0.5, time.Second},
		{"negative attempt counts as 1", -3, 0.5, time.Second},
		{"rnd just below 1", 7, 0.999, time.Duration(0.999 * float64(ceil))},
		{"rnd of 1 stays below the ceiling", 1, 1, base - 1},
		{"negative rnd is 0", 3, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FullJitter(tt.attempt, base, ceil, tt.rnd)
			if got != tt.want {
				t.Fatalf("FullJitter(%d, %v, %v, %v) = %v, want %v", tt.attempt, base, ceil, tt.rnd, got, tt.want)
			}
			if got < 0 || got > ceil {
				t.Fatalf("FullJitter out of [0, max]: %v", got)
			}
		})
	}
}

func TestDoubling(t *testing.T) {
	// The schedule of a configuration that never produced a token: 10 s,
	// 10 s, 16 s, 32 s, 64 s, 2 min, then the caller's slow retry.
	want := []time.Duration{10 * time.Second, 10 * time.Second, 16 * time.Second, 32 * time.Second, 64 * time.Second, 2 * time.Minute}
	for i, w := range want {
		got, ok := Doubling(i+1, BackoffBase, Floor, BackoffMax, 0)
		if !ok || got != w {
			t.Errorf("attempt %d: %v, %v; want %v", i+1, got, ok, w)
		}
		// Jitter only ever moves a retry later, by at most 10 %.
		late, _ := Doubling(i+1, BackoffBase, Floor, BackoffMax, 0.999)
		if late < w || late > w+w/10 {
			t.Errorf("attempt %d with jitter: %v outside [%v, %v]", i+1, late, w, w+w/10)
		}
	}
	for _, attempt := range []int{7, 8, 100, 1 << 20} {
		if got, ok := Doubling(attempt, BackoffBase, Floor, BackoffMax, 0.5); ok {
			t.Errorf("attempt %d: %v, want the slow retry", attempt, got)
		}
	}
	if got, ok := Doubling(0, BackoffBase, Floor, BackoffMax, 0); !ok || got != Floor {
		t.Errorf("attempt 0 counts as 1: %v, %v", got, ok)
	}
}

// A broken configuration costs the provider at most 6 calls in its first 3
// minutes, whatever the jitter: the promise the docs make.
func TestBrokenConfigurationCallsInThreeMinutes(t *testing.T) {
	for _, rnd := range []float64{0, 0.5, 0.999} {
		now, calls := base, 0
		for now.Before(base.Add(3 * time.Minute)) {
			calls++
			now = NextAttempt(Failure{Class: Broken, Attempt: calls}, now, Token{}, rnd)
		}
		if calls > 6 {
			t.Errorf("rnd %v: %d calls in 3 minutes, want at most 6", rnd, calls)
		}
		t.Logf("rnd %v: %d calls in 3 minutes", rnd, calls)
	}
}
