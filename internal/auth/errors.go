package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Class names what a caller should do about a failed Fetch. The controller
// maps each class to a condition reason and a retry policy.
type Class string

const (
	// ClassRateLimited: wait for the host's cool-down, shared by all callers.
	ClassRateLimited Class = "RateLimited"
	// ClassTransient: retry with backoff; the provider or the network may recover.
	ClassTransient Class = "Transient"
	// ClassInvalidCredentials: retrying with the same inputs will fail again.
	ClassInvalidCredentials Class = "InvalidCredentials"
	// ClassInvalidResponse: the provider answered something we cannot use.
	ClassInvalidResponse Class = "InvalidResponse"
	// ClassConfiguration: the request itself is not allowed or not valid.
	ClassConfiguration Class = "Configuration"
	// ClassClientCertificate: the client certificate cannot be used.
	ClassClientCertificate Class = "ClientCertificate"
)

// ClassOf returns the class of err, or "" when err is nil or not one of the
// error types of this package.
func ClassOf(err error) Class {
	var (
		rl  *RateLimitedError
		tr  *TransientError
		ic  *InvalidCredentialsError
		ir  *InvalidResponseError
		ce  *ConfigurationError
		cce *ClientCertificateError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rl):
		return ClassRateLimited
	case errors.As(err, &tr):
		return ClassTransient
	case errors.As(err, &ic):
		return ClassInvalidCredentials
	case errors.As(err, &ir):
		return ClassInvalidResponse
	case errors.As(err, &ce):
		return ClassConfiguration
	case errors.As(err, &cce):
		return ClassClientCertificate
	}
	return ""
}

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

// TransientError reports a failure that may go away on its own: 5xx, 408,
// timeouts, refused connections, TLS handshake failures.
type TransientError struct {
	Host       string
	StatusCode int
	// Problem is a fixed description chosen by this package.
	Problem string
	// Timeout is true when the per-call timeout expired.
	Timeout bool
	// cause is only ever a context sentinel (context.Canceled or
	// context.DeadlineExceeded), whose text is fixed and safe.
	cause error
}

func (e *TransientError) Error() string {
	return hostPart(e.Host) + ": " + e.Problem + statusPart(e.StatusCode)
}

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

// ClientCertificateError reports a client certificate or key that cannot be
// used: wrong passphrase, missing key, mismatch, expiry, size.
type ClientCertificateError struct {
	Problem string
}

func (e *ClientCertificateError) Error() string {
	return "client certificate: " + e.Problem
}
