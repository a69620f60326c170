package share

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func key(p *Pool[string], parts ...string) Key {
	h := p.Hasher()
	for i := 0; i+1 < len(parts); i += 2 {
		h.Add(parts[i], []byte(parts[i+1]))
	}
	return h.Sum()
}

// Parts are length-prefixed: moving a boundary changes the key, and two
// pools (two processes) key the same request differently.
func TestKeyTellsRequestsApart(t *testing.T) {
	p, q := New[string](), New[string]()
	a := key(p, "user", "ab", "pass", "c")
	if a != key(p, "user", "ab", "pass", "c") {
		t.Fatal("one request, two keys")
	}
	if a == key(p, "user", "a", "pass", "bc") || a == key(p, "user", "ab", "pass", "C") {
		t.Error("different requests share a key")
	}
	if a == key(q, "user", "ab", "pass", "c") {
		t.Error("two pools share a key: the key is not secret")
	}
}

func TestFetchOneAtATimeAndTellsWhoWaited(t *testing.T) {
	p := New[string]()
	k := key(p, "url", "https://x")
	p.Join("a", k, "v1")
	p.Join("b", k, "v1")
	p.Join("c", k, "v1")
	never := func(Token) bool { return false }
	started, release := make(chan struct{}), make(chan struct{})
	type result struct {
		others []string
		err    error
	}
	done := make(chan result)
	go func() {
		_, _, others, err := p.Fetch(k, "a", never, func() (Token, error) {
			close(started)
			<-release
			return Token{Value: "t1", IssuedAt: time.Unix(100, 0)}, nil
		})
		done <- result{others, err}
	}()
	<-started
	calls := 0
	_, shared, _, err := p.Fetch(k, "b", never, func() (Token, error) { calls++; return Token{}, nil })
	if !errors.Is(err, ErrInFlight) || !shared || calls != 0 {
		t.Fatalf("second fetch while one is in flight: err %v, shared %v, %d calls; want ErrInFlight and no call", err, shared, calls)
	}
	close(release)
	r := <-done
	slices.Sort(r.others)
	if r.err != nil || !slices.Equal(r.others, []string{"b", "c"}) {
		t.Errorf("first fetch: err %v, others %v; want the other members b, c", r.err, r.others)
	}
	tok, shared, _, err := p.Fetch(k, "c", func(t Token) bool { return t.Value == "t1" }, func() (Token, error) { calls++; return Token{}, nil })
	if err != nil || !shared || tok.Value != "t1" || calls != 0 {
		t.Errorf("accepted latest: %+v shared %v err %v, %d calls; want t1 without a call", tok, shared, err, calls)
	}
}

func TestFailedFetchTellsOnlyWaiters(t *testing.T) {
	p := New[string]()
	k := key(p, "url", "https://x")
	p.Join("a", k, "v1")
	p.Join("b", k, "v1")
	_, _, others, err := p.Fetch(k, "a", func(Token) bool { return false }, func() (Token, error) { return Token{}, errors.New("503") })
	if err == nil || len(others) != 0 {
		t.Errorf("failed fetch: err %v, others %v; want the error and nobody told", err, others)
	}
	if _, ok := p.Latest(k); ok {
		t.Error("a failed fetch left a token")
	}
}

func TestMembershipByTagAndForgetting(t *testing.T) {
	p := New[string]()
	k := key(p, "url", "https://x")
	p.Join("a", k, "v1")
	if _, ok := p.KeyOf("a", "v2"); ok {
		t.Error("KeyOf answered for inputs the key was not computed from")
	}
	if got, ok := p.KeyOf("a", "v1"); !ok || got != k {
		t.Error("KeyOf lost the member")
	}
	_, _, _, _ = p.Fetch(k, "a", func(Token) bool { return false }, func() (Token, error) { return Token{Value: "t"}, nil })
	p.Leave("a")
	if _, ok := p.Latest(k); ok {
		t.Error("a key without members kept its token in memory")
	}
}
