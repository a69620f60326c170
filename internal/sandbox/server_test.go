package sandbox

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// A fixed instant with a non-zero sub-second part, so expiresAt's
	// fractional seconds are exercised.
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	s      *Server
	clock  *fakeClock
	cert   *ClientCert // a valid flow-A client certificate
	client *http.Client
}

const (
	testID     = "m2m-user"
	testSecret = "s3c+r/t=:x" // characters that URL-encoding would change
)

func newFixture(t *testing.T, h2 bool, mutate ...func(*Options)) *fixture {
	t.Helper()
	clock := newFakeClock()
	opts := Options{Now: clock.Now}
	for _, m := range mutate {
		m(&opts)
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.AddClient(testID, testSecret)
	cert, err := s.CA.IssueClient(testID, KeyECDSA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, clock: clock, cert: cert, client: newClient(t, s, h2, cert)}
}

// newClient returns a client that trusts the sandbox CA, presents cert (if
// any) and, like the operator must, never follows redirects.
func newClient(t *testing.T, s *Server, h2 bool, cert *ClientCert) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.CA.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLSCertificate()}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type reply struct {
	status int
	header http.Header
	body   string
	proto  string
}

func do(t *testing.T, c *http.Client, req *http.Request) reply {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return reply{resp.StatusCode, resp.Header, string(b), resp.Proto}
}

func reqA(t *testing.T, s *Server, user, pass string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+PathFlowA, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	return req
}

func reqB(t *testing.T, s *Server, key, secret, form string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+PathFlowB, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if key != "" || secret != "" {
		req.SetBasicAuth(key, secret)
	}
	return req
}

func reqC(t *testing.T, s *Server, body string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+PathFlowC, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func credsC(id, secret string) string {
	b, _ := json.Marshal(map[string]string{"clientId": id, "clientSecret": secret})
	return string(b)
}

const jwtRE = `([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)`

var (
	shapeA = regexp.MustCompile(`^\{"access_token":"` + jwtRE + `","expires_in":"(\d+)"\}$`)
	shapeB = regexp.MustCompile(`^\{"access_token":"` + jwtRE + `","token_type":"Bearer","expires_in":(\d+)\}$`)
	shapeC = regexp.MustCompile(`^\{"accessToken":"` + jwtRE + `","expiresAt":"([^"]+)"\}$`)
)

const invalidClient = `{"error":"invalid_client"}`

// forBothProtocols runs f over HTTP/1.1 and HTTP/2, since clients differ in
// which they negotiate and faults behave differently on each.
func forBothProtocols(t *testing.T, f func(t *testing.T, h2 bool)) {
	for _, h2 := range []bool{false, true} {
		name := "HTTP1"
		if h2 {
			name = "HTTP2"
		}
		t.Run(name, func(t *testing.T) { f(t, h2) })
	}
}

func TestFlowA(t *testing.T) {
	forBothProtocols(t, func(t *testing.T, h2 bool) {
		fx := newFixture(t, h2)
		r := do(t, fx.client, reqA(t, fx.s, testID, testSecret))
		if r.status != http.StatusOK {
			t.Fatalf("status %d, body %s", r.status, r.body)
		}
		if want := "HTTP/1.1"; h2 {
			if r.proto != "HTTP/2.0" {
				t.Errorf("proto %s, want HTTP/2.0", r.proto)
			}
		} else if r.proto != want {
			t.Errorf("proto %s, want %s", r.proto, want)
		}
		m := shapeA.FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("body %s does not have flow A's shape", r.body)
		}
		if m[2] != "300" {
			t.Errorf("expires_in %q, want \"300\"", m[2])
		}
		var generic map[string]any
		if err := json.Unmarshal([]byte(r.body), &generic); err != nil {
			t.Fatal(err)
		}
		if _, ok := generic["expires_in"].(string); !ok {
			t.Errorf("expires_in is %T, want a JSON string", generic["expires_in"])
		}
		checkToken(t, fx, m[1], 300*time.Second)
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q", got)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control %q", got)
		}
	})
}

// checkToken asserts token is a valid sandbox JWT for testID with lifetime.
func checkToken(t *testing.T, fx *fixture, token string, lifetime time.Duration) {
	t.Helper()
	if !fx.s.Valid(token) {
		t.Error("Valid(token) = false for a fresh token")
	}
	c, err := fx.s.Claims(token)
	if err != nil {
		t.Fatal(err)
	}
	now := fx.clock.Now()
	if c.Subject != testID || c.IssuedAt != now.Unix() || c.Expiry != now.Add(lifetime).Unix() || len(c.ID) < 16 {
		t.Errorf("claims %+v, want sub %s, iat %d, exp %d and a jti", c, testID, now.Unix(), now.Add(lifetime).Unix())
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "ES256" || h["typ"] != "JWT" {
		t.Errorf("JWT header %s", hdr)
	}
}

func TestFlowB(t *testing.T) {
	fx := newFixture(t, false)
	r := do(t, fx.client, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials"))
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	m := shapeB.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("body %s does not have flow B's shape", r.body)
	}
	if m[2] != "600" {
		t.Errorf("expires_in %s, want 600", m[2])
	}
	var generic map[string]any
	if err := json.Unmarshal([]byte(r.body), &generic); err != nil {
		t.Fatal(err)
	}
	if _, ok := generic["expires_in"].(float64); !ok {
		t.Errorf("expires_in is %T, want a JSON number", generic["expires_in"])
	}
	checkToken(t, fx, m[1], 600*time.Second)

	// Flow B needs no client certificate.
	anon := newClient(t, fx.s, false, nil)
	if r := do(t, anon, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials")); r.status != http.StatusOK {
		t.Errorf("without a client certificate: status %d", r.status)
	}

	// The provider wants key:secret as is; a client that URL-encodes them
	// first (as RFC 6749 §2.3.1 suggests) is rejected.
	enc := reqB(t, fx.s, url.QueryEscape(testID), url.QueryEscape(testSecret), "grant_type=client_credentials")
	if r := do(t, fx.client, enc); r.status != http.StatusUnauthorized || r.body != invalidClient {
		t.Errorf("URL-encoded credentials: %d %s, want 401 %s", r.status, r.body, invalidClient)
	}
}

func TestFlowC(t *testing.T) {
	fx := newFixture(t, false)
	r := do(t, fx.client, reqC(t, fx.s, credsC(testID, testSecret)))
	if r.status != http.StatusCreated {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	m := shapeC.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("body %s does not have flow C's shape", r.body)
	}
	first := m[1]
	checkToken(t, fx, first, 5*time.Minute)
	if want := "2030-01-02T03:09:05.678Z"; m[2] != want {
		t.Errorf("expiresAt %s, want %s", m[2], want)
	}
	if at, err := time.Parse(time.RFC3339Nano, m[2]); err != nil || !at.Equal(fx.clock.Now().Add(5*time.Minute)) {
		t.Errorf("expiresAt %s does not parse as RFC 3339 to now+5m: %v", m[2], err)
	}

	// A second token revokes the first.
	fx.clock.Advance(time.Second)
	r = do(t, fx.client, reqC(t, fx.s, credsC(testID, testSecret)))
	m = shapeC.FindStringSubmatch(r.body)
	if r.status != http.StatusCreated || m == nil {
		t.Fatalf("second call: %d %s", r.status, r.body)
	}
	if fx.s.Valid(first) {
		t.Error("first flow-C token still valid after a re-issue")
	}
	if !fx.s.Valid(m[1]) {
		t.Error("second flow-C token not valid")
	}

	// Another client's re-issue does not touch ours.
	fx.s.AddClient("other", "pw")
	do(t, fx.client, reqC(t, fx.s, credsC("other", "pw")))
	if !fx.s.Valid(m[1]) {
		t.Error("another client's re-issue revoked our token")
	}
}

func TestValid(t *testing.T) {
	fx := newFixture(t, false)
	r := do(t, fx.client, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials"))
	token := shapeB.FindStringSubmatch(r.body)[1]
	parts := strings.Split(token, ".")

	// Flow A/B tokens survive re-issues.
	do(t, fx.client, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials"))
	if !fx.s.Valid(token) {
		t.Error("flow-B token invalid after another flow-B issue")
	}

	forged, _ := json.Marshal(Claims{Subject: "admin", Expiry: fx.clock.Now().Add(time.Hour).Unix()})
	other := newFixture(t, false)
	otherToken := shapeB.FindStringSubmatch(do(t, other.client, reqB(t, other.s, testID, testSecret, "grant_type=client_credentials")).body)[1]
	for name, tok := range map[string]string{
		"empty":         "",
		"garbage":       "abc",
		"forged claims": parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2],
		"alg none":      base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		"other server":  otherToken,
	} {
		if fx.s.Valid(tok) {
			t.Errorf("%s: Valid = true", name)
		}
	}

	fx.clock.Advance(599 * time.Second)
	if !fx.s.Valid(token) {
		t.Error("token invalid 1s before exp")
	}
	fx.clock.Advance(time.Second)
	if fx.s.Valid(token) {
		t.Error("token valid at exp")
	}
}

func TestSetLifetime(t *testing.T) {
	fx := newFixture(t, false, func(o *Options) { o.LifetimeA = 90 * time.Second })
	fx.s.SetLifetime("B", 30*time.Second)
	fx.s.SetLifetime("c", 2*time.Second)
	if m := shapeA.FindStringSubmatch(do(t, fx.client, reqA(t, fx.s, testID, testSecret)).body); m == nil || m[2] != "90" {
		t.Errorf("flow A with LifetimeA 90s: %v", m)
	}
	if m := shapeB.FindStringSubmatch(do(t, fx.client, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials")).body); m == nil || m[2] != "30" {
		t.Errorf("flow B after SetLifetime 30s: %v", m)
	}
	if m := shapeC.FindStringSubmatch(do(t, fx.client, reqC(t, fx.s, credsC(testID, testSecret))).body); m == nil || m[2] != "2030-01-02T03:04:07.678Z" {
		t.Errorf("flow C after SetLifetime 2s: %v", m)
	}
	defer func() {
		if recover() == nil {
			t.Error("SetLifetime(\"D\") did not panic")
		}
	}()
	fx.s.SetLifetime("D", time.Second)
}

func TestRejections(t *testing.T) {
	fx := newFixture(t, false)
	s := fx.s
	anon := newClient(t, s, false, nil)
	getB := reqB(t, s, testID, testSecret, "")
	getB.Method = http.MethodGet
	jsonB := reqB(t, s, testID, testSecret, `{"grant_type":"client_credentials"}`)
	jsonB.Header.Set("Content-Type", "application/json")
	plainC := reqC(t, s, credsC(testID, testSecret))
	plainC.Header.Set("Content-Type", "text/plain")
	postA := reqA(t, s, testID, testSecret)
	postA.Method = http.MethodPost

	for _, tc := range []struct {
		name   string
		client *http.Client
		req    *http.Request
		status int
		body   string
	}{
		{"A wrong password", fx.client, reqA(t, s, testID, "nope"), 401, invalidClient},
		{"A unknown user", fx.client, reqA(t, s, "nobody", testSecret), 401, invalidClient},
		{"A no Basic", fx.client, reqA(t, s, "", ""), 401, invalidClient},
		{"A without client certificate", anon, reqA(t, s, testID, testSecret), 401, invalidClient},
		{"A POST", fx.client, postA, 405, `{"error":"invalid_request"}`},
		{"B wrong secret", fx.client, reqB(t, s, testID, "nope", "grant_type=client_credentials"), 401, invalidClient},
		{"B no Basic", fx.client, reqB(t, s, "", "", "grant_type=client_credentials&client_id="+testID), 401, invalidClient},
		{"B no grant_type", fx.client, reqB(t, s, testID, testSecret, "scope=x"), 400, `{"error":"invalid_request"}`},
		{"B JSON body", fx.client, jsonB, 400, `{"error":"invalid_request"}`},
		{"B other grant", fx.client, reqB(t, s, testID, testSecret, "grant_type=password"), 400, `{"error":"unsupported_grant_type"}`},
		{"B GET", fx.client, getB, 405, `{"error":"invalid_request"}`},
		{"C wrong secret", fx.client, reqC(t, s, credsC(testID, "nope")), 401, invalidClient},
		{"C unknown client", fx.client, reqC(t, s, credsC("nobody", "x")), 401, invalidClient},
		{"C malformed JSON", fx.client, reqC(t, s, `{"clientId":`), 400, `{"error":"invalid_request"}`},
		{"C missing secret", fx.client, reqC(t, s, `{"clientId":"m2m-user"}`), 400, `{"error":"invalid_request"}`},
		{"C snake_case", fx.client, reqC(t, s, `{"client_id":"m2m-user","client_secret":"x"}`), 400, `{"error":"invalid_request"}`},
		{"C text/plain", fx.client, plainC, 400, `{"error":"invalid_request"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.client, tc.req)
			if r.status != tc.status || r.body != tc.body {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.body)
			}
		})
	}
	if r := do(t, fx.client, reqA(t, s, testID, "nope")); r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 on a Basic flow without WWW-Authenticate")
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/elsewhere", nil)
	if r := do(t, fx.client, req); r.status != http.StatusNotFound {
		t.Errorf("unknown path: %d", r.status)
	}
}

func TestFlowACertificateChecks(t *testing.T) {
	fx := newFixture(t, false)
	foreignCA := newTestCA(t)
	foreign, err := foreignCA.IssueClient(testID, KeyRSA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := fx.s.CA.IssueClient(testID, KeyECDSA, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, err := fx.s.CA.IssueClient(testID, KeyRSA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, newClient(t, fx.s, false, rsaCert), reqA(t, fx.s, testID, testSecret)); r.status != http.StatusOK {
		t.Errorf("RSA client certificate: %d %s", r.status, r.body)
	}
	// Go's client only offers a certificate the server's CertificateRequest
	// names an issuer for, so the foreign one is withheld: plain 401.
	if r := do(t, newClient(t, fx.s, false, foreign), reqA(t, fx.s, testID, testSecret)); r.status != http.StatusUnauthorized || r.body != invalidClient {
		t.Errorf("foreign CA (withheld): %d %s", r.status, r.body)
	}
	// A certificate the server cannot verify, if sent anyway, fails the
	// handshake.
	for name, cc := range map[string]*ClientCert{"foreign CA": foreign, "expired": expired} {
		c := newClient(t, fx.s, false, nil)
		tc := cc.TLSCertificate()
		c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tc, nil
		}
		if resp, err := c.Do(reqA(t, fx.s, testID, testSecret)); err == nil {
			resp.Body.Close()
			t.Errorf("%s: request succeeded", name)
		}
	}
}

func TestRequireClientCertificate(t *testing.T) {
	fx := newFixture(t, false, func(o *Options) { o.RequireClientCertificate = true })
	if r := do(t, fx.client, reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials")); r.status != http.StatusOK {
		t.Errorf("flow B with certificate: %d %s", r.status, r.body)
	}
	anon := newClient(t, fx.s, false, nil)
	if resp, err := anon.Do(reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials")); err == nil {
		resp.Body.Close()
		t.Error("flow B without a certificate succeeded although the handshake requires one")
	}
}

func TestThrottle(t *testing.T) {
	fx := newFixture(t, false)
	okB := func() *http.Request { return reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials") }

	fx.s.SetThrottle(2, "7")
	for i := range 2 {
		if r := do(t, fx.client, okB()); r.status != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	r := do(t, fx.client, okB())
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "7" {
		t.Fatalf("over the limit: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	// The budget is per IP, not per flow or client.
	if r := do(t, fx.client, reqC(t, fx.s, credsC(testID, testSecret))); r.status != http.StatusTooManyRequests {
		t.Errorf("flow C over the limit: %d", r.status)
	}
	fx.clock.Advance(time.Minute)
	if r := do(t, fx.client, okB()); r.status != http.StatusOK {
		t.Errorf("next window: %d", r.status)
	}

	fx.s.SetThrottle(1, "")
	do(t, fx.client, okB())
	r = do(t, fx.client, okB())
	if _, has := r.header["Retry-After"]; r.status != http.StatusTooManyRequests || has {
		t.Errorf("without Retry-After: %d, header %v", r.status, r.header)
	}

	fx.s.SetThrottle(0, "")
	for range 3 {
		if r := do(t, fx.client, okB()); r.status != http.StatusOK {
			t.Fatalf("throttle disabled: %d", r.status)
		}
	}
}

func TestCalls(t *testing.T) {
	fx := newFixture(t, false)
	s := fx.s
	do(t, fx.client, reqA(t, s, testID, testSecret))
	do(t, fx.client, reqB(t, s, testID, "wrong", "grant_type=client_credentials"))
	do(t, fx.client, reqC(t, s, credsC(testID, testSecret)))
	do(t, fx.client, reqC(t, s, credsC("nobody", "x")))
	do(t, fx.client, reqB(t, s, "", "", "grant_type=client_credentials"))
	do(t, fx.client, reqC(t, s, `not json`))
	s.Inject(Fault{Kind: FaultStatus, Status: 503})
	do(t, fx.client, reqA(t, s, testID, testSecret))
	s.SetThrottle(1, "")
	do(t, fx.client, reqA(t, s, testID, testSecret))
	do(t, fx.client, reqA(t, s, testID, testSecret)) // throttled
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/calls", nil)
	do(t, fx.client, req) // not a token path: not counted

	want := map[string]int{testID: 6, "nobody": 1, "": 2}
	for id, n := range want {
		if got := s.Calls(id); got != n {
			t.Errorf("Calls(%q) = %d, want %d", id, got, n)
		}
	}
	if got := s.TotalCalls(); got != 9 {
		t.Errorf("TotalCalls = %d, want 9", got)
	}
	if got := s.AllCalls(); len(got) != len(want) {
		t.Errorf("AllCalls = %v", got)
	}
	s.ResetCalls()
	if s.TotalCalls() != 0 || s.Calls(testID) != 0 {
		t.Error("ResetCalls left counts behind")
	}
}

func TestFaults(t *testing.T) {
	forBothProtocols(t, func(t *testing.T, h2 bool) {
		fx := newFixture(t, h2)
		s := fx.s
		okB := func() *http.Request { return reqB(t, s, testID, testSecret, "grant_type=client_credentials") }

		t.Run("Respond", func(t *testing.T) {
			date := "Wed, 21 Oct 2015 07:28:00 GMT"
			s.Inject(Fault{Kind: FaultRespond, Status: 429, Header: map[string]string{"Retry-After": date}, Body: []byte("<html>slow down</html>")})
			r := do(t, fx.client, okB())
			if r.status != 429 || r.header.Get("Retry-After") != date || r.body != "<html>slow down</html>" {
				t.Errorf("got %d %v %q", r.status, r.header, r.body)
			}
		})

		t.Run("Status twice, then success", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultStatus, Status: 503, Times: 2, Header: map[string]string{"Retry-After": "1"}})
			for range 2 {
				r := do(t, fx.client, okB())
				if r.status != 503 || r.body != `{"error":"temporarily_unavailable"}` || r.header.Get("Retry-After") != "1" {
					t.Errorf("got %d %q", r.status, r.body)
				}
			}
			if r := do(t, fx.client, okB()); r.status != 200 {
				t.Errorf("after the fault: %d", r.status)
			}
		})

		t.Run("in order, unlimited until cleared", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultStatus, Status: 500})
			s.Inject(Fault{Kind: FaultStatus, Status: 502, Times: -1})
			want := []int{500, 502, 502, 502}
			for i, w := range want {
				if r := do(t, fx.client, reqC(t, s, credsC(testID, testSecret))); r.status != w {
					t.Errorf("request %d: %d, want %d", i, r.status, w)
				}
			}
			s.ClearFaults()
			if r := do(t, fx.client, okB()); r.status != 200 {
				t.Errorf("after ClearFaults: %d", r.status)
			}
		})

		t.Run("Hang", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultHang})
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			resp, err := fx.client.Do(okB().WithContext(ctx))
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v, want a deadline", err)
			}
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("returned after %v", d)
			}
			if r := do(t, fx.client, okB()); r.status != 200 {
				t.Errorf("after the hang: %d", r.status)
			}
		})

		t.Run("Hang with Delay answers late", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultHang, Delay: 150 * time.Millisecond})
			start := time.Now()
			r := do(t, fx.client, reqA(t, s, testID, testSecret))
			if r.status != 200 || shapeA.FindStringSubmatch(r.body) == nil {
				t.Errorf("got %d %s", r.status, r.body)
			}
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("answered after %v", d)
			}
		})

		t.Run("SlowBody", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultSlowBody, Delay: time.Millisecond})
			start := time.Now()
			r := do(t, fx.client, reqC(t, s, credsC(testID, testSecret)))
			if r.status != 201 || shapeC.FindStringSubmatch(r.body) == nil {
				t.Errorf("got %d %s", r.status, r.body)
			}
			if d, floor := time.Since(start), time.Duration(len(r.body))*time.Millisecond; d < floor {
				t.Errorf("body of %d bytes took %v", len(r.body), d)
			}

			// A whole-call timeout catches the dribble mid-body.
			s.Inject(Fault{Kind: FaultSlowBody, Delay: 50 * time.Millisecond})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			resp, err := fx.client.Do(okB().WithContext(ctx))
			if err != nil {
				t.Fatalf("headers should arrive at once: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
			if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("read err %v, want a deadline", err)
			}
		})

		t.Run("HugeBody", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultHugeBody})
			resp, err := fx.client.Do(okB())
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.ContentLength != -1 {
				t.Errorf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
			}
			const limit = 1 << 20
			n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, limit+1))
			if err != nil || n != limit+1 {
				t.Errorf("read %d bytes, err %v; want more than %d", n, err, limit)
			}
			resp.Body.Close()
			if r := do(t, fx.client, okB()); r.status != 200 {
				t.Errorf("after the huge body: %d", r.status)
			}
		})

		t.Run("MalformedJSON", func(t *testing.T) {
			s.Inject(Fault{Kind: FaultMalformedJSON})
			r := do(t, fx.client, okB())
			if r.status != 200 || r.body != `{"access_token": "abc` {
				t.Errorf("got %d %q", r.status, r.body)
			}
		})

		t.Run("Redirect", func(t *testing.T) {
			for _, tc := range []struct{ status, want int }{{0, 302}, {307, 307}, {302, 302}} {
				s.Inject(Fault{Kind: FaultRedirect, Status: tc.status})
				r := do(t, fx.client, okB())
				if r.status != tc.want || r.header.Get("Location") != "https://other.example.invalid/steal" {
					t.Errorf("Status %d: got %d Location %q", tc.status, r.status, r.header.Get("Location"))
				}
			}
		})
	})
}

// TestCloseEndsWaitingHandlers: Close must not wait on a hung request, a
// dribbling body or a client that stopped reading a huge body.
func TestCloseEndsWaitingHandlers(t *testing.T) {
	forBothProtocols(t, func(t *testing.T, h2 bool) {
		for _, f := range []Fault{
			{Kind: FaultHang},
			{Kind: FaultSlowBody, Delay: time.Second},
			{Kind: FaultHugeBody},
		} {
			t.Run(f.Kind.String(), func(t *testing.T) {
				fx := newFixture(t, h2)
				fx.s.Inject(f)
				done := make(chan error, 1)
				go func() {
					req := reqB(t, fx.s, testID, testSecret, "grant_type=client_credentials")
					resp, err := fx.client.Do(req)
					if err == nil {
						// Read a little, then stall like a stuck client; the
						// read ends with an error once the server cuts us off.
						_, _ = io.ReadFull(resp.Body, make([]byte, 1))
						<-t.Context().Done()
						resp.Body.Close()
					}
					done <- err
				}()
				waitFor(t, func() bool { return fx.s.TotalCalls() == 1 })
				time.Sleep(100 * time.Millisecond) // let the handler start waiting

				// Close must not wait for the fault to end (a hang never
				// does): it must return well inside its grace period. HTTP/2
				// alone takes about a second to say GOAWAY.
				start := time.Now()
				fx.s.Close()
				if d := time.Since(start); d > closeGrace/2 {
					t.Errorf("Close took %v, want under %v", d, closeGrace/2)
				}
				if f.Kind == FaultHang {
					if err := <-done; err == nil {
						t.Error("hung request got a response when the server closed")
					}
				}
			})
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentUse(t *testing.T) {
	fx := newFixture(t, true)
	s := fx.s
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 10 {
		id := fmt.Sprintf("client-%d", i)
		s.AddClient(id, "pw")
		wg.Go(func() {
			for range 5 {
				for _, req := range []*http.Request{
					reqA(t, s, id, "pw"),
					reqB(t, s, id, "pw", "grant_type=client_credentials"),
					reqC(t, s, credsC(id, "pw")),
				} {
					resp, err := fx.client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						errs <- fmt.Errorf("%s %s: %d", id, req.URL.Path, resp.StatusCode)
					}
				}
			}
		})
		wg.Go(func() {
			s.SetLifetime("B", time.Minute)
			s.Calls(id)
			s.Inject(Fault{Kind: FaultStatus, Status: 200})
			s.ClearFaults()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 10 {
		if got := s.Calls(fmt.Sprintf("client-%d", i)); got != 15 {
			t.Errorf("client-%d: %d calls, want 15", i, got)
		}
	}
}

func TestStartDefaults(t *testing.T) {
	s, err := Start(Options{Hostnames: []string{"sandbox.test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") || s.URL != "https://"+s.Host() {
		t.Errorf("URL %s, Host %s", s.URL, s.Host())
	}
	if s.FlowURL("a") != s.URL+PathFlowA || s.FlowURL("B") != s.URL+PathFlowB || s.FlowURL("C") != s.URL+PathFlowC {
		t.Error("FlowURL")
	}
	// The certificate covers the extra hostname: dial it via 127.0.0.1 with
	// the name as SNI.
	conn, err := tls.Dial("tcp", s.Host(), &tls.Config{RootCAs: s.CA.Pool(), ServerName: "sandbox.test"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s.Close()
	s.Close() // idempotent
	if _, err := tls.Dial("tcp", s.Host(), &tls.Config{RootCAs: s.CA.Pool()}); err == nil {
		t.Error("still accepting after Close")
	}
}

// Handshakes counts ClientHellos: one per connection of a client that keeps
// connections alive, one per request of one that does not, and failed
// handshakes too.
func TestHandshakes(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := newFixture(t, h2)
			if n := f.s.Handshakes(); n != 0 {
				t.Fatalf("Handshakes = %d before any connection, want 0", n)
			}
			for range 3 {
				if r := do(t, f.client, reqB(t, f.s, testID, testSecret, "grant_type=client_credentials")); r.status != http.StatusOK {
					t.Fatalf("flow B: %d %s", r.status, r.body)
				}
			}
			// Another flow on the same connection: no new handshake.
			if r := do(t, f.client, reqC(t, f.s, credsC(testID, testSecret))); r.status != http.StatusCreated {
				t.Fatalf("flow C: %d %s", r.status, r.body)
			}
			if n := f.s.Handshakes(); n != 1 {
				t.Fatalf("Handshakes = %d after 4 requests on a kept-alive connection, want 1", n)
			}

			once := newClient(t, f.s, h2, nil)
			once.Transport.(*http.Transport).DisableKeepAlives = true
			for range 2 {
				do(t, once, reqB(t, f.s, testID, testSecret, "grant_type=client_credentials"))
			}
			if n := f.s.Handshakes(); n != 3 {
				t.Fatalf("Handshakes = %d after 2 more requests without keep-alive, want 3", n)
			}

			// A client that does not trust the server fails its handshake,
			// which still counts.
			if c, err := tls.Dial("tcp", f.s.Host(), &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
				c.Close()
				t.Fatal("a handshake without the sandbox CA succeeded")
			}
			if n := f.s.Handshakes(); n != 4 {
				t.Fatalf("Handshakes = %d after a failed handshake, want 4", n)
			}
			f.s.ResetCalls()
			if n := f.s.Handshakes(); n != 4 {
				t.Fatalf("ResetCalls changed Handshakes to %d", n)
			}
		})
	}
}
