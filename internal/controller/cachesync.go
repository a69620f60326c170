package controller

import (
	"context"
	"time"

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
// The cache is polled 5 ms after the write, then at doubling intervals up
// to 50 ms: each look deep-copies the object, and at a few hundred writes a
// second under load a fixed 5 ms poll was a tenth of the operator's CPU.
func (r *APICredentialReconciler) awaitOwnWrite(ctx context.Context, obj client.Object) {
	key := client.ObjectKeyFromObject(obj)
	written := obj.GetResourceVersion()
	probe := obj.DeepCopyObject().(client.Object)
	// A bound in real time, as the informer's delay is: not the injected
	// clock, which tests step.
	ctx, cancel := context.WithTimeout(ctx, cacheCatchUp)
	defer cancel()
	for wait := cachePollFirst; ; wait = min(2*wait, cachePollMax) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := r.Client.Get(ctx, key, probe); err == nil && probe.GetResourceVersion() == written {
			return
		}
	}
}

// cachePollFirst and cachePollMax space the looks of awaitOwnWrite.
const (
	cachePollFirst = 5 * time.Millisecond
	cachePollMax   = 50 * time.Millisecond
)
