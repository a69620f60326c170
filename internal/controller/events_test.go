package controller

import (
	"fmt"
	"testing"
	"time"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// Routine refreshes of one APICredential make one Event series, not one
// Event per refresh: on the API server a refresh costs its Secret write and
// its status write, and the events' count still tells how many there were.
func TestRefreshEventsFormOneSeries(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 20*time.Second) // a refresh about every 10 s (the minimum interval)
	h.client("series")
	h.credential("series", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("series"), Target: targetSpec("series-token")})
	tokens := map[string]bool{}
	h.eventually(60*time.Second, func() string {
		if s := h.targetSecret("series-token"); s != nil && len(s.Data["token"]) > 0 {
			tokens[string(s.Data["token"])] = true
		}
		if len(tokens) < 4 {
			return fmt.Sprintf("%d tokens so far", len(tokens))
		}
		return ""
	})
	objects, count := 0, int32(0)
	for _, e := range h.events() {
		if e.Reason != EventTokenRefreshed || e.Regarding.Name != "series" {
			continue
		}
		objects++
		count = 1
		if e.Series != nil {
			count = e.Series.Count
		}
		if e.Regarding.ResourceVersion != "" {
			t.Errorf("the event names resourceVersion %s of the APICredential; want none, so that refreshes form a series", e.Regarding.ResourceVersion)
		}
	}
	if objects != 1 || count < 2 {
		t.Fatalf("%d tokens written: %d TokenRefreshed Event objects (series count %d); want 1 object whose series counts the repeats", len(tokens), objects, count)
	}
	t.Logf("%d tokens written, 1 TokenRefreshed Event with series count %d", len(tokens), count)
}
