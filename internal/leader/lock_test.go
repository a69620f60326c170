package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeLease is a resourcelock.Interface over one record in memory.
type fakeLease struct {
	mu       sync.Mutex
	id       string
	rec      *resourcelock.LeaderElectionRecord
	err      error
	gets     int
	updates  []resourcelock.LeaderElectionRecord
	recorded []string
}

func (f *fakeLease) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.err != nil {
		return nil, nil, f.err
	}
	rec := *f.rec
	raw, err := json.Marshal(rec)
	return &rec, raw, err
}

func (f *fakeLease) Create(_ context.Context, ler resourcelock.LeaderElectionRecord) error {
	f.set(ler)
	return nil
}

func (f *fakeLease) Update(_ context.Context, ler resourcelock.LeaderElectionRecord) error {
	f.mu.Lock()
	f.updates = append(f.updates, ler)
	f.mu.Unlock()
	f.set(ler)
	return nil
}

func (f *fakeLease) set(ler resourcelock.LeaderElectionRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rec = &ler
}

func (f *fakeLease) RecordEvent(s string) { f.recorded = append(f.recorded, s) }
func (f *fakeLease) Identity() string     { return f.id }
func (f *fakeLease) Describe() string     { return "ns/lease" }

// renew makes "leader" renew the fake Lease at at, seen by l's watch.
func renew(l *Lock, inner *fakeLease, at time.Time) resourcelock.LeaderElectionRecord {
	rec := heldBy("leader", at)
	inner.set(rec)
	l.observe(lease(rec))
	return rec
}

// lease is the Lease a watch would deliver for rec.
func lease(rec resourcelock.LeaderElectionRecord) *coordinationv1.Lease {
	return &coordinationv1.Lease{Spec: resourcelock.LeaderElectionRecordToLeaseSpec(&rec)}
}

func heldBy(holder string, renew time.Time) resourcelock.LeaderElectionRecord {
	return resourcelock.LeaderElectionRecord{
		HolderIdentity:       holder,
		LeaseDurationSeconds: 15,
		AcquireTime:          metav1.NewTime(renew.Add(-time.Hour)),
		RenewTime:            metav1.NewTime(renew),
	}
}

func newTestLock(t *testing.T) (*Lock, *fakeLease, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	inner := &fakeLease{id: "standby"}
	return newLock(inner, &eventSlot{}, defaults, clk), inner, clk
}

type getResult struct {
	rec *resourcelock.LeaderElectionRecord
	raw []byte
	err error
}

// getAsync runs l.Get in a goroutine.
func getAsync(ctx context.Context, l *Lock) <-chan getResult {
	out := make(chan getResult, 1)
	go func() {
		rec, raw, err := l.Get(ctx)
		out <- getResult{rec, raw, err}
	}()
	return out
}

// waitForTimer waits until Get sleeps on the fake clock.
func waitForTimer(t *testing.T, clk *clocktesting.FakeClock, res <-chan getResult) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !clk.HasWaiters() {
		select {
		case r := <-res:
			t.Fatalf("Get returned (holder %q, err %v) instead of waiting for the expiry", holder(r.rec), r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Get is not waiting on the clock after 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func holder(rec *resourcelock.LeaderElectionRecord) string {
	if rec == nil {
		return "<nil>"
	}
	return rec.HolderIdentity
}

// expiresIn runs Get, which must wait on the clock, still wait 1 ms before
// left has passed, and return when it has.
func expiresIn(t *testing.T, l *Lock, clk *clocktesting.FakeClock, left time.Duration) getResult {
	t.Helper()
	res := getAsync(context.Background(), l)
	waitForTimer(t, clk, res)
	clk.Step(left - time.Millisecond)
	noResult(t, res, fmt.Sprintf("%s later", left-time.Millisecond))
	clk.Step(time.Millisecond)
	return result(t, res)
}

func noResult(t *testing.T, res <-chan getResult, when string) {
	t.Helper()
	select {
	case r := <-res:
		t.Fatalf("%s: Get returned holder %q (err %v), want it still waiting", when, holder(r.rec), r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func result(t *testing.T, res <-chan getResult) getResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Get did not return within 5 s")
		return getResult{}
	}
}

// A lease far from its expiry is answered "held" at once, without a wait.
func TestGetHeldFarFromExpiry(t *testing.T) {
	l, inner, clk := newTestLock(t)
	inner.set(heldBy("leader", clk.Now()))
	rec, _, err := l.Get(context.Background())
	if err != nil || rec.HolderIdentity != "leader" {
		t.Fatalf("Get = holder %q, err %v; want leader", holder(rec), err)
	}
	if clk.HasWaiters() {
		t.Fatal("Get left a timer behind")
	}
}

// The poll shortly before the expiry waits for it and then answers with no
// holder, exactly at renewTime + lease duration (the watch saw the renewal
// as it happened), not a lease duration after the poll.
func TestGetWaitsForTheLeasesOwnExpiry(t *testing.T) {
	l, inner, clk := newTestLock(t)
	renewed := clk.Now()
	rec := renew(l, inner, renewed)

	clk.Step(11 * time.Second) // a poll 4 s before the expiry
	r := expiresIn(t, l, clk, 4*time.Second)
	if r.err != nil || r.rec.HolderIdentity != "" {
		t.Fatalf("at the expiry: Get = holder %q, err %v; want no holder", holder(r.rec), r.err)
	}
	if got := clk.Now().Sub(renewed); got != 15*time.Second {
		t.Errorf("answered %s after the renewal, want the lease duration 15s", got)
	}
	var raw resourcelock.LeaderElectionRecord
	if err := json.Unmarshal(r.raw, &raw); err != nil || raw.HolderIdentity != "" || !raw.RenewTime.Equal(&rec.RenewTime) {
		t.Errorf("raw record %s (err %v): want the Lease's record with no holder", r.raw, err)
	}
	if inner.gets != 2 {
		t.Errorf("%d reads of the Lease, want 2 (the poll, and a fresh read at the expiry)", inner.gets)
	}
}

// A renewal while a poll waits ends the wait: the lease is held again.
func TestGetRenewalDuringTheWait(t *testing.T) {
	l, inner, clk := newTestLock(t)
	renew(l, inner, clk.Now())
	clk.Step(12 * time.Second)
	res := getAsync(context.Background(), l)
	waitForTimer(t, clk, res)

	clk.Step(time.Second)
	renewed := renew(l, inner, clk.Now())
	r := result(t, res)
	if r.err != nil || r.rec.HolderIdentity != "leader" || !r.rec.RenewTime.Equal(&renewed.RenewTime) {
		t.Fatalf("after a renewal: Get = holder %q renewTime %v, err %v; want leader at the new renewal", holder(r.rec), r.rec, r.err)
	}
}

// A poll that sees a renewal first (no watch) counts it from the poll,
// less Trust at most: 13 s here, never less.
func TestGetRenewalFirstSeenByAPoll(t *testing.T) {
	l, inner, clk := newTestLock(t)
	inner.set(heldBy("leader", clk.Now().Add(-10*time.Second)))
	start := clk.Now()
	if rec, _, _ := l.Get(context.Background()); rec.HolderIdentity != "leader" {
		t.Fatalf("first poll: holder %q, want leader", holder(rec))
	}
	clk.Step(10 * time.Second)
	if r := expiresIn(t, l, clk, 3*time.Second); r.rec.HolderIdentity != "" {
		t.Fatalf("13 s after the first sighting: holder %q, want none", holder(r.rec))
	}
	if got := clk.Now().Sub(start); got != 13*time.Second {
		t.Errorf("expired %s after the first sighting, want 13s", got)
	}
}

// A canceled wait answers "held": nothing is taken over on the way out.
func TestGetCanceledWait(t *testing.T) {
	l, inner, clk := newTestLock(t)
	renew(l, inner, clk.Now())
	clk.Step(12 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	res := getAsync(ctx, l)
	waitForTimer(t, clk, res)
	cancel()
	if r := result(t, res); r.rec.HolderIdentity != "leader" {
		t.Fatalf("canceled: holder %q, want leader", holder(r.rec))
	}
}

// Errors, a free lease and our own lease pass through untouched and at once.
func TestGetPassesThrough(t *testing.T) {
	l, inner, clk := newTestLock(t)
	inner.err = errors.New("boom")
	if _, _, err := l.Get(context.Background()); err == nil || err.Error() != "boom" {
		t.Errorf("error: got %v, want boom", err)
	}
	inner.err = nil
	for _, h := range []string{"", "standby"} {
		inner.set(heldBy(h, clk.Now().Add(-14*time.Second)))
		rec, _, err := l.Get(context.Background())
		if err != nil || rec.HolderIdentity != h {
			t.Errorf("holder %q: Get = %q, %v", h, holder(rec), err)
		}
	}
	if clk.HasWaiters() {
		t.Error("a pass-through Get waited")
	}
}

// Update stamps renewTime, and a takeover's acquireTime, at the write, and
// later renewals carry that acquireTime; other records pass as they are.
func TestUpdateStampsTheWrite(t *testing.T) {
	l, inner, clk := newTestLock(t)
	before := metav1.NewTime(clk.Now()) // client-go's "now", taken before Get waited
	clk.Step(3 * time.Second)
	takeover := resourcelock.LeaderElectionRecord{HolderIdentity: "standby", LeaseDurationSeconds: 15, AcquireTime: before, RenewTime: before, LeaderTransitions: 4}
	if err := l.Update(context.Background(), takeover); err != nil {
		t.Fatal(err)
	}
	sent := inner.updates[0]
	if !sent.RenewTime.Time.Equal(clk.Now()) || !sent.AcquireTime.Time.Equal(clk.Now()) || sent.LeaderTransitions != 4 {
		t.Errorf("takeover written with acquireTime %s renewTime %s transitions %d; want both at the write (%s), transitions 4",
			sent.AcquireTime, sent.RenewTime, sent.LeaderTransitions, clk.Now())
	}
	acquired := clk.Now()

	clk.Step(2 * time.Second)
	renewal := takeover
	renewal.RenewTime = metav1.NewTime(clk.Now().Add(-time.Millisecond))
	if err := l.Update(context.Background(), renewal); err != nil {
		t.Fatal(err)
	}
	sent = inner.updates[1]
	if !sent.AcquireTime.Time.Equal(acquired) || !sent.RenewTime.Time.Equal(clk.Now()) {
		t.Errorf("renewal written with acquireTime %s renewTime %s; want acquireTime %s (the takeover's write) and renewTime %s",
			sent.AcquireTime, sent.RenewTime, acquired, clk.Now())
	}

	release := resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1, AcquireTime: before, RenewTime: before}
	if err := l.Update(context.Background(), release); err != nil {
		t.Fatal(err)
	}
	if sent = inner.updates[2]; !sent.RenewTime.Equal(&before) || sent.HolderIdentity != "" {
		t.Errorf("release written as %+v, want it unchanged", sent)
	}
}

// Two renewals within one second are two sightings: the Lease record's
// JSON has renewTime to the second only, so comparing it would count the
// second renewal from the first one's sighting.
func TestGetTwoRenewalsInOneSecond(t *testing.T) {
	l, inner, clk := newTestLock(t)
	clk.SetTime(clk.Now().Add(100 * time.Millisecond))
	first := heldBy("leader", clk.Now())
	l.observe(lease(first))
	clk.Step(500 * time.Millisecond)
	renew(l, inner, clk.Now())
	renewed := clk.Now()

	clk.Step(11 * time.Second)
	if r := expiresIn(t, l, clk, 4*time.Second); r.rec.HolderIdentity != "" {
		t.Fatalf("at the expiry: holder %q, want none", holder(r.rec))
	}
	if got := clk.Now().Sub(renewed); got != 15*time.Second {
		t.Errorf("expired %s after the second renewal, want 15s", got)
	}
}
