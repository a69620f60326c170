package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"reflect"
	"syscall"
)

// TLS alert codes a server sends when it does not accept the client
// certificate, or wants one (RFC 8446 §6.2).
const (
	alertBadCertificate         = 42
	alertUnsupportedCertificate = 43
	alertCertificateRevoked     = 44
	alertCertificateExpired     = 45
	alertCertificateUnknown     = 46
	alertUnknownCA              = 48
	alertAccessDenied           = 49
	alertCertificateRequired    = 116
)

// classifyTransportError maps an error from http.Client.Do to one of this
// package's types. The original error is only inspected, never wrapped or
// printed: a *url.Error's text contains the full URL, query included.
func classifyTransportError(ctx context.Context, host string, err error, hs *handshakeState) error {
	var refused *addressRefusedError
	if errors.As(err, &refused) {
		return &ConfigurationError{Field: "url", Problem: refused.Error() + ", which the private-network policy refuses"}
	}
	// The caller's own context ended (shutdown, leadership lost): not the
	// provider's fault, and not a timeout of ours.
	if cause := context.Cause(ctx); ctx.Err() != nil && !errors.Is(cause, context.DeadlineExceeded) {
		return &TransientError{Host: host, Problem: "request canceled", cause: context.Canceled}
	}

	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
		dns              *net.DNSError
	)
	// A server certificate this request does not trust says nothing about
	// the host's health: another credential's caBundle may trust it.
	switch {
	case errors.As(err, &unknownAuthority):
		return verifyFailure(host, "the server certificate is signed by an untrusted or unknown certificate authority")
	case errors.As(err, &hostname):
		return verifyFailure(host, "the server certificate is not valid for this host")
	case errors.As(err, &invalid):
		return verifyFailure(host, "the server certificate is expired, not yet valid or otherwise invalid")
	case errors.As(err, &verification):
		return verifyFailure(host, "the server certificate could not be verified")
	case errors.As(err, &record):
		return tlsFailure(host, "the server did not answer with TLS")
	}

	if code, ok := tlsAlert(err); ok {
		switch code {
		case alertCertificateRequired:
			return &InvalidCredentialsError{Host: host, Problem: "the server requires a client certificate"}
		case alertBadCertificate, alertUnsupportedCertificate, alertCertificateRevoked,
			alertCertificateExpired, alertCertificateUnknown, alertUnknownCA, alertAccessDenied:
			if !hs.sent.Load() {
				return &InvalidCredentialsError{Host: host, Problem: "the server requires a client certificate"}
			}
			return &InvalidCredentialsError{Host: host, Problem: "the server rejected the client certificate"}
		}
		return tlsFailure(host, "the server sent a TLS alert")
	}

	if ctx.Err() != nil || isTimeout(err) {
		return &TransientError{Host: host, Problem: "timed out", Timeout: true, cause: context.DeadlineExceeded}
	}
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || serverClosedIdle(err)
	if closed && hs.requested.Load() && !hs.sent.Load() {
		// Servers that require a certificate often just close the
		// connection instead of sending an alert.
		return &InvalidCredentialsError{Host: host, Problem: "the server requires a client certificate"}
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &TransientError{Host: host, Problem: "connection refused"}
	case closed:
		return &TransientError{Host: host, Problem: "connection closed by the server"}
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return &TransientError{Host: host, Problem: "host name not found"}
		}
		return &TransientError{Host: host, Problem: "host name lookup failed"}
	}
	return &TransientError{Host: host, Problem: "request failed"}
}

// serverClosedIdle reports net/http's "server closed idle connection": the
// server closed the connection before the request went out, which is how a
// close right after the handshake often shows up. net/http exports no
// sentinel for it, so its fixed text is compared.
func serverClosedIdle(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "http: server closed idle connection" {
			return true
		}
	}
	return false
}

func tlsFailure(host, why string) error {
	return &TransientError{Host: host, Problem: "TLS handshake failed: " + why}
}

func verifyFailure(host, why string) error {
	return &TransientError{Host: host, Problem: "TLS handshake failed: " + why, perRequest: true}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tlsAlert finds a TLS alert received from the peer. crypto/tls reports it as
// a *net.OpError{Op: "remote error"} around an unexported uint8 type, so the
// code is read by reflection; tls.AlertError (QUIC) is read directly.
func tlsAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	for e := err; e != nil; {
		var op *net.OpError
		if !errors.As(e, &op) {
			break
		}
		if op.Op == "remote error" && op.Err != nil {
			v := reflect.ValueOf(op.Err)
			if v.Kind() == reflect.Uint8 && v.Type().PkgPath() == "crypto/tls" {
				return uint8(v.Uint()), true //nolint:gosec // G115: the value's kind is Uint8, so it fits
			}
		}
		e = op.Err
	}
	return 0, false
}
