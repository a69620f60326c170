package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// FaultKind selects how an injected fault answers.
type FaultKind int

const (
	// FaultRespond answers Fault.Status (200 if zero), Fault.Header and
	// Fault.Body verbatim: for shapes the other kinds do not cover, such as
	// a 429 with an HTTP-date Retry-After or an HTML error page.
	FaultRespond FaultKind = iota
	// FaultStatus answers Fault.Status (500 if zero) with a small JSON error
	// body such as {"error":"server_error"}.
	FaultStatus
	// FaultHang accepts the request and sends nothing. With Delay zero it
	// holds the request until the client gives up or the server closes; with
	// a positive Delay it then answers normally, i.e. headers arrive late.
	FaultHang
	// FaultSlowBody sends the genuine answer to the request (status, headers
	// and a valid JSON body), but dribbles the body one byte per Delay
	// (100ms if zero), so only a whole-call timeout catches it.
	FaultSlowBody
	// FaultHugeBody answers 200 with a syntactically valid token response
	// of about 100 MiB, streamed without Content-Length and never held in
	// memory, to prove the client caps what it reads.
	FaultHugeBody
	// FaultMalformedJSON answers 200 with the truncated body
	// {"access_token": "abc
	FaultMalformedJSON
	// FaultRedirect answers Fault.Status (302 unless a 3xx is given; 307 is
	// the interesting one because it preserves a POST body) pointing to
	// RedirectTarget, where a client that follows it would leak its secret.
	FaultRedirect
)

// String names the kind for test names.
func (k FaultKind) String() string {
	switch k {
	case FaultRespond:
		return "Respond"
	case FaultStatus:
		return "Status"
	case FaultHang:
		return "Hang"
	case FaultSlowBody:
		return "SlowBody"
	case FaultHugeBody:
		return "HugeBody"
	case FaultMalformedJSON:
		return "MalformedJSON"
	case FaultRedirect:
		return "Redirect"
	default:
		return fmt.Sprintf("FaultKind(%d)", int(k))
	}
}

// RedirectTarget is where FaultRedirect points.
const RedirectTarget = "https://other.example.invalid/steal"

// MalformedBody is what FaultMalformedJSON answers.
const MalformedBody = `{"access_token": "abc`

// HugeBodySize is roughly how many bytes FaultHugeBody streams.
const HugeBodySize = 100 << 20

const defaultSlowBodyDelay = 100 * time.Millisecond

// Fault is one misbehaviour to serve instead of (or around) a normal answer.
type Fault struct {
	Kind FaultKind
	// Times is how many requests the fault is served to: zero is treated as
	// one (so a forgotten field does not silently inject nothing), and a
	// negative value means until ClearFaults.
	Times  int
	Status int               // FaultRespond, FaultStatus, FaultRedirect
	Header map[string]string // FaultRespond; also added to FaultStatus answers (e.g. Retry-After on a 503)
	Body   []byte            // FaultRespond
	Delay  time.Duration     // FaultSlowBody: per byte; FaultHang: before answering (0 = never)
}

type queuedFault struct {
	Fault
	remaining int
}

// Inject queues f. Queued faults are served, in order, to the next requests
// on any token path, each to f.Times requests. Faults take precedence over
// the throttle, and a request answered by a fault does not use up throttle
// budget, except that FaultHang with a Delay and FaultSlowBody wrap the
// normal answer, throttle included.
func (s *Server) Inject(f Fault) {
	n := f.Times
	if n == 0 {
		n = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, queuedFault{Fault: f, remaining: n})
}

// ClearFaults drops every queued fault, including the unlimited ones.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// nextFault pops the fault the current request gets, if any.
func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	q := &s.faults[0]
	f := q.Fault
	if q.remaining > 0 {
		q.remaining--
		if q.remaining == 0 {
			s.faults = s.faults[1:]
		}
	}
	return f, true
}

// serveFault answers r according to f. normal serves the request as if no
// fault were queued; the kinds that only delay the answer use it.
func (s *Server) serveFault(ctx context.Context, w http.ResponseWriter, r *http.Request, f Fault, normal func(http.ResponseWriter)) {
	switch f.Kind {
	case FaultHang, FaultSlowBody, FaultHugeBody:
		// These wait on the client; Close must not wait on them in turn.
		defer s.cutOnClose(r)()
	}
	switch f.Kind {
	case FaultRespond:
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		for k, v := range f.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write(f.Body)

	case FaultStatus:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		for k, v := range f.Header {
			w.Header().Set(k, v)
		}
		writeError(w, status, errorCodeFor(status))

	case FaultHang:
		if f.Delay <= 0 {
			<-ctx.Done()
			abort()
		}
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			abort()
		case <-t.C:
		}
		normal(w)

	case FaultSlowBody:
		// Produce the genuine answer first so a patient client gets a token;
		// the fault is in the pacing, not the content.
		rec := &recorder{header: http.Header{}}
		normal(rec)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(rec.body.Len()))
		w.WriteHeader(rec.statusOr200())
		delay := f.Delay
		if delay <= 0 {
			delay = defaultSlowBodyDelay
		}
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		t := time.NewTicker(delay)
		defer t.Stop()
		for _, b := range rec.body.Bytes() {
			select {
			case <-ctx.Done():
				abort()
			case <-t.C:
			}
			if _, err := w.Write([]byte{b}); err != nil {
				abort()
			}
			if err := rc.Flush(); err != nil {
				abort()
			}
		}

	case FaultHugeBody:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write([]byte(`{"access_token":"`)); err != nil {
			abort()
		}
		chunk := bytes.Repeat([]byte("A"), 32<<10)
		for sent := 0; sent < HugeBodySize; sent += len(chunk) {
			if ctx.Err() != nil {
				abort()
			}
			if _, err := w.Write(chunk); err != nil {
				abort()
			}
		}
		_, _ = w.Write([]byte(`","expires_in":600}`))

	case FaultMalformedJSON:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(MalformedBody))

	case FaultRedirect:
		status := f.Status
		if status < 300 || status > 399 {
			status = http.StatusFound
		}
		w.Header().Set("Location", RedirectTarget)
		w.WriteHeader(status)

	default:
		writeError(w, http.StatusInternalServerError, "server_error")
	}
}

// cutOnClose closes the TCP connection under r as soon as the server starts
// closing. Cancelling the handler's context is not enough: a write blocked
// on a client that stopped reading ignores it, and even after the handler
// ends, crypto/tls spends up to 5 s trying to send close_notify into the
// same full window. Closing the raw connection fails both at once.
func (s *Server) cutOnClose(r *http.Request) (stop func() bool) {
	c, _ := r.Context().Value(rawConnKey{}).(net.Conn)
	if c == nil {
		return func() bool { return false }
	}
	return context.AfterFunc(s.closing, func() { _ = c.Close() })
}

// abort ends the handler without completing the response: the connection
// (HTTP/1.1) or stream (HTTP/2) is cut, so the client sees an error instead
// of an empty 200 or a cleanly ended truncated body.
func abort() { panic(http.ErrAbortHandler) }

// errorCodeFor picks an RFC 6749-style error code that fits status, so a
// FaultStatus body looks like what a provider would send.
func errorCodeFor(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return "invalid_request"
	case status == http.StatusUnauthorized:
		return "invalid_client"
	case status == http.StatusForbidden:
		return "access_denied"
	case status == http.StatusTooManyRequests:
		return "too_many_requests"
	case status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case status >= 500:
		return "server_error"
	default:
		return "error"
	}
}

// recorder captures a response in memory. It stands in for
// net/http/httptest, which registers command-line flags on import.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) statusOr200() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
