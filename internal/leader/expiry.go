package leader

import "time"

// The defaults of --leader-election-lease-duration, -renew-deadline and
// -retry-period: controller-runtime's own.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Timing is the election's configuration, shared by every replica of one
// Deployment: the lease duration a standby waits, the renew deadline after
// which a leader that cannot renew stops leading, and the retry period of
// both loops.
type Timing struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// clockMargin is what a standby keeps between the latest moment a leader
// that lost the API server can still believe it leads and its own takeover,
// whatever the two clocks say.
const clockMargin = time.Second

// Trust is how far before its own sighting a standby believes a renewal the
// leader stamped: the lease duration less the renew deadline, the retry
// period and a one-second margin (2 s with the 15 s, 10 s, 2 s defaults),
// never negative.
//
// A leader that last renewed successfully at real time T tries again one
// retry period later and gives up leading when it has failed for the renew
// deadline, so it leads at most until T + RetryPeriod + RenewDeadline. The
// standby saw that renewal at or after T, so a takeover no earlier than
// seenAt + LeaseDuration - Trust = seenAt + RenewDeadline + RetryPeriod + 1 s
// is after the old leader stopped, measured on the standby's clock alone.
func (t Timing) Trust() time.Duration {
	return max(0, t.LeaseDuration-t.RenewDeadline-t.RetryPeriod-clockMargin)
}

// Expiry is when a lease the holder last renewed at renewTime (the holder's
// clock, as written into the Lease) and that this replica first saw at
// seenAt (its own clock) may be taken over:
//
//   - with the clocks in step and the renewal seen as it happened (a watch),
//     renewTime + LeaseDuration: the lease's own meaning, not "lease
//     duration after I happened to poll";
//   - a renewTime later than the sighting (the holder's clock runs ahead)
//     counts from the sighting;
//   - a renewTime more than Trust before the sighting (the holder's clock
//     runs behind, or the renewal was seen late) counts from seenAt - Trust.
//
// So the result is never later than seenAt + LeaseDuration, what client-go's
// elector alone would wait, and never earlier than seenAt + LeaseDuration -
// Trust, which Trust's comment shows is after the holder stopped leading.
func (t Timing) Expiry(renewTime, seenAt time.Time) time.Time {
	from := renewTime
	if from.After(seenAt) {
		from = seenAt
	}
	if earliest := seenAt.Add(-t.Trust()); from.Before(earliest) {
		from = earliest
	}
	return from.Add(t.LeaseDuration)
}

// Window is how far ahead of an expiry a standby's poll waits for it rather
// than answering "held": one retry period with client-go's full jitter
// (factor 1.2) and 100 ms to spare, so that the poll before the expiry is
// the one that waits, and the takeover lands on the expiry instead of on
// the next poll after it.
func (t Timing) Window() time.Duration {
	return time.Duration(float64(t.RetryPeriod)*(1+jitterFactor)) + 100*time.Millisecond
}
