package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// CacheOptions is how the manager caches objects: full Secrets only for the
// ones tokenwarden owns (label-selected); every other Secret only as metadata
// (through the metadata watch that maps source Secrets to APICredentials),
// managed fields stripped, and a read of any kind without an informer fails
// instead of silently starting a cluster-wide cache of it. namespaces limits
// the cache to a namespaced install; empty means all namespaces.
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
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}
