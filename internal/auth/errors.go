package auth

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// Every error Fetch returns has a failure.Reason (FailureReason), the one
// vocabulary that the controller's conditions, events and retries read; use
// failure.ReasonOf to get it.

// standardOAuthErrors are the RFC 6749 §5.2 codes. Only these are ever copied
// from a response into an error: anything else a provider puts in "error" is
// free text and may echo a submitted value.
var standardOAuthErrors = map[string]bool{
	"invalid_request":        true,
	"invalid_client":         true,
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"unsupported_grant_type": true,
	"invalid_scope":          true,
}

// safeOAuthError returns code when it is a standard RFC 6749 code, else "".
func safeOAuthError(code string) string {
	if standardOAuthErrors[code] {
		return code
	}
	return ""
}

// hostPart renders "token endpoint <host>" or a neutral subject when the host
// is unknown (errors from the static flow or from local checks).
func hostPart(host string) string {
	if host == "" {
		return "token endpoint"
	}
	return "token endpoint " + host
}

func statusPart(code int) string {
	if code == 0 {
		return ""
	}
	return " (HTTP " + strconv.Itoa(code) + ")"
}

// RateLimitedError reports a 429 from the provider, or a request that our own
// per-host limiter refused without calling the provider (Local).
type RateLimitedError struct {
	Host       string
	StatusCode int
	// RetryAfter is how long every caller of Host must wait: the cool-down
	// that was applied (provider's Retry-After plus jitter, or backoff), or
	// for a Local refusal the time until a request slot frees up.
	RetryAfter time.Duration
	// HasRetryAfter is true when RetryAfter comes from a usable Retry-After
	// header, or from our own limiter for a Local refusal.
	HasRetryAfter bool
	// Local is true when the provider was not called at all.
	Local bool
}

func (e *RateLimitedError) Error() string {
	var b strings.Builder
	if e.Local {
		b.WriteString("request to " + hostPart(e.Host) + " held back by the per-host limiter")
	} else {
		b.WriteString(hostPart(e.Host) + " is rate limiting" + statusPart(e.StatusCode))
	}
	fmt.Fprintf(&b, "; retry in %s", e.RetryAfter.Round(time.Millisecond))
	if !e.Local && !e.HasRetryAfter {
		b.WriteString(" (backoff, no usable Retry-After)")
	}
	return b.String()
}

// FailureReason is RateLimited.
func (e *RateLimitedError) FailureReason() failure.Reason { return failure.RateLimited }

// TransientError reports a failure that may go away on its own: 5xx, 408,
// timeouts, refused connections, TLS handshake failures.
type TransientError struct {
	Host       string
	StatusCode int
	// Problem is a fixed description chosen by this package.
	Problem string
	// Timeout is true when the per-call timeout expired.
	Timeout bool
	// perRequest is true when the failure belongs to this request, not to
	// the host (a server certificate the request's CA bundle does not
	// trust): it does not mark the host failing.
	perRequest bool
	// bodyBroken is true when the answer broke off while its body was
	// read: the connection failed, not the provider's answer.
	bodyBroken bool
	// cause is only ever a context sentinel (context.Canceled or
	// context.DeadlineExceeded), whose text is fixed and safe.
	cause error
}

func (e *TransientError) Error() string {
	return hostPart(e.Host) + ": " + e.Problem + statusPart(e.StatusCode)
}

// FailureReason is ProviderUnavailable.
func (e *TransientError) FailureReason() failure.Reason { return failure.ProviderUnavailable }

// Unwrap lets callers test errors.Is(err, context.Canceled).
func (e *TransientError) Unwrap() error { return e.cause }

// InvalidCredentialsError reports that the provider refused the credentials:
// 400/401/403, an OAuth error in a 2xx body, or a TLS alert saying that the
// server wants a (different) client certificate.
type InvalidCredentialsError struct {
	Host       string
	StatusCode int
	// OAuthError is a standard RFC 6749 error code or "".
	OAuthError string
	// Problem is a fixed description chosen by this package.
	Problem string
}

func (e *InvalidCredentialsError) Error() string {
	p := e.Problem
	if p == "" {
		p = "credentials rejected"
	}
	s := hostPart(e.Host) + ": " + p + statusPart(e.StatusCode)
	if e.OAuthError != "" {
		s += ": " + e.OAuthError
	}
	return s
}

// FailureReason is InvalidCredentials.
func (e *InvalidCredentialsError) FailureReason() failure.Reason { return failure.InvalidCredentials }

// InvalidResponseError reports an answer we cannot use: not JSON, no token,
// an unusable expiry, an oversized body, or a redirect.
type InvalidResponseError struct {
	Host       string
	StatusCode int
	// Problem is a fixed description chosen by this package.
	Problem string
}

func (e *InvalidResponseError) Error() string {
	return hostPart(e.Host) + ": invalid response" + statusPart(e.StatusCode) + ": " + e.Problem
}

// FailureReason is InvalidResponse.
func (e *InvalidResponseError) FailureReason() failure.Reason { return failure.InvalidResponse }

// ConfigurationError reports a request that is invalid or not allowed by
// policy; it never reached the provider.
type ConfigurationError struct {
	// Field names the request field at fault ("url", "json", ...).
	Field   string
	Problem string
}

func (e *ConfigurationError) Error() string {
	if e.Field == "" {
		return "invalid token request: " + e.Problem
	}
	return "invalid token request: " + e.Field + ": " + e.Problem
}

// FailureReason is InvalidSpec.
func (e *ConfigurationError) FailureReason() failure.Reason { return failure.InvalidSpec }

// ClientCertificateError reports a client certificate or key that cannot be
// used: wrong passphrase, missing key, mismatch, expiry, size.
type ClientCertificateError struct {
	Problem string
}

func (e *ClientCertificateError) Error() string {
	return "client certificate: " + e.Problem
}

// FailureReason is InvalidClientCertificate.
func (e *ClientCertificateError) FailureReason() failure.Reason {
	return failure.InvalidClientCertificate
}
