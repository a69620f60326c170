package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// CacheOptions is how the manager caches objects: full Secrets only for the
// ones tokenwarden owns (label-selected), managed fields stripped, and a read
// of any kind without an informer fails instead of silently starting a
// cluster-wide cache of it. namespaces limits the cache to a namespaced
// install; empty means all namespaces.
func CacheOptions(namespaces []string) cache.Options {
	o := cache.Options{
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: ownedSecrets},
		},
	}
	o.DefaultNamespaces = namespaceConfig(namespaces)
	return o
}

func namespaceConfig(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	out := map[string]cache.Config{}
	for _, ns := range namespaces {
		out[ns] = cache.Config{}
	}
	return out
}

// ownedSecrets selects the Secrets tokenwarden writes; notOwnedSecrets the
// rest. The manager caches the first in full, the metadata cache the second
// as metadata only, so no Secret is held twice and tokenwarden's own writes
// reach it on one watch.
var (
	ownedSecrets    = labels.SelectorFromSet(labels.Set{authv1alpha1.LabelManagedBy: authv1alpha1.ManagedByValue})
	notOwnedSecrets = labels.NewSelector().Add(mustRequirement(
		authv1alpha1.LabelManagedBy, selection.NotEquals, authv1alpha1.ManagedByValue))
)

func mustRequirement(key string, op selection.Operator, value string) labels.Requirement {
	r, err := labels.NewRequirement(key, op, []string{value})
	if err != nil {
		panic(err)
	}
	return *r
}

// newMetadataCache is a second cache holding only metadata: of the Secrets
// tokenwarden does not own, and of all ConfigMaps. That is enough to notice
// that a source changed, or that a foreign Secret squats a target name,
// without holding any data. It is separate from the manager's cache because
// there the Secret kind is label-selected, and a selector applies to every
// view of a kind. Read it through metadataReader, which completes it with
// the owned Secrets.
func newMetadataCache(mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:                      mgr.GetScheme(),
		Mapper:                      mgr.GetRESTMapper(),
		HTTPClient:                  mgr.GetHTTPClient(),
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
		DefaultNamespaces:           namespaceConfig(namespaces),
		ByObject: map[client.Object]cache.ByObject{
			metadataOf("Secret"): {Label: notOwnedSecrets},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the metadata cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, err
	}
	return c, nil
}

// metadataReader reads metadata from the metadata cache, and the metadata of
// a Secret tokenwarden owns (which that cache leaves out) from the owned
// cache: every Secret's metadata, each held once.
type metadataReader struct {
	client.Reader // the metadata cache
	owned         client.Reader
}

// Get fills obj (a PartialObjectMetadata) from whichever cache holds it.
func (m metadataReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := m.Reader.Get(ctx, key, obj, opts...)
	meta, partial := obj.(*metav1.PartialObjectMetadata)
	if !apierrors.IsNotFound(err) || !partial || meta.Kind != "Secret" {
		return err
	}
	sec := &corev1.Secret{}
	if oerr := m.owned.Get(ctx, key, sec); oerr != nil {
		if apierrors.IsNotFound(oerr) {
			return err
		}
		return oerr
	}
	meta.ObjectMeta = sec.ObjectMeta
	return nil
}
