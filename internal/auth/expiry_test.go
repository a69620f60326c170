package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The expiry rules, as chooseExpiry implements them:
//
//   - the earliest of expires_in (from IssuedAt), expiresAt and the JWT exp
//     wins;
//   - each source is capped at a year after IssuedAt: one later than that,
//     however far (expires_in 1e300, expiresAt in 2030, a JWT exp in two
//     years), counts as exactly IssuedAt plus a year and is never rejected
//     for it;
//   - expires_in <= 0 is ignored when another source is present, invalid
//     alone;
//   - an absolute expiry at or before the arrival is invalid;
//   - only exp is read from a JWT (iat and nbf are not judged), and a token
//     that is not a JWT has no exp;
//   - DefaultLifetime applies only when the answer has no expiry at all;
//   - an expiry that is no number or no date ("5m", "0x10", "+300", "Inf",
//     "NaN", 1e400, "tomorrow") is invalid.

var (
	expiryIssued = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	// The answer arrives 200 ms after the request was sent.
	expiryNow = expiryIssued.Add(200 * time.Millisecond)
	yearLater = expiryIssued.Add(maxLifetime)
)

const opaqueToken = "tok-S3cr3t-opaque"

func after(d time.Duration) time.Time { return expiryIssued.Add(d) }

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func epoch(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// claimsJWT builds a JWT whose exp, iat and nbf are the given times; a zero
// time leaves the claim out.
func claimsJWT(exp, iat, nbf time.Time) string {
	var parts []string
	for _, c := range []struct {
		name string
		t    time.Time
	}{{"iat", iat}, {"nbf", nbf}, {"exp", exp}} {
		if !c.t.IsZero() {
			parts = append(parts, `"`+c.name+`":`+epoch(c.t))
		}
	}
	return testJWT(`{"sub":"m2m-user",` + strings.Join(append(parts, `"scope":"payments"`), ",") + `}`)
}

// answer builds a JSON object from already encoded "key":value members.
func answer(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

func str(key, v string) string { return strconv.Quote(key) + ":" + strconv.Quote(v) }
func num(key, v string) string { return strconv.Quote(key) + ":" + v }

func TestExpirySanity(t *testing.T) {
	jwt5m := jwtExp(after(5 * time.Minute))
	jwt1h := jwtExp(after(time.Hour))
	jwt2y := jwtExp(after(2 * maxLifetime))
	jwtNoExp := testJWT(`{"sub":"m2m-user","iat":` + epoch(expiryIssued) + `}`)
	mapAt := ResponseMapping{ExpiresAtField: "expiresAt"}
	flowC := ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"}
	nested := ResponseMapping{TokenField: "data.token", ExpiresInField: "data.ttl", ExpiresAtField: "data.validUntil"}
	withDefault := ResponseMapping{DefaultLifetime: 2 * time.Minute}
	invalid := time.Time{}

	tests := []struct {
		name string
		body string
		m    ResponseMapping
		want time.Time // zero: InvalidResponse
	}{
		// Each source alone.
		{"each source alone/expires_in number (flow B)", answer(str("access_token", opaqueToken), str("token_type", "Bearer"), num("expires_in", "600")), ResponseMapping{}, after(10 * time.Minute)},
		{"each source alone/expires_in numeric string, JWT without exp (flow A)", answer(str("access_token", jwtNoExp), str("expires_in", "300")), ResponseMapping{}, after(5 * time.Minute)},
		{"each source alone/expiresAt ISO 8601 (flow C)", answer(str("accessToken", opaqueToken), str("expiresAt", "2026-03-04T10:05:00.000Z")), flowC, after(5 * time.Minute)},
		{"each source alone/expiresAt epoch seconds", answer(str("access_token", opaqueToken), num("expiresAt", epoch(after(5*time.Minute)))), mapAt, after(5 * time.Minute)},
		{"each source alone/JWT exp", answer(str("access_token", jwt5m)), ResponseMapping{}, after(5 * time.Minute)},

		// The earliest wins.
		{"earliest wins/expires_in", answer(str("access_token", jwt1h), num("expires_in", "60"), str("expiresAt", iso(after(30*time.Minute)))), mapAt, after(time.Minute)},
		{"earliest wins/expiresAt", answer(str("access_token", jwt1h), num("expires_in", "3600"), str("expiresAt", iso(after(2*time.Minute)))), mapAt, after(2 * time.Minute)},
		{"earliest wins/JWT exp", answer(str("access_token", jwtExp(after(90*time.Second))), num("expires_in", "3600"), str("expiresAt", iso(after(30*time.Minute)))), mapAt, after(90 * time.Second)},
		{"earliest wins/all equal", answer(str("access_token", jwt5m), num("expires_in", "300"), str("expiresAt", iso(after(5*time.Minute)))), mapAt, after(5 * time.Minute)},
		{"earliest wins/flow A JWT exp before expires_in", answer(str("access_token", jwtExp(after(4*time.Minute))), str("expires_in", "300")), ResponseMapping{}, after(4 * time.Minute)},
		{"earliest wins/flow C JWT exp before expiresAt", answer(str("accessToken", jwtExp(after(4*time.Minute))), str("expiresAt", iso(after(5*time.Minute)))), flowC, after(4 * time.Minute)},
		{"earliest wins/nested ttl and validUntil", `{"data":{"token":"` + opaqueToken + `","ttl":900,"validUntil":"` + iso(after(10*time.Minute)) + `"}}`, nested, after(10 * time.Minute)},
		{"earliest wins/a short positive expires_in wins and has expired on arrival", answer(str("access_token", jwt5m), num("expires_in", "0.1")), ResponseMapping{}, invalid},

		// Each source capped at a year.
		{"capped at a year/expires_in exactly a year", answer(str("access_token", opaqueToken), num("expires_in", "31536000")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in a second beyond a year alone is capped", answer(str("access_token", opaqueToken), num("expires_in", "31536001")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in just under a year is taken as is", answer(str("access_token", opaqueToken), num("expires_in", "31535999.5")), ResponseMapping{}, yearLater.Add(-500 * time.Millisecond)},
		{"capped at a year/expires_in 1e11 alone is capped, the default lifetime does not apply", answer(str("access_token", opaqueToken), num("expires_in", "1e11")), withDefault, yearLater},
		{"capped at a year/expires_in in milliseconds alone is capped", answer(str("access_token", opaqueToken), num("expires_in", "86400000")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in in milliseconds loses to JWT exp", answer(str("access_token", jwtExp(after(24*time.Hour))), num("expires_in", "86400000")), ResponseMapping{}, after(24 * time.Hour)},
		{"capped at a year/expires_in past Duration's range (9.3e9 s) is capped", answer(str("access_token", opaqueToken), num("expires_in", "9.3e9")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in 1e18 is capped, not overflowed", answer(str("access_token", opaqueToken), num("expires_in", "1e18")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in 1e300 is capped, not overflowed", answer(str("access_token", opaqueToken), num("expires_in", "1e300")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in the largest float is capped", answer(str("access_token", opaqueToken), num("expires_in", "1.7976931348623157e308")), ResponseMapping{}, yearLater},
		{"capped at a year/expires_in 1e300 loses to the JWT exp", answer(str("access_token", jwt5m), num("expires_in", "1e300")), ResponseMapping{}, after(5 * time.Minute)},
		{"capped at a year/expiresAt exactly a year", answer(str("access_token", opaqueToken), str("expiresAt", iso(yearLater))), mapAt, yearLater},
		{"capped at a year/expiresAt beyond a year alone is capped", answer(str("access_token", opaqueToken), str("expiresAt", "2030-01-01T00:00:00Z")), mapAt, yearLater},
		{"capped at a year/expiresAt epoch in year 9999 is capped", answer(str("access_token", opaqueToken), num("expiresAt", "253402300799")), mapAt, yearLater},
		{"capped at a year/expiresAt beyond a year loses to expires_in", answer(str("access_token", opaqueToken), num("expires_in", "300"), str("expiresAt", "2030-01-01T00:00:00Z")), mapAt, after(5 * time.Minute)},
		{"capped at a year/JWT exp exactly a year", answer(str("access_token", jwtExp(yearLater))), ResponseMapping{}, yearLater},
		{"capped at a year/JWT exp beyond a year loses to expires_in", answer(str("access_token", jwt2y), str("expires_in", "300")), ResponseMapping{}, after(5 * time.Minute)},
		{"capped at a year/JWT exp beyond a year loses to expiresAt", answer(str("accessToken", jwt2y), str("expiresAt", iso(after(5*time.Minute)))), flowC, after(5 * time.Minute)},
		{"capped at a year/JWT exp beyond a year alone is capped", answer(str("access_token", jwt2y)), ResponseMapping{}, yearLater},
		{"capped at a year/JWT exp beyond a year alone is capped, the default lifetime does not apply", answer(str("access_token", jwt2y)), withDefault, yearLater},
		{"capped at a year/every source beyond a year is capped", answer(str("access_token", jwt2y), num("expires_in", "31536001"), str("expiresAt", "2030-01-01T00:00:00Z")), mapAt, yearLater},
		{"capped at a year/a source just under a year beats a capped one", answer(str("access_token", jwt2y), num("expires_in", "31535999")), ResponseMapping{}, yearLater.Add(-time.Second)},
		{"capped at a year/beyond a year with a zero expires_in is capped", answer(str("access_token", jwt2y), num("expires_in", "0")), ResponseMapping{}, yearLater},
		{"capped at a year/capping does not excuse an expiresAt in the past", answer(str("access_token", jwt2y), num("expires_in", "1e300"), str("expiresAt", iso(after(-time.Minute)))), mapAt, invalid},

		// expires_in of zero or less.
		{"non-positive expires_in/0 ignored for the JWT exp", answer(str("access_token", jwt5m), num("expires_in", "0")), ResponseMapping{}, after(5 * time.Minute)},
		{"non-positive expires_in/\"0\" ignored for the JWT exp (flow A)", answer(str("access_token", jwt5m), str("expires_in", "0")), ResponseMapping{}, after(5 * time.Minute)},
		{"non-positive expires_in/negative ignored for expiresAt", answer(str("access_token", opaqueToken), num("expires_in", "-5"), str("expiresAt", iso(after(5*time.Minute)))), mapAt, after(5 * time.Minute)},
		{"non-positive expires_in/-0 ignored for the JWT exp", answer(str("access_token", jwt5m), num("expires_in", "-0")), ResponseMapping{}, after(5 * time.Minute)},
		{"non-positive expires_in/-1e300 ignored for the JWT exp", answer(str("access_token", jwt5m), num("expires_in", "-1e300")), ResponseMapping{}, after(5 * time.Minute)},
		{"non-positive expires_in/ignored for a JWT exp beyond a year, which is capped", answer(str("access_token", jwt2y), num("expires_in", "-5")), ResponseMapping{}, yearLater},
		{"non-positive expires_in/0 alone is invalid", answer(str("access_token", opaqueToken), num("expires_in", "0")), ResponseMapping{}, invalid},
		{"non-positive expires_in/negative alone is invalid", answer(str("access_token", opaqueToken), num("expires_in", "-5")), ResponseMapping{}, invalid},
		{"non-positive expires_in/-1e300 alone is invalid", answer(str("access_token", opaqueToken), num("expires_in", "-1e300")), ResponseMapping{}, invalid},
		{"non-positive expires_in/0 with a JWT without exp is invalid", answer(str("access_token", jwtNoExp), num("expires_in", "0")), ResponseMapping{}, invalid},
		{"non-positive expires_in/0 with a default lifetime is invalid", answer(str("access_token", opaqueToken), num("expires_in", "0")), withDefault, invalid},
		{"non-positive expires_in/ignored, but an expired JWT is still invalid", answer(str("access_token", jwtExp(after(-time.Minute))), num("expires_in", "0")), ResponseMapping{}, invalid},

		// Absolute expiries in the past.
		{"absolute in the past/expiresAt is invalid even with expires_in", answer(str("access_token", opaqueToken), num("expires_in", "300"), str("expiresAt", iso(after(-time.Minute)))), mapAt, invalid},
		{"absolute in the past/expiresAt is invalid even with a default lifetime", answer(str("access_token", opaqueToken), str("expiresAt", iso(after(-time.Minute)))), ResponseMapping{ExpiresAtField: "expiresAt", DefaultLifetime: time.Minute}, invalid},
		{"absolute in the past/expiresAt at the arrival is invalid", answer(str("access_token", opaqueToken), str("expiresAt", iso(expiryNow))), mapAt, invalid},
		{"absolute in the past/expiresAt between send and arrival is invalid", answer(str("access_token", opaqueToken), str("expiresAt", iso(after(100*time.Millisecond)))), mapAt, invalid},
		{"absolute in the past/JWT exp is invalid even with expires_in", answer(str("access_token", jwtExp(after(-time.Second))), num("expires_in", "300")), ResponseMapping{}, invalid},
		{"absolute in the past/epoch 1970 is invalid", answer(str("access_token", opaqueToken), num("expiresAt", "1")), mapAt, invalid},

		// A provider whose clock runs 5 s ahead of ours.
		{"provider clock 5s ahead/flow A: JWT exp 5 s late, expires_in wins", answer(str("access_token", claimsJWT(after(305*time.Second), after(5*time.Second), time.Time{})), str("expires_in", "300")), ResponseMapping{}, after(5 * time.Minute)},
		{"provider clock 5s ahead/flow C: expiresAt 5 s late is taken as is", answer(str("accessToken", claimsJWT(time.Time{}, after(5*time.Second), time.Time{})), str("expiresAt", iso(after(305*time.Second)))), flowC, after(305 * time.Second)},
		{"provider clock 5s ahead/JWT exp alone 5 s late is taken as is", answer(str("access_token", claimsJWT(after(305*time.Second), after(5*time.Second), after(5*time.Second)))), ResponseMapping{}, after(305 * time.Second)},
		{"provider clock 5s ahead/iat and nbf in the future are not judged", answer(str("access_token", claimsJWT(after(305*time.Second), after(5*time.Second), after(5*time.Second))), num("expires_in", "300")), ResponseMapping{}, after(5 * time.Minute)},
		{"provider clock 5s ahead/iat and nbf an hour ahead are not judged", answer(str("access_token", claimsJWT(after(time.Hour+5*time.Minute), after(time.Hour), after(time.Hour)))), ResponseMapping{}, after(time.Hour + 5*time.Minute)},
		{"provider clock 5s ahead/a year of expiresAt is capped to a year", answer(str("access_token", opaqueToken), str("expiresAt", iso(yearLater.Add(5*time.Second)))), mapAt, yearLater},
		{"provider clock 5s ahead/a year of JWT exp is capped to a year", answer(str("access_token", jwtExp(yearLater.Add(5*time.Second)))), ResponseMapping{}, yearLater},
		{"provider clock 5s ahead/a year of JWT exp loses to expires_in", answer(str("access_token", jwtExp(yearLater.Add(5*time.Second))), num("expires_in", "600")), ResponseMapping{}, after(10 * time.Minute)},
		{"provider clock 5s ahead/a year of expiresAt and JWT exp both 5 s late is a year", answer(str("access_token", jwtExp(yearLater.Add(5*time.Second))), str("expiresAt", iso(yearLater.Add(5*time.Second)))), mapAt, yearLater},
		{"provider clock 5s ahead/a year of expires_in is a year whatever the clocks", answer(str("access_token", claimsJWT(time.Time{}, after(5*time.Second), after(5*time.Second))), num("expires_in", "31536000")), ResponseMapping{}, yearLater},
		{"provider clock an hour ahead/a year of expiresAt is still capped to a year", answer(str("access_token", opaqueToken), str("expiresAt", iso(yearLater.Add(time.Hour)))), mapAt, yearLater},
		{"provider clock 5s behind/JWT exp 5 s early wins", answer(str("access_token", claimsJWT(after(295*time.Second), after(-5*time.Second), time.Time{})), str("expires_in", "300")), ResponseMapping{}, after(295 * time.Second)},
		{"provider clock 5s behind/expiresAt 5 s early wins", answer(str("access_token", opaqueToken), num("expires_in", "300"), str("expiresAt", iso(after(295*time.Second)))), mapAt, after(295 * time.Second)},

		// Tokens that are not JWTs have no exp.
		{"not a JWT/opaque token, expires_in used", answer(str("access_token", opaqueToken), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/three parts that are not base64 JSON", answer(str("access_token", "abc.def.ghi"), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/payload not JSON", answer(str("access_token", "a.bm90IGpzb24.c"), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/JWT without exp", answer(str("access_token", jwtNoExp), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/string exp is not a NumericDate", answer(str("access_token", testJWT(`{"exp":"`+epoch(after(10*time.Second))+`"}`)), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/exp in milliseconds is not a date", answer(str("access_token", testJWT(`{"exp":`+strconv.FormatInt(after(10*time.Second).UnixMilli(), 10)+`}`)), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/secret.jwt console token (flow D shape)", answer(str("access_token", "console-secret."+jwtExp(after(10*time.Second))), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/JWE five parts", answer(str("access_token", "a.b.c.d.e"), num("expires_in", "60")), ResponseMapping{}, after(time.Minute)},
		{"not a JWT/opaque token alone is invalid", answer(str("access_token", opaqueToken)), ResponseMapping{}, invalid},

		// expires_in as a numeric string.
		{"numeric string/\"300\"", answer(str("access_token", opaqueToken), str("expires_in", "300")), ResponseMapping{}, after(5 * time.Minute)},
		{"numeric string/surrounding spaces", answer(str("access_token", opaqueToken), str("expires_in", " 300 ")), ResponseMapping{}, after(5 * time.Minute)},
		{"numeric string/fraction", answer(str("access_token", opaqueToken), str("expires_in", "300.5")), ResponseMapping{}, after(300500 * time.Millisecond)},
		{"numeric string/exponent", answer(str("access_token", opaqueToken), str("expires_in", "3e2")), ResponseMapping{}, after(5 * time.Minute)},
		{"numeric string/negative alone is invalid", answer(str("access_token", opaqueToken), str("expires_in", "-5")), ResponseMapping{}, invalid},
		{"numeric string/beyond a year alone is capped", answer(str("access_token", opaqueToken), str("expires_in", "31536001")), ResponseMapping{}, yearLater},
		{"numeric string/\"1e300\" is capped", answer(str("access_token", opaqueToken), str("expires_in", "1e300")), ResponseMapping{}, yearLater},
		{"numeric string/unit is invalid", answer(str("access_token", jwt5m), str("expires_in", "5m")), ResponseMapping{}, invalid},
		{"numeric string/hex is invalid", answer(str("access_token", jwt5m), str("expires_in", "0x10")), ResponseMapping{}, invalid},
		{"numeric string/plus sign is invalid", answer(str("access_token", jwt5m), str("expires_in", "+300")), ResponseMapping{}, invalid},
		{"numeric string/Inf is invalid", answer(str("access_token", jwt5m), str("expires_in", "Inf")), ResponseMapping{}, invalid},
		{"numeric string/NaN is invalid", answer(str("access_token", jwt5m), str("expires_in", "NaN")), ResponseMapping{}, invalid},
		{"numeric string/out of float range is invalid", answer(str("access_token", jwt5m), str("expires_in", "1e400")), ResponseMapping{}, invalid},
		{"numeric string/a number out of float range is invalid", answer(str("access_token", jwt5m), num("expires_in", "1e400")), ResponseMapping{}, invalid},
		{"numeric string/a negative number out of float range is invalid", answer(str("access_token", jwt5m), num("expires_in", "-1e400")), ResponseMapping{}, invalid},
		{"numeric string/empty is invalid", answer(str("access_token", jwt5m), str("expires_in", "")), ResponseMapping{}, invalid},

		// DefaultLifetime, only when there is no expiry at all.
		{"default lifetime/used when nothing is known", answer(str("access_token", opaqueToken)), withDefault, after(2 * time.Minute)},
		{"default lifetime/used when expires_in is null", answer(str("access_token", opaqueToken), num("expires_in", "null")), withDefault, after(2 * time.Minute)},
		{"default lifetime/used for a JWT without exp", answer(str("access_token", jwtNoExp)), withDefault, after(2 * time.Minute)},
		{"default lifetime/loses to a longer expires_in", answer(str("access_token", opaqueToken), num("expires_in", "3600")), withDefault, after(time.Hour)},
		{"default lifetime/loses to a longer JWT exp", answer(str("access_token", jwt1h)), withDefault, after(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseTokenResponse("h:443", 200, []byte(tt.body), tt.m, expiryIssued, expiryNow)
			if tt.want.IsZero() {
				var ir *InvalidResponseError
				if !errors.As(err, &ir) {
					t.Fatalf("want *InvalidResponseError, got %T %v (ExpiresAt %v)", err, err, tok.ExpiresAt)
				}
				mustNotEcho(t, err.Error(), tt.body)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tok.ExpiresAt.Equal(tt.want) {
				t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.want)
			}
			if tok.ExpiresAt.After(yearLater) {
				t.Fatalf("ExpiresAt %v is more than a year after IssuedAt", tok.ExpiresAt)
			}
		})
	}
}

// mustNotEcho fails when msg contains a value of the answer: the token or
// any string or number in it (keys are the mapping's and may appear).
func mustNotEcho(t *testing.T, msg, body string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("test body is not JSON: %v", err)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if s := strings.TrimSpace(x); len(s) >= 2 && strings.Contains(msg, s) {
				t.Fatalf("error %q echoes the value %q from the answer", msg, x)
			}
		case json.Number:
			if len(x) >= 2 && strings.Contains(msg, string(x)) {
				t.Fatalf("error %q echoes the value %s from the answer", msg, x)
			}
		}
	}
	walk(v)
}

// expiryMappings are the response mappings FuzzExpiryNeverLaterThanAnySource
// picks from: flows A and B, flow C, both fields, and nested paths.
var expiryMappings = []ResponseMapping{
	{},
	{TokenField: "accessToken", ExpiresAtField: "expiresAt"},
	{ExpiresAtField: "expiresAt"},
	{TokenField: "data.token", ExpiresInField: "data.ttl", ExpiresAtField: "data.validUntil"},
}

// expiryTemplates are the bodies of expiryMappings' flows, used when a
// fuzzed body is not JSON.
var expiryTemplates = []string{
	`{"access_token":"@JWT@","expires_in":@IN@}`,
	`{"accessToken":"@JWT@","expiresAt":@AT@}`,
	`{"access_token":"@JWT@","expires_in":@IN@,"expiresAt":@AT@}`,
	`{"data":{"token":"@JWT@","ttl":@IN@,"validUntil":@AT@}}`,
}

// Placeholders in a fuzzed body: @JWT@ becomes a JWT whose payload is the
// fuzzed claims, @IN@ and @AT@ the fuzzed expires_in and expiresAt values,
// so the fuzzer can vary them without breaking base64 or the JSON around.
const (
	jwtPlaceholder = "@JWT@"
	inPlaceholder  = "@IN@"
	atPlaceholder  = "@AT@"
)

// jsonValue is s when s is one JSON value, null when s is empty, else s as
// a JSON string.
func jsonValue(s string) string {
	if s == "" {
		return "null"
	}
	if json.Valid([]byte(s)) {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// FuzzExpiryNeverLaterThanAnySource checks, on every answer the parser
// accepts:
//
//   - the expiry is after the arrival (now);
//   - it is never later than IssuedAt plus a year, nor than any expiry the
//     answer carries: a positive expires_in, expiresAt, the JWT exp;
//   - when the oracle below could read every expiry in the answer, it is
//     exactly min(IssuedAt plus a year, every positive expires_in, expiresAt
//     and JWT exp), and it is IssuedAt + DefaultLifetime when the answer has
//     none.
//
// And, when the oracle read everything: an answer with an expiry field that
// holds no number or date, an absolute expiry at or before now, or only a
// non-positive expires_in, is rejected as InvalidResponse; one with a usable
// token and a usable expiry is accepted, a source beyond a year (expires_in
// up to the largest float included) counting as a year. An answer without
// a token is never accepted.
//
// The oracle reads less than the parser (expiresAt only as strict RFC 3339
// or epoch seconds); what it cannot judge makes its view incomplete, and
// only the upper bounds are checked then.
func FuzzExpiryNeverLaterThanAnySource(f *testing.F) {
	i := expiryIssued
	claims := func(exp, iat time.Time) []byte {
		return []byte(`{"sub":"m2m-user","iat":` + epoch(iat) + `,"exp":` + epoch(exp) + `}`)
	}
	none := []byte(`{"sub":"m2m-user"}`)
	type seed struct {
		body      string
		in, at    string // JSON values for @IN@ and @AT@
		claims    []byte
		mapping   uint8
		latencyMs uint16
		defSecs   uint32
	}
	at := func(t time.Time) string { return strconv.Quote(iso(t)) }
	seeds := []seed{
		// Flow A: a JWT and expires_in as a string.
		{`{"access_token":"@JWT@","expires_in":@IN@}`, `"300"`, ``, claims(i.Add(5*time.Minute), i), 0, 200, 0},
		{`{"access_token":"@JWT@","expires_in":@IN@}`, `"300"`, ``, claims(i.Add(305*time.Second), i.Add(5*time.Second)), 0, 200, 0},
		{`{"access_token":"@JWT@","expires_in":@IN@}`, `"0"`, ``, claims(i.Add(5*time.Minute), i), 0, 200, 0},
		{`{"access_token":"@JWT@","expires_in":@IN@}`, `"-1"`, ``, none, 0, 200, 120},
		// Flow B: an opaque token and expires_in as a number.
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `600`, ``, nil, 0, 200, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `600.5`, ``, nil, 0, 5000, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `31536001`, ``, nil, 0, 200, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `1e18`, ``, nil, 0, 200, 60},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `1e300`, ``, nil, 0, 200, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `"1.7976931348623157e308"`, ``, nil, 0, 200, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `1e400`, ``, nil, 0, 200, 0},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `-1e300`, ``, nil, 0, 200, 60},
		{`{"access_token":"tok-S3cr3t","token_type":"Bearer","expires_in":@IN@}`, `0`, ``, nil, 0, 200, 60},
		// Flow C: a JWT and an absolute expiresAt.
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, `"2026-03-04T10:05:00.000Z"`, claims(i.Add(5*time.Minute), i), 1, 200, 0},
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, at(i.Add(305 * time.Second)), claims(i.Add(305*time.Second), i.Add(5*time.Second)), 1, 200, 0},
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, at(i.Add(-time.Minute)), claims(i.Add(5*time.Minute), i), 1, 200, 0},
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, at(yearLater.Add(5 * time.Second)), claims(yearLater.Add(5*time.Second), i.Add(5*time.Second)), 1, 200, 0},
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, `"2030-01-01T00:00:00Z"`, claims(i.Add(2*maxLifetime), i), 1, 200, 0},
		{`{"accessToken":"@JWT@","expiresAt":@AT@}`, ``, `253402300799`, none, 1, 200, 0},
		// Flow D: a console token (secret.jwt is not a JWT) or a bare
		// console JWT, with a default lifetime.
		{`{"access_token":"console-secret.@JWT@"}`, ``, ``, claims(i.Add(2*maxLifetime), i), 0, 200, 3600},
		{`{"access_token":"@JWT@"}`, ``, ``, claims(i.Add(2*maxLifetime), i), 0, 200, 3600},
		{`{"access_token":"@JWT@"}`, ``, ``, claims(i.Add(2*maxLifetime), i), 0, 200, 0},
		{`{"access_token":"@JWT@"}`, ``, ``, none, 0, 200, 3600},
		// All three sources; nested paths.
		{`{"access_token":"@JWT@","expires_in":@IN@,"expiresAt":@AT@}`, `60`, at(i.Add(30 * time.Minute)), claims(i.Add(time.Hour), i), 2, 200, 0},
		{`{"access_token":"@JWT@","expires_in":@IN@,"expiresAt":@AT@}`, `-5`, epoch(i.Add(2 * time.Minute)), claims(i.Add(time.Hour), i), 2, 200, 0},
		{`{"data":{"token":"@JWT@","ttl":@IN@,"validUntil":@AT@}}`, `900`, at(i.Add(15 * time.Minute)), claims(i.Add(20*time.Minute), i), 3, 200, 0},
		{`{"data":{"token":"@JWT@","ttl":@IN@,"validUntil":@AT@}}`, `"900"`, `null`, claims(i.Add(-time.Second), i), 3, 200, 0},
		{`{"data":{"token":"@JWT@","ttl":@IN@,"validUntil":@AT@}}`, `1e300`, at(i.Add(3 * maxLifetime)), claims(i.Add(2*maxLifetime), i), 3, 200, 0},
	}
	for _, s := range seeds {
		f.Add(s.body, s.in, s.at, s.claims, s.mapping, s.latencyMs, s.defSecs)
	}
	f.Fuzz(func(t *testing.T, body, expiresIn, expiresAt string, claims []byte, mapping uint8, latencyMs uint16, defaultSecs uint32) {
		enc := base64.RawURLEncoding
		jwt := enc.EncodeToString([]byte(`{"alg":"ES256"}`)) + "." + enc.EncodeToString(claims) + ".c2ln"
		fill := strings.NewReplacer(jwtPlaceholder, jwt, inPlaceholder, jsonValue(expiresIn), atPlaceholder, jsonValue(expiresAt))
		body = fill.Replace(body)
		k := int(mapping) % len(expiryMappings)
		if !json.Valid([]byte(body)) {
			// FuzzParseResponse covers broken JSON; here it would only
			// hide the expiries, so fall back to the mapping's flow.
			body = fill.Replace(expiryTemplates[k])
		}
		m := expiryMappings[k]
		// Any default from 0 (none) to a year; defaults are the spec's, not
		// the answer's, and are not bounded here.
		m.DefaultLifetime = time.Duration(uint64(defaultSecs)%uint64(maxLifetime/time.Second+1)) * time.Second
		issued := expiryIssued
		now := issued.Add(time.Duration(latencyMs) * time.Millisecond)
		limit := issued.Add(maxLifetime)

		tok, err := parseTokenResponse("h:443", 200, []byte(body), m, issued, now)
		v := readExpiries(body, m)

		if err == nil && v.noToken {
			t.Fatalf("accepted an answer without a token")
		}
		if err == nil {
			got := tok.ExpiresAt
			if !got.After(now) {
				t.Fatalf("expiry %v not after now %v", got, now)
			}
			if got.After(limit) {
				t.Fatalf("expiry %v more than a year after IssuedAt", got)
			}
			for _, secs := range v.relative {
				if secs > 0 {
					if src := relativeExpiry(issued, secs); got.After(src) {
						t.Fatalf("expiry %v later than expires_in %g (%v)", got, secs, src)
					}
				}
			}
			for _, src := range v.absolute {
				if got.After(src) {
					t.Fatalf("expiry %v later than an absolute expiry %v", got, src)
				}
			}
		}
		if !v.complete {
			return
		}

		// The oracle saw every expiry: work out what must happen.
		var (
			want    time.Time
			counted bool
			past    bool
			notPos  bool
		)
		// take counts a source, capped at the year.
		take := func(t time.Time) {
			t = minTime(t, limit)
			if !counted || t.Before(want) {
				want, counted = t, true
			}
		}
		for _, secs := range v.relative {
			if secs <= 0 {
				notPos = true
			} else {
				take(relativeExpiry(issued, secs))
			}
		}
		for _, src := range v.absolute {
			if !src.After(now) {
				past = true
			} else {
				take(src)
			}
		}
		mustFail := v.malformed || past || (!counted && notPos)
		switch {
		case mustFail:
		case counted:
		case m.DefaultLifetime > 0:
			want = issued.Add(m.DefaultLifetime)
		default:
			mustFail = true
		}
		if want.IsZero() || !want.After(now) {
			mustFail = true
		}

		if mustFail {
			if err == nil {
				t.Fatalf("accepted with expiry %v; want rejection (malformed=%v past=%v notPositive=%v)", tok.ExpiresAt, v.malformed, past, notPos)
			}
			if v.usableToken {
				var ir *InvalidResponseError
				if !errors.As(err, &ir) {
					t.Fatalf("rejected with %T %v; want *InvalidResponseError", err, err)
				}
			}
			return
		}
		if err != nil {
			if v.usableToken {
				t.Fatalf("rejected %v; want expiry %v", err, want)
			}
			return
		}
		if !tok.ExpiresAt.Equal(want) {
			t.Fatalf("expiry %v, want %v (the earliest source, at most a year)", tok.ExpiresAt, want)
		}
	})
}

// relativeExpiry is issued plus secs (> 0) seconds, capped at a year; the
// cap comes first so that no float or Duration overflows on the way.
func relativeExpiry(issued time.Time, secs float64) time.Time {
	if secs >= maxLifetime.Seconds() {
		return issued.Add(maxLifetime)
	}
	return issued.Add(time.Duration(secs * float64(time.Second)))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// expiryView is what the fuzz oracle reads from an answer, independently of
// the parser and more strictly.
type expiryView struct {
	relative []float64   // expires_in as read, any sign
	absolute []time.Time // expiresAt and JWT exp
	// complete: every expiry field is absent, null, or read above, and the
	// token is a string whose JWT-ness the oracle could judge.
	complete bool
	// malformed: an expiry field holds something that is no number or no
	// date, which the parser must reject.
	malformed bool
	// noToken: no OAuth error and no string where the token should be.
	noToken bool
	// usableToken: no OAuth error and a token the parser must accept.
	usableToken bool
}

var (
	plainJSONNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	// Every accepted expiresAt string starts with a date and a T or space.
	isoDatePrefix = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]`)
)

func readExpiries(body string, m ResponseMapping) expiryView {
	var v expiryView
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return v
	}
	if _, err := dec.Token(); err == nil {
		return v // more data after the object
	}
	v.complete = true
	incomplete := func() { v.complete = false }
	field := func(path string) (any, bool) {
		if x, ok := obj[path]; ok {
			return x, true
		}
		var cur any = obj
		for _, seg := range strings.Split(path, ".") {
			o, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = o[seg]; !ok {
				return nil, false
			}
		}
		return cur, strings.Contains(path, ".")
	}

	inField := m.ExpiresInField
	if inField == "" {
		inField = "expires_in"
	}
	if x, ok := field(inField); ok && x != nil {
		var s string
		switch y := x.(type) {
		case json.Number:
			s = string(y)
		case string:
			s = strings.TrimSpace(y)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && plainJSONNumber.MatchString(s) {
			v.relative = append(v.relative, f)
		} else {
			v.malformed = true // not a number, or out of float range
		}
	}
	if m.ExpiresAtField != "" {
		if x, ok := field(m.ExpiresAtField); ok && x != nil {
			switch y := x.(type) {
			case json.Number:
				if f, err := strconv.ParseFloat(string(y), 64); err == nil && f > 0 && f < maxUnixSeconds {
					v.absolute = append(v.absolute, unixSeconds(f))
				} else {
					v.malformed = true // not a date from 1970 to 9999
				}
			case string:
				t, err := time.Parse(time.RFC3339Nano, y)
				switch {
				case err == nil && len(y) <= 64:
					v.absolute = append(v.absolute, t)
				case !isoDatePrefix.MatchString(strings.ToUpper(strings.TrimSpace(y))):
					v.malformed = true
				default:
					incomplete() // ISO 8601 but not RFC 3339: not judged here
				}
			default:
				v.malformed = true
			}
		}
	}

	tokenField := m.TokenField
	if tokenField == "" {
		tokenField = "access_token"
	}
	raw, _ := field(tokenField)
	token, isString := raw.(string)
	code, _ := obj["error"].(string)
	if !isString {
		v.noToken = code == ""
		incomplete() // no JWT exp to read either
		return v
	}
	v.usableToken = code == "" && checkToken(token) == ""
	if parts := strings.Split(token, "."); len(parts) == 3 {
		if strings.Contains(parts[1], "=") {
			incomplete() // padded: the oracle does not judge it
			return v
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return v // not a JWT
		}
		var claims map[string]json.RawMessage
		if json.Unmarshal(payload, &claims) != nil {
			return v
		}
		rawExp := bytes.TrimSpace(claims["exp"])
		var exp any
		if json.Unmarshal(rawExp, &exp) != nil {
			return v // absent, or a number out of range: no exp
		}
		if f, ok := exp.(float64); ok && f > 0 && f < maxUnixSeconds {
			v.absolute = append(v.absolute, unixSeconds(f))
		}
	}
	return v
}

// unixSeconds converts a NumericDate, as RFC 7519 defines it (seconds,
// possibly fractional).
func unixSeconds(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
