package auth

import (
	"net/http"
	"strings"
	"time"
)

// MaxRetryAfter caps any wait a provider can impose through Retry-After, so a
// typo or a hostile header cannot park a credential for days.
const MaxRetryAfter = 10 * time.Minute

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): either
// delay-seconds or an HTTP-date in any of its three forms (IMF-fixdate,
// RFC 850, asctime). A date in the past means "now" (0, true). Anything else
// is garbage (0, false), and the caller falls back to backoff. The result is
// clamped to MaxRetryAfter.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		// Accumulate with an early clamp: a long digit string must not overflow.
		var secs int64
		for i := 0; i < len(v); i++ {
			secs = secs*10 + int64(v[i]-'0')
			if secs > int64(MaxRetryAfter/time.Second) {
				return MaxRetryAfter, true
			}
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0, true
	}
	if d > MaxRetryAfter {
		return MaxRetryAfter, true
	}
	return d, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
