package monitoring_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// runbookPrefix is where every alert's runbook_url points.
const runbookPrefix = "https://github.com/tokenwarden/tokenwarden/blob/main/docs/troubleshooting.md#"

// reasonTemplate is the part of a runbook_url that Prometheus fills with the
// alert's reason label (TokenwardenRefreshesFailing).
const reasonTemplate = "{{ $labels.reason | toLower }}"

// TestAlertsLinkToTroubleshootingSections checks that each alert has a
// summary, a description, a severity and a runbook_url into
// docs/troubleshooting.md whose anchor is a heading there. A runbook_url
// templated on the reason label is checked for every failure reason.
func TestAlertsLinkToTroubleshootingSections(t *testing.T) {
	anchors := headingAnchors(string(readFile(t, filepath.Join(root, "docs", "troubleshooting.md"))))
	var missing []string
	for _, g := range loadRules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			for _, key := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[key] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, key)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, runbookPrefix)
			if !ok {
				t.Errorf("alert %s: runbook_url %q does not start with %s", r.Alert, u, runbookPrefix)
				continue
			}
			want := []string{anchor}
			if anchor == reasonTemplate {
				want = nil
				for _, reason := range failure.Reasons() {
					want = append(want, strings.ToLower(string(reason)))
				}
			}
			for _, a := range want {
				if !anchors[a] {
					missing = append(missing, fmt.Sprintf("%s (alert %s)", a, r.Alert))
				}
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("docs/troubleshooting.md has no section with the anchor #%s", m)
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown page: lower case, spaces to hyphens, punctuation other than
// hyphens and underscores dropped; repeated headings get -1, -2, ...
func headingAnchors(doc string) map[string]bool {
	heading := regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		m := heading.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		text := strings.ReplaceAll(m[1], "`", "")
		slug := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(text), ""), " ", "-")
		a := slug
		for i := 1; out[a]; i++ {
			a = fmt.Sprintf("%s-%d", slug, i)
		}
		out[a] = true
	}
	return out
}

func TestHeadingAnchors(t *testing.T) {
	got := headingAnchors("# Troubleshooting\n## Ready=False, TokenExpired\n### RateLimited\n```sh\n# not a heading\n```\n## Pods still use an old or expired token\n## Deleting and pausing\n## Deleting and pausing\n")
	for _, want := range []string{"troubleshooting", "readyfalse-tokenexpired", "ratelimited", "pods-still-use-an-old-or-expired-token", "deleting-and-pausing", "deleting-and-pausing-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a comment in a code block was taken for a heading")
	}
	if _, err := url.Parse(runbookPrefix); err != nil {
		t.Fatal(err)
	}
}
