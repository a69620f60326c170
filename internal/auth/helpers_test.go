package auth

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// fakeClock is a manually advanced clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newFakeClock starts at a whole second near real time: the sandbox puts
// whole seconds in JWT exp, and TLS always checks certificates against the
// real clock, so the fake one must not wander far from it.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fixedRand(v float64) func() float64 { return func() float64 { return v } }

// mapResolver answers from a fixed table and records every name it is
// asked, so a test can prove a redirect target was never even looked up.
type mapResolver struct {
	mu    sync.Mutex
	addrs map[string]string
	asked []string
}

func (r *mapResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	a, ok := r.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.ParseIP(a)}}, nil
}

func (r *mapResolver) wasAsked(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.asked {
		if h == host {
			return true
		}
	}
	return false
}

func mustClass(t *testing.T, err error, want failure.Reason) {
	t.Helper()
	if got := failure.ReasonOf(err); got != want {
		t.Fatalf("class = %q, want %q (err: %v)", got, want, err)
	}
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
