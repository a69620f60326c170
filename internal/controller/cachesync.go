package controller

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cacheCatchUp bounds how long a pass waits for the cache to show its own
// write.
const cacheCatchUp = 2 * time.Second

// awaitOwnWrite waits until the cache shows obj at the resourceVersion the
// write returned (obj as it came back from the API server). Passes of one
// APICredential run one after another, so once this returns the next pass
// reads what this one wrote. Without it a pass triggered by the write itself
// could read the old status or the old token from the cache and ask the
// provider again. Giving up after cacheCatchUp is safe: the refresh floor
// still spaces provider calls.
//
// The informers' own event handlers say when the write arrives (see
// ownWrites), so the wait costs one look at the cache, not a poll: each
// look deep-copies the object, and at a few hundred writes a second a 5 ms
// poll was a tenth of the operator's CPU.
func (r *APICredentialReconciler) awaitOwnWrite(ctx context.Context, obj client.Object) {
	key := client.ObjectKeyFromObject(obj)
	written := obj.GetResourceVersion()
	arrived := r.writes.expect(obj, written)
	defer r.writes.forget(obj, arrived)
	// The event may have come before the wait was registered.
	probe := obj.DeepCopyObject().(client.Object)
	if err := r.Client.Get(ctx, key, probe); err == nil && probe.GetResourceVersion() == written {
		return
	}
	if arrived == nil {
		return // no informer reports to this reconciler (unit tests)
	}
	// A bound in real time, as the informer's delay is: not the injected
	// clock, which tests step.
	timeout := time.NewTimer(cacheCatchUp)
	defer timeout.Stop()
	select {
	case <-arrived:
	case <-timeout.C:
	case <-ctx.Done():
	}
}

// ownWrites hands each object's resourceVersion, as its informer delivers
// it, to the passes waiting for that version. A nil *ownWrites reports
// nothing.
type ownWrites struct {
	kinds   map[reflect.Type]bool // the kinds whose informers report here
	mu      sync.Mutex
	waiting map[writeKey]map[chan struct{}]string
}

// writeKey names one object: its Go type (the informer's) and its key.
type writeKey struct {
	kind reflect.Type
	key  client.ObjectKey
}

func keyOf(o client.Object) writeKey {
	return writeKey{kind: reflect.TypeOf(o), key: client.ObjectKeyFromObject(o)}
}

// expect registers a wait for o at resourceVersion rv; the channel closes
// when the informer delivers it. It is nil when no informer of o's kind
// reports here.
func (w *ownWrites) expect(o client.Object, rv string) chan struct{} {
	if w == nil || !w.kinds[reflect.TypeOf(o)] {
		return nil
	}
	ch := make(chan struct{})
	k := keyOf(o)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting[k] == nil {
		w.waiting[k] = map[chan struct{}]string{}
	}
	w.waiting[k][ch] = rv
	return ch
}

// forget drops a wait that is over.
func (w *ownWrites) forget(o client.Object, ch chan struct{}) {
	if w == nil || ch == nil {
		return
	}
	k := keyOf(o)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.waiting[k], ch)
	if len(w.waiting[k]) == 0 {
		delete(w.waiting, k)
	}
}

// seen is the informers' handler: o arrived in the cache.
func (w *ownWrites) seen(obj any) {
	o, ok := obj.(client.Object)
	if !ok {
		return
	}
	k := keyOf(o)
	rv := o.GetResourceVersion()
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch, want := range w.waiting[k] {
		if want == rv {
			close(ch)
			delete(w.waiting[k], ch)
		}
	}
	if len(w.waiting[k]) == 0 {
		delete(w.waiting, k)
	}
}

// newOwnWrites registers with the informers of c for each kind of objs.
func newOwnWrites(ctx context.Context, c cache.Cache, objs ...client.Object) (*ownWrites, error) {
	w := &ownWrites{kinds: map[reflect.Type]bool{}, waiting: map[writeKey]map[chan struct{}]string{}}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    w.seen,
		UpdateFunc: func(_, obj any) { w.seen(obj) },
	}
	for _, o := range objs {
		inf, err := c.GetInformer(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("informer for %T: %w", o, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("watching own writes of %T: %w", o, err)
		}
		w.kinds[reflect.TypeOf(o)] = true
	}
	return w, nil
}
