package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// DefaultTimeout bounds one token request (dial, TLS, headers and body) when
// the Request does not say otherwise.
const DefaultTimeout = 15 * time.Second

// maxResponseHeaderBytes keeps a hostile server from making us buffer
// megabytes of headers before the body cap even applies.
const maxResponseHeaderBytes = 64 << 10

// Field is one name/value pair of a form, a JSON object or a header list.
type Field struct{ Name, Value string }

// BasicCredentials are sent as "Authorization: Basic base64(user:pass)"
// without URL-encoding the parts first, as the providers in docs/providers.md
// expect.
type BasicCredentials struct{ Username, Password string }

// ResponseMapping says where the token and its expiry are in the JSON answer.
type ResponseMapping struct {
	// TokenField defaults to "access_token"; ExpiresInField to "expires_in";
	// ExpiresAtField is read only when set. Each is a top-level key or a
	// dotted path ("data.token").
	TokenField, ExpiresInField, ExpiresAtField string
	// DefaultLifetime is used only when neither the response nor the token's
	// JWT exp says when the token expires.
	DefaultLifetime time.Duration
}

// Request is one fully resolved token request: every value has already been
// read from its Secret.
type Request struct {
	URL    string
	Method string // "GET" or "POST"; "" means POST
	Basic  *BasicCredentials
	// Certificate comes from LoadClientCertificate; it is always offered when
	// the server asks, whatever CA names the server lists.
	Certificate *tls.Certificate
	RootCAs     *x509.CertPool // nil: the system roots
	// RootCAsPEM is the PEM bundle RootCAs was built from: a CertPool
	// cannot be hashed, so these bytes are what identifies the roots when
	// connections are reused. Requests share connections only when their
	// bundles are equal; a request with RootCAs but without RootCAsPEM gets a
	// connection of its own, as does one whose RootCAs does not hold the
	// same certificates as the pool of the first request with that bundle.
	// Not read when RootCAs is nil.
	RootCAsPEM []byte
	// At most one of Form and JSON; JSON is sent as an object of strings in
	// the order given.
	Form, JSON, Headers []Field
	Response            ResponseMapping
	Timeout             time.Duration // 0: DefaultTimeout
}

// Token is a freshly issued access token.
type Token struct {
	Value string
	// IssuedAt is when the request was sent, from the injected clock; a
	// relative expiry counts from here, so a slow answer errs early.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Clock is the time source; k8s.io/utils/clock.Clock satisfies it.
type Clock interface{ Now() time.Time }

// Resolver resolves host names; *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options configure a Client. The zero value is the production default.
type Options struct {
	Clock Clock          // default: real time
	Rand  func() float64 // values in [0,1); default math/rand/v2.Float64
	// AllowPrivateNetworks lifts the refusal to dial loopback, link-local
	// (cloud metadata), private, CGNAT and unspecified addresses.
	AllowPrivateNetworks bool
	// AllowedHosts restricts token hosts ("a.example.com", "*.example.org");
	// empty allows any host.
	AllowedHosts []string
	// HostRequestsPerMinute caps requests per token host (host:port) across
	// all callers of the Client. 0: DefaultHostRequestsPerMinute; <0: no cap.
	HostRequestsPerMinute int
	// HostMaxInFlight caps the requests to one host in flight at once (a
	// bulkhead). 0: DefaultHostMaxInFlight.
	HostMaxInFlight int
	// OnHostRecovered, when set, is called once a host that was failing
	// (5xx, timeouts, connection or TLS failures) answers again, so that
	// callers waiting for it can go at once. It must not block.
	OnHostRecovered func(host string)
	// OnHostSlotFree, when set, is called each time a request to a host
	// that is not failing ends, so that the most urgent caller waiting for
	// a slot can go. It must not block.
	OnHostSlotFree func(host string)
	Resolver       Resolver // default: net.DefaultResolver
	// Observe, when set, is called once per request that passed the limiter
	// and went to the network, with the limiter key, the status code (0 when
	// no response arrived: refused address, TLS or connection failure,
	// timeout) and the duration. It must be cheap and must not block.
	Observe func(host string, statusCode int, d time.Duration)
}

// Client fetches tokens. It is safe for concurrent use; all callers share its
// per-host limiter, 429 cool-downs and kept-alive connections (each reused
// only by requests of the same identity, see transport.go), which is the
// point of having one Client per operator.
type Client struct {
	clock        Clock
	allowPrivate bool
	allowedHosts []string
	resolver     Resolver
	observe      func(string, int, time.Duration)
	limiter      *hostLimiter
	// transports keeps connections alive per identity (transport.go).
	transports       *transportPool
	idleConnsPerHost int
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// NewClient returns a Client with o's settings and defaults for the rest.
func NewClient(o Options) *Client {
	c := &Client{
		clock:        o.Clock,
		allowPrivate: o.AllowPrivateNetworks,
		allowedHosts: append([]string(nil), o.AllowedHosts...),
		resolver:     o.Resolver,
		observe:      o.Observe,
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	c.limiter = newHostLimiter(o.HostRequestsPerMinute, o.HostMaxInFlight, rnd)
	c.limiter.recovered = o.OnHostRecovered
	c.limiter.freed = o.OnHostSlotFree
	c.transports = newTransportPool()
	// No more requests to one host run at once than the bulkhead lets go,
	// so no more connections of one transport are ever worth keeping.
	c.idleConnsPerHost = min(c.limiter.maxInFlight, maxIdleConnsPerHost)
	return c
}

// HoldUntil returns when a request to host (as returned by HostOf) could go
// without being held back, or the zero time when it could go now: the end
// of the host's 429 cool-down, the next probe of a failing host, a free
// in-flight slot, or a free slot of the per-host budget. It takes nothing,
// so a caller can wait without preparing a request.
func (c *Client) HoldUntil(host string) time.Time {
	return c.limiter.holdUntil(host, c.clock.Now())
}

// Fetch sends r and returns the token, or an error of one of this package's
// types, each with a failure.Reason (failure.ReasonOf). Everything that can be checked locally is checked
// before the limiter and the network are touched. When the host's budget is
// spent or it is cooling down after a 429, Fetch returns a Local
// *RateLimitedError at once without calling the provider.
func (c *Client) Fetch(ctx context.Context, r Request) (Token, error) {
	p, err := c.prepare(r)
	if err != nil {
		return Token{}, err
	}
	tr, done := c.transportFor(r, p)
	defer done()
	sl, ok, wait := c.limiter.acquire(p.host, c.clock.Now())
	if !ok {
		return Token{}, &RateLimitedError{Host: p.host, RetryAfter: wait, HasRetryAfter: true, Local: true}
	}
	tok, err := c.send(ctx, r, p, tr)
	var te *TransientError
	transient := errors.As(err, &te) && !te.perRequest && !errors.Is(err, context.Canceled)
	c.limiter.release(sl, c.clock.Now(), transient)
	return tok, err
}

// send makes the request for which a slot was taken, over tr.
func (c *Client) send(ctx context.Context, r Request, p *prepared, tr *http.Transport) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ctx, trace := withConnTrace(ctx)
	req, err := p.httpRequest(ctx, r)
	if err != nil {
		return Token{}, err
	}
	hc := &http.Client{
		Transport: tr,
		// A redirect may carry a POST body with a client secret to another
		// host; the 3xx itself is returned and reported as invalid.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	issuedAt := c.clock.Now()
	resp, err := hc.Do(req)
	if err != nil {
		c.report(p.host, 0, issuedAt)
		err = classifyTransportError(ctx, p.host, err, trace.state())
		var te *TransientError
		if errors.As(err, &te) {
			// Whatever broke this connection (a reset path, a provider
			// that lost its state) may have left the idle ones half-open:
			// the next request dials afresh. This also stops a dial the
			// request gave up waiting for.
			tr.CloseIdleConnections()
		}
		return Token{}, err
	}
	defer resp.Body.Close()
	tok, err := c.handleResponse(ctx, p.host, resp, r.Response, issuedAt)
	var te *TransientError
	if errors.As(err, &te) && te.bodyBroken {
		tr.CloseIdleConnections()
	}
	return tok, err
}

func (c *Client) report(host string, status int, issuedAt time.Time) {
	if c.observe != nil {
		c.observe(host, status, c.clock.Now().Sub(issuedAt))
	}
}

// handleResponse classifies a response by status and, for 2xx, parses it.
// Only bodies that can matter are read: a 5xx or 3xx body is never looked at.
func (c *Client) handleResponse(ctx context.Context, host string, resp *http.Response, m ResponseMapping, issuedAt time.Time) (Token, error) {
	status := resp.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		c.report(host, status, issuedAt)
		now := c.clock.Now()
		ra, has := ParseRetryAfter(resp.Header.Get("Retry-After"), now)
		wait := c.limiter.throttled(host, now, ra, has)
		return Token{}, &RateLimitedError{Host: host, StatusCode: status, RetryAfter: wait, HasRetryAfter: has}
	case status >= 300 && status < 400:
		c.report(host, status, issuedAt)
		return Token{}, &InvalidResponseError{Host: host, StatusCode: status, Problem: "redirects are not followed"}
	case status == http.StatusRequestTimeout || status >= 500:
		c.report(host, status, issuedAt)
		return Token{}, &TransientError{Host: host, StatusCode: status, Problem: "provider error"}
	case status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden:
		body, _ := readBody(resp.Body)
		c.report(host, status, issuedAt)
		return Token{}, &InvalidCredentialsError{Host: host, StatusCode: status, OAuthError: oauthCode(body)}
	case status < 200 || status >= 300:
		c.report(host, status, issuedAt)
		return Token{}, &InvalidResponseError{Host: host, StatusCode: status, Problem: "unexpected status"}
	}

	body, err := readBody(resp.Body)
	c.report(host, status, issuedAt)
	// Any 2xx means the host is not throttling us any more.
	c.limiter.succeeded(host)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return Token{}, &TransientError{Host: host, StatusCode: status, Problem: "request canceled", cause: context.Canceled, bodyBroken: true}
		case ctx.Err() != nil || isTimeout(err):
			return Token{}, &TransientError{Host: host, StatusCode: status, Problem: "timed out reading the body", Timeout: true, cause: context.DeadlineExceeded, bodyBroken: true}
		}
		return Token{}, &TransientError{Host: host, StatusCode: status, Problem: "connection failed while reading the body", bodyBroken: true}
	}
	if len(body) > MaxBodyBytes {
		return Token{}, &InvalidResponseError{Host: host, StatusCode: status, Problem: "body exceeds 1 MiB"}
	}
	return parseTokenResponse(host, status, body, m, issuedAt, c.clock.Now())
}

// readBody reads at most MaxBodyBytes+1 bytes, so the caller can tell
// "exactly at the cap" from "over it" without reading a 100 MB answer.
func readBody(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
}

// oauthCode extracts a standard RFC 6749 error code from an error body, or "".
func oauthCode(body []byte) string {
	if len(body) > MaxBodyBytes {
		return ""
	}
	var e struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	s, _ := e.Error.(string)
	return safeOAuthError(s)
}
