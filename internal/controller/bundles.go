package controller

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// caBundles keeps the CA bundles tokenwarden read from ConfigMaps, keyed by
// ConfigMap, each with the UID and resourceVersion it was read at. A CA
// bundle is public (certificates, no keys), and a ConfigMap is where public
// configuration belongs, so a pass that finds the same version in the
// metadata cache uses the bundle it has instead of reading the ConfigMap
// again: one request less per refresh. A new version, a new UID or a
// missing ConfigMap reads it again. Only referenced ConfigMaps are kept,
// one entry each, so memory follows the bundles in use, not the cluster's
// ConfigMaps. Source Secrets are never kept this way: a Secret may hold a
// key, and they are read on every request (docs/security.md).
type caBundles struct {
	mu sync.Mutex
	by map[types.NamespacedName]caBundle
}

// maxKeptBundles bounds the ConfigMaps kept; far above any real count of
// distinct CA bundles.
const maxKeptBundles = 4096

type caBundle struct {
	uid     types.UID
	version string
	keys    map[authv1alpha1.SecretKey][]byte
}

// lookup returns the kept bundle under key of the ConfigMap nn when the
// metadata cache shows the version it was read at.
func (b *caBundles) lookup(ctx context.Context, meta client.Reader, nn types.NamespacedName, key authv1alpha1.SecretKey) ([]byte, bool) {
	if meta == nil {
		return nil, false
	}
	b.mu.Lock()
	kept, ok := b.by[nn]
	pem, has := kept.keys[key]
	b.mu.Unlock()
	if !ok || !has {
		return nil, false
	}
	m := metadataOf("ConfigMap")
	if err := meta.Get(ctx, nn, m); err != nil || m.UID != kept.uid || m.ResourceVersion != kept.version {
		return nil, false
	}
	return pem, true
}

// keep records the bundle under key of cm, as read.
func (b *caBundles) keep(cm *corev1.ConfigMap, key authv1alpha1.SecretKey, pem []byte) {
	nn := client.ObjectKeyFromObject(cm)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.by == nil || len(b.by) >= maxKeptBundles {
		b.by = map[types.NamespacedName]caBundle{} // a bound, not a policy: start over
	}
	kept, ok := b.by[nn]
	if !ok || kept.uid != cm.UID || kept.version != cm.ResourceVersion {
		kept = caBundle{uid: cm.UID, version: cm.ResourceVersion, keys: map[authv1alpha1.SecretKey][]byte{}}
	}
	kept.keys[key] = pem
	b.by[nn] = kept
}

// drop forgets the ConfigMap nn (it is gone).
func (b *caBundles) drop(nn types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.by, nn)
}
