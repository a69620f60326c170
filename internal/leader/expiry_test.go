package leader

import (
	"testing"
	"time"
)

var defaults = Timing{LeaseDuration: DefaultLeaseDuration, RenewDeadline: DefaultRenewDeadline, RetryPeriod: DefaultRetryPeriod}

func TestTrustAndWindow(t *testing.T) {
	for _, c := range []struct {
		timing        Timing
		trust, window time.Duration
	}{
		{defaults, 2 * time.Second, 4500 * time.Millisecond},
		{Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}, 500 * time.Millisecond, 1200 * time.Millisecond},
		// A lease barely longer than the renew deadline: nothing to trust.
		{Timing{LeaseDuration: 11 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, 0, 4500 * time.Millisecond},
	} {
		if got := c.timing.Trust(); got != c.trust {
			t.Errorf("%+v: Trust() = %s, want %s", c.timing, got, c.trust)
		}
		if got := c.timing.Window(); got != c.window {
			t.Errorf("%+v: Window() = %s, want %s", c.timing, got, c.window)
		}
	}
}

func TestExpiry(t *testing.T) {
	seen := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		timing    Timing
		renewTime time.Time
		want      time.Time
	}{
		{"renewal seen as it happened: the lease's own expiry", defaults, seen.Add(-30 * time.Millisecond), seen.Add(15*time.Second - 30*time.Millisecond)},
		{"renewal seen one retry period late (a poll, clocks in step)", defaults, seen.Add(-2 * time.Second), seen.Add(13 * time.Second)},
		{"holder's clock 10 s ahead: counts from the sighting", defaults, seen.Add(10 * time.Second), seen.Add(15 * time.Second)},
		{"holder's clock 10 s behind: at most Trust before the sighting", defaults, seen.Add(-10 * time.Second), seen.Add(13 * time.Second)},
		{"a renewal from an hour ago, seen now", defaults, seen.Add(-time.Hour), seen.Add(13 * time.Second)},
		{"no trust: client-go's own expiry", Timing{LeaseDuration: 11 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
			seen.Add(-time.Second), seen.Add(11 * time.Second)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.timing.Expiry(c.renewTime, seen); !got.Equal(c.want) {
				t.Errorf("renewTime %s from the sighting: expiry %s after the sighting, want %s",
					c.renewTime.Sub(seen), got.Sub(seen), c.want.Sub(seen))
			}
		})
	}
}

// FuzzExpiry: whatever the two clocks say, the expiry is never later than
// client-go's (seenAt + LeaseDuration) and never earlier than the moment
// the holder has surely stopped leading (seenAt + RenewDeadline +
// RetryPeriod + 1 s, for any lease longer than that); with a renewTime
// within Trust before the sighting it is the lease's own renewTime +
// LeaseDuration.
func FuzzExpiry(f *testing.F) {
	f.Add(int64(15e9), int64(10e9), int64(2e9), int64(-30e6))
	f.Add(int64(4e9), int64(2e9), int64(5e8), int64(10e9))
	f.Add(int64(15e9), int64(10e9), int64(2e9), int64(-3600e9))
	f.Fuzz(func(t *testing.T, lease, renew, retry, offset int64) {
		const bound = int64(24 * time.Hour)
		if lease <= 0 || renew <= 0 || retry <= 0 || lease > bound || renew > bound || retry > bound || offset < -bound || offset > bound {
			t.Skip()
		}
		timing := Timing{LeaseDuration: time.Duration(lease), RenewDeadline: time.Duration(renew), RetryPeriod: time.Duration(retry)}
		seen := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		renewTime := seen.Add(time.Duration(offset))
		got := timing.Expiry(renewTime, seen)
		if latest := seen.Add(timing.LeaseDuration); got.After(latest) {
			t.Fatalf("%+v, renewTime %s from the sighting: expiry %s after it, later than client-go's %s",
				timing, renewTime.Sub(seen), got.Sub(seen), timing.LeaseDuration)
		}
		stopped := timing.RenewDeadline + timing.RetryPeriod + clockMargin
		if timing.LeaseDuration > stopped && got.Before(seen.Add(stopped)) {
			t.Fatalf("%+v, renewTime %s from the sighting: expiry %s after it, before the holder surely stopped (%s)",
				timing, renewTime.Sub(seen), got.Sub(seen), stopped)
		}
		if d := seen.Sub(renewTime); d >= 0 && d <= timing.Trust() && !got.Equal(renewTime.Add(timing.LeaseDuration)) {
			t.Fatalf("%+v, renewTime %s from the sighting: expiry %s after it, want renewTime + lease = %s",
				timing, renewTime.Sub(seen), got.Sub(seen), renewTime.Add(timing.LeaseDuration).Sub(seen))
		}
	})
}
