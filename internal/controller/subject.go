package controller

import (
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// kindAPICredential names the APICredential kind in subject keys.
const kindAPICredential = "APICredential" //nolint:gosec // a kind name, not a credential

// subject is what a pass keeps a token fresh for. An APICredential is its
// own subject. A TokenProvider or ClusterTokenProvider is seen through cred,
// a view shaped as an APICredential (its tokenRequest, refresh and suspend,
// its token Secret as the target, the namespace its references resolve in),
// while owner is the provider itself: it owns the token Secret, receives the
// events and the status. One pass logic thus serves every kind, with the
// same timing, failure classes, host budget and restart behaviour.
type subject struct {
	cred  *authv1alpha1.APICredential
	owner client.Object
	kind  string
}

// subjectKey identifies a subject in the reconciler's memory: kinds never
// share an entry, even with one namespace and name.
type subjectKey struct {
	kind string
	types.NamespacedName
}

func credentialSubject(c *authv1alpha1.APICredential) subject {
	return subject{cred: c, owner: c, kind: kindAPICredential}
}

func (s subject) key() subjectKey {
	return subjectKey{kind: s.kind, NamespacedName: client.ObjectKeyFromObject(s.owner)}
}

// this names the subject in messages: "this APICredential".
func (s subject) this() string { return "this " + s.kind }

// wakeEvent is the event that puts the subject of key on its controller's
// workqueue.
func (k subjectKey) wakeEvent() event.GenericEvent {
	var o client.Object
	switch k.kind {
	case authv1alpha1.KindTokenProvider:
		o = &authv1alpha1.TokenProvider{}
	case authv1alpha1.KindClusterTokenProvider:
		o = &authv1alpha1.ClusterTokenProvider{}
	default:
		o = &authv1alpha1.APICredential{}
	}
	o.SetNamespace(k.Namespace)
	o.SetName(k.Name)
	return event.GenericEvent{Object: o}
}
