package sandbox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The token paths of the three flows.
const (
	// PathFlowA is flow A: GET with a client certificate signed by the
	// sandbox CA and Basic username:password; answers 200
	// {"access_token":"<JWT>","expires_in":"300"} with expires_in a string.
	PathFlowA = "/api/v1/authorizations/authorize"
	// PathFlowB is flow B: POST form grant_type=client_credentials with Basic
	// key:secret (not URL-encoded first); answers 200
	// {"access_token":"<JWT>","token_type":"Bearer","expires_in":600}.
	PathFlowB = "/api/token"
	// PathFlowC is flow C: POST JSON {"clientId","clientSecret"}; answers 201
	// {"accessToken":"<JWT>","expiresAt":"<RFC 3339 UTC, milliseconds>"} and,
	// in single-active mode (the default for flow C), revokes the client's
	// previous flow-C tokens.
	PathFlowC = "/auth"
)

// Default token lifetimes, as the providers document them.
const (
	DefaultLifetimeA = 5 * time.Minute
	DefaultLifetimeB = 10 * time.Minute
	DefaultLifetimeC = 5 * time.Minute
)

// maxRequestBody bounds what the sandbox reads from a request; token
// requests are tiny and a test server should not be a memory sink.
const maxRequestBody = 64 << 10

// closeGrace is how long Close lets in-flight answers finish before it cuts
// connections; hung and dribbling handlers are told to stop at once.
const closeGrace = 5 * time.Second

// Options configure Start. The zero value is usable.
type Options struct {
	Addr      string   // listen address; default "127.0.0.1:0"
	CA        *CA      // signs the server and client certificates; default a new CA
	Hostnames []string // extra SANs; localhost, 127.0.0.1 and ::1 are always included
	// Token lifetimes of flows A, B and C; defaults 5m, 10m, 5m.
	LifetimeA, LifetimeB, LifetimeC time.Duration
	// RequireClientCertificate makes the TLS handshake demand a client
	// certificate signed by the CA on every path. By default a certificate
	// is verified if given and only flow A insists, with a 401.
	RequireClientCertificate bool
	// Now is the clock for token issue and expiry and for throttle windows;
	// default time.Now. TLS certificate checks always use the real clock.
	Now func() time.Time
	// SingleActiveToken turns single-active mode on or off per flow ("A",
	// "B", "C"): in it, every token issued to a client revokes that client's
	// earlier tokens of the same flow, as flow C's provider does. Flows not
	// listed keep their default, DefaultSingleActive; any other key makes
	// Start fail. Server.SetSingleActive changes it later.
	SingleActiveToken map[string]bool
	// Fallback serves requests to paths other than the token paths and
	// PathProtected (404 if nil); cmd/sandbox mounts its /calls endpoint
	// here.
	Fallback http.Handler
	// ErrorLog receives the HTTP server's own errors (TLS handshake
	// failures and the like); default discard, because tests provoke them
	// on purpose.
	ErrorLog *log.Logger
}

// Server is a running sandbox provider. All methods are safe for concurrent
// use.
//
// Handshakes counts the TLS handshakes the server has seen, on every path
// and flow together: one per ClientHello, whether the handshake then
// succeeds or not, and never reset (ResetCalls leaves it alone). A client
// that keeps its connections alive makes one per connection, not per
// request, so Handshakes against TotalCalls tells how well a client reuses
// its connections.
type Server struct {
	URL string // https://host:port, without a trailing slash
	CA  *CA

	host     string
	srv      *http.Server
	now      func() time.Time
	signKey  *ecdsa.PrivateKey
	kid      string
	fallback http.Handler

	// closing ends when Close starts; handlers that wait select on it.
	closing   context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
	serveDone chan struct{} // closed when ServeTLS has returned
	inflight  sync.WaitGroup

	handshakes atomic.Int64 // ClientHellos received

	mu        sync.Mutex
	closed    bool
	clients   map[string]string // id -> secret
	lifetimes map[string]time.Duration
	calls     map[string]int
	total     int
	perMinute int
	retryAt   string
	windows   map[string]*window // client IP -> current throttle window
	faults    []queuedFault

	singleActive map[string]bool                   // flow -> single-active mode on
	live         map[liveKey][]issuedToken         // unexpired, unrevoked tokens per client and flow
	revocations  map[string]map[string]*Revocation // client id -> jti -> record
	api          map[string]*APICount              // client id -> PathProtected counts
}

type window struct {
	start time.Time
	count int
}

// Start listens on opts.Addr and serves the sandbox until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = log.New(io.Discard, "", 0)
	}
	singleActive := map[string]bool{}
	for _, f := range flows {
		singleActive[f] = DefaultSingleActive(f)
	}
	for flow, on := range opts.SingleActiveToken {
		f := normFlow(flow)
		if !slices.Contains(flows, f) {
			return nil, fmt.Errorf("sandbox: SingleActiveToken: unknown flow %q", flow)
		}
		singleActive[f] = on
	}
	ca := opts.CA
	if ca == nil {
		var err error
		if ca, err = NewCA("tokenwarden sandbox CA"); err != nil {
			return nil, err
		}
	}
	signKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	host := advertisedHost(ln.Addr().(*net.TCPAddr))

	sans := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range append(slices.Clone(opts.Hostnames), hostOnly(host)) {
		if h != "" && !slices.Contains(sans, h) {
			sans = append(sans, h)
		}
	}
	serverCert, err := ca.IssueServer(sans, time.Time{})
	if err != nil {
		ln.Close()
		return nil, err
	}
	clientAuth := tls.VerifyClientCertIfGiven
	if opts.RequireClientCertificate {
		clientAuth = tls.RequireAndVerifyClientCert
	}

	closing, stop := context.WithCancel(context.Background())
	s := &Server{
		URL:       "https://" + host,
		CA:        ca,
		host:      host,
		now:       opts.Now,
		signKey:   signKey,
		kid:       randomID()[:16],
		fallback:  opts.Fallback,
		closing:   closing,
		stop:      stop,
		serveDone: make(chan struct{}),
		clients:   map[string]string{},
		lifetimes: map[string]time.Duration{
			"A": orDefault(opts.LifetimeA, DefaultLifetimeA),
			"B": orDefault(opts.LifetimeB, DefaultLifetimeB),
			"C": orDefault(opts.LifetimeC, DefaultLifetimeC),
		},
		calls:        map[string]int{},
		windows:      map[string]*window{},
		singleActive: singleActive,
		live:         map[liveKey][]issuedToken{},
		revocations:  map[string]map[string]*Revocation{},
		api:          map[string]*APICount{},
	}
	s.srv = &http.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serverCert},
			ClientCAs:    ca.Pool(),
			ClientAuth:   clientAuth,
			// Called once per ClientHello; nil, nil keeps this config.
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				s.handshakes.Add(1)
				return nil, nil
			},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          opts.ErrorLog,
		BaseContext:       func(net.Listener) context.Context { return closing },
		ConnContext:       withRawConn,
	}
	go func() {
		defer close(s.serveDone)
		// http.ErrServerClosed once Close shuts the server down; any other
		// error closed the listener, which clients see as refused connections.
		_ = s.srv.ServeTLS(ln, "", "")
	}()
	return s, nil
}

type rawConnKey struct{}

// withRawConn remembers the TCP connection under a TLS one, for cutOnClose.
func withRawConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	return context.WithValue(ctx, rawConnKey{}, c)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// advertisedHost turns the listener address into something a client can
// dial and verify: an unspecified address becomes loopback.
func advertisedHost(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return ""
	}
	return h
}

// Host returns host:port of URL.
func (s *Server) Host() string { return s.host }

// FlowURL returns the token URL of flow "A", "B" or "C".
func (s *Server) FlowURL(flow string) string {
	switch normFlow(flow) {
	case "A":
		return s.URL + PathFlowA
	case "B":
		return s.URL + PathFlowB
	case "C":
		return s.URL + PathFlowC
	}
	panic(fmt.Sprintf("sandbox: unknown flow %q", flow))
}

// Close stops the server. Waiting handlers (FaultHang, FaultSlowBody,
// FaultHugeBody) are told to stop at once; Close returns once every handler
// has returned. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop()
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		s.inflight.Wait()
		<-s.serveDone
	})
}

// AddClient registers (or re-keys) a client. The credentials are valid for
// every flow: username/password for A, key/secret for B, clientId and
// clientSecret for C.
func (s *Server) AddClient(id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = secret
}

// RemoveClient makes id unknown, as if its credentials had been revoked.
// Tokens already issued stay valid until they expire.
func (s *Server) RemoveClient(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, id)
}

// flows are the refreshable flows the sandbox serves.
var flows = []string{"A", "B", "C"}

func normFlow(flow string) string { return strings.ToUpper(strings.TrimSpace(flow)) }

// mustFlow normalizes flow and panics if it is not "A", "B" or "C": a test
// that names another flow has a bug.
func mustFlow(method, flow string) string {
	f := normFlow(flow)
	if !slices.Contains(flows, f) {
		panic(fmt.Sprintf("sandbox: %s: unknown flow %q", method, flow))
	}
	return f
}

// SetLifetime changes the lifetime of tokens issued from now on for flow
// "A", "B" or "C". It panics on any other flow: that is a bug in the test.
func (s *Server) SetLifetime(flow string, d time.Duration) {
	f := mustFlow("SetLifetime", flow)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetimes[f] = d
}

// Calls returns how many token requests presented clientID, whether they
// succeeded or not. Requests that presented no id count under "".
func (s *Server) Calls(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[clientID]
}

// AllCalls returns a copy of the per-client call counts.
func (s *Server) AllCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// TotalCalls returns the number of requests on the token paths.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Handshakes returns how many TLS handshakes the server has seen since it
// started, on all paths and flows: one per ClientHello, failed handshakes
// included. Compare it with TotalCalls to see whether a client reuses its
// connections.
func (s *Server) Handshakes() int {
	return int(s.handshakes.Load())
}

// ResetCalls zeroes the call counters (not Handshakes).
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.total = 0
}

// SetThrottle limits token requests per client IP to perMinute in fixed
// one-minute windows; a window starts with the first request after the
// previous one ended (not on the wall-clock minute, so tests do not flake
// at minute boundaries). Requests beyond the limit get 429 with
// "Retry-After: <retryAfter>", or no Retry-After when retryAfter is "".
// perMinute <= 0 disables throttling. Every call resets the windows.
func (s *Server) SetThrottle(perMinute int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perMinute = perMinute
	s.retryAt = retryAfter
	s.windows = map[string]*window{}
}

// Valid reports whether token was issued by this server, has not expired
// and has not been revoked (see SetSingleActive). PathProtected accepts
// exactly the tokens Valid accepts.
func (s *Server) Valid(token string) bool {
	_, problem := s.check(token)
	return problem == ""
}

// check is Valid with the claims (nil if the signature does not verify) and,
// for a token Valid rejects, why: "malformed", "expired" or "revoked".
func (s *Server) check(token string) (*Claims, string) {
	c, err := verifyJWT(&s.signKey.PublicKey, s.kid, token)
	if err != nil {
		return nil, "malformed"
	}
	if s.now().Unix() >= c.Expiry {
		return c, "expired"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revocations[c.Subject][c.ID] != nil {
		return c, "revoked"
	}
	return c, ""
}

// Claims returns the claims of a token this server signed, expired or not.
func (s *Server) Claims(token string) (*Claims, error) {
	return verifyJWT(&s.signKey.PublicKey, s.kid, token)
}

// tokenRequest is what a request presented, extracted before faults and the
// throttle so that every request is counted under the right client.
type tokenRequest struct {
	flow     string
	id       string
	secret   string
	hasCreds bool
	bad      bool // malformed form or JSON
}

// ServeHTTP implements http.Handler. A token request goes through, in
// order: call counting, the fault queue, the per-IP throttle, the method,
// flow A's client certificate, request syntax (400) and credentials (401).
// PathProtected is served apart from all of that (see serveProtected).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable")
		return
	}
	// Added under mu and only while open, so Close's Wait cannot race an Add.
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	var flow string
	switch r.URL.Path {
	case PathFlowA:
		flow = "A"
	case PathFlowB:
		flow = "B"
	case PathFlowC:
		flow = "C"
	case PathProtected:
		// Not a token request: no call counting, faults or throttle.
		s.serveProtected(w, r)
		return
	default:
		if s.fallback != nil {
			s.fallback.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusNotFound, "not_found")
		return
	}

	// ctx ends when the client goes away or the server closes, whichever
	// comes first; everything that waits must watch it.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	req := parseTokenRequest(flow, r)
	s.count(req.id)
	normal := func(w http.ResponseWriter) { s.answer(w, r, req) }
	if f, ok := s.nextFault(); ok {
		s.serveFault(ctx, w, r, f, normal)
		return
	}
	normal(w)
}

func parseTokenRequest(flow string, r *http.Request) tokenRequest {
	req := tokenRequest{flow: flow}
	r.Body = http.MaxBytesReader(nil, r.Body, maxRequestBody)
	switch flow {
	case "A":
		req.id, req.secret, req.hasCreds = r.BasicAuth()
	case "B":
		req.id, req.secret, req.hasCreds = r.BasicAuth()
		// ParseForm reads the body only for a form Content-Type, so a JSON
		// or missing Content-Type ends up without grant_type: a 400.
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") == "" {
				req.bad = true
			}
		}
	case "C":
		if r.Method != http.MethodPost {
			return req
		}
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		body, err := io.ReadAll(r.Body)
		var creds struct {
			ClientID     *string `json:"clientId"`
			ClientSecret *string `json:"clientSecret"`
		}
		if err != nil || json.Unmarshal(body, &creds) != nil {
			req.bad = true
			return req
		}
		if creds.ClientID != nil {
			req.id = *creds.ClientID
		}
		if mt != "application/json" || creds.ClientID == nil || creds.ClientSecret == nil {
			req.bad = true
			return req
		}
		req.secret, req.hasCreds = *creds.ClientSecret, true
	}
	return req
}

func (s *Server) count(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[id]++
	s.total++
}

// throttled records a request from ip and reports whether it is over the
// limit, with the Retry-After value to send.
func (s *Server) throttled(ip string) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perMinute <= 0 {
		return false, ""
	}
	now := s.now()
	win := s.windows[ip]
	if win == nil || !now.Before(win.start.Add(time.Minute)) {
		win = &window{start: now}
		s.windows[ip] = win
	}
	win.count++
	return win.count > s.perMinute, s.retryAt
}

// answer is the provider's normal behaviour, without faults.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, req tokenRequest) {
	ip := hostOnly(r.RemoteAddr)
	if over, retryAfter := s.throttled(ip); over {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeError(w, http.StatusTooManyRequests, "too_many_requests")
		return
	}

	method := http.MethodPost
	if req.flow == "A" {
		method = http.MethodGet
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request")
		return
	}

	if req.flow == "A" && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	if req.bad {
		writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	if req.flow == "B" && r.PostForm.Get("grant_type") != "client_credentials" {
		writeError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	if !s.authenticate(req) {
		if req.flow != "C" {
			w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		}
		writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}

	token, issued, lifetime, err := s.issue(req.flow, req.id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error")
		return
	}
	// RFC 6749 §5.1: token responses must not be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	switch req.flow {
	case "A":
		writeJSON(w, http.StatusOK, struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   string `json:"expires_in"`
		}{token, strconv.FormatInt(int64(lifetime/time.Second), 10)})
	case "B":
		writeJSON(w, http.StatusOK, struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int64  `json:"expires_in"`
		}{token, "Bearer", int64(lifetime / time.Second)})
	case "C":
		writeJSON(w, http.StatusCreated, struct {
			AccessToken string `json:"accessToken"`
			ExpiresAt   string `json:"expiresAt"`
		}{token, formatExpiresAt(issued.Add(lifetime))})
	}
}

func (s *Server) authenticate(req tokenRequest) bool {
	if !req.hasCreds {
		return false
	}
	s.mu.Lock()
	secret, ok := s.clients[req.id]
	s.mu.Unlock()
	return ok && subtle.ConstantTimeCompare([]byte(secret), []byte(req.secret)) == 1
}

// issue mints a token for id and records it; in single-active mode it
// revokes the client's earlier tokens of the flow.
func (s *Server) issue(flow, id string) (token string, issued time.Time, lifetime time.Duration, err error) {
	s.mu.Lock()
	lifetime = s.lifetimes[flow]
	s.mu.Unlock()
	issued = s.now()
	claims := Claims{
		Issuer:   s.URL,
		Subject:  id,
		IssuedAt: issued.Unix(),
		Expiry:   issued.Add(lifetime).Unix(),
		ID:       randomID(),
	}
	token, err = signJWT(s.signKey, s.kid, claims)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	s.record(flow, id, issued, issuedToken{jti: claims.ID, iat: claims.IssuedAt, exp: claims.Expiry})
	return token, issued, lifetime, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError answers {"error":code}, the RFC 6749 §5.2 shape.
func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{code})
}
