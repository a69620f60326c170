package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
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
func (r *APICredentialReconciler) awaitOwnWrite(ctx context.Context, obj client.Object) {
	key := client.ObjectKeyFromObject(obj)
	written := obj.GetResourceVersion()
	probe := obj.DeepCopyObject().(client.Object)
	_ = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, cacheCatchUp, true, func(ctx context.Context) (bool, error) {
		err := r.Client.Get(ctx, key, probe)
		return err == nil && probe.GetResourceVersion() == written, nil
	})
}
