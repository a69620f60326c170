package plugin

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// item is what every command needs of one tokenwarden object, whatever its
// kind: its identity, its status and where its token lives.
type item struct {
	kind string
	meta metav1.ObjectMeta
	// status is the token status every kind shares.
	status authv1alpha1.TokenStatus
	// url is spec.tokenRequest.url; empty for static tokens and consumers.
	url string
	// static is true for flow D (spec.static).
	static bool
	// provider is spec.providerRef, its kind defaulted (consumers only).
	provider *authv1alpha1.ProviderReference
	// consumers is status.consumers (providers only).
	consumers *int32
	// suspended is spec.suspend.
	suspended bool
	// secretName and tokenKey locate the token: the target Secret of an
	// APICredential, the "<name>-token" Secret of a provider. secretInCluster
	// is true when that Secret is in the cluster resource namespace (a
	// ClusterTokenProvider's).
	secretName      string
	tokenKey        string
	secretInCluster bool
	// obj is the object itself, for patches.
	obj client.Object
}

// ref is how the item is named on the command line: kind/name.
func (it item) ref() string { return strings.ToLower(it.kind) + "/" + it.meta.Name }

// kind is one tokenwarden kind: how to name it on the command line and how
// to read it. Adding a kind is adding an entry to kinds.
type kind struct {
	name       string
	aliases    []string
	namespaced bool
	list       func(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]item, error)
	get        func(ctx context.Context, c client.Reader, key types.NamespacedName) (item, error)
}

// kinds in the order status lists them.
var kinds = []kind{
	{
		name:       "APICredential",
		aliases:    []string{"apicredential", "apicredentials", "apicred", "apicreds"},
		namespaced: true,
		list: func(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]item, error) {
			var l authv1alpha1.APICredentialList
			if err := c.List(ctx, &l, opts...); err != nil {
				return nil, err
			}
			out := make([]item, 0, len(l.Items))
			for i := range l.Items {
				out = append(out, credentialItem(&l.Items[i]))
			}
			return out, nil
		},
		get: func(ctx context.Context, c client.Reader, key types.NamespacedName) (item, error) {
			var o authv1alpha1.APICredential
			if err := c.Get(ctx, key, &o); err != nil {
				return item{}, err
			}
			return credentialItem(&o), nil
		},
	},
	{
		name:       authv1alpha1.KindTokenProvider,
		aliases:    []string{"tokenprovider", "tokenproviders", "tp"},
		namespaced: true,
		list: func(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]item, error) {
			var l authv1alpha1.TokenProviderList
			if err := c.List(ctx, &l, opts...); err != nil {
				return nil, err
			}
			out := make([]item, 0, len(l.Items))
			for i := range l.Items {
				o := &l.Items[i]
				out = append(out, providerItem(authv1alpha1.KindTokenProvider, o, &o.Spec, &o.Status))
			}
			return out, nil
		},
		get: func(ctx context.Context, c client.Reader, key types.NamespacedName) (item, error) {
			var o authv1alpha1.TokenProvider
			if err := c.Get(ctx, key, &o); err != nil {
				return item{}, err
			}
			return providerItem(authv1alpha1.KindTokenProvider, &o, &o.Spec, &o.Status), nil
		},
	},
	{
		name:       authv1alpha1.KindClusterTokenProvider,
		aliases:    []string{"clustertokenprovider", "clustertokenproviders", "ctp"},
		namespaced: false,
		list: func(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]item, error) {
			var l authv1alpha1.ClusterTokenProviderList
			if err := c.List(ctx, &l, opts...); err != nil {
				return nil, err
			}
			out := make([]item, 0, len(l.Items))
			for i := range l.Items {
				o := &l.Items[i]
				out = append(out, providerItem(authv1alpha1.KindClusterTokenProvider, o, &o.Spec.TokenProviderSpec, &o.Status))
			}
			return out, nil
		},
		get: func(ctx context.Context, c client.Reader, key types.NamespacedName) (item, error) {
			var o authv1alpha1.ClusterTokenProvider
			if err := c.Get(ctx, types.NamespacedName{Name: key.Name}, &o); err != nil {
				return item{}, err
			}
			return providerItem(authv1alpha1.KindClusterTokenProvider, &o, &o.Spec.TokenProviderSpec, &o.Status), nil
		},
	},
}

func credentialItem(o *authv1alpha1.APICredential) item {
	it := item{
		kind:       "APICredential",
		meta:       o.ObjectMeta,
		status:     o.Status.TokenStatus,
		static:     o.Spec.Static != nil,
		suspended:  o.Spec.Suspend,
		secretName: string(o.Spec.Target.SecretName),
		tokenKey:   "token",
		obj:        o,
	}
	if k := o.Spec.Target.Keys; k != nil && k.Token != "" {
		it.tokenKey = string(k.Token)
	}
	if tr := o.Spec.TokenRequest; tr != nil {
		it.url = tr.URL
	}
	if p := o.Spec.ProviderRef; p != nil {
		ref := *p
		if ref.Kind == "" {
			ref.Kind = authv1alpha1.KindTokenProvider
		}
		it.provider = &ref
	}
	return it
}

func providerItem(k string, o client.Object, spec *authv1alpha1.TokenProviderSpec, st *authv1alpha1.TokenProviderStatus) item {
	var om metav1.ObjectMeta
	if a, err := meta.Accessor(o); err == nil {
		om = metav1.ObjectMeta{
			Name: a.GetName(), Namespace: a.GetNamespace(), Labels: a.GetLabels(), Annotations: a.GetAnnotations(),
			Generation: a.GetGeneration(), CreationTimestamp: a.GetCreationTimestamp(), UID: a.GetUID(),
		}
	}
	consumers := st.Consumers
	return item{
		kind:            k,
		meta:            om,
		status:          st.TokenStatus,
		url:             spec.TokenRequest.URL,
		consumers:       &consumers,
		suspended:       spec.Suspend,
		secretName:      om.Name + authv1alpha1.ProviderTokenSecretSuffix,
		tokenKey:        "token",
		secretInCluster: k == authv1alpha1.KindClusterTokenProvider,
		obj:             o,
	}
}

// kindNamed finds a kind by any of its names, case-insensitively.
func kindNamed(s string) (kind, bool) {
	s = strings.ToLower(s)
	for _, k := range kinds {
		if strings.ToLower(k.name) == s {
			return k, true
		}
		for _, a := range k.aliases {
			if a == s {
				return k, true
			}
		}
	}
	return kind{}, false
}

// parseRef reads NAME (an APICredential) or KIND/NAME (KIND is any name of
// a tokenwarden kind: tokenprovider/bank, ctp/send).
func parseRef(arg string) (kind, string, error) {
	kindPart, name, found := strings.Cut(arg, "/")
	if !found {
		return kinds[0], arg, nil
	}
	k, ok := kindNamed(kindPart)
	if !ok {
		return kind{}, "", fmt.Errorf("%q: unknown kind %q; use apicredential, tokenprovider (tp) or clustertokenprovider (ctp)", arg, kindPart)
	}
	if name == "" || strings.Contains(name, "/") {
		return kind{}, "", fmt.Errorf("%q: expected KIND/NAME", arg)
	}
	return k, name, nil
}

// served reports whether err says the API server does not serve a kind
// (an install older than the kind, or a namespaced install without
// ClusterTokenProvider).
func served(err error) bool {
	return !meta.IsNoMatchError(err)
}
