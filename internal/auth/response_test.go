package auth

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// testJWT builds an unsigned JWT whose payload is claims (raw JSON).
func testJWT(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".sig"
}

func jwtExp(t time.Time) string {
	return testJWT(`{"sub":"x","exp":` + strconv.FormatInt(t.Unix(), 10) + `}`)
}

func TestJWTExpiry(t *testing.T) {
	exp := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name  string
		token string
		want  time.Time
		ok    bool
	}{
		{"numeric exp", jwtExp(exp), exp, true},
		{"fractional exp", testJWT(`{"exp":1700000000.5}`), time.Unix(1700000000, 5e8).UTC(), true},
		{"padded payload", strings.Replace(testJWT(`{"exp":1700000000}`), ".sig", "", 1) + "==.sig", time.Unix(1700000000, 0).UTC(), true},
		{"string exp is not a NumericDate", testJWT(`{"exp":"1700000000"}`), time.Time{}, false},
		{"no exp", testJWT(`{"sub":"x"}`), time.Time{}, false},
		{"null exp", testJWT(`{"exp":null}`), time.Time{}, false},
		{"negative exp", testJWT(`{"exp":-1}`), time.Time{}, false},
		{"exp beyond year 9999", testJWT(`{"exp":1e20}`), time.Time{}, false},
		{"payload not JSON", "a.bm90IGpzb24.c", time.Time{}, false},
		{"payload not base64", "a.!!!.c", time.Time{}, false},
		{"opaque token", "opaque-token", time.Time{}, false},
		{"two parts", "a.b", time.Time{}, false},
		{"JWE has five parts", "a.b.c.d.e", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := JWTExpiry(tt.token)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Fatalf("JWTExpiry = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestParseTokenResponse covers the parser directly, including shapes the
// sandbox table does not need to repeat over TLS (dotted paths, offsets).
func TestParseTokenResponse(t *testing.T) {
	issued := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	now := issued.Add(200 * time.Millisecond)
	at := func(d time.Duration) time.Time { return issued.Add(d) }
	tests := []struct {
		name    string
		body    string
		m       ResponseMapping
		want    time.Time // zero: expect an error
		class   failure.Reason
		wantTok string
	}{
		{name: "expires_in number", body: `{"access_token":"t","expires_in":300}`, want: at(300 * time.Second)},
		{name: "expires_in string", body: `{"access_token":"t","expires_in":"300"}`, want: at(300 * time.Second)},
		{name: "expires_in fraction", body: `{"access_token":"t","expires_in":300.5}`, want: at(300500 * time.Millisecond)},
		{name: "expires_in exponent", body: `{"access_token":"t","expires_in":3e2}`, want: at(300 * time.Second)},
		{name: "expires_in one year", body: `{"access_token":"t","expires_in":31536000}`, want: at(maxLifetime)},
		{name: "expires_in over a year is capped at a year", body: `{"access_token":"t","expires_in":31536001}`, want: at(maxLifetime)},
		{name: "expires_in 1e18 is capped at a year", body: `{"access_token":"t","expires_in":1e18}`, want: at(maxLifetime)},
		{name: "expires_in 1e300 is capped at a year", body: `{"access_token":"t","expires_in":1e300}`, want: at(maxLifetime)},
		{name: "expires_in out of float range", body: `{"access_token":"t","expires_in":1e400}`, class: failure.InvalidResponse},
		{name: "expires_in hex string", body: `{"access_token":"t","expires_in":"0x10"}`, class: failure.InvalidResponse},
		{name: "expires_in Inf string", body: `{"access_token":"t","expires_in":"Inf"}`, class: failure.InvalidResponse},
		{name: "expires_in empty string", body: `{"access_token":"t","expires_in":""}`, class: failure.InvalidResponse},
		{name: "expires_in object", body: `{"access_token":"t","expires_in":{}}`, class: failure.InvalidResponse},
		{name: "expires_in too short to arrive", body: `{"access_token":"t","expires_in":0.1}`, class: failure.InvalidResponse},
		{name: "custom expires_in field", body: `{"access_token":"t","ttl":60}`, m: ResponseMapping{ExpiresInField: "ttl"}, want: at(time.Minute)},
		{name: "default field ignored when renamed", body: `{"access_token":"t","expires_in":60}`, m: ResponseMapping{ExpiresInField: "ttl"}, class: failure.InvalidResponse},
		{name: "dotted token path", body: `{"data":{"token":"t","expires_in":60}}`, m: ResponseMapping{TokenField: "data.token", ExpiresInField: "data.expires_in"}, want: at(time.Minute)},
		{name: "key with a dot wins over the path", body: `{"data.token":"t","data":{"token":"u"},"expires_in":60}`, m: ResponseMapping{TokenField: "data.token"}, want: at(time.Minute)},
		{name: "dotted path through a non-object", body: `{"data":"x","expires_in":60}`, m: ResponseMapping{TokenField: "data.token"}, class: failure.InvalidResponse},
		{name: "token not a string", body: `{"access_token":42,"expires_in":60}`, class: failure.InvalidResponse},
		{name: "token null", body: `{"access_token":null,"expires_in":60}`, class: failure.InvalidResponse},
		{name: "token empty", body: `{"access_token":"","expires_in":60}`, class: failure.InvalidResponse},
		{name: "token with tab", body: `{"access_token":"a\tb","expires_in":60}`, class: failure.InvalidResponse},
		{name: "token with NEL", body: `{"access_token":"a\u0085b","expires_in":60}`, class: failure.InvalidResponse},
		{name: "token with invalid UTF-8", body: "{\"access_token\":\"a\xffb\",\"expires_in\":60}", class: failure.InvalidResponse},
		{name: "token exactly 64 KiB", body: `{"access_token":"` + strings.Repeat("a", MaxTokenBytes) + `","expires_in":60}`, want: at(time.Minute)},
		{name: "expiresAt Z with millis", body: `{"accessToken":"t","expiresAt":"2026-03-04T10:05:00.000Z"}`, m: ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"}, want: at(5 * time.Minute)},
		{name: "expiresAt offset", body: `{"access_token":"t","expiresAt":"2026-03-04T11:05:00+01:00"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(5 * time.Minute)},
		{name: "expiresAt basic offset", body: `{"access_token":"t","expiresAt":"2026-03-04T11:05:00+0100"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(5 * time.Minute)},
		{name: "expiresAt no zone is UTC", body: `{"access_token":"t","expiresAt":"2026-03-04T10:05:00"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(5 * time.Minute)},
		{name: "expiresAt no zone with fraction", body: `{"access_token":"t","expiresAt":"2026-03-04T10:05:00.250"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(5*time.Minute + 250*time.Millisecond)},
		{name: "expiresAt space separator", body: `{"access_token":"t","expiresAt":"2026-03-04 10:05:00Z"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(5 * time.Minute)},
		{name: "expiresAt epoch seconds", body: `{"access_token":"t","expiresAt":` + strconv.FormatInt(at(time.Minute).Unix(), 10) + `}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(time.Minute)},
		{name: "expiresAt epoch milliseconds is rejected", body: `{"access_token":"t","expiresAt":` + strconv.FormatInt(at(time.Minute).UnixMilli(), 10) + `}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, class: failure.InvalidResponse},
		{name: "expiresAt null is unknown", body: `{"access_token":"t","expiresAt":null,"expires_in":60}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(time.Minute)},
		{name: "expiresAt bool", body: `{"access_token":"t","expiresAt":true}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, class: failure.InvalidResponse},
		{name: "expiresAt beyond a year is capped at a year", body: `{"access_token":"t","expiresAt":"2030-01-01T00:00:00Z"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(maxLifetime)},
		{name: "JWT exp beyond a year is capped at a year", body: `{"access_token":"` + jwtExp(at(2*maxLifetime)) + `"}`, want: at(maxLifetime)},
		{name: "expiresAt not read unless mapped", body: `{"access_token":"t","expiresAt":"garbage","expires_in":60}`, want: at(time.Minute)},
		{name: "earliest: expires_in", body: `{"access_token":"` + jwtExp(at(time.Hour)) + `","expires_in":60,"expiresAt":"2026-03-04T10:30:00Z"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(time.Minute)},
		{name: "earliest: expiresAt", body: `{"access_token":"` + jwtExp(at(time.Hour)) + `","expires_in":3600,"expiresAt":"2026-03-04T10:02:00Z"}`, m: ResponseMapping{ExpiresAtField: "expiresAt"}, want: at(2 * time.Minute)},
		{name: "earliest: JWT exp", body: `{"access_token":"` + jwtExp(at(90*time.Second)) + `","expires_in":3600}`, want: at(90 * time.Second)},
		{name: "JWT exp alone", body: `{"access_token":"` + jwtExp(at(90*time.Second)) + `"}`, want: at(90 * time.Second)},
		{name: "JWT already expired", body: `{"access_token":"` + jwtExp(at(-time.Second)) + `","expires_in":300}`, class: failure.InvalidResponse},
		{name: "default lifetime when nothing known", body: `{"access_token":"t"}`, m: ResponseMapping{DefaultLifetime: 2 * time.Minute}, want: at(2 * time.Minute)},
		{name: "default lifetime loses to expires_in", body: `{"access_token":"t","expires_in":3600}`, m: ResponseMapping{DefaultLifetime: 2 * time.Minute}, want: at(time.Hour)},
		{name: "default lifetime loses to JWT exp", body: `{"access_token":"` + jwtExp(at(time.Hour)) + `"}`, m: ResponseMapping{DefaultLifetime: 2 * time.Minute}, want: at(time.Hour)},
		{name: "nothing known", body: `{"access_token":"t"}`, class: failure.InvalidResponse},
		{name: "oauth error in 2xx", body: `{"error":"invalid_grant"}`, class: failure.InvalidCredentials},
		{name: "temporary oauth error in 2xx", body: `{"error":"temporarily_unavailable"}`, class: failure.ProviderUnavailable},
		{name: "empty error is not an error", body: `{"error":"","access_token":"t","expires_in":60}`, want: at(time.Minute)},
		{name: "array body", body: `[{"access_token":"t"}]`, class: failure.InvalidResponse},
		{name: "empty body", body: ``, class: failure.InvalidResponse},
		{name: "trailing data", body: `{"access_token":"t","expires_in":60} x`, class: failure.InvalidResponse},
		{name: "two objects", body: `{"access_token":"t","expires_in":60}{}`, class: failure.InvalidResponse},
		{name: "whitespace around", body: "\n {\"access_token\":\"t\",\"expires_in\":60} \n", want: at(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseTokenResponse("h:443", 200, []byte(tt.body), tt.m, issued, now)
			if tt.want.IsZero() {
				mustClass(t, err, tt.class)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tok.ExpiresAt.Equal(tt.want) {
				t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.want)
			}
			if !tok.IssuedAt.Equal(issued) {
				t.Fatalf("IssuedAt = %v, want %v", tok.IssuedAt, issued)
			}
			if tt.wantTok != "" && tok.Value != tt.wantTok {
				t.Fatalf("Value = %q, want %q", tok.Value, tt.wantTok)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	issued := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	now := issued.Add(time.Second)
	seeds := []string{
		`{"access_token":"t","expires_in":300}`,
		`{"access_token":"t","expires_in":"300"}`,
		`{"access_token":"t","expires_in":300.5}`,
		`{"access_token":"t","expires_in":null}`,
		`{"access_token":"t","expires_in":0}`,
		`{"access_token":"t","expires_in":-5}`,
		`{"access_token":"t","expires_in":1e11}`,
		`{"access_token":"t","expires_in":1e18}`,
		`{"access_token":"t","expires_in":1e300}`,
		`{"access_token":"t","expires_in":1e400}`,
		`{"access_token":"t","expires_in":"1.7976931348623157e308"}`,
		`{"accessToken":"t","expiresAt":"2030-01-01T00:00:00Z"}`,
		`{"access_token":"t","expires_in":true}`,
		`{"access_token":"t","expires_in":"5m"}`,
		`{"accessToken":"t","expiresAt":"2026-03-04T10:05:00.000Z"}`,
		`{"accessToken":"t","expiresAt":"yesterday"}`,
		`{"data":{"token":"t","expires_in":60}}`,
		`{"access_token":"` + jwtExp(issued.Add(time.Minute)) + `"}`,
		`{"error":"invalid_client"}`,
		`{}`, `[]`, `null`, `<html>oops</html>`, `{"access_token": "abc`,
		"{\"access_token\":\"a\\r\\nb\",\"expires_in\":60}",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "", "", "", int64(0))
		f.Add([]byte(s), "accessToken", "", "expiresAt", int64(60))
		f.Add([]byte(s), "data.token", "data.expires_in", "", int64(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, tokenField, inField, atField string, defaultSecs int64) {
		m := ResponseMapping{TokenField: tokenField, ExpiresInField: inField, ExpiresAtField: atField,
			DefaultLifetime: time.Duration(defaultSecs) * time.Second}
		tok, err := parseTokenResponse("h:443", 200, body, m, issued, now)
		if err != nil {
			switch failure.ReasonOf(err) {
			case failure.InvalidResponse, failure.InvalidCredentials, failure.ProviderUnavailable:
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if p := checkToken(tok.Value); p != "" {
			t.Fatalf("accepted a bad token: %s", p)
		}
		if !tok.ExpiresAt.After(now) {
			t.Fatalf("accepted an expiry %v not after now %v", tok.ExpiresAt, now)
		}
		if !tok.IssuedAt.Equal(issued) {
			t.Fatalf("IssuedAt = %v", tok.IssuedAt)
		}
	})
}
