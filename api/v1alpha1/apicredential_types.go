package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels and annotations tokenwarden reads and writes.
const (
	// LabelManagedBy is set to ManagedByValue on every target Secret.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on target Secrets.
	ManagedByValue = "tokenwarden"
	// LabelCredential names the APICredential that owns a target Secret.
	LabelCredential = "auth.tokenwarden.io/credential"
	// AnnotationExpiresAt on a target Secret is the token's expiry (RFC 3339).
	AnnotationExpiresAt = "auth.tokenwarden.io/expires-at"
	// AnnotationIssuedAt on a target Secret is when the token was requested (RFC 3339).
	AnnotationIssuedAt = "auth.tokenwarden.io/issued-at"
	// AnnotationRefreshRequestedAt on an APICredential, a TokenProvider or a
	// ClusterTokenProvider asks for one refresh now when its value changes.
	AnnotationRefreshRequestedAt = "auth.tokenwarden.io/refresh-requested-at"
	// AnnotationSecretsUpdatedAt on a Pod selected by spec.target.syncPods
	// is when tokenwarden last wrote a new token into a Secret the Pod
	// mounts (RFC 3339 with nanoseconds). Its change makes the kubelet
	// refresh the Pod's Secret volumes at once.
	AnnotationSecretsUpdatedAt = "auth.tokenwarden.io/secrets-updated-at"
	// LabelProvider names the TokenProvider or ClusterTokenProvider that owns
	// a provider token Secret.
	LabelProvider = "auth.tokenwarden.io/provider"
)

// Condition types and reasons.
const (
	// ConditionReady is True while the target Secret holds an unexpired token.
	ConditionReady = "Ready"
	// ConditionDegraded is True when the most recent attempt failed.
	ConditionDegraded = "Degraded"
	// ConditionPodsSynced (only with spec.target.syncPods) is True when the
	// Pods selected were told of the last new token.
	ConditionPodsSynced = "PodsSynced"

	// ReasonTokenValid (Ready=True): the target Secret holds an unexpired token.
	ReasonTokenValid = "TokenValid"
	// ReasonNotIssued (Ready=False): no token has been written yet.
	ReasonNotIssued = "NotIssued"
	// ReasonTokenExpired (Ready=False): the token in the target Secret has expired.
	ReasonTokenExpired = "TokenExpired"
	// ReasonSuspended (Degraded=False, and status.reason): spec.suspend is
	// true.
	ReasonSuspended = "Suspended"
	// ReasonRefreshSucceeded (Degraded=False): the most recent attempt succeeded.
	ReasonRefreshSucceeded = "RefreshSucceeded"

	// ReasonRateLimited (Degraded=True): the provider answered 429. A request
	// held back by the operator's own per-host budget is not a failure and
	// sets no Degraded condition.
	ReasonRateLimited = "RateLimited"
	// ReasonProviderUnavailable (Degraded=True): 5xx, timeout, connection or
	// TLS failure.
	ReasonProviderUnavailable = "ProviderUnavailable"
	// ReasonInvalidCredentials (Degraded=True): the provider refused the
	// credentials (400/401/403, invalid_client).
	ReasonInvalidCredentials = "InvalidCredentials"
	// ReasonInvalidResponse (Degraded=True): the provider's answer holds no
	// usable token or expiry, or has a 3xx, 404 or other unexpected status.
	ReasonInvalidResponse = "InvalidResponse"
	// ReasonSourceSecretMissing (Degraded=True): a referenced Secret or key
	// does not exist.
	ReasonSourceSecretMissing = "SourceSecretMissing"
	// ReasonInvalidClientCertificate (Degraded=True): the client certificate
	// does not decode, does not match its key, or has expired.
	ReasonInvalidClientCertificate = "InvalidClientCertificate"
	// ReasonTargetConflict (Degraded=True): the target Secret exists and is
	// not owned by this APICredential, or is immutable.
	ReasonTargetConflict = "TargetConflict"
	// ReasonInvalidSpec (Degraded=True): the spec is inconsistent in a way
	// the API server could not check, or the operator's --allowed-hosts or
	// private-network policy refuses the URL.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonTokenExpiringSoon (Degraded=True, static flow): the token
	// expires within spec.static.warnBefore.
	ReasonTokenExpiringSoon = "TokenExpiringSoon"

	// ReasonPodsSynced (PodsSynced=True): every selected Pod was annotated
	// after the last new token was written.
	ReasonPodsSynced = "PodsSynced"
	// ReasonPodSyncForbidden (PodsSynced=False): the operator may not list
	// or patch Pods in this namespace (the optional pod-sync RBAC is not
	// installed); the kubelet picks the token up at its own pace.
	ReasonPodSyncForbidden = "PodSyncForbidden"
	// ReasonPodSyncFailed (PodsSynced=False): listing or patching the
	// selected Pods failed; the kubelet picks the token up at its own pace.
	ReasonPodSyncFailed = "PodSyncFailed"

	// ReasonProviderNotFound (Degraded=True, consumers): the TokenProvider
	// or ClusterTokenProvider named in spec.providerRef does not exist, or
	// this install does not serve its kind.
	ReasonProviderNotFound = "ProviderNotFound"
	// ReasonProviderNotAllowed (Degraded=True, consumers): the
	// ClusterTokenProvider's spec.allowedNamespaces does not admit the
	// APICredential's namespace. Nothing is written.
	ReasonProviderNotAllowed = "ProviderNotAllowed"
	// ReasonProviderNotReady (Degraded=True, consumers): the provider holds
	// no valid token (its own status says why); the consumer's target keeps
	// its last token until it expires.
	ReasonProviderNotReady = "ProviderNotReady"
)

// HTTPMethod is the method of a token request.
// +kubebuilder:validation:Enum=GET;POST
type HTTPMethod string

const (
	// MethodGET sends a GET request.
	MethodGET HTTPMethod = "GET"
	// MethodPOST sends a POST request.
	MethodPOST HTTPMethod = "POST"
)

// SecretName is the name of a Secret in the namespace where the object's
// references resolve: an APICredential's or TokenProvider's own, a
// ClusterTokenProvider's cluster resource namespace.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a valid Secret name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')"
type SecretName string

// SecretKey is a key inside a Secret's data.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
type SecretKey string

// APICredentialSpec says how to obtain a token and where to put it.
// +kubebuilder:validation:XValidation:rule="[has(self.tokenRequest), has(self.static), has(self.providerRef)].filter(x, x).size() == 1",message="exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"
// +kubebuilder:validation:XValidation:rule="!(has(self.providerRef) && has(self.refresh))",message="spec.refresh is not allowed with spec.providerRef: the provider owns the timing; set refresh on the provider"
type APICredentialSpec struct {
	// TokenRequest describes an HTTP request to a token endpoint that returns
	// a short-lived token (flows A, B and C). Exactly one of tokenRequest,
	// static and providerRef must be set.
	// +optional
	TokenRequest *TokenRequest `json:"tokenRequest,omitempty"`

	// Static syncs a long-lived application token that a person created in
	// a provider's console (flow D). tokenwarden cannot refresh it; it keeps
	// the target Secret in step with the source Secret, tracks the JWT's
	// exp claim and warns before it. Exactly one of tokenRequest, static and
	// providerRef must be set.
	// +optional
	Static *StaticToken `json:"static,omitempty"`

	// ProviderRef takes the token from a TokenProvider (in this namespace)
	// or a ClusterTokenProvider that allows this namespace: the provider
	// asks for one token per lifetime and tokenwarden copies it into this
	// APICredential's target Secret. This APICredential never causes a
	// provider call and cannot read the provider's client secret. Exactly
	// one of tokenRequest, static and providerRef must be set; refresh is
	// not allowed with it.
	// +optional
	ProviderRef *ProviderReference `json:"providerRef,omitempty"`

	// Refresh tunes when a new token is requested. Not allowed with
	// providerRef.
	// +optional
	Refresh *RefreshPolicy `json:"refresh,omitempty"`

	// Suspend stops all provider calls and all writes while true. The token
	// already in the target Secret stays there. Default false.
	// +optional
	// +kubebuilder:default=false
	Suspend bool `json:"suspend,omitempty"`

	// Target is the Secret that tokenwarden creates, owns and keeps fresh.
	Target TargetSecret `json:"target"`
}

// TokenRequest is one HTTP request to a token endpoint.
// +kubebuilder:validation:XValidation:rule="!(has(self.form) && has(self.json))",message="at most one of spec.tokenRequest.form and spec.tokenRequest.json may be set"
type TokenRequest struct {
	// URL of the token endpoint. Must start with https://.
	// +kubebuilder:validation:MinLength=9
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://')",message="spec.tokenRequest.url must start with https://"
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="spec.tokenRequest.url must be a valid URL"
	URL string `json:"url"`

	// Method is GET or POST. Default POST.
	// +optional
	// +kubebuilder:default=POST
	Method HTTPMethod `json:"method,omitempty"`

	// BasicAuth sends "Authorization: Basic base64(username:password)". The
	// username and password are joined as they are, without URL-encoding,
	// which is what the providers tokenwarden serves expect.
	// +optional
	BasicAuth *BasicAuth `json:"basicAuth,omitempty"`

	// ClientCertificate is the TLS client certificate presented to the
	// token endpoint (mutual TLS).
	// +optional
	ClientCertificate *ClientCertificate `json:"clientCertificate,omitempty"`

	// CABundle holds PEM roots to trust for the token endpoint instead of
	// the system roots.
	// +optional
	CABundle *CABundle `json:"caBundle,omitempty"`

	// Form fields sent as an application/x-www-form-urlencoded body. At
	// most one of form and json may be set.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Form []Parameter `json:"form,omitempty"`

	// JSON fields sent as a JSON object of strings (application/json). At
	// most one of form and json may be set.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	JSON []Parameter `json:"json,omitempty"`

	// Headers are extra request headers.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Headers []Parameter `json:"headers,omitempty"`

	// Response says where the token and its expiry are in the JSON answer.
	// +optional
	Response *ResponseMapping `json:"response,omitempty"`

	// Timeout of one token request: dial, TLS handshake, headers and body.
	// Default 15s.
	// +optional
	// +kubebuilder:default="15s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.tokenRequest.timeout must be positive"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// InvalidatesPrevious tells tokenwarden that the provider revokes the
	// previous token whenever it issues a new one. tokenwarden then
	// refreshes late by default (refreshBefore = max(30s, lifetime/10)),
	// because mounted copies of the old token die the moment a new one is
	// issued. Default false.
	// +optional
	// +kubebuilder:default=false
	InvalidatesPrevious bool `json:"invalidatesPrevious,omitempty"`
}

// BasicAuth names the Secret and keys holding a username and a password.
type BasicAuth struct {
	// SecretName is the Secret, in the namespace where references resolve.
	SecretName SecretName `json:"secretName"`
	// UsernameKey is the key of the username (or API key, or client ID).
	UsernameKey SecretKey `json:"usernameKey"`
	// PasswordKey is the key of the password (or secret).
	PasswordKey SecretKey `json:"passwordKey"`
}

// ClientCertificate names the Secret and keys of a TLS client certificate:
// either pkcs12Key (a PKCS#12/.pfx file), or certificateKey and
// privateKeyKey (PEM).
// +kubebuilder:validation:XValidation:rule="has(self.pkcs12Key) != (has(self.certificateKey) || has(self.privateKeyKey))",message="spec.tokenRequest.clientCertificate needs either pkcs12Key, or certificateKey and privateKeyKey"
// +kubebuilder:validation:XValidation:rule="has(self.certificateKey) == has(self.privateKeyKey)",message="spec.tokenRequest.clientCertificate.certificateKey and privateKeyKey must be set together"
type ClientCertificate struct {
	// SecretName is the Secret, in the namespace where references resolve.
	SecretName SecretName `json:"secretName"`
	// PKCS12Key is the key of a PKCS#12 (.pfx, .p12) file holding the
	// certificate and its private key. Both the legacy (3DES/RC2) and the
	// modern (AES) encryption are read.
	// +optional
	PKCS12Key *SecretKey `json:"pkcs12Key,omitempty"`
	// CertificateKey is the key of a PEM certificate (chain).
	// +optional
	CertificateKey *SecretKey `json:"certificateKey,omitempty"`
	// PrivateKeyKey is the key of a PEM private key: PKCS#1, PKCS#8 or EC,
	// or an encrypted PKCS#8 or legacy encrypted PEM key when passphraseKey
	// is set.
	// +optional
	PrivateKeyKey *SecretKey `json:"privateKeyKey,omitempty"`
	// PassphraseKey is the key of the passphrase that decrypts the PKCS#12
	// file or the encrypted PEM private key.
	// +optional
	PassphraseKey *SecretKey `json:"passphraseKey,omitempty"`
}

// CABundle names PEM roots in a Secret or a ConfigMap of the
// namespace where references resolve.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) != has(self.configMapName)",message="spec.tokenRequest.caBundle needs exactly one of secretName and configMapName"
type CABundle struct {
	// SecretName is a Secret holding the roots.
	// +optional
	SecretName *SecretName `json:"secretName,omitempty"`
	// ConfigMapName is a ConfigMap holding the roots.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ConfigMapName *string `json:"configMapName,omitempty"`
	// Key of the PEM bundle.
	Key SecretKey `json:"key"`
}

// Parameter is a named value given inline or read from a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="each entry needs exactly one of value and valueFrom"
type Parameter struct {
	// Name of the form field, JSON field or header.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`
	// Value given inline. Do not put secrets here; use valueFrom.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value *string `json:"value,omitempty"`
	// ValueFrom reads the value from a Secret.
	// +optional
	ValueFrom *ValueSource `json:"valueFrom,omitempty"`
}

// ValueSource says where a value comes from.
type ValueSource struct {
	// SecretKeyRef is a key of a Secret in the namespace where references
	// resolve.
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// SecretKeySelector is a key of a Secret in the namespace where references
// resolve.
type SecretKeySelector struct {
	// Name of the Secret.
	Name SecretName `json:"name"`
	// Key in the Secret's data.
	Key SecretKey `json:"key"`
}

// ResponseMapping says where the token and its expiry are in a JSON
// response. A field is a top-level key (access_token) or a dotted path
// (data.token). When several expiries are present (expiresInField,
// expiresAtField, the JWT's exp claim) the earliest wins; each counts as at
// most one year after the request was sent.
type ResponseMapping struct {
	// TokenField holds the token. Default access_token.
	// +optional
	// +kubebuilder:default=access_token
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	TokenField string `json:"tokenField,omitempty"`
	// ExpiresInField holds the lifetime in seconds, as a number or a
	// numeric string, counted from the moment the request was sent. A
	// lifetime of zero or less is ignored when another expiry is present and
	// makes the answer InvalidResponse otherwise. Default expires_in.
	// +optional
	// +kubebuilder:default=expires_in
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	ExpiresInField string `json:"expiresInField,omitempty"`
	// ExpiresAtField holds an absolute expiry (RFC 3339 / ISO 8601, with or
	// without fractional seconds or offset, or seconds since the epoch). An
	// expiry already in the past makes the answer InvalidResponse. Not read
	// when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ExpiresAtField string `json:"expiresAtField,omitempty"`
	// DefaultLifetime is used only when no expiry is found in the response
	// or in the token's JWT exp claim. Without it such a response is
	// rejected as InvalidResponse.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.tokenRequest.response.defaultLifetime must be positive"
	DefaultLifetime *metav1.Duration `json:"defaultLifetime,omitempty"`
}

// StaticToken names a Secret holding a long-lived application token (a JWT)
// and an optional secret. The header written is "Bearer {secret}.{jwt}"
// with a secret, "Bearer {jwt}" without.
type StaticToken struct {
	// SecretName is the Secret, in the namespace where references resolve.
	SecretName SecretName `json:"secretName"`
	// TokenKey is the key of the JWT.
	TokenKey SecretKey `json:"tokenKey"`
	// SecretKey is the key of the optional secret that prefixes the JWT.
	// +optional
	SecretKey *SecretKey `json:"secretKey,omitempty"`
	// WarnBefore is how long before the JWT's exp claim tokenwarden warns
	// (Degraded=True, TokenExpiringSoon, and an event). Default 168h.
	// +optional
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.static.warnBefore must be positive"
	WarnBefore *metav1.Duration `json:"warnBefore,omitempty"`
}

// RefreshPolicy tunes when a new token is requested.
type RefreshPolicy struct {
	// RefreshBefore is how long before the token's expiry a new token must
	// be in the target Secret. Unset, it is computed per token from its
	// lifetime L: min(0.6·L, max(3m, L/3)), or max(30s, L/10) when
	// tokenRequest.invalidatesPrevious is true. A value at or above a
	// token's lifetime is ignored for that token, which gets the default.
	// Each refresh moves earlier by a random 0-10% of L (never by more than
	// half the time from issue to L - refreshBefore), and no credential asks
	// its provider more often than every 10s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.refresh.refreshBefore must be positive"
	RefreshBefore *metav1.Duration `json:"refreshBefore,omitempty"`
}

// TargetSecret is the Secret tokenwarden writes.
type TargetSecret struct {
	// SecretName is the target Secret, created in the APICredential's
	// namespace and owned by it (deleted with it). tokenwarden refuses to
	// write into an existing Secret it does not own, or that is immutable.
	SecretName SecretName `json:"secretName"`
	// Keys renames the keys written into the Secret.
	// +optional
	Keys *TargetKeys `json:"keys,omitempty"`
	// Labels copied onto the Secret.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations copied onto the Secret.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// Template adds keys whose values are Go templates over .Token,
	// .ExpiresAt (RFC 3339) and .Authorization, for example a .env file:
	// {"token.env": "TOKEN={{ .Token }}"}.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",message="spec.target.template keys must be valid Secret keys (letters, digits, '-', '_' and '.')"
	Template map[string]string `json:"template,omitempty"`
	// SyncPods delivers each new token to running Pods at once: after it
	// is written, tokenwarden annotates the selected Pods of this namespace
	// (auth.tokenwarden.io/secrets-updated-at), which makes the kubelet
	// refresh their Secret volumes within about a second instead of at its
	// next periodic sync (up to a minute and a half by default). No Pod is
	// restarted. Needs the optional pod-sync RBAC (pods list and patch);
	// without it the PodsSynced condition says so.
	// +optional
	SyncPods *PodSync `json:"syncPods,omitempty"`
}

// PodSync selects the Pods told of each new token.
type PodSync struct {
	// Selector selects Pods in the APICredential's namespace by label.
	Selector metav1.LabelSelector `json:"selector"`
}

// TargetKeys renames the keys written into the target Secret.
type TargetKeys struct {
	// Token is the key of the raw token. Default token.
	// +optional
	// +kubebuilder:default=token
	Token SecretKey `json:"token,omitempty"`
	// Authorization is the key of the full header value: "Bearer <token>",
	// or "Bearer {secret}.{jwt}" for a static token. Default authorization.
	// +optional
	// +kubebuilder:default=authorization
	Authorization SecretKey `json:"authorization,omitempty"`
	// ExpiresAt is the key of the expiry (RFC 3339, UTC). Default
	// expires-at.
	// +optional
	// +kubebuilder:default=expires-at
	ExpiresAt SecretKey `json:"expiresAt,omitempty"`
}

// TokenStatus is what tokenwarden observed and did about one token: the
// status an APICredential and a provider share.
type TokenStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is True while the target Secret holds an unexpired
	// token; Degraded is True when the most recent attempt failed, with a
	// reason from a closed set (RateLimited, ProviderUnavailable,
	// InvalidCredentials, InvalidResponse, SourceSecretMissing,
	// InvalidClientCertificate, TargetConflict, InvalidSpec,
	// TokenExpiringSoon, and for consumers ProviderNotFound,
	// ProviderNotAllowed, ProviderNotReady); PodsSynced is set only with
	// spec.target.syncPods.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// TokenExpiresAt is when the token in the target Secret expires.
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`
	// LastRefreshTime is when the token in the target Secret was requested
	// (for a static token: when it was copied).
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`
	// NextRefreshTime is when tokenwarden plans its next provider call: the
	// scheduled refresh, or the retry after a failure. Unset for static
	// tokens, while suspended, and after an InvalidSpec failure (retried
	// only when the spec changes, and once after each operator start).
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`
	// LastAttemptTime is when tokenwarden last sent a token request to the
	// provider, whatever the outcome. Not set for a request refused locally
	// (allowed hosts, private-network policy), for a problem found before
	// any request, nor for a request held back by the per-host budget.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
	// ObservedInputs fingerprints the spec generation and the versions (not
	// the contents) of the referenced Secrets at the last attempt. When they
	// change, for example after a password rotation, a new token is
	// requested at once.
	// +optional
	ObservedInputs string `json:"observedInputs,omitempty"`
	// ConsecutiveFailures counts failed attempts since the last success.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`
	// ClientCertificateExpiresAt is the NotAfter of the client certificate.
	// +optional
	ClientCertificateExpiresAt *metav1.Time `json:"clientCertificateExpiresAt,omitempty"`
	// LastHandledRefreshRequest echoes the value of the
	// auth.tokenwarden.io/refresh-requested-at annotation handled last.
	// +optional
	LastHandledRefreshRequest string `json:"lastHandledRefreshRequest,omitempty"`
	// Reason repeats the reason shown in the Reason printer column:
	// Suspended while spec.suspend is true, else that of Degraded when it is
	// True, else that of Ready.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// APICredentialStatus is what tokenwarden observed and did. With
// spec.providerRef its token fields describe the copy in this
// APICredential's own target Secret; lastAttemptTime stays unset (a consumer
// never calls the provider) and nextRefreshTime is the provider's.
type APICredentialStatus struct {
	TokenStatus `json:",inline"`
	// Provider is the provider the token was last copied from (with
	// spec.providerRef).
	// +optional
	Provider *ProviderReference `json:"provider,omitempty"`
}

// APICredential keeps a short-lived API token fresh in a Secret.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apicred,categories=tokenwarden
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APICredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   APICredentialSpec   `json:"spec"`
	Status APICredentialStatus `json:"status,omitempty"`
}

// APICredentialList is a list of APICredentials.
//
// +kubebuilder:object:root=true
type APICredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APICredential `json:"items"`
}

func init() {
	SchemeBuilder.Register(&APICredential{}, &APICredentialList{})
}
