package sandbox

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func reqAPI(t *testing.T, s *Server, authorization string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+PathProtected, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return req
}

const (
	invalidToken     = `{"error":"invalid_token","error_description":"token %s"}`
	invalidChallenge = `Bearer error="invalid_token"`
	bareChallenge    = `Bearer realm="sandbox"`
)

func TestProtected(t *testing.T) {
	other := newFixture(t, false)
	otherTok := issue(t, other, "B", testID, testSecret)
	for _, tc := range []struct {
		name string
		// auth returns the Authorization header to send ("" = none).
		auth      func(t *testing.T, fx *fixture) string
		status    int
		body      string
		challenge string
		client    string // whom the request is counted for
	}{
		{"valid C token", func(t *testing.T, fx *fixture) string { return "Bearer " + issue(t, fx, "C", testID, testSecret) },
			200, `{"clientId":"m2m-user","payments":[]}`, "", testID},
		{"valid A token, lower-case scheme", func(t *testing.T, fx *fixture) string { return "bearer " + issue(t, fx, "A", testID, testSecret) },
			200, `{"clientId":"m2m-user","payments":[]}`, "", testID},
		{"1s before expiry", func(t *testing.T, fx *fixture) string {
			tok := issue(t, fx, "B", testID, testSecret)
			fx.clock.Advance(DefaultLifetimeB - time.Second)
			return "Bearer " + tok
		}, 200, `{"clientId":"m2m-user","payments":[]}`, "", testID},
		{"expired", func(t *testing.T, fx *fixture) string {
			tok := issue(t, fx, "B", testID, testSecret)
			fx.clock.Advance(DefaultLifetimeB)
			return "Bearer " + tok
		}, 401, strings.Replace(invalidToken, "%s", "expired", 1), invalidChallenge, testID},
		{"revoked", func(t *testing.T, fx *fixture) string {
			tok := issue(t, fx, "C", testID, testSecret)
			issue(t, fx, "C", testID, testSecret)
			return "Bearer " + tok
		}, 401, strings.Replace(invalidToken, "%s", "revoked", 1), invalidChallenge, testID},
		{"static application token with its secret", func(t *testing.T, fx *fixture) string {
			tok, err := fx.s.AppToken("shop", fx.clock.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer app-secret." + tok
		}, 200, `{"clientId":"shop","payments":[]}`, "", "shop"},
		{"static application token, expired", func(t *testing.T, fx *fixture) string {
			tok, err := fx.s.AppToken("shop", fx.clock.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			fx.clock.Advance(time.Hour)
			return "Bearer " + tok
		}, 401, strings.Replace(invalidToken, "%s", "expired", 1), invalidChallenge, "shop"},
		{"garbage", func(*testing.T, *fixture) string { return "Bearer abc" },
			401, strings.Replace(invalidToken, "%s", "malformed", 1), invalidChallenge, ""},
		{"another server's token", func(*testing.T, *fixture) string { return "Bearer " + otherTok },
			401, strings.Replace(invalidToken, "%s", "malformed", 1), invalidChallenge, ""},
		{"missing header", func(*testing.T, *fixture) string { return "" },
			401, `{"error":"unauthorized"}`, bareChallenge, ""},
		{"empty Bearer", func(*testing.T, *fixture) string { return "Bearer " },
			401, `{"error":"unauthorized"}`, bareChallenge, ""},
		{"Basic scheme", func(*testing.T, *fixture) string { return "Basic bTJtLXVzZXI6eA==" },
			401, `{"error":"unauthorized"}`, bareChallenge, ""},
		{"token without scheme", func(t *testing.T, fx *fixture) string { return issue(t, fx, "B", testID, testSecret) },
			401, `{"error":"unauthorized"}`, bareChallenge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, false)
			auth := tc.auth(t, fx)
			calls := fx.s.TotalCalls()
			r := do(t, fx.client, reqAPI(t, fx.s, auth))
			if r.status != tc.status || r.body != tc.body {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if got := r.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
			wantAcc, wantRej := 0, 1
			if tc.status == 200 {
				wantAcc, wantRej = 1, 0
			}
			if acc, rej := fx.s.APIRequests(tc.client); acc != wantAcc || rej != wantRej {
				t.Errorf("APIRequests(%q) = %d, %d; want %d, %d", tc.client, acc, rej, wantAcc, wantRej)
			}
			if all := fx.s.AllAPIRequests(); len(all) != 1 {
				t.Errorf("AllAPIRequests = %v, want one client", all)
			}
			if got := fx.s.TotalCalls(); got != calls {
				t.Errorf("TotalCalls went from %d to %d: an API request counted as a token request", calls, got)
			}
		})
	}
}

// TestProtectedCounters: counts add up per client, revoked tokens' later
// uses are recorded, and neither faults nor the throttle touch the API.
func TestProtectedCounters(t *testing.T) {
	forBothProtocols(t, func(t *testing.T, h2 bool) {
		fx := newFixture(t, h2)
		s := fx.s
		s.AddClient("other", "pw")
		old := issue(t, fx, "C", testID, testSecret)
		fx.clock.Advance(time.Second)
		current := issue(t, fx, "C", testID, testSecret)
		otherTok := issue(t, fx, "B", "other", "pw")

		// Every token request from now on would hang, fail or be throttled;
		// API requests must not notice (a hang would time the client out).
		s.SetThrottle(1, "")
		s.Inject(Fault{Kind: FaultHang})
		s.Inject(Fault{Kind: FaultStatus, Status: 503, Times: -1})

		for range 3 {
			do(t, fx.client, reqAPI(t, s, "Bearer "+current))
		}
		fx.clock.Advance(2 * time.Second)
		for range 2 {
			do(t, fx.client, reqAPI(t, s, "Bearer "+old))
		}
		do(t, fx.client, reqAPI(t, s, "Bearer "+otherTok))
		do(t, fx.client, reqAPI(t, s, ""))
		post := reqAPI(t, s, "Bearer "+current)
		post.Method = http.MethodPost
		if r := do(t, fx.client, post); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" {
			t.Errorf("POST: %d, Allow %q", r.status, r.header.Get("Allow"))
		}

		want := map[string]APICount{testID: {Accepted: 3, Rejected: 2}, "other": {Accepted: 1}, "": {Rejected: 1}}
		got := s.AllAPIRequests()
		if len(got) != len(want) {
			t.Errorf("AllAPIRequests = %v, want %v", got, want)
		}
		for id, w := range want {
			if acc, rej := s.APIRequests(id); acc != w.Accepted || rej != w.Rejected || got[id] != w {
				t.Errorf("APIRequests(%q) = %d, %d (all: %v); want %+v", id, acc, rej, got[id], w)
			}
		}
		if acc, rej := s.APIRequests("nobody"); acc != 0 || rej != 0 {
			t.Errorf("APIRequests(nobody) = %d, %d", acc, rej)
		}
		if n := s.TotalCalls(); n != 3 {
			t.Errorf("TotalCalls = %d, want the 3 token requests", n)
		}
		recs := s.Revocations(testID)
		if len(recs) != 1 || recs[0].Uses != 2 || !recs[0].LastUse.Equal(fx.clock.Now()) {
			t.Errorf("Revocations = %+v, want one with 2 uses, the last at %v", recs, fx.clock.Now())
		}

		s.ResetAPIRequests()
		if len(s.AllAPIRequests()) != 0 {
			t.Error("ResetAPIRequests left counts behind")
		}
		s.ResetCalls()
		do(t, fx.client, reqAPI(t, s, "Bearer "+current))
		if acc, _ := s.APIRequests(testID); acc != 1 || s.TotalCalls() != 0 {
			t.Errorf("after the resets: accepted %d, TotalCalls %d", acc, s.TotalCalls())
		}
		// The token path still gets the queued faults; the API used none.
		s.ClearFaults()
		s.Inject(Fault{Kind: FaultStatus, Status: 503})
		if r := do(t, fx.client, reqB(t, s, testID, testSecret, "grant_type=client_credentials")); r.status != 503 {
			t.Errorf("token request after API requests: %d, want the injected 503", r.status)
		}
	})
}
