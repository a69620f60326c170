package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"hash"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Connections to token endpoints are kept alive and reused, because a full
// TLS handshake per refresh is most of the operator's CPU at a few thousand
// credentials. A connection carries the identity it was opened with (the
// client certificate it presented, the roots it verified the server
// against), so connections are pooled per identity: each identity has its
// own *http.Transport, and a request only ever gets a connection of a
// transport made for exactly its identity.
const (
	// idleConnTimeout closes a connection that has carried no request for
	// this long. Shorter than what most providers' load balancers allow, so
	// that we, not they, usually end an idle connection.
	idleConnTimeout = 90 * time.Second
	// maxIdleConnsPerHost caps the idle connections of one transport. The
	// per-host bulkhead (Options.HostMaxInFlight) already bounds how many
	// requests to one host run at once, so that many connections are all a
	// transport can use; the manager runs 64 workers, so more are never
	// busy at once.
	maxIdleConnsPerHost = 64
	// transportIdleEvict drops a transport no request has used for this
	// long, so transports of rotated certificates and CA bundles do not pile
	// up; its connections have timed out by then anyway.
	transportIdleEvict = 5 * time.Minute
	// transportSweepEvery is how often, at most, the pool looks for such
	// transports.
	transportSweepEvery = time.Minute
	// maxPooledTransports bounds the pool; past it the least recently used
	// transport goes. Each identity (client certificate, CA bundle, host)
	// has one, so this is the number of identities refreshed within
	// transportIdleEvict whose connections are worth keeping.
	maxPooledTransports = 1024
)

// transportKey identifies a transport: an HMAC-SHA256 of everything that
// decides what its connections are (see transportPool.key). The HMAC key is
// random and lives only in memory, so a key is not a fingerprint of a
// private key or password that could be checked against a guess.
type transportKey [sha256.Size]byte

// transportPool is the Client's set of reusable transports. It is safe for
// concurrent use.
type transportPool struct {
	hmacKey []byte
	max     int // maxPooledTransports; a field so tests can use a small one

	mu        sync.Mutex
	entries   map[transportKey]*pooledTransport
	lastSweep time.Time
}

// pooledTransport is one identity's transport and its use.
type pooledTransport struct {
	tr *http.Transport
	// roots is the pool tr trusts: that of the request that made it.
	roots    *x509.CertPool
	users    int       // requests using tr now
	lastUsed time.Time // from the Client's clock
	// evicted is set when the entry left the pool while in use: its last
	// user closes its idle connections, so they do not outlive it.
	evicted bool
}

func newTransportPool() *transportPool {
	k := make([]byte, sha256.Size)
	// crypto/rand.Read never fails (it crashes the program if the system
	// has no randomness).
	_, _ = rand.Read(k)
	return &transportPool{hmacKey: k, max: maxPooledTransports, entries: map[transportKey]*pooledTransport{}}
}

// key returns the identity of r's connections, or false when r cannot
// share connections: its roots are a pool whose bytes are unknown (RootCAs
// without RootCAsPEM), or its private key cannot be serialized, so two
// requests could not be told apart. The identity covers the scheme and
// host:port, every DER of the client certificate's chain and its private key
// (PKCS#8), the trust roots (the system's, or the PEM bundle of RootCAs), and
// the per-call timeout, which is also the transport's TLS handshake timeout.
func (p *transportPool) key(r Request, pr *prepared) (transportKey, bool) {
	if r.RootCAs != nil && len(r.RootCAsPEM) == 0 {
		return transportKey{}, false
	}
	m := hmac.New(sha256.New, p.hmacKey)
	field(m, []byte(pr.url.Scheme))
	field(m, []byte(pr.host))
	field(m, strconv.AppendInt(nil, int64(pr.timeout), 10))
	if c := r.Certificate; c != nil {
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			return transportKey{}, false
		}
		field(m, []byte("certificate"))
		field(m, strconv.AppendInt(nil, int64(len(c.Certificate)), 10))
		for _, d := range c.Certificate {
			field(m, d)
		}
		field(m, der)
		clear(der)
	} else {
		field(m, []byte("no certificate"))
	}
	if r.RootCAs != nil {
		field(m, []byte("roots"))
		field(m, r.RootCAsPEM)
	} else {
		field(m, []byte("system roots"))
	}
	var k transportKey
	m.Sum(k[:0])
	return k, true
}

// field writes b as a netstring ("<length>:<bytes>"), so that no two
// different sequences of fields hash the same input.
func field(h hash.Hash, b []byte) {
	_, _ = h.Write(append(strconv.AppendInt(nil, int64(len(b)), 10), ':'))
	_, _ = h.Write(b)
}

// acquire returns the transport for k, made by build if the pool has none,
// and counts the caller as its user until release. It sweeps out unused
// transports when a sweep is due or the pool is full.
func (p *transportPool) acquire(k transportKey, now time.Time, roots *x509.CertPool, build func() *http.Transport) *pooledTransport {
	var gone []*http.Transport
	p.mu.Lock()
	swept := now.Sub(p.lastSweep) >= transportSweepEvery
	if swept {
		gone = p.sweepLocked(now)
	}
	e, ok := p.entries[k]
	if !ok {
		if len(p.entries) >= p.max && !swept {
			gone = append(gone, p.sweepLocked(now)...)
		}
		if len(p.entries) >= p.max {
			if tr := p.evictOldestLocked(); tr != nil {
				gone = append(gone, tr)
			}
		}
		// build only fills in a struct: no I/O under the lock.
		e = &pooledTransport{tr: build(), roots: roots}
		p.entries[k] = e
	}
	e.users++
	e.lastUsed = now
	p.mu.Unlock()
	closeIdle(gone)
	return e
}

// release ends a use of e.
func (p *transportPool) release(e *pooledTransport, now time.Time) {
	p.mu.Lock()
	e.users--
	e.lastUsed = now
	done := e.evicted && e.users == 0
	p.mu.Unlock()
	if done {
		e.tr.CloseIdleConnections()
	}
}

// sweepLocked removes the transports unused for transportIdleEvict and
// returns them, for their idle connections to be closed without the lock.
func (p *transportPool) sweepLocked(now time.Time) []*http.Transport {
	p.lastSweep = now
	var gone []*http.Transport
	for k, e := range p.entries {
		if e.users == 0 && now.Sub(e.lastUsed) >= transportIdleEvict {
			delete(p.entries, k)
			gone = append(gone, e.tr)
		}
	}
	return gone
}

// evictOldestLocked removes the least recently used transport, preferring
// one not in use. It returns the transport to close now, or nil when the one
// removed is in use (its last user closes it).
func (p *transportPool) evictOldestLocked() *http.Transport {
	var (
		oldest     transportKey
		oldestE    *pooledTransport
		oldestRank = -1 // 0: in use, 1: idle; idle ones go first
	)
	for k, e := range p.entries {
		rank := 0
		if e.users == 0 {
			rank = 1
		}
		if rank > oldestRank || rank == oldestRank && e.lastUsed.Before(oldestE.lastUsed) {
			oldest, oldestE, oldestRank = k, e, rank
		}
	}
	if oldestE == nil {
		return nil
	}
	delete(p.entries, oldest)
	if oldestE.users > 0 {
		oldestE.evicted = true
		return nil
	}
	return oldestE.tr
}

func closeIdle(trs []*http.Transport) {
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
}

// transportFor returns the transport for r and a function to call when the
// request is done with it: a pooled transport for r's identity, or, when r
// cannot share connections, one of its own that keeps no connection after
// the request.
func (c *Client) transportFor(r Request, p *prepared) (*http.Transport, func()) {
	oneShot := func() (*http.Transport, func()) {
		tr := c.newTransport(r.Certificate, r.RootCAs, p.timeout, false)
		return tr, tr.CloseIdleConnections
	}
	k, ok := c.transports.key(r, p)
	if !ok {
		return oneShot()
	}
	e := c.transports.acquire(k, c.clock.Now(), r.RootCAs, func() *http.Transport {
		return c.newTransport(r.Certificate, r.RootCAs, p.timeout, true)
	})
	// The key holds RootCAsPEM, the trust is RootCAs: should a caller pass
	// a bundle that is not the one its pool was built from, the request
	// gets its own connection rather than one that trusts other roots.
	// (Equal compares certificate hashes; it costs no parsing.)
	if !e.roots.Equal(r.RootCAs) {
		c.transports.release(e, c.clock.Now())
		return oneShot()
	}
	return e.tr, func() { c.transports.release(e, c.clock.Now()) }
}

// newTransport builds a transport that presents cert (when the server asks)
// and trusts roots (nil: the system roots). A pooled one keeps connections
// alive; the others make one connection per request.
func (c *Client) newTransport(cert *tls.Certificate, roots *x509.CertPool, timeout time.Duration, pooled bool) *http.Transport {
	d := newPolicyDialer(c.resolver, c.allowPrivate)
	// HTTP/1.1 only, as without pooling: a request that hangs ties up its
	// own connection, and a timeout closes it, never another request's
	// stream.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		// No proxy: a proxy would resolve and dial the host itself, out of
		// reach of the address policy.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// The transport dials with the request's values but not its
			// cancellation (a dial may serve a later request), so the dial
			// gets the request's limit of its own.
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			hs := &handshakeState{}
			if t := connTraceOf(ctx); t != nil {
				t.dialed.Store(hs)
			}
			return &handshakeConn{Conn: conn, hs: hs}, nil
		},
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
			// GetClientCertificate rather than Certificates: Go would
			// otherwise withhold a certificate whose issuer is missing from
			// the server's acceptable-CA list, turning a chain problem into
			// a confusing "certificate required".
			GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
				// cri.Context() is the dial's context, which carries the
				// values of the request that dialed.
				hs := &handshakeState{}
				if t := connTraceOf(cri.Context()); t != nil {
					if d := t.dialed.Load(); d != nil {
						hs = d
					}
				}
				hs.requested.Store(true)
				if cert != nil {
					hs.sent.Store(true)
					return cert, nil
				}
				return &tls.Certificate{}, nil
			},
		},
		TLSHandshakeTimeout:    timeout,
		DisableKeepAlives:      !pooled,
		MaxIdleConns:           c.idleConnsPerHost,
		MaxIdleConnsPerHost:    c.idleConnsPerHost,
		IdleConnTimeout:        idleConnTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		Protocols:              &protocols,
	}
}

// handshakeState records what happened in the TLS handshake of one
// connection so a failure after it can be explained: a server that asked
// for a client certificate we did not have usually just drops the
// connection.
type handshakeState struct {
	requested atomic.Bool
	sent      atomic.Bool
}

// handshakeConn is a dialed connection with the state of its handshake, so a
// request that gets a connection another request dialed still reads that
// connection's handshake.
type handshakeConn struct {
	net.Conn
	hs *handshakeState
}

// connTrace follows one request to the connection it uses. With pooled
// transports a request may dial a connection another request then uses,
// or use one dialed before it, so what the handshake saw is kept with the
// connection and linked to the request that got it.
type connTrace struct {
	// dialed is the state of the connection this request dialed last.
	dialed atomic.Pointer[handshakeState]
	// used is the state of the connection the request got last.
	used atomic.Pointer[handshakeState]
}

type connTraceKey struct{}

// withConnTrace returns ctx carrying a new connTrace, also hooked to
// httptrace's GotConn.
func withConnTrace(ctx context.Context) (context.Context, *connTrace) {
	t := &connTrace{}
	ctx = context.WithValue(ctx, connTraceKey{}, t)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: t.gotConn}), t
}

func connTraceOf(ctx context.Context) *connTrace {
	if ctx == nil {
		return nil
	}
	t, _ := ctx.Value(connTraceKey{}).(*connTrace)
	return t
}

func (t *connTrace) gotConn(info httptrace.GotConnInfo) {
	if info.Reused {
		// The connection already carried a request to the end, so its
		// handshake was accepted: a failure on it now is not about the
		// client certificate.
		t.used.Store(&handshakeState{})
		return
	}
	if tc, ok := info.Conn.(*tls.Conn); ok {
		if hc, ok := tc.NetConn().(*handshakeConn); ok {
			t.used.Store(hc.hs)
		}
	}
}

// state is the handshake of the connection the request used, or of the one
// it dialed when it got none (the dial or the handshake failed).
func (t *connTrace) state() *handshakeState {
	if hs := t.used.Load(); hs != nil {
		return hs
	}
	if hs := t.dialed.Load(); hs != nil {
		return hs
	}
	return &handshakeState{}
}
