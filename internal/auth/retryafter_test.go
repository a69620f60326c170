package auth

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	in := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"seconds", "7", 7 * time.Second, true},
		{"zero seconds", "0", 0, true},
		{"seconds with spaces", "  120 ", 2 * time.Minute, true},
		{"seconds clamped", "86400", MaxRetryAfter, true},
		{"seconds at the clamp", "600", MaxRetryAfter, true},
		{"huge number does not overflow", "99999999999999999999999999", MaxRetryAfter, true},
		{"IMF-fixdate", in(30 * time.Second), 30 * time.Second, true},
		{"IMF-fixdate clamped", in(time.Hour), MaxRetryAfter, true},
		{"RFC 850", now.Add(45 * time.Second).Format(time.RFC850), 45 * time.Second, true},
		{"asctime", now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second, true},
		{"date now", in(0), 0, true},
		{"past date", in(-time.Hour), 0, true},
		{"far past date", "Sun, 06 Nov 1994 08:49:37 GMT", 0, true},
		{"empty", "", 0, false},
		{"garbage", "soon", 0, false},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"plus sign", "+5", 0, false},
		{"unit", "5s", 0, false},
		{"date in another zone is not an HTTP-date", now.Format(time.RFC3339), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.value, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	for _, s := range []string{
		"7", "0", "600", "601", "99999999999999999999", "-1", "1.5", "", " ", "soon",
		now.Add(time.Minute).Format(http.TimeFormat),
		now.Add(-time.Minute).Format(http.TimeFormat),
		now.Add(time.Minute).Format(time.RFC850),
		now.Add(time.Minute).Format(time.ANSIC),
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		d, ok := ParseRetryAfter(value, now)
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v outside [0, %v]", value, d, MaxRetryAfter)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v with ok=false", value, d)
		}
	})
}
