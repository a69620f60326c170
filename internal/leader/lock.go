// Package leader is tokenwarden's leader election lock: client-go's Lease
// lock with a standby that takes over when the Lease's own renewTime plus
// the lease duration has passed, instead of a lease duration after it
// happened to poll.
//
// client-go's elector counts a lease from the moment its own poll (every
// retry period with up to 120 % jitter) first sees a renewal, and takes
// over on the first poll after that, so a killed leader is replaced up to
// lease duration + 2 × 2.2 × retry period after its last renewal (23.8 s
// with the 15 s, 10 s, 2 s defaults). Lock keeps client-go's elector, its
// renew loop, release on cancel and metrics, and changes what the standby
// sees:
//
//   - it watches the Lease, so a renewal is seen when it is written;
//   - its Get answers "expired" at Timing.Expiry (renewTime + lease
//     duration when the clocks agree, bounded by the sighting so that no
//     clock skew makes two leaders), and the poll that comes shortly
//     before the expiry waits for it rather than returning;
//   - its Update stamps renewTime (and acquireTime on a takeover) when the
//     write is sent, since client-go took its time before the wait.
package leader

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
)

// jitterFactor is the jitter of client-go's acquire loop.
const jitterFactor = leaderelection.JitterFactor

// Options configure a Lock.
type Options struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity of this replica in the Lease; empty means host name plus a
	// UUID, as controller-runtime makes it.
	Identity string
	Timing   Timing
	// Clock is the real clock unless a test injects one.
	Clock clock.Clock
}

// Lock is a resourcelock.Interface for controller-runtime's
// LeaderElectionResourceLockInterface, and a manager Runnable (Start) that
// keeps the watch on the Lease; it needs no leader election itself.
type Lock struct {
	inner  resourcelock.Interface
	timing Timing
	clock  clock.Clock
	events *eventSlot
	// watch lists and watches the Lease; nil in tests that feed observe.
	watch cache.ListerWatcher

	mu sync.Mutex
	// seen is when each Lease record was first seen by this replica.
	seen map[string]time.Time
	// changed is closed, and replaced, whenever a record is seen first.
	changed chan struct{}
	// sentAcquire replaces client-go's acquireTime, taken before Get waited,
	// by the time the takeover was written (staleAcquire).
	staleAcquire, sentAcquire metav1.Time
}

// New returns the Lock for the Lease opts.Namespace/opts.Name on the API
// server of cfg. Its requests time out after half the renew deadline (at
// least a second), like controller-runtime's own lock, so that one hung
// request does not cost the leadership; the watch has no such timeout.
func New(cfg *rest.Config, opts Options) (*Lock, error) {
	if opts.Namespace == "" || opts.Name == "" {
		return nil, fmt.Errorf("leader election needs the Lease's namespace and name (got %q/%q)", opts.Namespace, opts.Name)
	}
	if opts.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("leader election identity: %w", err)
		}
		opts.Identity = host + "_" + string(uuid.NewUUID())
	}
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	watchClient, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	timed := rest.CopyConfig(cfg)
	timed.Timeout = max(opts.Timing.RenewDeadline/2, time.Second)
	client, err := coordinationv1client.NewForConfig(timed)
	if err != nil {
		return nil, err
	}
	slot := &eventSlot{}
	inner := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity, EventRecorder: slot},
	}
	l := newLock(inner, slot, opts.Timing, opts.Clock)
	l.watch = cache.NewListWatchFromClient(watchClient.RESTClient(), "leases", opts.Namespace,
		fields.OneTermEqualSelector("metadata.name", opts.Name))
	return l, nil
}

func newLock(inner resourcelock.Interface, events *eventSlot, timing Timing, clk clock.Clock) *Lock {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Lock{
		inner:   inner,
		timing:  timing,
		clock:   clk,
		events:  events,
		seen:    map[string]time.Time{},
		changed: make(chan struct{}),
	}
}

// SetEventRecorder sets where the "became leader" and "stopped leading"
// events on the Lease go (reason and action LeaderElection), once the
// manager that makes the recorder exists; until then they are dropped.
func (l *Lock) SetEventRecorder(r events.EventRecorder) { l.events.set(r) }

// Start watches the Lease until ctx ends.
func (l *Lock) Start(ctx context.Context) error {
	if l.watch == nil {
		<-ctx.Done()
		return nil
	}
	inf := cache.NewSharedInformer(l.watch, &coordinationv1.Lease{}, 0)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    l.observe,
		UpdateFunc: func(_, obj any) { l.observe(obj) },
	}); err != nil {
		return fmt.Errorf("watching Lease %s: %w", l.inner.Describe(), err)
	}
	inf.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection is false: the standby needs the watch most.
func (l *Lock) NeedLeaderElection() bool { return false }

// observe records a Lease seen by the watch.
func (l *Lock) observe(obj any) {
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	l.sighting(resourcelock.LeaseSpecToLeaderElectionRecord(&lease.Spec), l.clock.Now())
}

// sighting returns when the record rec was first seen (now if it is new)
// and a channel closed when the next new record is seen. Records are told
// apart by their holder, renewTime to the nanosecond, lease duration and
// transitions: their JSON, which client-go compares, has renewTime to the
// second only, and a leader renewing twice in one second would otherwise
// be counted from the first renewal.
func (l *Lock) sighting(rec *resourcelock.LeaderElectionRecord, now time.Time) (time.Time, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := fmt.Sprintf("%s/%d/%d/%d", rec.HolderIdentity, rec.RenewTime.UnixNano(), rec.LeaseDurationSeconds, rec.LeaderTransitions)
	at, ok := l.seen[key]
	if !ok {
		at = now
		// Records only move forward: anything seen two lease durations
		// ago cannot come back as the current one.
		for k, t := range l.seen {
			if now.Sub(t) > 2*l.timing.LeaseDuration {
				delete(l.seen, k)
			}
		}
		l.seen[key] = now
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return at, l.changed
}

// Get returns the Lease's record. A record held by another replica is
// returned as it is while its expiry is more than a Window away, waited
// for when it is closer (until the expiry, a newer record, or ctx's end),
// and returned with no holder once it has expired, so that client-go's
// elector, which would otherwise count the lease from now, takes it over.
// The takeover itself is client-go's Update, which the API server accepts
// only if the Lease is still the version read here.
func (l *Lock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	for {
		rec, raw, err := l.inner.Get(ctx)
		if err != nil || rec.HolderIdentity == "" || rec.HolderIdentity == l.inner.Identity() {
			return rec, raw, err
		}
		now := l.clock.Now()
		seenAt, changed := l.sighting(rec, now)
		left := l.timing.Expiry(rec.RenewTime.Time, seenAt).Sub(now)
		if left <= 0 {
			return expired(rec)
		}
		if left > l.timing.Window() {
			return rec, raw, nil
		}
		t := l.clock.NewTimer(left)
		select {
		case <-t.C():
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return rec, raw, nil
		}
	}
}

// expired is rec with no holder, and its JSON.
func expired(rec *resourcelock.LeaderElectionRecord) (*resourcelock.LeaderElectionRecord, []byte, error) {
	out := *rec
	out.HolderIdentity = ""
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, nil, err
	}
	return &out, raw, nil
}

// Create creates the Lease.
func (l *Lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return l.inner.Create(ctx, ler)
}

// Update writes the record. When this replica holds it, renewTime is the
// time of the write rather than client-go's, which it took before Get
// waited for the expiry; a takeover's acquireTime likewise, and later
// renewals carry that acquireTime on.
func (l *Lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	if ler.HolderIdentity == l.inner.Identity() {
		now := metav1.NewTime(l.clock.Now())
		l.mu.Lock()
		switch {
		case ler.AcquireTime.Equal(&ler.RenewTime):
			// A takeover: client-go sets both to its own "now".
			l.staleAcquire, l.sentAcquire = ler.AcquireTime, now
			ler.AcquireTime = now
		case ler.AcquireTime.Equal(&l.staleAcquire):
			ler.AcquireTime = l.sentAcquire
		}
		l.mu.Unlock()
		ler.RenewTime = now
	}
	return l.inner.Update(ctx, ler)
}

// RecordEvent records an election event on the Lease.
func (l *Lock) RecordEvent(s string) { l.inner.RecordEvent(s) }

// Identity is this replica's identity in the Lease.
func (l *Lock) Identity() string { return l.inner.Identity() }

// Describe names the Lease.
func (l *Lock) Describe() string { return l.inner.Describe() }

// eventSlot is the lock's resourcelock.EventRecorder: client-go's Lease
// lock records through the old events API, tokenwarden through
// events.k8s.io, with a recorder set after the lock is made.
type eventSlot struct {
	mu sync.RWMutex
	r  events.EventRecorder
}

func (s *eventSlot) set(r events.EventRecorder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r = r
}

// Eventf passes the event on, or drops it while no recorder is set.
func (s *eventSlot) Eventf(obj runtime.Object, eventType, reason, message string, args ...any) {
	s.mu.RLock()
	r := s.r
	s.mu.RUnlock()
	if r != nil {
		r.Eventf(obj, nil, eventType, reason, reason, message, args...)
	}
}
