package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxBodyBytes caps how much of a response body is read. Token responses
	// are a few KiB; anything bigger is a misconfigured URL or an attack on
	// the operator's memory.
	MaxBodyBytes = 1 << 20
	// MaxTokenBytes caps the token itself: it must fit in a Secret, an HTTP
	// header and the kubelet's volume projection comfortably.
	MaxTokenBytes = 64 << 10
	// maxLifetime caps every expiry, whatever its source: an expires_in,
	// expiresAt or JWT exp later than a year after the request counts as
	// exactly a year after it. No token is trusted for longer, and a value
	// that far out (often a unit mistake, milliseconds for seconds) is then
	// refreshed within the year instead of being trusted or refused.
	maxLifetime = 365 * 24 * time.Hour

	defaultTokenField     = "access_token"
	defaultExpiresInField = "expires_in"
)

// parseTokenResponse turns a 2xx body into a Token. issuedAt is when the
// request was sent (relative expiries count from there); now is when the
// answer arrived (an expiry at or before it is useless).
func parseTokenResponse(host string, status int, body []byte, m ResponseMapping, issuedAt, now time.Time) (Token, error) {
	bad := func(problem string) (Token, error) {
		return Token{}, &InvalidResponseError{Host: host, StatusCode: status, Problem: problem}
	}
	obj, problem := decodeObject(body)
	if problem != "" {
		return bad(problem)
	}

	// Some providers answer 200 with an OAuth error object instead of a 4xx.
	if code, ok := obj["error"].(string); ok && code != "" {
		return Token{}, oauthErrorInBody(host, status, code)
	}

	tokenField := orDefault(m.TokenField, defaultTokenField)
	raw, found := lookupField(obj, tokenField)
	if !found || raw == nil {
		return bad("no token in field " + strconv.Quote(tokenField))
	}
	value, ok := raw.(string)
	if !ok {
		return bad("token field " + strconv.Quote(tokenField) + " is not a string")
	}
	if problem := checkToken(value); problem != "" {
		return bad(problem)
	}

	expiresAt, problem := chooseExpiry(obj, value, m, issuedAt, now)
	if problem != "" {
		return bad(problem)
	}
	return Token{Value: value, IssuedAt: issuedAt, ExpiresAt: expiresAt}, nil
}

// chooseExpiry applies the expiry rules to the three sources an answer may
// carry: the relative expires_in field, counted from issuedAt; the absolute
// expiresAt field, when mapped; and the JWT exp claim of the token, when the
// token is a JWT.
//
//   - The earliest source wins.
//   - Each source is capped at a year after issuedAt: one later than that
//     counts as exactly a year after issuedAt, never as an error, however
//     far out it is (an expires_in of 1e300 included). A provider clock
//     running ahead of ours therefore cannot push an expiry past the year,
//     nor get a near-a-year answer refused.
//   - A relative expiry of zero or less is ignored when another source
//     counts, and makes the answer invalid otherwise (defaultLifetime does
//     not apply then: the provider did say something, and it is unusable).
//   - An absolute expiry at or before now is invalid, whatever else is there.
//   - defaultLifetime applies only when the answer has no expiry at all.
//   - A value that is no number or no date is invalid, whatever else is
//     there.
//
// Only exp is read from a JWT: an iat or nbf in the future (a provider clock
// running ahead) is the provider's business, not a reason to refuse.
//
// The problem returned is built from fixed text and the mapping's own field
// names, never from a value in the answer.
func chooseExpiry(obj map[string]any, token string, m ResponseMapping, issuedAt, now time.Time) (time.Time, string) {
	limit := issuedAt.Add(maxLifetime)
	var (
		expiresAt time.Time
		known     bool
		// Why the answer is invalid if no source counts.
		notPositive string
	)
	// count takes a source into account, capped at the year.
	count := func(t time.Time) {
		if t.After(limit) {
			t = limit
		}
		if !known || t.Before(expiresAt) {
			expiresAt, known = t, true
		}
	}
	// absolute handles expiresAt and exp alike: both come from the
	// provider's clock.
	absolute := func(t time.Time, name string) string {
		if !t.After(now) {
			return name + " is in the past"
		}
		count(t)
		return ""
	}

	inField := orDefault(m.ExpiresInField, defaultExpiresInField)
	if v, found := lookupField(obj, inField); found {
		secs, ok, problem := parseExpiresIn(v)
		switch {
		case problem != "":
			return time.Time{}, strconv.Quote(inField) + " " + problem
		case !ok:
		case secs <= 0:
			notPositive = strconv.Quote(inField) + " is not positive"
		case secs >= maxLifetime.Seconds():
			// Capped before converting: seconds * 1e9 would overflow a
			// Duration from about 9.2e9 seconds on.
			count(limit)
		default:
			count(issuedAt.Add(min(time.Duration(secs*float64(time.Second)), maxLifetime)))
		}
	}
	if m.ExpiresAtField != "" {
		if v, found := lookupField(obj, m.ExpiresAtField); found {
			t, ok, problem := parseExpiresAt(v)
			if problem != "" {
				return time.Time{}, strconv.Quote(m.ExpiresAtField) + " " + problem
			}
			if ok {
				if problem := absolute(t, strconv.Quote(m.ExpiresAtField)); problem != "" {
					return time.Time{}, problem
				}
			}
		}
	}
	if exp, ok := JWTExpiry(token); ok {
		if problem := absolute(exp, "the token's exp claim"); problem != "" {
			return time.Time{}, problem
		}
	}

	switch {
	case known:
	case notPositive != "":
		return time.Time{}, notPositive
	case m.DefaultLifetime > 0:
		expiresAt = issuedAt.Add(m.DefaultLifetime)
	default:
		return time.Time{}, "no expiry in the response or the token, and no default lifetime"
	}
	if !expiresAt.After(now) {
		return time.Time{}, "the token had expired when it arrived"
	}
	return expiresAt, ""
}

// decodeObject parses body as exactly one JSON object. Numbers stay
// json.Number so that 1e11 or 300.5 are judged as written, not after a
// lossy float conversion.
func decodeObject(body []byte) (map[string]any, string) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, "empty body"
	}
	if trimmed[0] == '<' {
		return nil, "body is HTML or XML, not JSON"
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, "body is not valid JSON"
	}
	if dec.InputOffset() != int64(len(trimmed)) {
		return nil, "body has data after the JSON value"
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, "body is not a JSON object"
	}
	return obj, ""
}

// oauthErrorInBody classifies an RFC 6749 error object found in a body. The
// provider's own text is kept only when it is a standard code.
func oauthErrorInBody(host string, status int, code string) error {
	switch code {
	case "server_error", "temporarily_unavailable":
		return &TransientError{Host: host, StatusCode: status, Problem: "provider reported a temporary error"}
	}
	return &InvalidCredentialsError{Host: host, StatusCode: status, OAuthError: safeOAuthError(code),
		Problem: "provider returned an error instead of a token"}
}

// lookupField finds a top-level key, or else walks a dotted path through
// nested objects ("data.token"). The exact key wins so that a provider whose
// key itself contains a dot still works.
func lookupField(obj map[string]any, path string) (any, bool) {
	if v, ok := obj[path]; ok {
		return v, true
	}
	if !strings.Contains(path, ".") {
		return nil, false
	}
	var cur any = obj
	for _, seg := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok || seg == "" {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// checkToken rejects tokens that cannot be written safely into a header or a
// file: empty, oversized, not UTF-8, or with control characters (a CR/LF in a
// token would let a provider inject headers downstream).
func checkToken(v string) string {
	switch {
	case v == "":
		return "token is empty"
	case len(v) > MaxTokenBytes:
		return "token exceeds 64 KiB"
	case !utf8.ValidString(v):
		return "token is not valid UTF-8"
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "token contains control characters"
		}
	}
	return ""
}

// parseExpiresIn reads a number of seconds, as a JSON number or a numeric
// string (flow A sends "300"). Missing or null is "unknown"; a value out of
// float64 range (1e400) is not a number. What the value means (ignored when
// not positive, capped at a year) is chooseExpiry's call: a zero or negative
// value is only fatal when nothing else says when the token expires.
func parseExpiresIn(v any) (float64, bool, string) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, false, ""
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
		// Only a JSON number spelled as a string: no units ("5m"), no hex,
		// no "Inf".
		if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) || !json.Valid([]byte(s)) {
			return 0, false, "is not a number"
		}
	default:
		return 0, false, "is not a number"
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, "is not a number"
	}
	return f, true, ""
}

// expiresAtLayouts cover RFC 3339 and the ISO 8601 variants providers send:
// with or without fractional seconds (time.Parse accepts a fraction after
// the seconds even when the layout has none), with "Z", "+01:00", "+0100" or
// "+01", with or without seconds, with "T" or a space, and with no zone at
// all, which is read as UTC.
var expiresAtLayouts = []string{
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02 15:04:05",
}

// parseExpiresAt reads an absolute expiry: an RFC 3339 / ISO 8601 string, or
// a number of seconds since the epoch. Missing or null is "unknown".
func parseExpiresAt(v any) (time.Time, bool, string) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, false, ""
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f >= maxUnixSeconds {
			return time.Time{}, false, "is not a valid time"
		}
		return unixFloat(f), true, ""
	case string:
		s := strings.ToUpper(strings.TrimSpace(x))
		if len(s) > 64 {
			return time.Time{}, false, "is not a valid time"
		}
		for _, layout := range expiresAtLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC(), true, ""
			}
		}
		return time.Time{}, false, "is not a valid time"
	}
	return time.Time{}, false, "is not a valid time"
}

// maxUnixSeconds is 10000-01-01T00:00:00Z: later values are not dates.
const maxUnixSeconds = 253402300800

func unixFloat(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// JWTExpiry reads the exp claim of a JWS compact token without verifying the
// signature: the operator only needs to know when the provider will stop
// accepting the token, and the provider is the one that verifies it. It
// returns false when token is not a JWT or has no numeric exp. Other claims
// (iat, nbf) are not read, so a provider clock running ahead cannot make a
// token look unusable. It does not cap exp: a token endpoint's answer is
// capped by chooseExpiry, a static token's exp is reported as it is.
func JWTExpiry(token string) (time.Time, bool) {
	if strings.Count(token, ".") != 2 || len(token) > MaxTokenBytes {
		return time.Time{}, false
	}
	parts := strings.SplitN(token, ".", 3)
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, false
	}
	raw := bytes.TrimSpace(claims["exp"])
	// A quoted "exp" is not a NumericDate (RFC 7519 §2).
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f >= maxUnixSeconds {
		return time.Time{}, false
	}
	return unixFloat(f), true
}
