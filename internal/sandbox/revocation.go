package sandbox

import (
	"cmp"
	"slices"
	"time"
)

// revocationRetention is how long a revocation record outlives the expiry
// of its token, so a test can still ask RevokedAt about a token that has
// since expired; after that the record is dropped to bound memory in a
// long-running sandbox.
const revocationRetention = time.Hour

// DefaultSingleActive reports whether single-active mode is on for flow
// unless Options.SingleActiveToken or SetSingleActive say otherwise: on for
// flow C, whose provider revokes a client's previous token whenever it
// issues a new one, and off for flows A and B.
func DefaultSingleActive(flow string) bool { return normFlow(flow) == "C" }

// Revocation records that a token was revoked, and how often it was
// presented to PathProtected afterwards (a token pods kept using after the
// operator had it replaced).
type Revocation struct {
	Flow      string    // "A", "B" or "C"
	TokenID   string    // the token's jti claim
	IssuedAt  time.Time // the token's iat
	ExpiresAt time.Time // the token's exp
	RevokedAt time.Time // when a newer token for the same client and flow was issued
	// Uses counts requests to PathProtected that presented the token after
	// RevokedAt and before it expired; LastUse is the latest of them (zero
	// if none).
	Uses    int
	LastUse time.Time
}

type liveKey struct{ client, flow string }

// issuedToken is what the server remembers of a token it issued.
type issuedToken struct {
	jti      string
	iat, exp int64 // Unix seconds, as in the claims
}

// SetSingleActive turns single-active mode on or off for flow "A", "B" or
// "C" (see Options.SingleActiveToken). It takes effect with the next token
// issued: turning it on does not revoke anything by itself, but the next
// token of each client revokes all of that client's unexpired tokens of the
// flow, including those issued while the mode was off; turning it off does
// not restore revoked tokens. It panics on any other flow.
func (s *Server) SetSingleActive(flow string, on bool) {
	f := mustFlow("SetSingleActive", flow)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.singleActive[f] = on
}

// SingleActive reports whether single-active mode is on for flow "A", "B"
// or "C". It panics on any other flow.
func (s *Server) SingleActive(flow string) bool {
	f := mustFlow("SingleActive", flow)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.singleActive[f]
}

// RevokedAt returns when token was revoked, and false if this server did
// not sign it, has not revoked it, or dropped the record (an hour after the
// token expired).
func (s *Server) RevokedAt(token string) (time.Time, bool) {
	c, err := verifyJWT(&s.signKey.PublicKey, s.kid, token)
	if err != nil {
		return time.Time{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.revocations[c.Subject][c.ID]; r != nil {
		return r.RevokedAt, true
	}
	return time.Time{}, false
}

// Revocations returns copies of clientID's revocation records, oldest
// revocation first.
func (s *Server) Revocations(clientID string) []Revocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Revocation, 0, len(s.revocations[clientID]))
	for _, r := range s.revocations[clientID] {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Revocation) int {
		return cmp.Or(a.RevokedAt.Compare(b.RevokedAt), a.IssuedAt.Compare(b.IssuedAt), cmp.Compare(a.TokenID, b.TokenID))
	})
	return out
}

// record remembers tok, just issued to client for flow at now, and in
// single-active mode revokes the client's earlier tokens of the flow. It
// also forgets what has expired for this client, so the maps stay bounded
// by the clients' live tokens.
func (s *Server) record(flow, client string, now time.Time, tok issuedToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := liveKey{client, flow}
	live := slices.DeleteFunc(s.live[k], func(t issuedToken) bool { return t.exp <= now.Unix() })
	if s.singleActive[flow] {
		recs := s.revocations[client]
		if recs == nil && len(live) > 0 {
			recs = map[string]*Revocation{}
			s.revocations[client] = recs
		}
		for _, t := range live {
			recs[t.jti] = &Revocation{
				Flow:      flow,
				TokenID:   t.jti,
				IssuedAt:  time.Unix(t.iat, 0).UTC(),
				ExpiresAt: time.Unix(t.exp, 0).UTC(),
				RevokedAt: now,
			}
		}
		live = live[:0]
	}
	s.live[k] = append(live, tok)

	cutoff := now.Add(-revocationRetention)
	for jti, r := range s.revocations[client] {
		if !r.ExpiresAt.After(cutoff) {
			delete(s.revocations[client], jti)
		}
	}
	if len(s.revocations[client]) == 0 {
		delete(s.revocations, client)
	}
}

// noteUse counts a request that presented c's token after it was revoked.
func (s *Server) noteUse(c *Claims, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.revocations[c.Subject][c.ID]; r != nil {
		r.Uses++
		r.LastUse = at
	}
}
