package docs_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/controller"
	"github.com/tokenwarden/tokenwarden/internal/leader"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// The docs quote retry intervals, caps and defaults that are constants of
// the code. The checks below keep every such quote in step with its
// constant:
//
//   - TestDocsQuoteTheConstants: each place in the table quoted (a table row,
//     list item or paragraph of a document, picked by a piece of its text)
//     must contain the constant as rendered from the code (10*time.Second as
//     "10 s"), so changing a constant fails until the docs say the new value;
//   - TestEveryQuoteIsChecked: every place in docs/*.md and README.md that
//     shows one of those rendered values must be listed in quoted, or in
//     incidental with the reason it is not that constant, so a new sentence
//     quoting "10 minutes" cannot slip past the check;
//   - TestQuoteCheckCatchesDrift proves the first check is not vacuous;
//   - TestCodeDefaultsAgree keeps the defaults the reference shows from the
//     CRD markers and the manager's flags equal to the same constants.

// at is a place in a document: file, relative to the repository root, and a
// piece of text that occurs in exactly one of its blocks (a table row, a list
// item, a paragraph, a heading, a line of a code block).
type at struct{ file, anchor string }

func readme(anchor string) at          { return at{"README.md", anchor} }
func reference(anchor string) at       { return at{"docs/reference.md", anchor} }
func troubleshooting(anchor string) at { return at{"docs/troubleshooting.md", anchor} }
func designNotes(anchor string) at     { return at{"docs/design-notes.md", anchor} }
func providers(anchor string) at       { return at{"docs/providers.md", anchor} }
func security(anchor string) at        { return at{"docs/security.md", anchor} }
func consuming(anchor string) at       { return at{"docs/consuming-tokens.md", anchor} }
func helmDoc(anchor string) at         { return at{"docs/helm.md", anchor} }
func monitoring(anchor string) at      { return at{"docs/monitoring.md", anchor} }
func nodeDoc(anchor string) at         { return at{"docs/node.md", anchor} }

// quote is one value of the code, rendered as the docs write it, and every
// place that quotes it.
type quote struct {
	from   string // the Go expression, for messages
	as     string // the value rendered from it
	places []at
}

// quoted is the one table of values the docs take from the code. To cover a
// new constant, add a row; TestEveryQuoteIsChecked then lists the places
// that show its value and are not yet in the table.
func quoted() []quote {
	// Worked examples of the default refreshBefore, computed by the code.
	const five, ten, hour = 5 * time.Minute, 10 * time.Minute, time.Hour
	rb5 := refresh.DefaultRefreshBefore(five, false)
	rb10 := refresh.DefaultRefreshBefore(ten, false)
	rb60 := refresh.DefaultRefreshBefore(hour, false)
	rbC := refresh.DefaultRefreshBefore(five, true)
	jitter5 := time.Duration(refresh.JitterFraction * float64(five))

	return []quote{
		// Minimum interval between two provider calls of one credential.
		{"refresh.Floor", short(refresh.Floor), []at{
			reference("| `spec.refresh.refreshBefore` | duration |"),
			reference("| `RateLimited` | `Degraded=True` |"),
			reference("| `ProviderUnavailable` | `Degraded=True` |"),
			reference("| `InvalidResponse` | `Degraded=True` |"),
			reference("| `auth.tokenwarden.io/refresh-requested-at` | annotation |"),
			reference("| Minimum interval |"),
			reference("| Transient failures |"),
			reference("| Broken configuration |"),
			reference("| 429 |"),
			troubleshooting("**Do:** fix the network path."),
			troubleshooting("treated as a broken configuration and not hammered"),
			troubleshooting("Someone edited or removed `token`"),
			reference("| Failing host |"),
			reference("| `status.lastAttemptTime` | timestamp | When the operator"),
			troubleshooting("`tokenwarden_host_waiting_credentials` for"),
			designNotes("**Minimum interval between two provider calls of one credential.**"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.Floor", long(refresh.Floor), []at{
			troubleshooting("limits still apply: at most one request per credential every"),
		}},
		// A token shorter than 2·Floor is asked for every L/2 instead.
		{"2 * refresh.Floor", short(2 * refresh.Floor), []at{
			reference("| Minimum interval |"),
			designNotes("**Minimum interval between two provider calls of one credential.**"),
		}},
		{"refresh.SlowRetry", long(refresh.SlowRetry), []at{
			troubleshooting("Alert `TokenwardenTokenExpiresBeforeRefresh`"),
			reference("| `InvalidCredentials` | `Degraded=True` |"),
			reference("| `InvalidResponse` | `Degraded=True` |"),
			reference("| `SourceSecretMissing` | `Degraded=True` |"),
			reference("| `InvalidClientCertificate` | `Degraded=True` |"),
			reference("| `TargetConflict` | `Degraded=True` |"),
			reference("| Broken configuration |"),
			reference("| Credential and conflict failures |"),
			troubleshooting("**Do:** fix the Secret or the spec."),
			troubleshooting("treated as a broken configuration and not hammered"),
			troubleshooting("**Do:** create the Secret or add the key."),
			troubleshooting("Once the cause is fixed, tokenwarden requests a token at once"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.SlowRetry", short(refresh.SlowRetry), []at{
			designNotes("**Credential failures and conflicts are retried slowly"),
		}},
		{"refresh.BackoffBase", short(refresh.BackoffBase), []at{
			reference("| `RateLimited` | `Degraded=True` |"),
			reference("| `ProviderUnavailable` | `Degraded=True` |"),
			reference("| `InvalidResponse` | `Degraded=True` |"),
			reference("| Transient failures |"),
			reference("| Broken configuration |"),
			reference("| 429 |"),
			troubleshooting("**Do:** fix the network path."),
			troubleshooting("treated as a broken configuration and not hammered"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.BackoffMax", short(refresh.BackoffMax), []at{
			reference("| `RateLimited` | `Degraded=True` |"),
			reference("| `ProviderUnavailable` | `Degraded=True` |"),
			reference("| `InvalidResponse` | `Degraded=True` |"),
			reference("| Transient failures |"),
			reference("| Broken configuration |"),
			reference("| 429 |"),
			troubleshooting("**Do:** fix the network path."),
			troubleshooting("treated as a broken configuration and not hammered"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.ExpiredBackoffMax", short(refresh.ExpiredBackoffMax), []at{
			reference("| `TokenExpired` | `Ready=False` |"),
			reference("| `ProviderUnavailable` | `Degraded=True` |"),
			reference("| Transient failures |"),
			troubleshooting("**Do:** fix the network path."),
			troubleshooting("If they have produced a token before"),
			troubleshooting("Once the cause is fixed, tokenwarden requests a token at once"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.LandingLead", short(refresh.LandingLead), []at{
			reference("| `spec.refresh.refreshBefore` | duration |"),
			reference("| Landing lead and jitter |"),
			designNotes("**refreshBefore is a promise about the Secret.**"),
		}},
		{"refresh.JitterFraction", percentRange(refresh.JitterFraction), []at{
			reference("| `spec.refresh.refreshBefore` | duration |"),
			reference("| Landing lead and jitter |"),
			designNotes("**Jitter never moves a refresh before the issue time.**"),
			designNotes("**Jitter is stable per token.**"),
		}},
		{"refresh.JitterFraction", percent(refresh.JitterFraction), []at{
			consuming("moved earlier by up to"),
		}},
		{"refresh.JitterFraction · 5 min", short(jitter5), []at{
			providers("refreshes **late** by default"),
		}},
		{"refresh.DefaultRefreshBefore(5 min)", short(rb5), []at{
			reference("| Default `refreshBefore` |"),
			consuming("| 5 min |"),
		}},
		{"5 min - refresh.DefaultRefreshBefore(5 min)", short(five - rb5), []at{
			reference("| Default `refreshBefore` |"),
			consuming("| 5 min |"),
		}},
		{"5 min - refresh.DefaultRefreshBefore(5 min)", long(five - rb5), []at{
			consuming("A 5-minute token is replaced every"),
			providers("timing tokenwarden asks for a new 5-minute token after about"),
		}},
		{"refresh.DefaultRefreshBefore(10 min)", goDuration(rb10), []at{reference("| Default `refreshBefore` |")}},
		{"refresh.DefaultRefreshBefore(10 min)", short(rb10), []at{consuming("| 10 min |")}},
		{"10 min - refresh.DefaultRefreshBefore(10 min)", goDuration(ten - rb10), []at{reference("| Default `refreshBefore` |")}},
		{"10 min - refresh.DefaultRefreshBefore(10 min)", short(ten - rb10), []at{consuming("| 10 min |")}},
		{"refresh.DefaultRefreshBefore(1 h)", short(rb60), []at{
			reference("| Default `refreshBefore` |"),
			consuming("| 1 h |"),
		}},
		{"1 h - refresh.DefaultRefreshBefore(1 h)", short(hour - rb60), []at{
			reference("| Default `refreshBefore` |"),
			consuming("| 1 h |"),
		}},
		{"refresh.DefaultRefreshBefore(5 min, invalidatesPrevious)", short(rbC), []at{
			reference("| Default with `invalidatesPrevious` |"),
		}},
		{"5 min - refresh.DefaultRefreshBefore(5 min, invalidatesPrevious)", short(five - rbC), []at{
			providers("refreshes **late** by default"),
		}},
		{"5 min - refresh.DefaultRefreshBefore(5 min, invalidatesPrevious) - jitter", short(five - rbC - jitter5), []at{
			providers("refreshes **late** by default"),
		}},

		// Limits of a token request.
		{"auth.DefaultTimeout", goDuration(auth.DefaultTimeout), []at{
			reference("| `spec.tokenRequest.timeout` | duration |"),
			troubleshooting("Timeouts on a slow provider"),
		}},
		{"auth.DefaultTimeout", short(auth.DefaultTimeout), []at{
			security("| Whole request (connect, TLS, headers, body) |"),
		}},
		{"auth.DefaultHostRequestsPerMinute", strconv.Itoa(auth.DefaultHostRequestsPerMinute), []at{
			reference("| `--host-requests-per-minute` |"),
			reference("| Per-host budget |"),
			security("| Requests per host |"),
			providers("a budget (`--host-requests-per-minute`, default"),
			helmDoc("| `config.hostRequestsPerMinute` |"),
		}},
		{"auth.MaxRetryAfter", short(auth.MaxRetryAfter), []at{
			reference("| 429 |"),
		}},
		{"auth.MaxBodyBytes", iec(auth.MaxBodyBytes), []at{
			reference("| `InvalidResponse` | `Degraded=True` |"),
			troubleshooting("| `body exceeds"),
			security("| Response body |"),
			providers("Redirects are never followed, and bodies over"),
		}},
		{"auth.MaxTokenBytes", iec(auth.MaxTokenBytes), []at{
			reference("| `spec.tokenRequest.response.tokenField` |"),
			security("| Token |"),
			providers("| `tokenField` |"),
		}},
		{"auth.MaxCertificateInputBytes", iec(auth.MaxCertificateInputBytes), []at{
			reference("| `InvalidClientCertificate` | `Degraded=True` |"),
			security("| Client certificate input |"),
			troubleshooting("**Means:** tokenwarden could not use the client certificate"),
		}},

		// Warnings.
		{"controller.DefaultWarnBefore", goDuration(controller.DefaultWarnBefore), []at{
			reference("| `spec.static.warnBefore` |"),
			providers("From `spec.static.warnBefore` (default"),
		}},
		{"controller.DefaultWarnBefore", long(controller.DefaultWarnBefore), []at{
			providers("# claim and warns"), // the flow D sample, shown verbatim
			providers("From `spec.static.warnBefore` (default"),
			troubleshooting("**Means:** a static token's (flow D) JWT expires within"),
		}},
		{"controller.CertificateWarning", long(controller.CertificateWarning), []at{
			reference("| `ClientCertificateExpiringSoon` | Warning |"),
			providers("`ClientCertificateExpiringSoon` event is emitted when it is less than"),
			// The alert warns when the event does.
			monitoring("| `TokenwardenClientCertificateExpiresIn30Days` |"),
			monitoring("| Client certificate expiry |"),
		}},

		// The retry cap of passes that failed on an API server error.
		{"controller.APIErrorRetryMax", short(controller.APIErrorRetryMax), []at{
			reference("| API server errors |"),
			troubleshooting("A pass that cannot read or write what it needs on the API server"),
			designNotes("A pass that fails on an API server error"),
		}},
		// The broken-configuration schedule: its jitter, and the waits
		// themselves, rendered from refresh.Doubling.
		{"refresh.DoublingJitter", percentRange(refresh.DoublingJitter), []at{
			reference("| `InvalidResponse` | `Degraded=True` |"),
			reference("| Broken configuration |"),
			troubleshooting("treated as a broken configuration and not hammered"),
			designNotes("a broken configuration is not hammered"),
		}},
		{"refresh.Doubling schedule", doublingSchedule(), []at{
			troubleshooting("treated as a broken configuration and not hammered"),
		}},
		// Leader election: the default lease, and how far before its
		// sighting a standby believes a renewal with the default timing.
		{"leader.DefaultLeaseDuration", short(leader.DefaultLeaseDuration), []at{
			helmDoc("With two replicas and the PodDisruptionBudget"),
			troubleshooting("2. `TokenwardenNoLeader`"),
		}},
		{"leader default Timing.Trust()", short(leaderDefaults.Trust()), []at{
			reference("| `--leader-election-lease-duration` |"),
			designNotes("The expiry is the Lease's own"),
		}},
	}
}

var leaderDefaults = leader.Timing{LeaseDuration: leader.DefaultLeaseDuration, RenewDeadline: leader.DefaultRenewDeadline, RetryPeriod: leader.DefaultRetryPeriod}

// incidental lists places that show one of the values of quoted without
// quoting that constant, each with the reason.
var incidental = []struct {
	at
	value, why string
}{
	// Not constants of the code.
	{nodeDoc("`make test-node-helm` runs the same test"), "10 s", "how long the operator Pod took to be Ready in one run"},
	{consuming("It needs the optional RBAC of [`config/pod-sync`]"), "10 s", "the node test's kubelet syncFrequency"},
	{nodeDoc("4. The sandbox provider (`bin/sandbox`, token lifetime"), "2 minutes", "the node test's token lifetime"},
	{nodeDoc("Why these settings: with 2-minute tokens"), "10 s", "the node test's kubelet syncFrequency"},
	{nodeDoc("Why these settings: with 2-minute tokens"), "30 s", "flow C's default refreshBefore for 2-minute tokens, max(30 s, L/10), as the paragraph says"},
	{helmDoc("| `leaderElection.leaseDuration` |"), "15s", "the leader-election lease default, not the request timeout"},
	{monitoring("| `TokenwardenHostThrottled` |"), "10 minutes", "the alert's for: duration, not the slow retry"},
	{readme("A provider that issues 10-minute tokens"), "10-minute", "the sample provider's token lifetime"},
	{providers("| [B](#flow-b-oauth2-client-credentials) |"), "10 min", "flow B's typical token lifetime"},
	{reference("| Default `refreshBefore` |"), "10-minute", "the example's token lifetime"},
	{consuming("| 10 min |"), "10 min", "the example's token lifetime"},
	{consuming("| 10 min |"), "10 s", "part of 8 min 10 s: the example plus the kubelet's delay"},
	{reference("| `tokenwarden_provider_request_duration_seconds` |"), "30 s", "the histogram's largest bucket"},
	{security("| Response headers |"), "64 KiB", "the HTTP client's header limit (unexported in internal/auth)"},
	{designNotes("The metadata cache grows with the number of Secrets"), "256 KiB", "a measurement"},
	{designNotes("The metadata cache grows with the number of Secrets"), "1 MiB", "a measurement"},
	{reference("| `--leader-election-lease-duration` |"), "15s", "the Lease duration, not the request timeout"},
	{reference("| `--leader-election-lease-duration` |"), "10 s", "the clock skew internal/leader's envtest runs with"},
	{reference("| `--leader-election-retry-period` |"), "120", "client-go's 120 % jitter of the retry period"},
	{designNotes("behaviour.md §7 asks that a failover completes"), "120", "client-go's 120 % jitter of the retry period"},
	{designNotes("Measured: `TestLeaderFailover`"), "10 s", "the clock skew internal/leader's envtest runs with"},
	{designNotes("Measured: `TestLeaderFailover`"), "15 s", "a measurement (the new acquireTime after the last renewal)"},
}

// unchecked are documents whose numbers are not promises.
var unchecked = map[string]string{
	"docs/performance.md": "reports measurements of one benchmark run, at a given commit",
}

// Renderers: how the docs write a value.

// short writes a duration as the docs' tables and prose do: "10 s",
// "2 min", "1 h", "30 days"; "1 min 30 s" when it is not whole.
func short(d time.Duration) string {
	return spell(d, map[time.Duration][2]string{
		time.Second: {"s", "s"}, time.Minute: {"min", "min"}, time.Hour: {"h", "h"}, 24 * time.Hour: {"day", "days"},
	}, false)
}

// long writes a duration in words: "10 seconds", "2 minutes", "a week".
func long(d time.Duration) string {
	return spell(d, map[time.Duration][2]string{
		time.Second: {"second", "seconds"}, time.Minute: {"minute", "minutes"}, time.Hour: {"hour", "hours"},
		24 * time.Hour: {"day", "days"}, 7 * 24 * time.Hour: {"week", "weeks"},
	}, true)
}

func spell(d time.Duration, units map[time.Duration][2]string, article bool) string {
	sizes := make([]time.Duration, 0, len(units))
	for u := range units {
		sizes = append(sizes, u)
	}
	slices.Sort(sizes)
	slices.Reverse(sizes)
	var parts []string
	for _, u := range sizes {
		if u > time.Hour && d%u != 0 {
			continue // days and weeks only when whole
		}
		if n := d / u; n > 0 {
			name := units[u][1]
			count := strconv.FormatInt(int64(n), 10)
			if n == 1 {
				name = units[u][0]
				if article {
					count = "a"
					if name == "hour" {
						count = "an"
					}
				}
			}
			parts = append(parts, count+" "+name)
			d -= n * u
		}
	}
	if d != 0 || len(parts) == 0 {
		return fmt.Sprintf("%v", d) // sub-second rest: not a form the docs use
	}
	return strings.Join(parts, " ")
}

// goDuration writes a duration as a manifest does: "15s", "168h", "3m20s".
func goDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// adjective writes a duration before a noun: "10-minute".
func adjective(d time.Duration) string {
	return strings.Replace(short(d), " min", "-minute", 1)
}

// percent writes a fraction: "10 %".
func percent(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + " %"
}

// percentRange writes "from nothing up to f": "0-10 %".
func percentRange(f float64) string { return "0-" + percent(f) }

// iec writes a size in bytes: "1 MiB", "64 KiB".
func iec(n int) string {
	for _, u := range []struct {
		size int
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.Itoa(n/u.size) + " " + u.name
		}
	}
	return strconv.Itoa(n) + " bytes"
}

func TestRenderers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{short(10 * time.Second), "10 s"},
		{short(2 * time.Minute), "2 min"},
		{short(90 * time.Second), "1 min 30 s"},
		{short(30 * 24 * time.Hour), "30 days"},
		{long(10 * time.Second), "10 seconds"},
		{long(10 * time.Minute), "10 minutes"},
		{long(168 * time.Hour), "a week"},
		{long(time.Hour), "an hour"},
		{long(30 * 24 * time.Hour), "30 days"},
		{goDuration(15 * time.Second), "15s"},
		{goDuration(168 * time.Hour), "168h"},
		{goDuration(200 * time.Second), "3m20s"},
		{goDuration(10 * time.Minute), "10m"},
		{adjective(10 * time.Minute), "10-minute"},
		{percent(0.10), "10 %"},
		{percentRange(0.2), "0-20 %"},
		{iec(1 << 20), "1 MiB"},
		{iec(256 << 10), "256 KiB"},
	} {
		if c.got != c.want {
			t.Errorf("rendered %q, want %q", c.got, c.want)
		}
	}
}

// block is a table row, list item, paragraph, heading or code line of a
// Markdown document, with its wrapped lines joined by single spaces.
type block struct {
	line int // first line, 1-based
	text string
}

var listItem = regexp.MustCompile(`^\s*([-*]|\d+\.)\s`)

func blocks(doc string) []block {
	var out []block
	var cur *block
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	fenced := false
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			flush()
			fenced = !fenced
		case fenced, strings.HasPrefix(trimmed, "|"), strings.HasPrefix(trimmed, "#"):
			flush()
			out = append(out, block{i + 1, trimmed})
		case trimmed == "":
			flush()
		case listItem.MatchString(line):
			flush()
			cur = &block{i + 1, trimmed}
		case cur != nil:
			cur.text += " " + trimmed
		default:
			cur = &block{i + 1, trimmed}
		}
	}
	flush()
	return out
}

// contains reports whether text shows value as a whole: "2 s" is not in
// "32 s", "10 %" not in "110 %", "120" not in "1200".
func contains(text, value string) bool {
	return valuePattern(value).MatchString(text)
}

func valuePattern(value string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^0-9A-Za-z.])` + regexp.QuoteMeta(value) + `($|[^0-9A-Za-z])`)
}

type docs struct {
	t      *testing.T
	root   string
	blocks map[string][]block
}

func (d *docs) of(file string) []block {
	if b, ok := d.blocks[file]; ok {
		return b
	}
	b := blocks(readFile(d.t, filepath.Join(d.root, file)))
	d.blocks[file] = b
	return b
}

// find returns the one block of a place, or a problem.
func (d *docs) find(p at) (block, string) {
	var hits []block
	for _, b := range d.of(p.file) {
		if strings.Contains(b.text, p.anchor) {
			hits = append(hits, b)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], ""
	case 0:
		return block{}, fmt.Sprintf("%s: no block contains %q", p.file, p.anchor)
	}
	lines := make([]string, len(hits))
	for i, h := range hits {
		lines[i] = strconv.Itoa(h.line)
	}
	return block{}, fmt.Sprintf("%s: %q is in several blocks (lines %s); make it pick one", p.file, p.anchor, strings.Join(lines, ", "))
}

// check returns a problem for each place of q that does not show q.as.
func (d *docs) check(q quote) []string {
	var out []string
	for _, p := range q.places {
		b, problem := d.find(p)
		if problem != "" {
			out = append(out, problem)
			continue
		}
		if !contains(b.text, q.as) {
			out = append(out, fmt.Sprintf("%s:%d (%q) should say %q, the value of %s: %s",
				p.file, b.line, p.anchor, q.as, q.from, excerpt(b.text)))
		}
	}
	return out
}

// excerpt shortens a block for a failure message.
func excerpt(s string) string {
	if r := []rune(s); len(r) > 200 {
		return string(r[:200]) + "…"
	}
	return s
}

func newDocs(t *testing.T) *docs {
	return &docs{t: t, root: repoRoot(t), blocks: map[string][]block{}}
}

func TestDocsQuoteTheConstants(t *testing.T) {
	d := newDocs(t)
	for _, q := range quoted() {
		if len(q.places) == 0 {
			t.Errorf("%s (%q) lists no place", q.from, q.as)
		}
		for _, problem := range d.check(q) {
			t.Error(problem)
		}
	}
}

// TestQuoteCheckCatchesDrift changes the quoted value in each place, one at
// a time, and expects the check to notice.
func TestQuoteCheckCatchesDrift(t *testing.T) {
	d := newDocs(t)
	for _, q := range quoted() {
		for _, p := range q.places {
			b, problem := d.find(p)
			if problem != "" {
				continue // TestDocsQuoteTheConstants reports it
			}
			drifted := &docs{t: t, root: d.root, blocks: map[string][]block{}}
			var bs []block
			for _, other := range d.of(p.file) {
				if other.line == b.line {
					other.text = valuePattern(q.as).ReplaceAllString(other.text, "${1}<changed>${2}")
				}
				bs = append(bs, other)
			}
			drifted.blocks[p.file] = bs
			if len(drifted.check(quote{q.from, q.as, []at{p}})) == 0 {
				t.Errorf("%s:%d: changing %q there went unnoticed", p.file, b.line, q.as)
			}
		}
	}
}

// TestEveryQuoteIsChecked scans every document for the values of quoted:
// each block that shows one must be a place of a row with that value, or
// incidental. The values a block is checked for are masked before the scan,
// so "3 min 20 s" checked as a whole does not also count as "20 s".
func TestEveryQuoteIsChecked(t *testing.T) {
	d := newDocs(t)
	files := []string{"README.md"}
	entries, err := os.ReadDir(filepath.Join(d.root, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if f := "docs/" + e.Name(); strings.HasSuffix(f, ".md") && unchecked[f] == "" {
			files = append(files, f)
		}
	}
	type place struct {
		file string
		line int
	}
	checked := map[place][]string{} // the values each block is checked for
	from := map[string][]string{}   // value -> the expressions rendered as it
	for _, q := range quoted() {
		if !slices.Contains(from[q.as], q.from) {
			from[q.as] = append(from[q.as], q.from)
		}
		for _, p := range q.places {
			if b, problem := d.find(p); problem == "" {
				checked[place{p.file, b.line}] = append(checked[place{p.file, b.line}], q.as)
			}
		}
	}
	for _, inc := range incidental {
		b, problem := d.find(inc.at)
		switch {
		case problem != "":
			t.Errorf("incidental: %s", problem)
			continue
		case !contains(b.text, inc.value):
			t.Errorf("incidental: %s:%d (%q) no longer shows %q; drop the entry", inc.file, b.line, inc.anchor, inc.value)
		case inc.why == "":
			t.Errorf("incidental: %s:%d (%q): say why %q there is not the constant", inc.file, b.line, inc.anchor, inc.value)
		}
		checked[place{inc.file, b.line}] = append(checked[place{inc.file, b.line}], inc.value)
	}
	values := slices.Sorted(maps.Keys(from))
	for _, f := range files {
		for _, b := range d.of(f) {
			text := b.text
			masks := slices.Clone(checked[place{f, b.line}])
			// Longest first, so "0-10 %" is masked before "10 %".
			slices.SortFunc(masks, func(a, b string) int { return len(b) - len(a) })
			for _, m := range masks {
				text = valuePattern(m).ReplaceAllString(text, "${1}\x00${2}")
			}
			for _, v := range values {
				if contains(text, v) {
					t.Errorf("%s:%d shows %q (the value of %s) but is not checked: add the place to quoted, or to incidental with the reason: %s",
						f, b.line, v, strings.Join(from[v], ", "), excerpt(b.text))
				}
			}
		}
	}
}

// TestCodeDefaultsAgree: the defaults that the reference shows come from the
// CRD's default markers and the manager's flag definitions; they must be the
// constants the code falls back to.
func TestCodeDefaultsAgree(t *testing.T) {
	root := repoRoot(t)
	types := filepath.Join(root, "api", "v1alpha1", "apicredential_types.go")
	for _, c := range []struct {
		typ, field string
		want       time.Duration
		from       string
	}{
		{"TokenRequest", "Timeout", auth.DefaultTimeout, "auth.DefaultTimeout"},
		{"StaticToken", "WarnBefore", controller.DefaultWarnBefore, "controller.DefaultWarnBefore"},
	} {
		v := fieldMarker(t, types, c.typ, c.field, "+kubebuilder:default=")
		got, err := time.ParseDuration(strings.Trim(v, `"`))
		if err != nil || got != c.want {
			t.Errorf("%s.%s: +kubebuilder:default=%s, but %s is %s", c.typ, c.field, v, c.from, goDuration(c.want))
		}
	}
	for flagName, c := range map[string]struct {
		want time.Duration
		from string
	}{
		"leader-election-lease-duration": {leader.DefaultLeaseDuration, "leader.DefaultLeaseDuration"},
		"leader-election-renew-deadline": {leader.DefaultRenewDeadline, "leader.DefaultRenewDeadline"},
		"leader-election-retry-period":   {leader.DefaultRetryPeriod, "leader.DefaultRetryPeriod"},
	} {
		if v := flagDefault(t, filepath.Join(root, "cmd", "main.go"), flagName); v != c.from {
			t.Errorf("--%s defaults to %s, want %s (%s)", flagName, v, c.from, goDuration(c.want))
		}
	}
	if v := flagDefault(t, filepath.Join(root, "cmd", "main.go"), "host-requests-per-minute"); v != strconv.Itoa(auth.DefaultHostRequestsPerMinute) &&
		v != "auth.DefaultHostRequestsPerMinute" {
		t.Errorf("--host-requests-per-minute defaults to %s, but auth.DefaultHostRequestsPerMinute is %d", v, auth.DefaultHostRequestsPerMinute)
	}
}

// fieldMarker returns the value of a marker in the doc comment of a struct
// field.
func fieldMarker(t *testing.T, path, typ, field, marker string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			st, ok := ts.Type.(*ast.StructType)
			if !ok || ts.Name.Name != typ {
				continue
			}
			for _, fl := range st.Fields.List {
				if len(fl.Names) == 0 || fl.Names[0].Name != field || fl.Doc == nil {
					continue
				}
				for _, c := range fl.Doc.List {
					if v, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(c.Text, "//")), marker); ok {
						return v
					}
				}
			}
		}
	}
	t.Fatalf("%s: no %s marker on %s.%s", path, marker, typ, field)
	return ""
}

// flagDefault returns the default argument of the flag definition named
// name, as written (a literal or a qualified constant).
func flagDefault(t *testing.T, path, name string) string {
	t.Helper()
	for _, d := range flagDefs(t, path) {
		if d.name != name {
			continue
		}
		switch a := d.def.(type) {
		case *ast.BasicLit:
			return a.Value
		case *ast.SelectorExpr:
			if x, ok := a.X.(*ast.Ident); ok {
				return x.Name + "." + a.Sel.Name
			}
		}
		t.Fatalf("%s: cannot read the default of --%s", d.pos, name)
	}
	t.Fatalf("%s: no flag --%s", path, name)
	return ""
}

// doublingSchedule renders the waits of refresh.Doubling as the docs list
// them: "10 s, 10 s, 16 s, 32 s, 64 s and 2 min".
func doublingSchedule() string {
	var waits []string
	for n := 1; ; n++ {
		w, ok := refresh.Doubling(n, refresh.BackoffBase, refresh.Floor, refresh.BackoffMax, 0)
		if !ok {
			break
		}
		if w%time.Minute == 0 {
			waits = append(waits, short(w))
		} else {
			waits = append(waits, fmt.Sprintf("%d s", int(w.Seconds())))
		}
	}
	return strings.Join(waits[:len(waits)-1], ", ") + " and " + waits[len(waits)-1]
}
