package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// copyFromProvider is the pass of a consumer (an APICredential with
// spec.providerRef): it copies the provider's current token into the
// consumer's own target Secret when the target does not hold it already. It
// never causes a provider call. When the provider is missing, does not allow
// the namespace, or holds no valid token, nothing is written: the target
// keeps its last token until it expires.
func (r *APICredentialReconciler) copyFromProvider(ctx context.Context, p *pass, t target) error {
	ref := p.cred.Spec.ProviderRef
	kind := refKind(ref)
	p.status.Provider = &authv1alpha1.ProviderReference{Kind: kind, Name: ref.Name}
	// A consumer never calls; what it plans is its provider's business.
	p.status.LastAttemptTime = nil
	if err := CheckTemplates(&p.cred.Spec.Target); err != nil {
		var fe *failure.Error
		if errors.As(err, &fe) {
			return r.consumerFailed(p, fe)
		}
		return err
	}
	src, fe, err := r.providerToken(ctx, p.cred.Namespace, kind, ref.Name)
	if err != nil {
		return err
	}
	if fe != nil {
		return r.consumerFailed(p, fe)
	}
	if !t.holds(src.minted) || t.drifted {
		if err := r.writeTarget(ctx, p, t.secret, src.minted); err != nil {
			return r.writeFailed(p, err)
		}
		r.event(p.owner, corev1.EventTypeNormal, EventTokenRefreshed, "Copy",
			"Token of %s %s copied to Secret %s", kind, ref.Name, p.cred.Spec.Target.SecretName)
	}
	p.token = src.state()
	p.status.ObservedInputs = src.inputs
	p.status.LastRefreshTime = metaTime(src.issuedAt)
	p.status.NextRefreshTime = metaTime(src.next)
	p.status.ConsecutiveFailures = 0
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionFalse, authv1alpha1.ReasonRefreshSucceeded,
		fmt.Sprintf("The target Secret holds the current token of %s %s", kind, ref.Name))
	return nil
}

// consumerFailed records why a consumer could not copy. There is no timer
// to plan: the watch on the provider, its token Secret and the namespace
// brings the fix, and the pass still wakes when the token it holds expires.
func (r *APICredentialReconciler) consumerFailed(p *pass, fe *failure.Error) error {
	prev := meta.FindStatusCondition(p.status.Conditions, authv1alpha1.ConditionDegraded)
	if prev == nil || prev.Status != metav1.ConditionTrue || prev.Reason != string(fe.Reason) {
		sem, _ := failure.Of(fe.Reason)
		r.event(p.owner, corev1.EventTypeWarning, sem.Event, "Copy", "%s", fe.Message)
	}
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, string(fe.Reason), fe.Message)
	p.status.NextRefreshTime = nil
	return nil
}

// providerCopy is a provider's current token as a consumer writes it.
type providerCopy struct {
	minted
	next time.Time // the provider's next planned refresh
}

// providerToken finds the current token of provider kind/name for a
// consumer in namespace. A problem the consumer's owner can act on comes
// back as a failure; an error is API server trouble.
func (r *APICredentialReconciler) providerToken(ctx context.Context, namespace, kind, name string) (providerCopy, *failure.Error, error) {
	if kind == authv1alpha1.KindClusterTokenProvider && !r.clusterProviders() {
		return providerCopy{}, problemf(failure.ProviderNotFound,
			"spec.providerRef: this tokenwarden install is namespaced and serves no ClusterTokenProvider; use a TokenProvider in namespace %q", namespace), nil
	}
	o := newProvider(kind)
	key := types.NamespacedName{Name: name}
	if kind == authv1alpha1.KindTokenProvider {
		key.Namespace = namespace
	}
	if err := r.Client.Get(ctx, key, o); err != nil {
		if apierrors.IsNotFound(err) {
			return providerCopy{}, problemf(failure.ProviderNotFound, "spec.providerRef: %s %q not found", kind, name), nil
		}
		return providerCopy{}, nil, fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	if !o.GetDeletionTimestamp().IsZero() {
		return providerCopy{}, problemf(failure.ProviderNotFound, "spec.providerRef: %s %q is being deleted", kind, name), nil
	}
	_, status, allowed := providerParts(o)
	if kind == authv1alpha1.KindClusterTokenProvider {
		ok, err := r.namespaceAllowed(ctx, allowed, namespace)
		if err != nil {
			return providerCopy{}, nil, err
		}
		if !ok {
			return providerCopy{}, problemf(failure.ProviderNotAllowed,
				"spec.providerRef: ClusterTokenProvider %q does not allow namespace %q (its spec.allowedNamespaces)", name, namespace), nil
		}
	}
	notReady := func(why string) *failure.Error {
		msg := fmt.Sprintf("spec.providerRef: %s %q %s", kind, name, why)
		if status.Reason != "" {
			msg += " (its reason: " + status.Reason + ")"
		}
		return problemf(failure.ProviderNotReady, "%s", msg)
	}
	sec := &corev1.Secret{}
	secKey := types.NamespacedName{Namespace: r.providerNamespace(kind, namespace), Name: name + authv1alpha1.ProviderTokenSecretSuffix}
	if err := r.Client.Get(ctx, secKey, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return providerCopy{}, notReady("holds no token yet"), nil
		}
		return providerCopy{}, nil, fmt.Errorf("reading the token Secret of %s %s: %w", kind, name, err)
	}
	if !metav1.IsControlledBy(sec, o) {
		return providerCopy{}, notReady(fmt.Sprintf("does not own Secret %q", secKey.Name)), nil
	}
	var tok refresh.Token
	tok.IssuedAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationIssuedAt])
	tok.ExpiresAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationExpiresAt])
	value, drifted := written(&authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(secKey.Name)}, sec, tok)
	if value == "" || drifted {
		return providerCopy{}, notReady("holds no token yet"), nil
	}
	if !tok.Valid(r.Clock.Now()) {
		return providerCopy{}, notReady("holds an expired token"), nil
	}
	return providerCopy{
		minted: minted{
			token: value, authorization: "Bearer " + value,
			issuedAt: tok.IssuedAt, expiresAt: tok.ExpiresAt,
			// Which provider and which of its tokens: a consumer holds the
			// current one when its target carries the same.
			inputs: fmt.Sprintf("provider=%s uid=%s", providerIndexKey(kind, namespace, name), o.GetUID()),
		},
		next: timeOf(status.NextRefreshTime),
	}, nil, nil
}

// namespaceAllowed reports whether a ClusterTokenProvider's
// allowedNamespaces admits namespace: deny by default.
func (r *APICredentialReconciler) namespaceAllowed(ctx context.Context, allowed *authv1alpha1.AllowedNamespaces, namespace string) (bool, error) {
	if allowed == nil {
		return false, nil
	}
	if slices.Contains(allowed.Names, namespace) {
		return true, nil
	}
	if allowed.Selector == nil {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(allowed.Selector)
	if err != nil {
		return false, nil //nolint:nilerr // an invalid selector admits no namespace
	}
	ns := metadataOfNamespace()
	if err := r.Metadata.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading Namespace %s: %w", namespace, err)
	}
	return sel.Matches(labels.Set(ns.GetLabels())), nil
}

// consumersOf maps a provider, or a provider's token Secret, to the
// APICredentials that name the provider.
func (r *APICredentialReconciler) consumersOf(ctx context.Context, o client.Object) []reconcile.Request {
	var kind, name string
	switch o.(type) {
	case *authv1alpha1.TokenProvider:
		kind, name = authv1alpha1.KindTokenProvider, o.GetName()
	case *authv1alpha1.ClusterTokenProvider:
		kind, name = authv1alpha1.KindClusterTokenProvider, o.GetName()
	default:
		// A provider's token Secret: its controller owner names it.
		ref := metav1.GetControllerOf(o)
		if ref == nil || o.GetLabels()[authv1alpha1.LabelProvider] == "" ||
			(ref.Kind != authv1alpha1.KindTokenProvider && ref.Kind != authv1alpha1.KindClusterTokenProvider) {
			return nil
		}
		kind, name = ref.Kind, ref.Name
	}
	var list authv1alpha1.APICredentialList
	if err := r.Client.List(ctx, &list, client.MatchingFields{providerRefIndex: providerIndexKey(kind, o.GetNamespace(), name)}); err != nil {
		logf.FromContext(ctx).Error(err, "Listing the consumers of a provider", "kind", kind, "name", name)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// clusterConsumersIn maps a Namespace to its APICredentials that name a
// ClusterTokenProvider: its labels may have changed what they are allowed.
func (r *APICredentialReconciler) clusterConsumersIn(ctx context.Context, o client.Object) []reconcile.Request {
	var list authv1alpha1.APICredentialList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetName())); err != nil {
		logf.FromContext(ctx).Error(err, "Listing APICredentials of a namespace", "namespace", o.GetName())
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if ref := list.Items[i].Spec.ProviderRef; ref != nil && refKind(ref) == authv1alpha1.KindClusterTokenProvider {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}
