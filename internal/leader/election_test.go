package leader

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/utils/clock"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// offsetClock is the real clock, set off by a fixed amount: a replica on a
// node whose clock is wrong.
type offsetClock struct {
	clock.RealClock
	off time.Duration
}

func (c offsetClock) Now() time.Time                  { return time.Now().Add(c.off) }
func (c offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestFailoverWithinTheLeaseDuration runs client-go's elector on Lock for
// two replicas against a real API server: the leader renews, the standby
// watches; the leader stops renewing without releasing (as after kill -9)
// half a retry period after a renewal, and the standby must lead within
// the lease duration of that stop, yet never before the lease, as the
// Lease itself records it, has expired. With the standby's clock 10 s ahead it
// takes over no earlier than the renew deadline + retry period + 1 s after
// the last renewal, when the old leader has surely stopped; 10 s behind,
// the lease duration after it.
func TestFailoverWithinTheLeaseDuration(t *testing.T) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	// A lease of 6 s renewed every second; the leader stops half a retry
	// period after a renewal, so a takeover within the lease duration of the
	// stop is one within half a retry period of the lease's expiry.
	timing := Timing{LeaseDuration: 6 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}
	stopped := timing.RenewDeadline + timing.RetryPeriod + clockMargin
	slack := timing.RetryPeriod / 2
	for i, c := range []struct {
		name             string
		skew             time.Duration
		earliest, latest time.Duration // after the last renewal
	}{
		{"clocks in step", 0, timing.LeaseDuration, timing.LeaseDuration + slack},
		{"standby clock 10 s ahead", 10 * time.Second, stopped, stopped + slack},
		{"standby clock 10 s behind", -10 * time.Second, timing.LeaseDuration, timing.LeaseDuration + slack},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			failover(t, cfg, timing, fmt.Sprintf("failover-%d", i), c.skew, c.earliest, c.latest)
		})
	}
}

func failover(t *testing.T, cfg *rest.Config, timing Timing, name string, skew, earliest, latest time.Duration) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	run := func(id string, clk clock.Clock, started chan<- time.Time) context.CancelFunc {
		lock, err := New(cfg, Options{Namespace: "default", Name: name, Identity: id, Timing: timing, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		go func() { _ = lock.Start(rctx) }()
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:          lock,
			LeaseDuration: timing.LeaseDuration,
			RenewDeadline: timing.RenewDeadline,
			RetryPeriod:   timing.RetryPeriod,
			Name:          name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { started <- time.Now() },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		go le.Run(rctx)
		return cancel
	}
	leaderStarted, standbyStarted := make(chan time.Time, 1), make(chan time.Time, 1)
	stopLeader := run("leader", clock.RealClock{}, leaderStarted)
	defer stopLeader()
	select {
	case <-leaderStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the first replica did not lead within 10 s")
	}
	stopStandby := run("standby", offsetClock{off: skew}, standbyStarted)
	defer stopStandby()

	// Two lease durations of renewals: the standby must not take over.
	select {
	case at := <-standbyStarted:
		t.Fatalf("the standby led %s after it started while the leader renews", time.Until(at))
	case <-time.After(2 * timing.LeaseDuration):
	}

	// Stop the leader half a retry period after a renewal.
	first, err := cs.CoordinationV1().Leases("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l, err := cs.CoordinationV1().Leases("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && !l.Spec.RenewTime.Equal(first.Spec.RenewTime) {
			last = l.Spec.RenewTime.Time
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no renewal by the leader within 5 s")
		}
	}
	time.Sleep(timing.RetryPeriod/2 - time.Since(last))
	stopLeader()
	killed := time.Now()
	l, err := cs.CoordinationV1().Leases("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := *l.Spec.HolderIdentity; h != "leader" {
		t.Fatalf("holder %q at the stop, want leader", h)
	}
	last = l.Spec.RenewTime.Time

	var led time.Time
	select {
	case led = <-standbyStarted:
	case <-time.After(3 * timing.LeaseDuration):
		t.Fatalf("the standby did not lead within %s of the leader's stop", 3*timing.LeaseDuration)
	}
	after, fromKill := led.Sub(last), led.Sub(killed)
	t.Logf("standby (clock %+v) leads %s after the leader's stop, %s after its last renewal (lease duration %s, window [%s, %s])",
		skew, fromKill.Round(time.Millisecond), after.Round(time.Millisecond), timing.LeaseDuration, earliest, latest)
	if after < earliest {
		t.Errorf("the standby led %s after the last renewal, before %s: two leaders were possible", after, earliest)
	}
	if after > latest {
		t.Errorf("the standby led %s after the last renewal, want at most %s", after, latest)
	}
	if fromKill > timing.LeaseDuration {
		t.Errorf("the standby led %s after the leader's stop, want within the lease duration %s", fromKill, timing.LeaseDuration)
	}
	now, err := cs.CoordinationV1().Leases("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := *now.Spec.HolderIdentity; h != "standby" {
		t.Errorf("holder %q after the takeover, want standby", h)
	}
	// acquireTime is stamped at the write, on the standby's own clock.
	if got := now.Spec.AcquireTime.Sub(last) - skew; got < earliest || got > latest+time.Second {
		t.Errorf("acquireTime %s after the last renewal (less the standby's skew), want about %s", got, earliest)
	}
}
