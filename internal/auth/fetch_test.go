package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/sandbox"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// Known secret values. Every request and every canned response in the table
// carries them, and TestFetchErrorsCarryNoSecrets checks that no error
// string ever contains one.
const (
	secretUser          = "user-S3cr3t-Name"
	secretPassword      = "pw-S3cr3t-Basic"
	secretWrongPassword = "pw-S3cr3t-Wrong"
	secretKeyID         = "key-S3cr3t-Id"
	secretClient        = "cs-S3cr3t-Client"
	secretToken         = "tok-S3cr3t-Token"
	secretQuery         = "q-S3cr3t-Query"
	secretHeader        = "hdr-S3cr3t-Header"
)

var allSecrets = []string{secretUser, secretPassword, secretWrongPassword, secretKeyID, secretClient,
	secretToken, secretQuery, secretHeader, testPassphrase, "S3cr3t"}

// fetchEnv is the world of the table: a sandbox provider, a second one that
// demands client certificates in the handshake, a CA nobody trusts, and a
// resolver that maps test names to loopback and to the metadata address.
type fetchEnv struct {
	clk      *fakeClock
	s        *sandbox.Server
	strict   *sandbox.Server
	other    *sandbox.CA
	fx       *certFixtures
	resolver *mapResolver
}

func newFetchEnv(t *testing.T) *fetchEnv {
	t.Helper()
	fx := loadFixtures(t)
	clk := newFakeClock()
	start := func(require bool) *sandbox.Server {
		s, err := sandbox.Start(sandbox.Options{CA: fx.ca, Hostnames: []string{"bank.test"},
			RequireClientCertificate: require, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		s.AddClient(secretUser, secretPassword)
		s.AddClient(secretKeyID, secretClient)
		return s
	}
	other, err := sandbox.NewCA("a CA nobody trusts")
	if err != nil {
		t.Fatal(err)
	}
	return &fetchEnv{
		clk: clk, s: start(false), strict: start(true), other: other, fx: fx,
		resolver: &mapResolver{addrs: map[string]string{"bank.test": "127.0.0.1", "meta.test": "169.254.169.254"}},
	}
}

// port returns ":port" of the main sandbox, for URLs with test host names.
func (e *fetchEnv) port() string { return e.s.Host()[strings.LastIndex(e.s.Host(), ":"):] }

// Requests of the three flows, each with a secret in the URL query and in
// an extra header, so the leak test covers both. They carry the CA bundle's
// bytes, as the controller's requests do, so their connections are pooled.
func (e *fetchEnv) flowA(src *sandbox.Server) Request {
	return Request{URL: src.URL + sandbox.PathFlowA + "?api_key=" + secretQuery, Method: http.MethodGet,
		Basic: &BasicCredentials{Username: secretUser, Password: secretPassword}, RootCAs: e.fx.ca.Pool(), RootCAsPEM: e.fx.ca.CertPEM,
		Headers: []Field{{Name: "X-Api-Key", Value: secretHeader}}}
}

func (e *fetchEnv) flowB(src *sandbox.Server) Request {
	return Request{URL: src.URL + sandbox.PathFlowB + "?api_key=" + secretQuery,
		Basic: &BasicCredentials{Username: secretKeyID, Password: secretClient}, RootCAs: e.fx.ca.Pool(), RootCAsPEM: e.fx.ca.CertPEM,
		Form:    []Field{{Name: "grant_type", Value: "client_credentials"}},
		Headers: []Field{{Name: "X-Api-Key", Value: secretHeader}}}
}

func (e *fetchEnv) flowC(src *sandbox.Server) Request {
	return Request{URL: src.URL + sandbox.PathFlowC + "?api_key=" + secretQuery, Method: http.MethodPost, RootCAs: e.fx.ca.Pool(), RootCAsPEM: e.fx.ca.CertPEM,
		JSON:     []Field{{Name: "clientId", Value: secretKeyID}, {Name: "clientSecret", Value: secretClient}},
		Response: ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"}}
}

type fetchCase struct {
	name   string
	strict bool               // use the server that demands a client certificate
	opts   func(*Options)     // adjust the client's options
	cert   *CertificateSource // loaded first; a load error is the outcome
	req    func(*fetchEnv, *sandbox.Server) Request
	faults []sandbox.Fault
	// class is the expected error class; "" expects a token.
	class failure.Reason
	// noCall asserts the provider was not reached.
	noCall bool
	check  func(t *testing.T, r fetchResult)
}

type fetchResult struct {
	env      *fetchEnv
	srv      *sandbox.Server
	client   *Client
	req      Request
	tok      Token
	err      error
	t0       time.Time
	observed []int // status codes passed to Options.Observe
}

func respond(status int, body string, header map[string]string) []sandbox.Fault {
	return []sandbox.Fault{{Kind: sandbox.FaultRespond, Status: status, Body: []byte(body), Header: header}}
}

func (e *fetchEnv) run(t *testing.T, c fetchCase) fetchResult {
	t.Helper()
	srv := e.s
	if c.strict {
		srv = e.strict
	}
	srv.ClearFaults()
	defer srv.ClearFaults()
	for _, f := range c.faults {
		srv.Inject(f)
	}
	r := fetchResult{env: e, srv: srv, t0: e.clk.Now()}
	before := srv.TotalCalls()
	defer func() {
		if c.noCall && srv.TotalCalls() != before {
			t.Errorf("the provider was called %d times, want 0", srv.TotalCalls()-before)
		}
	}()
	var cert *tls.Certificate
	if c.cert != nil {
		var err error
		if cert, _, err = LoadClientCertificate(*c.cert, e.clk.Now()); err != nil {
			r.err = err
			return r
		}
	}
	var mu sync.Mutex
	o := Options{Clock: e.clk, Rand: fixedRand(0.5), AllowPrivateNetworks: true, Resolver: e.resolver,
		Observe: func(host string, status int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			r.observed = append(r.observed, status)
		}}
	if c.opts != nil {
		c.opts(&o)
	}
	r.client = NewClient(o)
	r.req = c.req(e, srv)
	if cert != nil {
		r.req.Certificate = cert
	}
	r.tok, r.err = r.client.Fetch(context.Background(), r.req)
	return r
}

func source(p12, certPEM, keyPEM []byte, pass string) *CertificateSource {
	return &CertificateSource{PKCS12: p12, CertificatePEM: certPEM, PrivateKeyPEM: keyPEM, Passphrase: []byte(pass)}
}

// expires asserts a token issued at the fake clock's instant and expiring d
// later, and that the sandbox accepts it.
func expires(d time.Duration) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		if !r.tok.IssuedAt.Equal(r.t0) {
			t.Errorf("IssuedAt = %v, want %v", r.tok.IssuedAt, r.t0)
		}
		if want := r.t0.Add(d); !r.tok.ExpiresAt.Equal(want) {
			t.Errorf("ExpiresAt = %v, want %v", r.tok.ExpiresAt, want)
		}
	}
}

func validToken(d time.Duration) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		expires(d)(t, r)
		if !r.srv.Valid(r.tok.Value) {
			t.Error("the sandbox does not accept the token")
		}
	}
}

// cooledDown asserts the 429's cool-down and that a second caller is held
// back locally for that long.
func cooledDown(retryAfter time.Duration, has bool) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		var rl *RateLimitedError
		if !errors.As(r.err, &rl) {
			t.Fatalf("err = %v, want *RateLimitedError", r.err)
		}
		if rl.Local || rl.StatusCode != 429 || rl.RetryAfter != retryAfter || rl.HasRetryAfter != has {
			t.Fatalf("got %+v; want RetryAfter %v, HasRetryAfter %v, not local", *rl, retryAfter, has)
		}
		host, _ := HostOf(r.req.URL)
		if want, got := r.t0.Add(retryAfter), r.client.HoldUntil(host); retryAfter > 0 && !got.Equal(want) {
			t.Fatalf("HoldUntil = %v, want %v", got, want)
		}
		if retryAfter == 0 {
			return
		}
		calls := r.srv.TotalCalls()
		_, err := r.client.Fetch(context.Background(), r.req)
		if !errors.As(err, &rl) || !rl.Local || rl.RetryAfter != retryAfter {
			t.Fatalf("second call: err = %v, want a local RateLimitedError for %v", err, retryAfter)
		}
		if r.srv.TotalCalls() != calls {
			t.Fatal("the second call reached the provider during the cool-down")
		}
	}
}

func status(code int) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		var got int
		var (
			tr *TransientError
			ic *InvalidCredentialsError
			ir *InvalidResponseError
		)
		switch {
		case errors.As(r.err, &tr):
			got = tr.StatusCode
		case errors.As(r.err, &ic):
			got = ic.StatusCode
		case errors.As(r.err, &ir):
			got = ir.StatusCode
		}
		if got != code {
			t.Fatalf("StatusCode = %d, want %d (err: %v)", got, code, r.err)
		}
	}
}

func oauthError(code string) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		var ic *InvalidCredentialsError
		if !errors.As(r.err, &ic) || ic.OAuthError != code {
			t.Fatalf("err = %#v, want OAuthError %q", r.err, code)
		}
	}
}

func timedOut(t *testing.T, r fetchResult) {
	t.Helper()
	var tr *TransientError
	if !errors.As(r.err, &tr) || !tr.Timeout || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", r.err)
	}
}

func errorMentions(s string) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		if !strings.Contains(r.err.Error(), s) {
			t.Fatalf("error %q does not mention %q", r.err, s)
		}
	}
}

func all(checks ...func(*testing.T, fetchResult)) func(*testing.T, fetchResult) {
	return func(t *testing.T, r fetchResult) {
		t.Helper()
		for _, c := range checks {
			c(t, r)
		}
	}
}

func flowA(e *fetchEnv, s *sandbox.Server) Request { return e.flowA(s) }
func flowB(e *fetchEnv, s *sandbox.Server) Request { return e.flowB(s) }
func flowC(e *fetchEnv, s *sandbox.Server) Request { return e.flowC(s) }

// withBody is flow B against a canned 200 answer.
func withMapping(m ResponseMapping) func(*fetchEnv, *sandbox.Server) Request {
	return func(e *fetchEnv, s *sandbox.Server) Request {
		r := e.flowB(s)
		r.Response = m
		return r
	}
}

func withTimeout(d time.Duration) func(*fetchEnv, *sandbox.Server) Request {
	return func(e *fetchEnv, s *sandbox.Server) Request {
		r := e.flowB(s)
		r.Timeout = d
		return r
	}
}

func fetchCases(e *fetchEnv) []fetchCase {
	fx := e.fx
	const opaque = secretToken // not a JWT: the expiry must come from the body
	tok := func(rest string) string { return `{"access_token":"` + opaque + `"` + rest + `}` }
	pastDate := e.clk.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	futureDate := e.clk.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	private := func(o *Options) { o.AllowPrivateNetworks = false }
	testHost := func(name string) func(*fetchEnv, *sandbox.Server) Request {
		return func(e *fetchEnv, s *sandbox.Server) Request {
			r := e.flowB(s)
			r.URL = "https://" + name + e.port() + sandbox.PathFlowB + "?api_key=" + secretQuery
			return r
		}
	}
	otherClient, err := e.other.IssueClient("stranger", sandbox.KeyECDSA, time.Time{}, time.Time{})
	if err != nil {
		panic(err)
	}

	return []fetchCase{
		// Success paths, expiry against the injected clock.
		{name: "flow A PKCS#12 legacy", req: flowA, cert: source(fx.p12Legacy, nil, nil, testPassphrase), check: validToken(5 * time.Minute)},
		{name: "flow A PKCS#12 modern", req: flowA, cert: source(fx.p12Modern, nil, nil, testPassphrase), check: validToken(5 * time.Minute)},
		{name: "flow A PEM PKCS#1", req: flowA, cert: source(nil, fx.rsa.CertPEM, fx.pkcs1, ""), check: validToken(5 * time.Minute)},
		{name: "flow A PEM PKCS#8", req: flowA, cert: source(nil, fx.ec.CertPEM, fx.ec.KeyPEM, ""), check: validToken(5 * time.Minute)},
		{name: "flow A PEM EC", req: flowA, cert: source(nil, fx.ec.CertPEM, fx.ecKey, ""), check: validToken(5 * time.Minute)},
		{name: "flow A PEM encrypted PKCS#8", req: flowA, cert: source(nil, fx.ec.CertPEM, fx.encPKCS8, testPassphrase), check: validToken(5 * time.Minute)},
		{name: "flow A on the strict server", strict: true, req: flowA, cert: source(fx.p12Modern, nil, nil, testPassphrase), check: validToken(5 * time.Minute)},
		{name: "flow B", req: flowB, check: all(validToken(10*time.Minute), func(t *testing.T, r fetchResult) {
			if len(r.observed) != 1 || r.observed[0] != 200 {
				t.Errorf("observed %v, want [200]", r.observed)
			}
		})},
		{name: "flow C answers 201", req: flowC, check: validToken(5 * time.Minute)},
		{name: "a test host name resolved to loopback, private networks allowed", req: testHost("bank.test"), check: validToken(10 * time.Minute)},

		// Response bodies.
		{name: "malformed JSON", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultMalformedJSON}}, class: failure.InvalidResponse},
		{name: "HTML error page", req: flowB, class: failure.InvalidResponse,
			faults: respond(200, "<html><body>Error for "+secretUser+" / "+secretClient+"</body></html>", map[string]string{"Content-Type": "text/html"})},
		{name: "HTML 502 page", req: flowB, class: failure.ProviderUnavailable, check: status(502),
			faults: respond(502, "<html>bad gateway "+secretClient+"</html>", nil)},
		{name: "empty object", req: flowB, faults: respond(200, `{}`, nil), class: failure.InvalidResponse},
		{name: "expires_in 300", req: flowB, faults: respond(200, tok(`,"expires_in":300`), nil), check: expires(300 * time.Second)},
		{name: `expires_in "300"`, req: flowB, faults: respond(200, tok(`,"expires_in":"300"`), nil), check: expires(300 * time.Second)},
		{name: "expires_in 300.5", req: flowB, faults: respond(200, tok(`,"expires_in":300.5`), nil), check: expires(300500 * time.Millisecond)},
		{name: "expires_in missing, nothing else known", req: flowB, faults: respond(200, tok(``), nil), class: failure.InvalidResponse},
		{name: "expires_in missing, default lifetime", req: withMapping(ResponseMapping{DefaultLifetime: 2 * time.Minute}), faults: respond(200, tok(``), nil), check: expires(2 * time.Minute)},
		{name: "expires_in null, nothing else known", req: flowB, faults: respond(200, tok(`,"expires_in":null`), nil), class: failure.InvalidResponse},
		{name: "expires_in null, default lifetime", req: withMapping(ResponseMapping{DefaultLifetime: 2 * time.Minute}), faults: respond(200, tok(`,"expires_in":null`), nil), check: expires(2 * time.Minute)},
		{name: "expires_in 0", req: flowB, faults: respond(200, tok(`,"expires_in":0`), nil), class: failure.InvalidResponse},
		{name: "expires_in -5", req: flowB, faults: respond(200, tok(`,"expires_in":-5`), nil), class: failure.InvalidResponse},
		{name: "expires_in 1e11 capped at a year", req: flowB, faults: respond(200, tok(`,"expires_in":1e11`), nil), check: expires(maxLifetime)},
		{name: "expires_in true", req: flowB, faults: respond(200, tok(`,"expires_in":true`), nil), class: failure.InvalidResponse},
		{name: `expires_in "5m"`, req: flowB, faults: respond(200, tok(`,"expires_in":"5m"`), nil), class: failure.InvalidResponse},
		{name: "expiresAt in the past", req: flowC, class: failure.InvalidResponse,
			faults: respond(201, `{"accessToken":"`+opaque+`","expiresAt":"`+e.clk.Now().Add(-time.Minute).UTC().Format(time.RFC3339)+`"}`, nil)},
		{name: "expiresAt unparseable", req: flowC, class: failure.InvalidResponse,
			faults: respond(201, `{"accessToken":"`+opaque+`","expiresAt":"tomorrow at noon"}`, nil)},
		{name: "expiresAt with offset, no fraction", req: flowC, check: expires(5 * time.Minute),
			faults: respond(201, `{"accessToken":"`+opaque+`","expiresAt":"`+e.clk.Now().Add(5*time.Minute).In(time.FixedZone("", 2*3600)).Format(time.RFC3339)+`"}`, nil)},
		{name: "no token field", req: flowB, faults: respond(200, `{"token":"`+opaque+`","expires_in":300}`, nil), class: failure.InvalidResponse},
		{name: "token with CR/LF", req: flowB, class: failure.InvalidResponse, check: errorMentions("control characters"),
			faults: respond(200, `{"access_token":"`+secretToken+`\r\nX-Injected: `+secretToken+`","expires_in":300}`, nil)},
		{name: "token over 64 KiB", req: flowB, class: failure.InvalidResponse,
			faults: respond(200, `{"access_token":"`+strings.Repeat(secretToken, MaxTokenBytes/len(secretToken)+1)+`","expires_in":300}`, nil)},
		{name: "200 with invalid_client", req: flowB, faults: respond(200, `{"error":"invalid_client"}`, nil), class: failure.InvalidCredentials, check: oauthError("invalid_client")},
		{name: "200 with a non-standard error echoing the secret", req: flowB, class: failure.InvalidCredentials, check: oauthError(""),
			faults: respond(200, `{"error":"client `+secretClient+` unknown"}`, nil)},

		// Credentials.
		{name: "400 invalid_client", req: flowB, class: failure.InvalidCredentials, check: all(status(400), oauthError("invalid_client")),
			faults: respond(400, `{"error":"invalid_client","error_description":"bad secret `+secretClient+`"}`, nil)},
		{name: "401 invalid_client from a wrong secret", class: failure.InvalidCredentials, check: all(status(401), oauthError("invalid_client")),
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.Basic.Password = secretWrongPassword
				return r
			}},
		{name: "flow A without a client certificate", req: flowA, class: failure.InvalidCredentials, check: status(401)},
		{name: "PKCS#12 wrong passphrase", req: flowA, cert: source(fx.p12Modern, nil, nil, "wrong-"+testPassphrase), class: failure.InvalidClientCertificate, noCall: true},
		{name: "PKCS#12 without a key", req: flowA, cert: source(fx.trustStore, nil, nil, testPassphrase), class: failure.InvalidClientCertificate, noCall: true},
		{name: "PEM key that does not match", req: flowA, cert: source(nil, fx.ec.CertPEM, fx.rsa.KeyPEM, ""), class: failure.InvalidClientCertificate, noCall: true},
		{name: "encrypted PEM key without passphrase", req: flowA, cert: source(nil, fx.ec.CertPEM, fx.encPKCS8, ""), class: failure.InvalidClientCertificate, noCall: true},
		{name: "expired client certificate", req: flowA, cert: source(fx.p12Expired, nil, nil, testPassphrase), class: failure.InvalidClientCertificate, noCall: true},

		// TLS.
		{name: "server CA not trusted", class: failure.ProviderUnavailable, noCall: true, check: errorMentions("untrusted"),
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.RootCAs, r.RootCAsPEM = e.other.Pool(), e.other.CertPEM
				return r
			}},
		{name: "server CA not in the system roots", class: failure.ProviderUnavailable, noCall: true, check: errorMentions("untrusted"),
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.RootCAs = nil
				return r
			}},
		{name: "server wants a client certificate we did not send", strict: true, req: flowB, class: failure.InvalidCredentials,
			noCall: true, check: errorMentions("requires a client certificate")},
		{name: "server rejects a client certificate from another CA", strict: true, req: flowA, class: failure.InvalidCredentials,
			noCall: true, check: errorMentions("rejected the client certificate"),
			cert: source(nil, otherClient.CertPEM, otherClient.KeyPEM, "")},

		// Slow and huge answers.
		{name: "server never sends headers", req: withTimeout(300 * time.Millisecond), faults: []sandbox.Fault{{Kind: sandbox.FaultHang}},
			class: failure.ProviderUnavailable, check: timedOut},
		{name: "slow body past the timeout", req: withTimeout(400 * time.Millisecond), faults: []sandbox.Fault{{Kind: sandbox.FaultSlowBody, Delay: 20 * time.Millisecond}},
			class: failure.ProviderUnavailable, check: timedOut},
		{name: "100 MB body", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultHugeBody}}, class: failure.InvalidResponse, check: errorMentions("1 MiB")},

		// Redirects are never followed.
		{name: "302 to another host", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultRedirect, Status: 302}}, class: failure.InvalidResponse,
			check: all(status(302), func(t *testing.T, r fetchResult) {
				if r.env.resolver.wasAsked("other.example.invalid") {
					t.Error("the redirect target was looked up")
				}
			})},
		{name: "307 to another host", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultRedirect, Status: 307}}, class: failure.InvalidResponse, check: status(307)},

		// Policy.
		{name: "http URL", class: failure.InvalidSpec, noCall: true,
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.URL = strings.Replace(r.URL, "https://", "http://", 1)
				return r
			}},
		{name: "host resolving to 127.0.0.1, private networks denied", opts: private, req: testHost("bank.test"), class: failure.InvalidSpec, noCall: true,
			check: all(errorMentions("loopback"), func(t *testing.T, r fetchResult) {
				if len(r.observed) != 1 || r.observed[0] != 0 {
					t.Errorf("observed %v, want [0]", r.observed)
				}
			})},
		{name: "host resolving to 169.254.169.254, private networks denied", opts: private, req: testHost("meta.test"), class: failure.InvalidSpec, noCall: true,
			check: errorMentions("link-local")},
		{name: "IP literal 127.0.0.1, private networks denied", opts: private, req: flowB, class: failure.InvalidSpec, noCall: true},
		{name: "host not in the allowed hosts", opts: func(o *Options) { o.AllowedHosts = []string{"*.example.com"} }, req: flowB,
			class: failure.InvalidSpec, noCall: true},
		{name: "form and json both set", class: failure.InvalidSpec, noCall: true,
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.JSON = []Field{{Name: "clientSecret", Value: secretClient}}
				return r
			}},
		{name: "header value with a newline", class: failure.InvalidSpec, noCall: true,
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.Headers = []Field{{Name: "X-Api-Key", Value: secretHeader + "\r\nX-Evil: 1"}}
				return r
			}},

		// Throttling: fixed rand 0.5 gives +10 % on a Retry-After and half
		// the first backoff ceiling (2 s) without one.
		{name: "429 Retry-After 7", req: flowB, class: failure.RateLimited, check: cooledDown(7700*time.Millisecond, true),
			faults: respond(429, `{"error":"slow down"}`, map[string]string{"Retry-After": "7"})},
		{name: "429 Retry-After HTTP-date", req: flowB, class: failure.RateLimited, check: cooledDown(33*time.Second, true),
			faults: respond(429, ``, map[string]string{"Retry-After": futureDate})},
		{name: "429 Retry-After past date", req: flowB, class: failure.RateLimited, check: cooledDown(0, true),
			faults: respond(429, ``, map[string]string{"Retry-After": pastDate})},
		{name: "429 Retry-After garbage", req: flowB, class: failure.RateLimited, check: cooledDown(time.Second, false),
			faults: respond(429, ``, map[string]string{"Retry-After": "later, " + secretToken})},
		{name: "429 without Retry-After", req: flowB, class: failure.RateLimited, check: cooledDown(time.Second, false),
			faults: []sandbox.Fault{{Kind: sandbox.FaultStatus, Status: 429}}},

		// Provider errors.
		{name: "connection refused", class: failure.ProviderUnavailable, noCall: true, check: errorMentions("connection refused"),
			req: func(e *fetchEnv, s *sandbox.Server) Request {
				r := e.flowB(s)
				r.URL = "https://" + closedPort() + sandbox.PathFlowB + "?api_key=" + secretQuery
				return r
			}},
		{name: "500", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultStatus, Status: 500}}, class: failure.ProviderUnavailable, check: status(500)},
		{name: "503", req: flowB, faults: []sandbox.Fault{{Kind: sandbox.FaultStatus, Status: 503, Header: map[string]string{"Retry-After": "5"}}},
			class: failure.ProviderUnavailable, check: status(503)},
		{name: "408", req: flowB, faults: respond(408, ``, nil), class: failure.ProviderUnavailable, check: status(408)},
		{name: "404", req: flowB, faults: respond(404, `not found: `+secretQuery, nil), class: failure.InvalidResponse, check: status(404)},
	}
}

func TestFetch(t *testing.T) {
	e := newFetchEnv(t)
	for _, c := range fetchCases(e) {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(t, c)
			if c.class == "" {
				if r.err != nil {
					t.Fatalf("unexpected error: %v", r.err)
				}
			} else {
				mustClass(t, r.err, c.class)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// TestFetchErrorsCarryNoSecrets runs every failure of the table and looks
// for each known secret in every rendering of the error.
func TestFetchErrorsCarryNoSecrets(t *testing.T) {
	e := newFetchEnv(t)
	failures := 0
	for _, c := range fetchCases(e) {
		if c.class == "" {
			continue
		}
		failures++
		t.Run(c.name, func(t *testing.T) {
			r := e.run(t, c)
			if r.err == nil {
				t.Fatal("expected an error")
			}
			assertNoSecrets(t, r.err)
		})
	}
	if failures < 40 {
		t.Fatalf("only %d failure cases; the table lost rows", failures)
	}
}

func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		s := sprintf(format, err)
		for _, secret := range allSecrets {
			if strings.Contains(s, secret) {
				t.Fatalf("%s of the error contains a secret: %s", format, s)
			}
		}
		if strings.Contains(s, "api_key") || strings.Contains(s, sandbox.PathFlowB) || strings.Contains(s, sandbox.PathFlowA) {
			t.Fatalf("%s of the error contains the URL path or query: %s", format, s)
		}
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
