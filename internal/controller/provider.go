package controller

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// providerRefIndex indexes APICredentials by the provider they name, as
// providerIndexKey gives it.
const providerRefIndex = ".spec.providerRef"

// providerIndexKey is "Kind/namespace/name"; the namespace is empty for a
// ClusterTokenProvider.
func providerIndexKey(kind, namespace, name string) string {
	if kind == authv1alpha1.KindClusterTokenProvider {
		namespace = ""
	}
	return kind + "/" + namespace + "/" + name
}

// refKind is the kind a providerRef names, its default applied.
func refKind(ref *authv1alpha1.ProviderReference) string {
	if ref.Kind == "" {
		return authv1alpha1.KindTokenProvider
	}
	return ref.Kind
}

// newProvider is an empty object of a provider kind.
func newProvider(kind string) client.Object {
	if kind == authv1alpha1.KindClusterTokenProvider {
		return &authv1alpha1.ClusterTokenProvider{}
	}
	return &authv1alpha1.TokenProvider{}
}

// providerParts returns the spec, status and allowed namespaces (nil for a
// TokenProvider) of a provider object.
func providerParts(o client.Object) (*authv1alpha1.TokenProviderSpec, *authv1alpha1.TokenProviderStatus, *authv1alpha1.AllowedNamespaces) {
	switch p := o.(type) {
	case *authv1alpha1.ClusterTokenProvider:
		return &p.Spec.TokenProviderSpec, &p.Status, p.Spec.AllowedNamespaces
	case *authv1alpha1.TokenProvider:
		return &p.Spec, &p.Status, nil
	}
	panic("controller: not a provider kind")
}

// providerKind is the kind of a provider object.
func providerKind(o client.Object) string {
	if _, ok := o.(*authv1alpha1.ClusterTokenProvider); ok {
		return authv1alpha1.KindClusterTokenProvider
	}
	return authv1alpha1.KindTokenProvider
}

// providerNamespace is where a provider's references resolve and its token
// Secret lives: its own namespace, or the cluster resource namespace for a
// ClusterTokenProvider.
func (r *APICredentialReconciler) providerNamespace(kind, namespace string) string {
	if kind == authv1alpha1.KindClusterTokenProvider {
		return r.ClusterResourceNamespace
	}
	return namespace
}

// providerSubject is the subject of a provider: an APICredential view of its
// spec whose target is its token Secret.
func (r *APICredentialReconciler) providerSubject(o client.Object) subject {
	spec, status, _ := providerParts(o)
	kind := providerKind(o)
	view := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{
			Name:        o.GetName(),
			Namespace:   r.providerNamespace(kind, o.GetNamespace()),
			UID:         o.GetUID(),
			Generation:  o.GetGeneration(),
			Annotations: o.GetAnnotations(),
		},
		Spec: authv1alpha1.APICredentialSpec{
			TokenRequest: &spec.TokenRequest,
			Refresh:      spec.Refresh,
			Suspend:      spec.Suspend,
			Target: authv1alpha1.TargetSecret{
				SecretName: authv1alpha1.SecretName(o.GetName() + authv1alpha1.ProviderTokenSecretSuffix),
			},
		},
		Status: authv1alpha1.APICredentialStatus{TokenStatus: status.TokenStatus},
	}
	return subject{cred: view, owner: o, kind: kind}
}

// clusterProviders reports whether this install serves ClusterTokenProviders
// (see ClusterProviders).
func (r *APICredentialReconciler) clusterProviders() bool {
	return r.ClusterProviders
}

// providerReconciler keeps the one token of each provider of one kind fresh.
// It shares the APICredential reconciler's memory, token client, host waits
// and pool of shared tokens.
type providerReconciler struct {
	*APICredentialReconciler
	kind string
}

// Reconcile runs one pass for a provider, counts its consumers and writes
// its status once, when it changed.
func (r *providerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := subjectKey{kind: r.kind, NamespacedName: req.NamespacedName}
	o := newProvider(r.kind)
	if err := r.Client.Get(ctx, req.NamespacedName, o); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
			r.Metrics.ForgetProvider(r.kind, req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !o.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	p, err := r.runPass(ctx, r.providerSubject(o))
	if p == nil {
		return ctrl.Result{}, err
	}
	consumers, cerr := r.countConsumers(ctx, o)
	if cerr != nil {
		return ctrl.Result{}, errors.Join(err, cerr)
	}
	_, current, _ := providerParts(o)
	status := authv1alpha1.TokenProviderStatus{TokenStatus: p.status.TokenStatus, Consumers: int32(consumers)} //nolint:gosec // a count of objects
	r.Metrics.SetProvider(r.kind, req.Namespace, req.Name, timeOf(status.TokenExpiresAt), timeOf(status.NextRefreshTime), consumers)
	if !equality.Semantic.DeepEqual(*current, status) {
		patch := client.MergeFrom(o.DeepCopyObject().(client.Object))
		*current = status
		if serr := r.Client.Status().Patch(ctx, o, patch); serr != nil {
			return ctrl.Result{}, errors.Join(err, serr)
		}
		r.awaitOwnWrite(ctx, o)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return p.result(), nil
}

// countConsumers counts the APICredentials that name provider o and may
// take its token.
func (r *APICredentialReconciler) countConsumers(ctx context.Context, o client.Object) (int, error) {
	kind := providerKind(o)
	var list authv1alpha1.APICredentialList
	if err := r.Client.List(ctx, &list, client.MatchingFields{providerRefIndex: providerIndexKey(kind, o.GetNamespace(), o.GetName())}); err != nil {
		return 0, err
	}
	_, _, allowed := providerParts(o)
	n := 0
	for i := range list.Items {
		if kind == authv1alpha1.KindClusterTokenProvider {
			ok, err := r.namespaceAllowed(ctx, allowed, list.Items[i].Namespace)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
		}
		n++
	}
	return n, nil
}

// setupProviders registers the controllers of TokenProvider and, in a
// cluster-wide install, ClusterTokenProvider.
func (r *APICredentialReconciler) setupProviders(ctx context.Context, mgr ctrl.Manager, metaCache cache.Cache) error {
	kinds := []string{authv1alpha1.KindTokenProvider}
	if r.clusterProviders() {
		kinds = append(kinds, authv1alpha1.KindClusterTokenProvider)
	}
	for _, kind := range kinds {
		if err := r.setupProvider(ctx, mgr, metaCache, kind); err != nil {
			return err
		}
	}
	return nil
}

func (r *APICredentialReconciler) setupProvider(ctx context.Context, mgr ctrl.Manager, metaCache cache.Cache, kind string) error {
	obj := newProvider(kind)
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, obj, secretRefIndex, func(o client.Object) []string {
		return referencedSecrets(r.providerSubject(o).cred.Spec.DeepCopy())
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, obj, configMapRefIndex, func(o client.Object) []string {
		if n := referencedConfigMap(r.providerSubject(o).cred.Spec.DeepCopy()); n != "" {
			return []string{n}
		}
		return nil
	}); err != nil {
		return err
	}
	pr := &providerReconciler{APICredentialReconciler: r, kind: kind}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(map[string]string{
			authv1alpha1.KindTokenProvider:        "tokenprovider",
			authv1alpha1.KindClusterTokenProvider: "clustertokenprovider",
		}[kind]).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(r.Workers/4, 1),
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, APIErrorRetryMax),
			UsePriorityQueue:        ptr.To(false), // FIFO, as for APICredentials
		}).
		For(obj, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		WatchesRawSource(source.Kind(metaCache, client.Object(metadataOf("Secret")),
			handler.EnqueueRequestsFromMapFunc(r.providersFor(kind, secretRefIndex)))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.providersFor(kind, secretRefIndex))).
		WatchesRawSource(source.Kind(metaCache, client.Object(metadataOf("ConfigMap")),
			handler.EnqueueRequestsFromMapFunc(r.providersFor(kind, configMapRefIndex)))).
		// Consumers come and go: the count in status follows.
		Watches(&authv1alpha1.APICredential{}, handler.EnqueueRequestsFromMapFunc(consumedProvider(kind)),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
			}})).
		WatchesRawSource(source.Channel(r.releasedFor(kind), &handler.EnqueueRequestForObject{}))
	if kind == authv1alpha1.KindClusterTokenProvider {
		// A namespace's labels decide whether its consumers count.
		b = b.WatchesRawSource(source.Kind(metaCache, client.Object(metadataOfNamespace()),
			handler.EnqueueRequestsFromMapFunc(r.allClusterProviders)))
	}
	return b.Complete(pr)
}

// providersFor maps a source Secret or ConfigMap to the providers of kind
// that read it.
func (r *APICredentialReconciler) providersFor(kind, index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		if r.providerNamespace(kind, o.GetNamespace()) != o.GetNamespace() {
			return nil
		}
		opts := []client.ListOption{client.MatchingFields{index: o.GetName()}}
		if kind == authv1alpha1.KindTokenProvider {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		return r.listProviders(ctx, kind, opts...)
	}
}

func (r *APICredentialReconciler) allClusterProviders(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.listProviders(ctx, authv1alpha1.KindClusterTokenProvider)
}

func (r *APICredentialReconciler) listProviders(ctx context.Context, kind string, opts ...client.ListOption) []reconcile.Request {
	var out []reconcile.Request
	if kind == authv1alpha1.KindClusterTokenProvider {
		var list authv1alpha1.ClusterTokenProviderList
		if err := r.Client.List(ctx, &list, opts...); err != nil {
			logf.FromContext(ctx).Error(err, "Listing ClusterTokenProviders")
			return nil
		}
		for i := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
		return out
	}
	var list authv1alpha1.TokenProviderList
	if err := r.Client.List(ctx, &list, opts...); err != nil {
		logf.FromContext(ctx).Error(err, "Listing TokenProviders")
		return nil
	}
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// consumedProvider maps an APICredential to the provider of kind it names.
func consumedProvider(kind string) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		c, ok := o.(*authv1alpha1.APICredential)
		if !ok || c.Spec.ProviderRef == nil || refKind(c.Spec.ProviderRef) != kind {
			return nil
		}
		key := types.NamespacedName{Name: c.Spec.ProviderRef.Name}
		if kind == authv1alpha1.KindTokenProvider {
			key.Namespace = c.Namespace
		}
		return []reconcile.Request{{NamespacedName: key}}
	}
}

// metadataOfNamespace is an empty metadata-only Namespace.
func metadataOfNamespace() *metav1.PartialObjectMetadata {
	return metadataOf("Namespace")
}
