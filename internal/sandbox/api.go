package sandbox

import (
	"net/http"
	"strings"
	"time"
)

// PathProtected is a payment API resource that accepts only currently valid
// sandbox tokens, so tests and the demo can see what a pod holding a given
// token would get: GET with "Authorization: Bearer <token>" answers 200
// {"clientId":"<sub>","payments":[]} if Valid(token), and 401 otherwise. It
// is not a token path: requests to it are not counted by Calls, and
// neither injected faults nor the throttle apply to it.
const PathProtected = "/api/v1/payments"

// APICount counts the requests to PathProtected of one client.
type APICount struct {
	Accepted int `json:"accepted"` // answered 200
	Rejected int `json:"rejected"` // answered 401
}

// APIRequests returns how many requests to PathProtected presented a token
// of clientID (the token's sub claim) and were accepted or rejected.
// Rejected tokens that cannot be attributed to a client (missing, garbage,
// a bad signature) count under "". Requests with a method other than GET
// are answered 405 and counted in neither.
func (s *Server) APIRequests(clientID string) (accepted, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.api[clientID]; c != nil {
		return c.Accepted, c.Rejected
	}
	return 0, 0
}

// AllAPIRequests returns a copy of the per-client PathProtected counts.
func (s *Server) AllAPIRequests() map[string]APICount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]APICount, len(s.api))
	for k, v := range s.api {
		out[k] = *v
	}
	return out
}

// ResetAPIRequests zeroes the PathProtected counters. ResetCalls leaves
// them alone, and this leaves the token-request counters alone.
func (s *Server) ResetAPIRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.api = map[string]*APICount{}
}

// serveProtected answers PathProtected. A missing Authorization header, or
// one with another scheme or an empty token, gets 401 with a bare "Bearer" challenge (RFC 6750
// §3.1: no error code when no token was offered); a token Valid rejects
// gets 401 with `Bearer error="invalid_token"` and a JSON body whose
// error_description says why (malformed, expired or revoked). The token
// itself is never echoed.
func (s *Server) serveProtected(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request")
		return
	}
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		s.countAPI("", false)
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox"`)
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	c, problem := s.check(staticJWT(token))
	client := ""
	if c != nil {
		client = c.Subject
	}
	if problem != "" {
		if problem == "revoked" {
			s.noteUse(c, s.now())
		}
		s.countAPI(client, false)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}{"invalid_token", "token " + problem})
		return
	}
	s.countAPI(client, true)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		ClientID string   `json:"clientId"`
		Payments []string `json:"payments"`
	}{client, []string{}})
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 7235 §2.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func (s *Server) countAPI(client string, accepted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.api[client]
	if c == nil {
		c = &APICount{}
		s.api[client] = c
	}
	if accepted {
		c.Accepted++
	} else {
		c.Rejected++
	}
}

// AppToken is what a provider's console hands a person for the static flow
// (D): a long-lived application token for clientID, signed like every token
// of this server and valid at PathProtected until exp. It is not recorded
// as issued, so it is never revoked by a later token.
func (s *Server) AppToken(clientID string, exp time.Time) (string, error) {
	now := s.now()
	return signJWT(s.signKey, s.kid, Claims{
		Issuer: s.URL, Subject: clientID, IssuedAt: now.Unix(), Expiry: exp.Unix(), ID: randomID(),
	})
}

// staticJWT is the JWT of a static flow's header value "{secret}.{jwt}"
// (four dot-separated parts); any other token is returned as it is. The
// secret that prefixes it is the console's and is not checked here.
func staticJWT(token string) string {
	if strings.Count(token, ".") == 3 {
		_, jwt, _ := strings.Cut(token, ".")
		return jwt
	}
	return token
}
