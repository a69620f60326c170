package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds a spec.providerRef may name.
const (
	KindTokenProvider        = "TokenProvider"
	KindClusterTokenProvider = "ClusterTokenProvider"
)

// ProviderTokenSecretSuffix makes the name of the Secret a provider keeps its
// token in: "<provider name>-token", in the namespace its references
// resolve in.
const ProviderTokenSecretSuffix = "-token"

// ProviderReference names the provider an APICredential takes its token
// from.
type ProviderReference struct {
	// Kind is TokenProvider (in the APICredential's own namespace) or
	// ClusterTokenProvider. Default TokenProvider.
	// +optional
	// +kubebuilder:default=TokenProvider
	// +kubebuilder:validation:Enum=TokenProvider;ClusterTokenProvider
	Kind string `json:"kind,omitempty"`
	// Name of the provider.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=247
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="spec.providerRef.name must be a valid provider name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')"
	Name string `json:"name"`
}

// TokenProviderSpec is how a provider obtains its one token.
type TokenProviderSpec struct {
	// TokenRequest describes the HTTP request to the token endpoint, exactly
	// as on an APICredential. Its Secret and ConfigMap references resolve in
	// the TokenProvider's namespace, or for a ClusterTokenProvider in the
	// operator's cluster resource namespace (--cluster-resource-namespace).
	TokenRequest TokenRequest `json:"tokenRequest"`

	// Refresh tunes when a new token is requested, as on an APICredential.
	// +optional
	Refresh *RefreshPolicy `json:"refresh,omitempty"`

	// Suspend stops all provider calls while true. The token already held
	// stays, and consumers keep copying it until it expires. Default false.
	// +optional
	// +kubebuilder:default=false
	Suspend bool `json:"suspend,omitempty"`
}

// AllowedNamespaces says which namespaces may consume a
// ClusterTokenProvider: a namespace named in names, or one whose labels
// match selector. Without it no namespace may.
// +kubebuilder:validation:XValidation:rule="(has(self.names) && size(self.names) > 0) || has(self.selector)",message="spec.allowedNamespaces needs names, a selector, or both; leave it out to allow no namespace"
type AllowedNamespaces struct {
	// Names of namespaces allowed.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="!format.dns1123Label().validate(self).hasValue()",message="spec.allowedNamespaces.names must hold namespace names (DNS-1123 labels)"
	Names []string `json:"names,omitempty"`
	// Selector allows the namespaces whose labels match it. An empty
	// selector ({}) matches every namespace, as in a NetworkPolicy.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// ClusterTokenProviderSpec is a TokenProviderSpec with the namespaces that
// may consume it.
type ClusterTokenProviderSpec struct {
	TokenProviderSpec `json:",inline"`

	// AllowedNamespaces lists the namespaces whose APICredentials may take
	// this provider's token. Deny by default: without it, no namespace may.
	// +optional
	AllowedNamespaces *AllowedNamespaces `json:"allowedNamespaces,omitempty"`
}

// TokenProviderStatus is what tokenwarden observed and did about the
// provider's token, and how many APICredentials consume it.
type TokenProviderStatus struct {
	TokenStatus `json:",inline"`
	// Consumers counts the APICredentials that name this provider and may
	// take its token.
	// +optional
	Consumers int32 `json:"consumers"`
}

// TokenProvider holds one provider client and mints one token per lifetime
// for every APICredential of its namespace that names it in
// spec.providerRef. Its token is kept in the Secret "<name>-token" of its
// namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=tokenwarden
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 247",message="metadata.name must be at most 247 characters: the token Secret is named <name>-token"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`
// +kubebuilder:printcolumn:name="Consumers",type=integer,JSONPath=`.status.consumers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TokenProvider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TokenProviderSpec   `json:"spec"`
	Status TokenProviderStatus `json:"status,omitempty"`
}

// TokenProviderList is a list of TokenProviders.
//
// +kubebuilder:object:root=true
type TokenProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenProvider `json:"items"`
}

// ClusterTokenProvider is a TokenProvider for the whole cluster: a platform
// team holds the client once, in the operator's cluster resource namespace,
// and the namespaces it allows take its token without ever reading the
// client secret. Its token is kept in the Secret "<name>-token" of the
// cluster resource namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ctp,categories=tokenwarden
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 247",message="metadata.name must be at most 247 characters: the token Secret is named <name>-token"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`
// +kubebuilder:printcolumn:name="Consumers",type=integer,JSONPath=`.status.consumers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTokenProvider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterTokenProviderSpec `json:"spec"`
	Status TokenProviderStatus      `json:"status,omitempty"`
}

// ClusterTokenProviderList is a list of ClusterTokenProviders.
//
// +kubebuilder:object:root=true
type ClusterTokenProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTokenProvider `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TokenProvider{}, &TokenProviderList{}, &ClusterTokenProvider{}, &ClusterTokenProviderList{})
}
