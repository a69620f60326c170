package plugin

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// relative says when t is from now, as kubectl prints ages: "in 4m10s",
// "3m ago". The zero time is "-".
func relative(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case t.After(now):
		return "in " + duration.HumanDuration(t.Sub(now))
	case now.Sub(t) < time.Second:
		return "now"
	default:
		return duration.HumanDuration(now.Sub(t)) + " ago"
	}
}

// stamp is t in RFC 3339 (UTC) with its relative time: the form the detailed
// views use.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(t, now) + ")"
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
