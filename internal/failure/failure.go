// Package failure is tokenwarden's one vocabulary of failures. A failed
// attempt has a Reason, which is also the reason of the Degraded=True
// condition users read; the table maps each Reason to the retry class the
// refresh policy applies, the event it raises and whether the provider saw
// the request. internal/auth classifies provider answers into Reasons, the
// controller classifies its local checks into Reasons, and status, events,
// metrics and retries all read this table, so the layers cannot drift apart.
//
// It imports no Kubernetes package, so internal/auth can use it.
package failure

import (
	"errors"

	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// Reason is a failure, named as the Degraded condition's reason. The values
// equal the Reason* constants of api/v1alpha1 (a test keeps them equal).
type Reason string

// Failures found when calling the provider.
const (
	// RateLimited: the provider answered 429.
	RateLimited Reason = "RateLimited"
	// ProviderUnavailable: 5xx, 408, a timeout, a refused or dropped
	// connection, a TLS handshake failure, a failed name lookup.
	ProviderUnavailable Reason = "ProviderUnavailable"
	// InvalidResponse: a 3xx (never followed), a 404 or another unexpected
	// status, or a 2xx without a usable token or expiry.
	InvalidResponse Reason = "InvalidResponse"
	// InvalidCredentials: 400/401/403, an OAuth2 error in a 2xx body, a TLS
	// alert refusing or asking for the client certificate; also an unusable
	// static token.
	InvalidCredentials Reason = "InvalidCredentials"
)

// Failures found before any request reached the provider.
const (
	// InvalidClientCertificate: the client certificate or key does not
	// decode, does not match, or has expired.
	InvalidClientCertificate Reason = "InvalidClientCertificate"
	// SourceSecretMissing: a referenced Secret, ConfigMap or key does not
	// exist.
	SourceSecretMissing Reason = "SourceSecretMissing"
	// InvalidSpec: the spec is inconsistent in a way the API server could not
	// check (a template, a CA bundle without a certificate, a URL), or the
	// operator's address policy refuses the URL.
	InvalidSpec Reason = "InvalidSpec"
	// TargetConflict: the target Secret is not this credential's to write.
	TargetConflict Reason = "TargetConflict"
)

// Failures of a consumer (an APICredential with spec.providerRef). A
// consumer never calls the provider; it waits for a change of the provider,
// its token Secret or the namespace.
const (
	// ProviderNotFound: the provider named does not exist, or this install
	// does not serve its kind.
	ProviderNotFound Reason = "ProviderNotFound"
	// ProviderNotAllowed: a ClusterTokenProvider does not allow the
	// consumer's namespace.
	ProviderNotAllowed Reason = "ProviderNotAllowed"
	// ProviderNotReady: the provider holds no valid token.
	ProviderNotReady Reason = "ProviderNotReady"
)

// Event reasons of failures (Warning events).
const (
	EventRefreshFailed  = "RefreshFailed"
	EventRateLimited    = "RateLimited"
	EventTargetConflict = "TargetConflict"
)

// Semantics is what a failure means for everything downstream of it.
type Semantics struct {
	// Retry is the class the refresh policy retries it by.
	Retry refresh.Class
	// Event is the reason of the Warning event it raises.
	Event string
	// Sent is true when the request reached the network: it counts for
	// status.lastAttemptTime and the minimum interval between calls.
	Sent bool
}

// table is the one place failure semantics are written down.
var table = map[Reason]Semantics{
	RateLimited:              {Retry: refresh.RateLimited, Event: EventRateLimited, Sent: true},
	ProviderUnavailable:      {Retry: refresh.Transient, Event: EventRefreshFailed, Sent: true},
	InvalidResponse:          {Retry: refresh.Broken, Event: EventRefreshFailed, Sent: true},
	InvalidCredentials:       {Retry: refresh.Credentials, Event: EventRefreshFailed, Sent: true},
	InvalidClientCertificate: {Retry: refresh.Credentials, Event: EventRefreshFailed},
	SourceSecretMissing:      {Retry: refresh.Credentials, Event: EventRefreshFailed},
	InvalidSpec:              {Retry: refresh.Spec, Event: EventRefreshFailed},
	TargetConflict:           {Retry: refresh.Conflict, Event: EventTargetConflict},
	ProviderNotFound:         {Retry: refresh.Spec, Event: EventRefreshFailed},
	ProviderNotAllowed:       {Retry: refresh.Spec, Event: EventRefreshFailed},
	ProviderNotReady:         {Retry: refresh.Spec, Event: EventRefreshFailed},
}

// Of returns the semantics of r; ok is false for a reason that is not a
// failure (a Degraded reason such as TokenExpiringSoon, or one this version
// does not know, read from an older status).
func Of(r Reason) (s Semantics, ok bool) {
	s, ok = table[r]
	return s, ok
}

// Reasons lists every failure reason, for tests and docs.
func Reasons() []Reason {
	out := make([]Reason, 0, len(table))
	for r := range table {
		out = append(out, r)
	}
	return out
}

// Error is a failure with a message that is safe to show: built from fixed
// text and names of fields, Secrets and keys, never from a value.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return e.Message }

// FailureReason returns e.Reason.
func (e *Error) FailureReason() Reason { return e.Reason }

// ReasonOf returns the Reason of the first error in err's tree that has one
// (an *Error, or an error of internal/auth), or "" when none does: an API
// server error or a canceled context is not the credential's failure.
func ReasonOf(err error) Reason {
	var r interface{ FailureReason() Reason }
	if errors.As(err, &r) {
		return r.FailureReason()
	}
	return ""
}
