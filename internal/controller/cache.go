package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
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
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{
				authv1alpha1.LabelManagedBy: authv1alpha1.ManagedByValue,
			})},
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

// newMetadataCache is a second cache holding only the metadata of all
// Secrets and ConfigMaps: enough to notice that a source changed, or that a
// foreign Secret squats a target name, without holding any data. It is
// separate from the manager's cache because there the Secret kind is
// label-selected, and a selector applies to every view of a kind.
func newMetadataCache(mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:                      mgr.GetScheme(),
		Mapper:                      mgr.GetRESTMapper(),
		HTTPClient:                  mgr.GetHTTPClient(),
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
		DefaultNamespaces:           namespaceConfig(namespaces),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the metadata cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, err
	}
	return c, nil
}
