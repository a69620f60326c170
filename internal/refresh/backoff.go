package refresh

import (
	"math"
	"time"
)

// FullJitter is the "full jitter" backoff: a uniformly random wait between 0
// and min(ceil, base·2^(attempt-1)). rnd is a value in [0,1) supplied by the
// caller so that tests can pin it. Attempts below 1 count as 1.
func FullJitter(attempt int, base, ceil time.Duration, rnd float64) time.Duration {
	if base <= 0 || ceil <= 0 {
		return 0
	}
	if attempt < 1 {
		attempt = 1
	}
	if rnd < 0 || math.IsNaN(rnd) {
		rnd = 0
	}
	if rnd >= 1 {
		rnd = math.Nextafter(1, 0)
	}
	ceiling := base
	for i := 1; i < attempt && ceiling < ceil; i++ {
		ceiling *= 2
	}
	if ceiling > ceil || ceiling <= 0 {
		ceiling = ceil
	}
	return time.Duration(rnd * float64(ceiling))
}

// Doubling is the backoff of a configuration that has never produced a
// token: base·2^attempt, never under floor nor over ceil, moved later (never
// earlier) by 0-10 % so that a fleet spreads out without any retry coming
// sooner than the schedule says. ok is false once base·2^attempt exceeds
// twice ceil, that is once the capped wait has been served: the caller then
// falls back to its slow retry.
func Doubling(attempt int, base, floor, ceil time.Duration, rnd float64) (wait time.Duration, ok bool) {
	if base <= 0 || ceil <= 0 {
		return 0, false
	}
	attempt = max(attempt, 1)
	wait = base
	for range attempt {
		if wait > ceil {
			// The next doubling exceeds twice ceil.
			return 0, false
		}
		wait *= 2
	}
	wait = min(max(wait, floor), ceil)
	return wait + time.Duration(clamp01(rnd)*DoublingJitter*float64(wait)), true
}

// DoublingJitter is how much later, at most, a Doubling wait may come, as a
// fraction of the wait.
const DoublingJitter = 0.10
