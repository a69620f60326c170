package sandbox

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// issue fetches a token for id over flow ("A", "B" or "C") and fails the
// test unless the sandbox issues one.
func issue(t *testing.T, fx *fixture, flow, id, secret string) string {
	t.Helper()
	var req *http.Request
	var shape = shapeA
	switch flow {
	case "A":
		req = reqA(t, fx.s, id, secret)
	case "B":
		req, shape = reqB(t, fx.s, id, secret, "grant_type=client_credentials"), shapeB
	case "C":
		req, shape = reqC(t, fx.s, credsC(id, secret)), shapeC
	default:
		t.Fatalf("issue: flow %q", flow)
	}
	r := do(t, fx.client, req)
	m := shape.FindStringSubmatch(r.body)
	if r.status/100 != 2 || m == nil {
		t.Fatalf("flow %s token for %s: %d %s", flow, id, r.status, r.body)
	}
	return m[1]
}

func TestSingleActiveRevocation(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		name   string
		flow   string
		option *bool // Options.SingleActiveToken[flow], nil = not listed
		set    *bool // SetSingleActive(flow, *set) after Start, nil = not called
		single bool  // whether the first token must be revoked
	}{
		{"A default", "A", nil, nil, false},
		{"B default", "B", nil, nil, false},
		{"C default", "C", nil, nil, true},
		{"A option on", "A", &on, nil, true},
		{"B option on", "B", &on, nil, true},
		{"C option off", "C", &off, nil, false},
		{"A SetSingleActive on", "A", nil, &on, true},
		{"B SetSingleActive on", "B", nil, &on, true},
		{"C SetSingleActive off", "C", nil, &off, false},
		{"C option off, SetSingleActive on", "C", &off, &on, true},
		{"B option on, SetSingleActive off", "B", &on, &off, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, false, func(o *Options) {
				if tc.option != nil {
					// Lower case: flow names are case-insensitive.
					o.SingleActiveToken = map[string]bool{strings.ToLower(tc.flow): *tc.option}
				}
			})
			s := fx.s
			if tc.set != nil {
				s.SetSingleActive(tc.flow, *tc.set)
			}
			if got := s.SingleActive(tc.flow); got != tc.single {
				t.Errorf("SingleActive(%s) = %v, want %v", tc.flow, got, tc.single)
			}
			s.AddClient("other", "pw")
			otherTok := issue(t, fx, tc.flow, "other", "pw")
			first := issue(t, fx, tc.flow, testID, testSecret)
			fx.clock.Advance(7 * time.Second)
			reissuedAt := fx.clock.Now()
			second := issue(t, fx, tc.flow, testID, testSecret)

			if got := s.Valid(first); got == tc.single {
				t.Errorf("Valid(first) = %v after a re-issue, want %v", got, !tc.single)
			}
			if !s.Valid(second) {
				t.Error("Valid(second) = false")
			}
			if !s.Valid(otherTok) {
				t.Error("another client's re-issue revoked its token")
			}
			at, revoked := s.RevokedAt(first)
			if revoked != tc.single || (revoked && !at.Equal(reissuedAt)) {
				t.Errorf("RevokedAt(first) = %v, %v; want %v, %v", at, revoked, reissuedAt, tc.single)
			}
			for name, tok := range map[string]string{"second": second, "other": otherTok, "garbage": "abc"} {
				if at, ok := s.RevokedAt(tok); ok {
					t.Errorf("RevokedAt(%s) = %v, true", name, at)
				}
			}
			recs := s.Revocations(testID)
			if !tc.single {
				if len(recs) != 0 {
					t.Errorf("Revocations = %+v, want none", recs)
				}
				return
			}
			claims, _ := s.Claims(first)
			want := Revocation{
				Flow:      tc.flow,
				TokenID:   claims.ID,
				IssuedAt:  time.Unix(claims.IssuedAt, 0).UTC(),
				ExpiresAt: time.Unix(claims.Expiry, 0).UTC(),
				RevokedAt: reissuedAt,
			}
			if len(recs) != 1 || recs[0] != want {
				t.Errorf("Revocations = %+v, want [%+v]", recs, want)
			}
			if got := s.Revocations("other"); len(got) != 0 {
				t.Errorf("Revocations(other) = %+v", got)
			}
		})
	}
}

// TestSingleActiveSwitching: turning the mode on revokes, with the next
// token, everything the client still held for the flow; turning it off
// restores nothing; flows do not revoke each other's tokens.
func TestSingleActiveSwitching(t *testing.T) {
	fx := newFixture(t, false)
	s := fx.s
	b1 := issue(t, fx, "B", testID, testSecret)
	b2 := issue(t, fx, "B", testID, testSecret)
	c1 := issue(t, fx, "C", testID, testSecret)
	s.SetSingleActive("b", true)
	if !s.Valid(b1) || !s.Valid(b2) {
		t.Fatal("SetSingleActive revoked tokens by itself")
	}
	fx.clock.Advance(time.Second)
	b3 := issue(t, fx, "B", testID, testSecret)
	if s.Valid(b1) || s.Valid(b2) || !s.Valid(b3) {
		t.Errorf("after the mode went on: Valid b1 %v, b2 %v, b3 %v; want false, false, true", s.Valid(b1), s.Valid(b2), s.Valid(b3))
	}
	if !s.Valid(c1) {
		t.Error("a flow-B issue revoked the client's flow-C token")
	}
	if n := len(s.Revocations(testID)); n != 2 {
		t.Errorf("%d revocations, want 2", n)
	}

	s.SetSingleActive("B", false)
	b4 := issue(t, fx, "B", testID, testSecret)
	if !s.Valid(b3) || !s.Valid(b4) || s.Valid(b1) {
		t.Errorf("after the mode went off: Valid b1 %v, b3 %v, b4 %v; want false, true, true", s.Valid(b1), s.Valid(b3), s.Valid(b4))
	}
	c2 := issue(t, fx, "C", testID, testSecret)
	if s.Valid(c1) || !s.Valid(c2) || !s.Valid(b4) {
		t.Error("a flow-C re-issue did not revoke just the previous flow-C token")
	}

	// A token that expired before the re-issue is not "revoked".
	s.SetLifetime("C", time.Second)
	c3 := issue(t, fx, "C", testID, testSecret)
	fx.clock.Advance(time.Second)
	issue(t, fx, "C", testID, testSecret)
	if _, ok := s.RevokedAt(c3); ok {
		t.Error("an expired token was recorded as revoked")
	}
}

// TestRevocationRetention: records outlive the token's expiry by an hour,
// so a test can ask after the fact, then go.
func TestRevocationRetention(t *testing.T) {
	fx := newFixture(t, false)
	s := fx.s
	s.SetLifetime("C", time.Minute)
	first := issue(t, fx, "C", testID, testSecret)
	issue(t, fx, "C", testID, testSecret)

	fx.clock.Advance(time.Minute + revocationRetention - time.Second)
	issue(t, fx, "C", testID, testSecret)
	if _, ok := s.RevokedAt(first); !ok {
		t.Error("record gone before the retention ended")
	}
	if s.Valid(first) {
		t.Error("an expired, revoked token is valid")
	}
	fx.clock.Advance(time.Second)
	issue(t, fx, "C", testID, testSecret)
	if _, ok := s.RevokedAt(first); ok {
		t.Error("record kept past the retention")
	}
	// The second token expired unrevoked; only the third's record is left,
	// revoked by the fourth.
	if got := s.Revocations(testID); len(got) != 1 || !got[0].RevokedAt.Equal(fx.clock.Now()) {
		t.Errorf("Revocations = %+v, want the third token's only", got)
	}
}

func TestSingleActiveUnknownFlow(t *testing.T) {
	if s, err := Start(Options{SingleActiveToken: map[string]bool{"D": true}}); err == nil {
		s.Close()
		t.Error("Start accepted SingleActiveToken for flow D")
	}
	fx := newFixture(t, false)
	for name, f := range map[string]func(){
		"SetSingleActive": func() { fx.s.SetSingleActive("D", true) },
		"SingleActive":    func() { fx.s.SingleActive("") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with an unknown flow did not panic", name)
				}
			}()
			f()
		}()
	}
}
