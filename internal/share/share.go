// Package share lets token requests that are byte-identical share one token
// and one provider call. Requests are compared by a keyed hash (HMAC-SHA256
// with a random key made per process), so that the comparison key cannot be
// used to guess a secret and is worthless outside the process: it is kept in
// memory only, never logged or stored.
//
// A Pool groups members (credentials or providers) by the key of their last
// resolved request, keeps the newest token minted for each key, and runs one
// fetch per key at a time: a member that asks while another's request for the
// same key is in flight waits for that answer instead of sending its own.
package share

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"time"
)

// Key identifies a resolved token request.
type Key [sha256.Size]byte

// Token is a token minted for a key.
type Token struct {
	Value     string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Hasher builds a Key from the parts of a request.
type Hasher struct{ h hash.Hash }

// Add adds one named part; parts are length-prefixed, so that no two
// sequences of parts hash alike.
func (h *Hasher) Add(name string, value []byte) {
	var n [8]byte
	for _, b := range [][]byte{[]byte(name), value} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.h.Write(n[:])
		h.h.Write(b)
	}
}

// Sum returns the key.
func (h *Hasher) Sum() Key {
	var k Key
	copy(k[:], h.h.Sum(nil))
	return k
}

type flight struct {
	waiters map[any]struct{}
}

// ErrInFlight is Fetch's answer while another member's request for the same
// key is in flight: the caller is told when it ends (in others of that
// Fetch), and must not block a worker meanwhile, as a provider that never
// answers would hold every waiter for its whole timeout.
var ErrInFlight = errors.New("an identical token request is in flight")

// Pool is the set of shared tokens of one process. M identifies a member.
type Pool[M comparable] struct {
	secret []byte

	mu       sync.Mutex
	memberOf map[M]membership
	members  map[Key]map[M]struct{}
	tokens   map[Key]Token
	flights  map[Key]*flight
}

type membership struct {
	key Key
	tag string
}

// New returns an empty pool with a fresh random key.
func New[M comparable]() *Pool[M] {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic("share: no randomness: " + err.Error())
	}
	return &Pool[M]{
		secret:   secret,
		memberOf: map[M]membership{},
		members:  map[Key]map[M]struct{}{},
		tokens:   map[Key]Token{},
		flights:  map[Key]*flight{},
	}
}

// Hasher starts a key.
func (p *Pool[M]) Hasher() *Hasher {
	return &Hasher{h: hmac.New(sha256.New, p.secret)}
}

// Join makes m a member of key k, leaving any other key. tag is the
// member's own version of what k was computed from (its inputs): KeyOf
// answers only for the same tag.
func (p *Pool[M]) Join(m M, k Key, tag string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.memberOf[m]; ok && old.key != k {
		p.leaveLocked(m, old.key)
	}
	p.memberOf[m] = membership{key: k, tag: tag}
	if p.members[k] == nil {
		p.members[k] = map[M]struct{}{}
	}
	p.members[k][m] = struct{}{}
}

// Leave removes m; a key without members forgets its token.
func (p *Pool[M]) Leave(m M) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.memberOf[m]; ok {
		p.leaveLocked(m, old.key)
	}
}

func (p *Pool[M]) leaveLocked(m M, k Key) {
	delete(p.memberOf, m)
	delete(p.members[k], m)
	if len(p.members[k]) == 0 {
		delete(p.members, k)
		delete(p.tokens, k)
	}
}

// KeyOf is the key m joined with tag.
func (p *Pool[M]) KeyOf(m M, tag string) (Key, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ms, ok := p.memberOf[m]
	if !ok || ms.tag != tag {
		return Key{}, false
	}
	return ms.key, true
}

// Latest is the newest token minted for k.
func (p *Pool[M]) Latest(k Key) (Token, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tokens[k]
	return t, ok
}

// Fetch runs fetch for k, unless k's latest token is one the caller
// accepts (it is returned, shared true), or a fetch for k is already in
// flight (ErrInFlight, shared true: the caller waits to be told). A token
// fetched is kept as k's latest. others lists whom to tell that the fetch
// ended: the members that asked while it was in flight, and on success every
// other member of k.
func (p *Pool[M]) Fetch(k Key, from M, accept func(Token) bool, fetch func() (Token, error)) (tok Token, shared bool, others []M, err error) {
	p.mu.Lock()
	if t, ok := p.tokens[k]; ok && accept(t) {
		p.mu.Unlock()
		return t, true, nil, nil
	}
	if f, ok := p.flights[k]; ok {
		f.waiters[from] = struct{}{}
		p.mu.Unlock()
		return Token{}, true, nil, ErrInFlight
	}
	f := &flight{waiters: map[any]struct{}{}}
	p.flights[k] = f
	p.mu.Unlock()

	tok, err = fetch()

	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.flights, k)
	tell := map[M]struct{}{}
	for w := range f.waiters {
		tell[w.(M)] = struct{}{}
	}
	if err == nil {
		if cur, ok := p.tokens[k]; !ok || tok.IssuedAt.After(cur.IssuedAt) {
			p.tokens[k] = tok
		}
		for m := range p.members[k] {
			tell[m] = struct{}{}
		}
	}
	delete(tell, from)
	for m := range tell {
		others = append(others, m)
	}
	return tok, false, others, err
}
