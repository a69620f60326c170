package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// Connection reuse, against real HTTPS servers on loopback: the sandbox,
// and idServer, which knows its clients by their certificate alone.

// poolClient is a Client for these tests: no per-host budget, loopback
// allowed.
func poolClient(clk *fakeClock) *Client {
	return NewClient(Options{Clock: clk, Rand: fixedRand(0.5), AllowPrivateNetworks: true, HostRequestsPerMinute: -1})
}

func fetchOK(t *testing.T, c *Client, r Request) Token {
	t.Helper()
	tok, err := c.Fetch(context.Background(), r)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return tok
}

// pooledEntries is the number of transports in c's pool.
func pooledEntries(c *Client) int {
	c.transports.mu.Lock()
	defer c.transports.mu.Unlock()
	return len(c.transports.entries)
}

func TestPooledFetchesMakeOneHandshake(t *testing.T) {
	e := newFetchEnv(t)
	c := poolClient(e.clk)
	const n = 20
	cert, _, err := LoadClientCertificate(CertificateSource{CertificatePEM: e.fx.ec.CertPEM, PrivateKeyPEM: e.fx.ec.KeyPEM}, e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		req  Request
		want int // new handshakes
	}{
		{"flow B", e.flowB(e.s), 1},
		// Same host, no certificate, same CA bundle: flow B's connection.
		{"flow C after flow B", e.flowC(e.s), 0},
		{"flow A with a client certificate", func() Request { r := e.flowA(e.s); r.Certificate = cert; return r }(), 1},
	}
	for _, s := range steps {
		before, calls := e.s.Handshakes(), e.s.TotalCalls()
		for range n {
			tok := fetchOK(t, c, s.req)
			if !e.s.Valid(tok.Value) {
				t.Fatalf("%s: the sandbox does not accept the token", s.name)
			}
		}
		if got := e.s.Handshakes() - before; got != s.want {
			t.Errorf("%s: %d sequential fetches made %d TLS handshakes, want %d", s.name, n, got, s.want)
		}
		if got := e.s.TotalCalls() - calls; got != n {
			t.Errorf("%s: %d provider calls, want %d", s.name, got, n)
		}
	}
	if got := pooledEntries(c); got != 2 {
		t.Errorf("%d pooled transports, want 2 (no certificate; the flow A certificate)", got)
	}
}

// A request whose roots come without their bytes cannot be told apart from
// one with other roots, so it keeps today's one connection per request.
func TestRootsWithoutBytesAreNotPooled(t *testing.T) {
	e := newFetchEnv(t)
	c := poolClient(e.clk)
	r := e.flowB(e.s)
	r.RootCAsPEM = nil
	before := e.s.Handshakes()
	for range 3 {
		fetchOK(t, c, r)
	}
	if got := e.s.Handshakes() - before; got != 3 {
		t.Errorf("3 fetches made %d handshakes, want 3", got)
	}
	if got := pooledEntries(c); got != 0 {
		t.Errorf("%d pooled transports, want 0", got)
	}

	// A bundle that is not the one the pool was built from: the request
	// must not get a connection that trusts other roots.
	r = e.flowB(e.s)
	fetchOK(t, c, r)
	r.RootCAs = e.other.Pool() // RootCAsPEM still names the sandbox CA
	if _, err := c.Fetch(context.Background(), r); failure.ReasonOf(err) != failure.ProviderUnavailable || !strings.Contains(err.Error(), "untrusted") {
		t.Fatalf("roots that disagree with their bundle: err = %v, want an untrusted server certificate", err)
	}
}

// idServer is an HTTPS token endpoint that identifies its clients by their
// certificate alone: each token names the common name of the certificate
// on the connection that carried the request, and that connection.
type idServer struct {
	srv        *httptest.Server
	handshakes atomic.Int64
	conns      atomic.Int64
	// closeSecond hijacks and closes a connection on its second request,
	// without an answer.
	closeSecond bool
}

type connIDKey struct{}

// connInfo is one accepted connection.
type connInfo struct {
	id       int64
	requests atomic.Int64
}

func startIDServer(t *testing.T, ca *sandbox.CA, auth tls.ClientAuthType, closeSecond bool) *idServer {
	t.Helper()
	cert, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	s := &idServer{closeSecond: closeSecond}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.Pool(),
		ClientAuth:   auth,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.handshakes.Add(1)
			return nil, nil
		},
	}
	s.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connIDKey{}, &connInfo{id: s.conns.Add(1)})
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *idServer) serve(w http.ResponseWriter, r *http.Request) {
	ci := r.Context().Value(connIDKey{}).(*connInfo)
	if ci.requests.Add(1) == 2 && s.closeSecond {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = c.Close()
		}
		return
	}
	cn := "nobody"
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": cn + "@conn" + strconv.FormatInt(ci.id, 10), "expires_in": 300})
}

func (s *idServer) request(ca *sandbox.CA, cert *tls.Certificate) Request {
	return Request{URL: s.srv.URL + "/token", RootCAs: ca.Pool(), RootCAsPEM: ca.CertPEM, Certificate: cert,
		Form: []Field{{Name: "grant_type", Value: "client_credentials"}}}
}

// identity is one client certificate, loaded afresh for every request as
// the controller does.
type identity struct {
	cn  string
	src CertificateSource
}

func newIdentity(t *testing.T, ca *sandbox.CA, cn string) identity {
	t.Helper()
	c, err := ca.IssueClient(cn, sandbox.KeyECDSA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return identity{cn: cn, src: CertificateSource{CertificatePEM: c.CertPEM, PrivateKeyPEM: c.KeyPEM}}
}

func (id identity) load(t *testing.T) *tls.Certificate {
	t.Helper()
	c, _, err := LoadClientCertificate(id.src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// owner splits a token of idServer into the common name and the connection.
func owner(tok string) (cn, conn string) {
	cn, conn, _ = strings.Cut(tok, "@")
	return cn, conn
}

func TestPooledConnectionsKeepTheirIdentity(t *testing.T) {
	fx := loadFixtures(t)
	ids := []identity{newIdentity(t, fx.ca, "client-one"), newIdentity(t, fx.ca, "client-two")}

	// checkTokens asserts that every token names its requester and that
	// no connection carried two identities.
	checkTokens := func(t *testing.T, got map[string][]string) map[string]map[string]bool {
		t.Helper()
		connsOf := map[string]map[string]bool{}
		identityOf := map[string]string{}
		for want, toks := range got {
			connsOf[want] = map[string]bool{}
			for _, tok := range toks {
				cn, conn := owner(tok)
				if cn != want {
					t.Fatalf("a request of %s got a token issued to %s (%s)", want, cn, tok)
				}
				if other, ok := identityOf[conn]; ok && other != cn {
					t.Fatalf("connection %s carried both %s and %s", conn, other, cn)
				}
				identityOf[conn] = cn
				connsOf[want][conn] = true
			}
		}
		return connsOf
	}

	t.Run("interleaved", func(t *testing.T) {
		s := startIDServer(t, fx.ca, tls.RequireAndVerifyClientCert, false)
		c := poolClient(newFakeClock())
		got := map[string][]string{}
		for range 10 {
			for _, id := range ids {
				got[id.cn] = append(got[id.cn], fetchOK(t, c, s.request(fx.ca, id.load(t))).Value)
			}
		}
		connsOf := checkTokens(t, got)
		for _, id := range ids {
			if len(connsOf[id.cn]) != 1 {
				t.Errorf("%s used %d connections for 10 sequential fetches, want 1", id.cn, len(connsOf[id.cn]))
			}
		}
		if n := s.handshakes.Load(); n != 2 {
			t.Errorf("%d handshakes for 2 identities, want 2", n)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		s := startIDServer(t, fx.ca, tls.RequireAndVerifyClientCert, false)
		c := poolClient(newFakeClock())
		const workers, each = 8, 10
		var (
			mu   sync.Mutex
			got  = map[string][]string{}
			wg   sync.WaitGroup
			errs = make(chan error, len(ids)*workers)
		)
		for _, id := range ids {
			for range workers {
				wg.Go(func() {
					for range each {
						cert, _, err := LoadClientCertificate(id.src, time.Now())
						if err != nil {
							errs <- err
							return
						}
						tok, err := c.Fetch(context.Background(), s.request(fx.ca, cert))
						if err != nil {
							errs <- fmt.Errorf("%s: %w", id.cn, err)
							return
						}
						mu.Lock()
						got[id.cn] = append(got[id.cn], tok.Value)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		connsOf := checkTokens(t, got)
		total := 0
		for _, id := range ids {
			if len(got[id.cn]) != workers*each {
				t.Fatalf("%s got %d tokens, want %d", id.cn, len(got[id.cn]), workers*each)
			}
			total += len(connsOf[id.cn])
		}
		// A worker's next fetch may start before its last connection is
		// idle again, and a dial no longer needed still completes, so there
		// can be more connections than workers; but most fetches reuse one.
		fetches := len(ids) * workers * each
		if n := s.handshakes.Load(); n < int64(total) || n > int64(fetches/2) {
			t.Errorf("%d handshakes for %d fetches on %d connections, want between %d and %d", n, fetches, total, total, fetches/2)
		}
		t.Logf("%d fetches by %d workers of 2 identities: %d connections that served them, %d handshakes", fetches, len(ids)*workers, total, s.handshakes.Load())
	})
}

// What identifies a connection gets a new transport when it changes, and
// only then: a certificate loaded afresh from the same bytes is the same
// identity.
func TestIdentityChangesGetANewTransport(t *testing.T) {
	fx := loadFixtures(t)
	s := startIDServer(t, fx.ca, tls.VerifyClientCertIfGiven, false)
	c := poolClient(newFakeClock())
	one := newIdentity(t, fx.ca, "client-one")
	rotated := newIdentity(t, fx.ca, "client-one") // same name, new key and certificate
	other, err := sandbox.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	wider := append(append([]byte(nil), fx.ca.CertPEM...), other.CertPEM...)
	widerPool := x509.NewCertPool()
	widerPool.AppendCertsFromPEM(wider)

	steps := []struct {
		name       string
		req        func() Request
		handshakes int64 // new ones
	}{
		{"first", func() Request { return s.request(fx.ca, one.load(t)) }, 1},
		{"the same certificate loaded again", func() Request { return s.request(fx.ca, one.load(t)) }, 0},
		{"a rotated certificate and key", func() Request { return s.request(fx.ca, rotated.load(t)) }, 1},
		{"a changed CA bundle", func() Request {
			r := s.request(fx.ca, one.load(t))
			r.RootCAs, r.RootCAsPEM = widerPool, wider
			return r
		}, 1},
		{"no certificate", func() Request { return s.request(fx.ca, nil) }, 1},
		{"a longer timeout", func() Request { r := s.request(fx.ca, one.load(t)); r.Timeout = 20 * time.Second; return r }, 1},
		{"back to the first", func() Request { return s.request(fx.ca, one.load(t)) }, 0},
	}
	for _, st := range steps {
		before := s.handshakes.Load()
		r := st.req()
		tok := fetchOK(t, c, r)
		want := "nobody"
		if r.Certificate != nil {
			want = r.Certificate.Leaf.Subject.CommonName
		}
		if cn, _ := owner(tok.Value); cn != want {
			t.Fatalf("%s: token issued to %s, want %s", st.name, cn, want)
		}
		if got := s.handshakes.Load() - before; got != st.handshakes {
			t.Errorf("%s: %d new handshakes, want %d", st.name, got, st.handshakes)
		}
	}
	if got := pooledEntries(c); got != 5 {
		t.Errorf("%d pooled transports, want 5", got)
	}
}

// The identity covers every byte that decides a connection; equal inputs
// give equal keys.
func TestTransportKey(t *testing.T) {
	fx := loadFixtures(t)
	load := func(certPEM, keyPEM []byte) *tls.Certificate {
		c, _, err := LoadClientCertificate(CertificateSource{CertificatePEM: certPEM, PrivateKeyPEM: keyPEM}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pool := newTransportPool()
	c := poolClient(newFakeClock())
	base := func() Request {
		return Request{URL: "https://bank.test/token", Certificate: load(fx.ec.CertPEM, fx.ec.KeyPEM), RootCAs: fx.ca.Pool(), RootCAsPEM: fx.ca.CertPEM}
	}
	keyOf := func(r Request) (transportKey, bool) {
		p, err := c.prepare(r)
		if err != nil {
			t.Fatal(err)
		}
		return pool.key(r, p)
	}
	k0, ok := keyOf(base())
	if !ok {
		t.Fatal("the base request is not poolable")
	}
	same := map[string]func(*Request){
		"certificate loaded again": func(*Request) {},
		"host spelled in capitals": func(r *Request) { r.URL = "https://BANK.test/token" },
		"default port spelled out": func(r *Request) { r.URL = "https://bank.test:443/other?x=1" },
		"another pool of the bundle": func(r *Request) {
			r.RootCAs = x509.NewCertPool()
			r.RootCAs.AppendCertsFromPEM(fx.ca.CertPEM)
		},
	}
	for name, mutate := range same {
		r := base()
		mutate(&r)
		if k, _ := keyOf(r); k != k0 {
			t.Errorf("%s: the key changed", name)
		}
	}
	otherKey := load(fx.ec.CertPEM, fx.ec.KeyPEM)
	otherKey.PrivateKey = fx.rsa.Key // the same chain with another private key
	differ := map[string]func(*Request){
		"another port":        func(r *Request) { r.URL = "https://bank.test:8443/token" },
		"another host":        func(r *Request) { r.URL = "https://bank2.test/token" },
		"another certificate": func(r *Request) { r.Certificate = load(fx.rsa.CertPEM, fx.rsa.KeyPEM) },
		"another private key": func(r *Request) { r.Certificate = otherKey },
		"no certificate":      func(r *Request) { r.Certificate = nil },
		"the CA in the chain": func(r *Request) { r.Certificate.Certificate = append(r.Certificate.Certificate, fx.ca.Cert.Raw) },
		"another CA bundle":   func(r *Request) { r.RootCAsPEM = append(append([]byte(nil), fx.ca.CertPEM...), '\n') },
		"the system roots":    func(r *Request) { r.RootCAs, r.RootCAsPEM = nil, nil },
		"another timeout":     func(r *Request) { r.Timeout = time.Minute },
		"the bundle twice":    func(r *Request) { r.RootCAsPEM = append(append([]byte(nil), fx.ca.CertPEM...), fx.ca.CertPEM...) },
	}
	seen := map[transportKey]string{k0: "base"}
	for name, mutate := range differ {
		r := base()
		mutate(&r)
		k, ok := keyOf(r)
		if !ok {
			t.Errorf("%s: not poolable", name)
			continue
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
	// Without RootCAs the system roots are trusted, whatever RootCAsPEM
	// says.
	system, withPEM := base(), base()
	system.RootCAs, system.RootCAsPEM = nil, nil
	withPEM.RootCAs = nil
	if k1, _ := keyOf(system); k1 != func() transportKey { k, _ := keyOf(withPEM); return k }() {
		t.Error("RootCAsPEM without RootCAs changed the key")
	}
	if k, _ := newTransportPool().key(base(), mustPrepare(t, c, base())); k == k0 {
		t.Error("two pools derive the same key: the HMAC key is not random")
	}
	r := base()
	r.RootCAsPEM = nil
	if _, ok := keyOf(r); ok {
		t.Error("roots without their bytes are poolable")
	}
}

func mustPrepare(t *testing.T, c *Client, r Request) *prepared {
	t.Helper()
	p, err := c.prepare(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// After a transport failure the next request does not get an idle
// connection that was open when it happened: it dials afresh. A 5xx answer
// says nothing about the connections and keeps them.
func TestTransientFailureDropsIdleConnections(t *testing.T) {
	cases := []struct {
		name        string
		fault       sandbox.Fault
		timeout     time.Duration
		class       failure.Reason
		newConn     bool
		wantMessage string
	}{
		{"timeout before the headers", sandbox.Fault{Kind: sandbox.FaultHang}, 300 * time.Millisecond, failure.ProviderUnavailable, true, "timed out"},
		{"timeout in the body", sandbox.Fault{Kind: sandbox.FaultSlowBody, Delay: 50 * time.Millisecond}, 300 * time.Millisecond, failure.ProviderUnavailable, true, "timed out reading the body"},
		{"503", sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503}, 0, failure.ProviderUnavailable, false, "provider error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newFetchEnv(t)
			c := poolClient(e.clk)
			r := e.flowB(e.s)

			// Two fetches at once leave two idle connections.
			e.s.Inject(sandbox.Fault{Kind: sandbox.FaultHang, Delay: 500 * time.Millisecond, Times: 2})
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					if _, err := c.Fetch(context.Background(), r); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if n := e.s.Handshakes(); n != 2 {
				t.Fatalf("%d handshakes for two concurrent fetches, want 2", n)
			}

			e.s.Inject(tc.fault)
			// The deadline comes from the context: a request with another
			// Timeout would be another identity, with its own transport.
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			_, err := c.Fetch(ctx, r)
			mustClass(t, err, tc.class)
			if !strings.Contains(err.Error(), tc.wantMessage) {
				t.Fatalf("err = %v, want %q", err, tc.wantMessage)
			}

			// The host is now probed once per probeInterval.
			e.clk.Step(probeInterval)
			before := e.s.Handshakes()
			fetchOK(t, c, r)
			if got := e.s.Handshakes() - before; tc.newConn && got != 1 {
				t.Errorf("the fetch after the failure made %d handshakes, want 1 (a new connection)", got)
			} else if !tc.newConn && got != 0 {
				t.Errorf("the fetch after the 503 made %d handshakes, want 0 (the idle connection)", got)
			}
		})
	}
}

// startClosingServer is a TLS server that asks for a client certificate and,
// when it gets none, closes the connection without an alert, as some
// providers do. Only the handshake can explain the failure.
func startClosingServer(t *testing.T, ca *sandbox.CA, version uint16) string {
	t.Helper()
	cert, err := ca.IssueServer([]string{"127.0.0.1"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: version, MaxVersion: version}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close() // the TCP connection: no close_notify
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() != nil || len(tc.ConnectionState().PeerCertificates) == 0 {
					return
				}
				_, _ = tc.Write([]byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "https://" + ln.Addr().String() + "/token"
}

// With pooled transports the handshake's account ("asked for a certificate",
// "sent one") still reaches the request it belongs to: the dial runs with
// the request's context values, and GetClientCertificate reads them from
// cri.Context().
func TestPooledFetchExplainsMissingCertificate(t *testing.T) {
	e := newFetchEnv(t)
	otherClient, err := e.other.IssueClient("stranger", sandbox.KeyECDSA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, err := LoadClientCertificate(CertificateSource{CertificatePEM: otherClient.CertPEM, PrivateKeyPEM: otherClient.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := LoadClientCertificate(CertificateSource{CertificatePEM: e.fx.ec.CertPEM, PrivateKeyPEM: e.fx.ec.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expect := func(t *testing.T, c *Client, r Request, class failure.Reason, says string) {
		t.Helper()
		for i := range 2 { // the second from the same pooled transport
			_, err := c.Fetch(context.Background(), r)
			mustClass(t, err, class)
			if !strings.Contains(err.Error(), says) {
				t.Fatalf("fetch %d: err = %v, want %q", i+1, err, says)
			}
			e.clk.Step(probeInterval) // past a failing host's probe interval
		}
	}

	t.Run("server that demands a certificate", func(t *testing.T) {
		c := poolClient(e.clk)
		expect(t, c, e.flowB(e.strict), failure.InvalidCredentials, "requires a client certificate")
		withStranger := e.flowA(e.strict)
		withStranger.Certificate = stranger
		expect(t, c, withStranger, failure.InvalidCredentials, "rejected the client certificate")
		withGood := e.flowA(e.strict)
		withGood.Certificate = good
		fetchOK(t, c, withGood)
	})

	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run("server that closes without an alert, "+v.name, func(t *testing.T) {
			c := poolClient(e.clk)
			url := startClosingServer(t, e.fx.ca, v.version)
			r := Request{URL: url, RootCAs: e.fx.ca.Pool(), RootCAsPEM: e.fx.ca.CertPEM}
			expect(t, c, r, failure.InvalidCredentials, "requires a client certificate")
		})
	}

	// A server that asks for a certificate but does not insist served the
	// first request on the connection; its closing the connection later is
	// not about the certificate.
	t.Run("reused connection closed by the server", func(t *testing.T) {
		s := startIDServer(t, e.fx.ca, tls.RequestClientCert, true)
		c := poolClient(e.clk)
		r := s.request(e.fx.ca, nil)
		fetchOK(t, c, r)
		_, err := c.Fetch(context.Background(), r)
		mustClass(t, err, failure.ProviderUnavailable)
		if s.handshakes.Load() != 1 {
			t.Fatalf("%d handshakes, want 1: the second request did not reuse the connection", s.handshakes.Load())
		}
	})
}

// A transport no request used for transportIdleEvict leaves the pool with
// its connections, so rotated certificates do not pile up.
func TestUnusedTransportsAreEvicted(t *testing.T) {
	e := newFetchEnv(t)
	c := poolClient(e.clk)
	b := e.flowB(e.s)
	a := e.flowA(e.s)
	var err error
	if a.Certificate, _, err = LoadClientCertificate(CertificateSource{CertificatePEM: e.fx.ec.CertPEM, PrivateKeyPEM: e.fx.ec.KeyPEM}, time.Now()); err != nil {
		t.Fatal(err)
	}
	fetchOK(t, c, b)
	e.clk.Step(transportIdleEvict - transportSweepEvery)
	fetchOK(t, c, a) // sweeps: b's transport is not old enough yet
	e.clk.Step(transportSweepEvery)
	if got := pooledEntries(c); got != 2 {
		t.Fatalf("%d pooled transports, want 2", got)
	}
	before := e.s.Handshakes()
	fetchOK(t, c, a) // sweeps: b's transport goes, with its connection
	if got := pooledEntries(c); got != 1 {
		t.Fatalf("%d pooled transports after the sweep, want 1", got)
	}
	fetchOK(t, c, b)
	if got := e.s.Handshakes() - before; got != 1 {
		t.Errorf("%d handshakes after the eviction, want 1 (a new connection for flow B only)", got)
	}
}

// The pool never holds more than its bound; the least recently used
// transport goes first, idle ones before those in use, and one evicted in
// use is closed by its last user.
func TestTransportPoolIsBounded(t *testing.T) {
	p := newTransportPool()
	p.max = 3
	t0 := time.Now()
	var built int
	build := func() *http.Transport { built++; return &http.Transport{} }
	key := func(i int) transportKey { return transportKey{byte(i)} }

	busy := p.acquire(key(0), t0, nil, build) // stays in use
	for i := 1; i <= 3; i++ {
		p.release(p.acquire(key(i), t0.Add(time.Duration(i)*time.Second), nil, build), t0.Add(time.Duration(i)*time.Second))
	}
	// Full with 0 (busy), 1, 2 when 3 came: 1, the oldest idle one, went.
	if len(p.entries) != 3 {
		t.Fatalf("%d entries, want 3", len(p.entries))
	}
	if _, ok := p.entries[key(1)]; ok {
		t.Fatal("the least recently used idle transport was kept")
	}
	if _, ok := p.entries[key(0)]; !ok {
		t.Fatal("a transport in use was evicted while idle ones were there")
	}
	// Everything in use: the oldest goes anyway, and is only marked.
	a := p.acquire(key(2), t0.Add(10*time.Second), nil, build)
	b := p.acquire(key(3), t0.Add(11*time.Second), nil, build)
	p.acquire(key(4), t0.Add(12*time.Second), nil, build)
	if len(p.entries) != 3 || !busy.evicted {
		t.Fatalf("%d entries, oldest in use evicted: %v; want 3 and true", len(p.entries), busy.evicted)
	}
	p.release(busy, t0.Add(13*time.Second))
	p.release(a, t0.Add(13*time.Second))
	p.release(b, t0.Add(13*time.Second))
	if built != 5 {
		t.Errorf("built %d transports, want 5", built)
	}
	// Nothing is used for transportIdleEvict: a sweep empties the pool
	// but for the one in use, and the one that came.
	p.acquire(key(9), t0.Add(13*time.Second+transportIdleEvict), nil, build)
	if _, ok := p.entries[key(4)]; len(p.entries) != 2 || !ok {
		t.Errorf("%d entries after the sweep, want 2 (key 4, in use, and key 9)", len(p.entries))
	}
}
