package monitoring_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenwarden/tokenwarden/internal/metrics"
)

// external are the metrics the queries may use that tokenwarden's metrics
// package does not define, with where they come from. Each controller-runtime
// name is looked up in controller-runtime's source (the version in go.mod),
// so a rename there fails this test too.
var external = map[string]string{
	"up":                            "", // Prometheus's own scrape health series
	"leader_election_master_status": "pkg/metrics/leaderelection.go",
}

// exported returns the metric names the operator exports: those that
// metrics.New registers (histograms also as _bucket, _sum and _count
// series), and the external ones.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{names: map[string]bool{}}
	metrics.New(rec)
	if len(rec.names) == 0 {
		t.Fatal("metrics.New registered no metric")
	}
	crDir := moduleDir(t, "sigs.k8s.io/controller-runtime")
	for name, file := range external {
		if file != "" {
			src := readFile(t, filepath.Join(crDir, file))
			if !strings.Contains(string(src), `Name: "`+name+`"`) {
				t.Fatalf("controller-runtime's %s no longer defines the metric %s", file, name)
			}
		}
		rec.names[name] = true
	}
	return rec.names
}

// recorder is a prometheus.Registerer that keeps the names of what is
// registered with it.
type recorder struct {
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	_, histogram := c.(*prometheus.HistogramVec)
	if _, ok := c.(prometheus.Histogram); ok {
		histogram = true
	}
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("no fqName in %s", d)
		}
		r.names[m[1]] = true
		if histogram {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				r.names[m[1]+suffix] = true
			}
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

func moduleDir(t *testing.T, module string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

// parsed is what promqlnames says of one expression.
type parsed struct {
	Names []string `json:"names"`
	Error string   `json:"error"`
}

// parseQueries parses expressions with Prometheus's PromQL parser, in the
// promqlnames module next to this file (built once per test binary).
func parseQueries(t *testing.T, exprs []string) []parsed {
	t.Helper()
	in, err := json.Marshal(exprs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), promqlnames(t))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promqlnames: %v\n%s", err, stderr.String())
	}
	var res []parsed
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(exprs) {
		t.Fatalf("promqlnames answered %d results for %d expressions (%v): %s", len(res), len(exprs), err, out)
	}
	return res
}

var promqlnamesBin string

func promqlnames(t *testing.T) string {
	t.Helper()
	if promqlnamesBin != "" {
		return promqlnamesBin
	}
	dir, err := os.MkdirTemp("", "tokenwarden-promqlnames-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "promqlnames")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "test", "monitoring", "promqlnames")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building test/monitoring/promqlnames: %v\n%s", err, out)
	}
	promqlnamesBin = bin
	return bin
}

// grafanaVariable matches Grafana's built-in interval variables, replaced by
// a duration before parsing; any other $variable is reported.
var grafanaVariable = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

// unknownMetrics parses each query and returns one problem per query that
// does not parse, names no metric, or names a metric not in known.
func unknownMetrics(t *testing.T, queries []query, known map[string]bool) []string {
	t.Helper()
	var problems []string
	var exprs []string
	var kept []query
	for _, q := range queries {
		expr := grafanaVariable.ReplaceAllString(q.expr, "5m")
		if strings.Contains(expr, "$") {
			problems = append(problems, fmt.Sprintf("%s: unknown Grafana variable in %q", q.where, q.expr))
			continue
		}
		exprs = append(exprs, expr)
		kept = append(kept, q)
	}
	for i, res := range parseQueries(t, exprs) {
		q := kept[i]
		if res.Error != "" {
			problems = append(problems, fmt.Sprintf("%s: %q does not parse: %s", q.where, q.expr, res.Error))
			continue
		}
		if len(res.Names) == 0 {
			problems = append(problems, fmt.Sprintf("%s: %q names no metric", q.where, q.expr))
		}
		for _, name := range res.Names {
			if name == "" {
				problems = append(problems, fmt.Sprintf("%s: %q selects series without naming a metric", q.where, q.expr))
			} else if !known[name] {
				problems = append(problems, fmt.Sprintf("%s: %q uses %s, which the operator does not export", q.where, q.expr, name))
			}
		}
	}
	return problems
}

func TestRuleQueriesNameExportedMetrics(t *testing.T) {
	known := exported(t)
	queries := ruleQueries(loadRules(t))
	if len(queries) == 0 {
		t.Fatal("no rules")
	}
	for _, p := range unknownMetrics(t, queries, known) {
		t.Error(p)
	}
}

func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	known := exported(t)
	queries := dashboardQueries(loadDashboard(t, filepath.Join(root, "config", "prometheus", "dashboard.json")))
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, p := range unknownMetrics(t, queries, known) {
		t.Error(p)
	}
}

// TestMetricCheckCatchesUnknownNames proves the check is not vacuous: a
// dashboard whose query names a metric with a typo, one the operator never
// exported, a histogram suffix on a counter, or a query that does not parse,
// is reported, each by name.
func TestMetricCheckCatchesUnknownNames(t *testing.T) {
	known := exported(t)
	src := readFile(t, filepath.Join(root, "config", "prometheus", "dashboard.json"))
	for _, bad := range []struct{ from, to, want string }{
		{"tokenwarden_token_expiry_timestamp_seconds", "tokenwarden_token_expiry_seconds", "tokenwarden_token_expiry_seconds"},
		{"tokenwarden_provider_rate_limited_total", "tokenwarden_provider_throttled_total", "tokenwarden_provider_throttled_total"},
		{"rate(tokenwarden_provider_rate_limited_total", "rate(tokenwarden_provider_rate_limited_total_count", "tokenwarden_provider_rate_limited_total_count"},
		{"sum by (host) (tokenwarden_host_waiting_credentials)", "sum by (host) (tokenwarden_host_waiting_credentials", "does not parse"},
	} {
		if !strings.Contains(string(src), bad.from) {
			t.Fatalf("dashboard.json no longer contains %q; pick another sample", bad.from)
		}
		path := filepath.Join(t.TempDir(), "dashboard.json")
		if err := os.WriteFile(path, []byte(strings.Replace(string(src), bad.from, bad.to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		problems := unknownMetrics(t, dashboardQueries(loadDashboard(t, path)), known)
		t.Logf("replacing %q by %q: %q", bad.from, bad.to, problems)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, bad.want) }) {
			t.Errorf("replacing %q by %q: want a problem naming %q, got %q", bad.from, bad.to, bad.want, problems)
		}
	}
}

// TestDashboardShowsEveryMetric keeps the dashboard complete: each metric
// the operator exports appears in some query (histograms by any series).
func TestDashboardShowsEveryMetric(t *testing.T) {
	rec := &recorder{names: map[string]bool{}}
	metrics.New(rec)
	var all strings.Builder
	for _, q := range dashboardQueries(loadDashboard(t, filepath.Join(root, "config", "prometheus", "dashboard.json"))) {
		all.WriteString(q.expr + "\n")
	}
	var missing []string
	for name := range rec.names {
		if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			continue
		}
		if !strings.Contains(all.String(), name) {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard shows no panel for %s", strings.Join(missing, ", "))
	}
}

// TestDashboardIsWellFormed checks what Grafana needs to import the
// dashboard and place its panels: a uid and title, the Prometheus data
// source variable every query uses, unique panel ids, positions on the
// 24-column grid that do not overlap, and a refId per query.
func TestDashboardIsWellFormed(t *testing.T) {
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				RefID      string `json:"refId"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(root, "config", "prometheus", "dashboard.json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed", d.UID, d.Title)
	}
	if len(d.Templating.List) != 1 || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("want one variable, a prometheus data source; got %+v", d.Templating.List)
	}
	ds := "${" + d.Templating.List[0].Name + "}"
	ids := map[int]bool{}
	cells := map[[2]int]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || p.Type == "" || p.Datasource.UID != ds {
			t.Errorf("panel %d: title %q, type %q, data source %q (want %s)", p.ID, p.Title, p.Type, p.Datasource.UID, ds)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || tg.Datasource.UID != ds {
				t.Errorf("panel %q: a query with refId %q (unique, non-empty) and data source %q (want %s)", p.Title, tg.RefID, tg.Datasource.UID, ds)
			}
			refs[tg.RefID] = true
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}
