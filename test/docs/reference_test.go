// Package docs_test keeps docs/reference.md in step with the code: every
// APICredential, TokenProvider and ClusterTokenProvider field, condition type
// and reason, event reason and action, metric, manager flag, label,
// annotation and printer column that exists in the code must appear in the
// reference, in its own section, as a `code span`.
//
// Everything is collected from the code itself (reflection over the API
// types, go/parser over the sources, the metrics as registered), never from a
// hand-written list, so a new field or flag fails this test until it is
// documented.
package docs_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/metrics"
)

// Sections of docs/reference.md (level-2 headings) and what each must list.
const (
	sectionSpec        = "Spec fields"
	sectionStatus      = "Status fields"
	sectionProvider    = "Provider fields"
	sectionConditions  = "Conditions"
	sectionEvents      = "Events"
	sectionMetrics     = "Metrics"
	sectionFlags       = "Manager flags"
	sectionMetadata    = "Labels and annotations"
	sectionPrintColumn = "Printer columns"
)

// item is one thing the reference must mention: want is the text of the
// code span, section the heading it must appear under, from where it was
// found in the code (for the failure message).
type item struct {
	section string
	want    string
	from    string
	// alongside must appear on the same line as want: the labels of a
	// metric, the action of an event reason.
	alongside []string
}

func TestReferenceListsEverythingInTheCode(t *testing.T) {
	root := repoRoot(t)
	doc := readFile(t, filepath.Join(root, "docs", "reference.md"))
	items := collect(t, root)
	for _, problem := range missing(doc, items) {
		t.Error(problem)
	}
}

// TestCheckCatchesOmissions proves the check is not vacuous: deleting the
// lines that document one item of each kind makes missing report it.
func TestCheckCatchesOmissions(t *testing.T) {
	root := repoRoot(t)
	doc := readFile(t, filepath.Join(root, "docs", "reference.md"))
	items := collect(t, root)
	if problems := missing(doc, items); len(problems) > 0 {
		t.Skip("the reference is incomplete; TestReferenceListsEverythingInTheCode reports it")
	}
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.section] {
			continue
		}
		seen[it.section] = true
		var kept []string
		for _, line := range strings.Split(doc, "\n") {
			if !slices.Contains(expandedSpans(line), it.want) {
				kept = append(kept, line)
			}
		}
		problems := missing(strings.Join(kept, "\n"), []item{it})
		if len(problems) == 0 {
			t.Errorf("removing the lines documenting %q (%s) went unnoticed", it.want, it.section)
		}
	}
	for _, s := range []string{sectionSpec, sectionStatus, sectionProvider, sectionConditions, sectionEvents,
		sectionMetrics, sectionFlags, sectionMetadata, sectionPrintColumn} {
		if !seen[s] {
			t.Errorf("nothing was collected for section %q", s)
		}
	}
}

// missing returns one message per item that the document does not list in
// its section.
func missing(doc string, items []item) []string {
	sections := splitSections(doc)
	var out []string
	for _, it := range items {
		body, ok := sections[it.section]
		if !ok {
			out = append(out, fmt.Sprintf("docs/reference.md has no section %q (needed for `%s` from %s)", it.section, it.want, it.from))
			continue
		}
		found, complete := false, false
		for _, line := range body {
			spans := expandedSpans(line)
			if !slices.Contains(spans, it.want) {
				continue
			}
			found = true
			if !slices.ContainsFunc(it.alongside, func(l string) bool { return !slices.Contains(spans, l) }) {
				complete = true
				break
			}
		}
		switch {
		case !found:
			out = append(out, fmt.Sprintf("docs/reference.md, section %q: `%s` is not listed (from %s)", it.section, it.want, it.from))
		case !complete:
			out = append(out, fmt.Sprintf("docs/reference.md, section %q: no line of `%s` also names %v (from %s)",
				it.section, it.want, it.alongside, it.from))
		}
	}
	return out
}

// splitSections maps each level-2 heading to the lines under it, fenced code
// blocks left out: an example does not document anything.
func splitSections(doc string) map[string][]string {
	out := map[string][]string{}
	current := ""
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if h, ok := strings.CutPrefix(line, "## "); ok {
			current = strings.TrimSpace(h)
			out[current] = nil
			continue
		}
		if current != "" {
			out[current] = append(out[current], line)
		}
	}
	return out
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	// braces is a shell-style alternative, {form,json,headers}, used to
	// document fields shared by several lists on one line.
	braces = regexp.MustCompile(`\{([^{}\s]*,[^{}\s]*)\}`)
)

// expandedSpans returns the code spans of a line, with brace alternatives
// expanded: `spec.{a,b}.c` yields spec.a.c and spec.b.c.
func expandedSpans(line string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
		out = append(out, expand(m[1])...)
	}
	return out
}

func expand(s string) []string {
	loc := braces.FindStringSubmatchIndex(s)
	if loc == nil {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[loc[2]:loc[3]], ",") {
		out = append(out, expand(s[:loc[0]]+alt+s[loc[1]:])...)
	}
	return out
}

// collect gathers everything the reference must list, from the code.
func collect(t *testing.T, root string) []item {
	t.Helper()
	var items []item
	add := func(section, from string, names ...string) {
		for _, n := range names {
			items = append(items, item{section: section, want: n, from: from})
		}
	}

	spec := jsonFields(reflect.TypeFor[authv1alpha1.APICredentialSpec](), "spec")
	status := jsonFields(reflect.TypeFor[authv1alpha1.APICredentialStatus](), "status")
	atLeast(t, "spec fields", spec, 30)
	atLeast(t, "status fields", status, 8)
	add(sectionSpec, "api/v1alpha1 APICredentialSpec", spec...)
	add(sectionStatus, "api/v1alpha1 APICredentialStatus", status...)

	// The provider kinds: every field they add, and the top-level fields
	// they share with an APICredential (spec.tokenRequest, status.*). Deeper
	// shared fields (spec.tokenRequest.url, ...) have one schema, documented
	// once under the APICredential's sections.
	shared := map[string]bool{}
	for _, f := range slices.Concat(spec, status) {
		shared[f] = true
	}
	var provider []string
	for _, f := range slices.Concat(
		jsonFields(reflect.TypeFor[authv1alpha1.TokenProviderSpec](), "spec"),
		jsonFields(reflect.TypeFor[authv1alpha1.ClusterTokenProviderSpec](), "spec"),
		jsonFields(reflect.TypeFor[authv1alpha1.TokenProviderStatus](), "status")) {
		if !shared[f] || strings.Count(f, ".") == 1 {
			provider = append(provider, f)
		}
	}
	slices.Sort(provider)
	provider = slices.Compact(provider)
	atLeast(t, "provider fields", provider, 15)
	add(sectionProvider, "api/v1alpha1 TokenProviderSpec, ClusterTokenProviderSpec, TokenProviderStatus", provider...)

	apiDir := filepath.Join(root, "api", "v1alpha1")
	apiConsts := packageStringConsts(t, apiDir)
	conditions := withPrefix(apiConsts, "Condition", "Reason")
	metadata := withPrefix(apiConsts, "Annotation", "Label")
	atLeast(t, "condition types and reasons", conditions, 10)
	atLeast(t, "labels and annotations", metadata, 4)
	add(sectionConditions, "api/v1alpha1 Condition*/Reason* constants", conditions...)
	add(sectionMetadata, "api/v1alpha1 Annotation*/Label* constants", metadata...)

	// Event reasons live in internal/controller and, for failures, in
	// internal/failure (the table of failure semantics).
	controllerConsts := packageStringConsts(t, filepath.Join(root, "internal", "controller"))
	failureConsts := map[string]string{}
	if _, err := os.Stat(filepath.Join(root, "internal", "failure")); err == nil {
		failureConsts = packageStringConsts(t, filepath.Join(root, "internal", "failure"))
	}
	events := slices.Concat(withPrefix(controllerConsts, "Event"), withPrefix(failureConsts, "Event"))
	slices.Sort(events)
	events = slices.Compact(events)
	atLeast(t, "event reasons", events, 5)
	add(sectionEvents, "internal/controller and internal/failure Event* constants", events...)
	// The action of every event the controller emits, on the line of its
	// reason when the reason is a constant.
	actions := eventActions(t, filepath.Join(root, "internal", "controller"), controllerConsts)
	if len(actions) < 6 {
		t.Fatalf("found only %d event calls in internal/controller (%v); the collector is probably broken", len(actions), actions)
	}
	for _, a := range actions {
		it := item{section: sectionEvents, want: a.action, from: a.from}
		if a.reason != "" {
			it = item{section: sectionEvents, want: a.reason, from: a.from, alongside: []string{a.action}}
		}
		items = append(items, it)
	}
	add(sectionMetadata, "internal/controller Annotation* constants", withPrefix(controllerConsts, "Annotation")...)

	// Metrics: the names and labels as registered, plus every metric name
	// constant (a constant not registered is still promised somewhere).
	registered := registeredMetrics()
	atLeast(t, "registered metrics", keys(registered), 5)
	for _, name := range keys(registered) {
		items = append(items, item{section: sectionMetrics, want: name, from: "internal/metrics New (as registered)", alongside: registered[name]})
	}
	var metricConsts []string
	for _, f := range goFiles(t, filepath.Join(root, "internal", "metrics")) {
		for _, v := range stringConsts(t, f) {
			if strings.HasPrefix(v, "tokenwarden_") {
				metricConsts = append(metricConsts, v)
			}
		}
	}
	slices.Sort(metricConsts)
	for _, name := range metricConsts {
		if _, ok := registered[name]; !ok {
			add(sectionMetrics, "internal/metrics name constants (not registered by New)", name)
		}
	}

	flags := managerFlags(t, filepath.Join(root, "cmd", "main.go"))
	atLeast(t, "manager flags", flags, 8)
	for _, f := range append(flags, "kubeconfig") {
		add(sectionFlags, "cmd/main.go flag definitions", "--"+f)
	}

	var columns []string
	for _, f := range goFiles(t, apiDir) {
		columns = append(columns, printerColumns(t, f)...)
	}
	slices.Sort(columns)
	columns = slices.Compact(columns)
	atLeast(t, "printer columns", columns, 6)
	add(sectionPrintColumn, "api/v1alpha1 +kubebuilder:printcolumn markers", columns...)
	return items
}

func atLeast(t *testing.T, what string, got []string, n int) {
	t.Helper()
	if len(got) < n {
		t.Fatalf("found only %d %s in the code (%v); the collector is probably broken", len(got), what, got)
	}
}

// jsonFields walks a type of api/v1alpha1 and returns the dotted JSON path of
// every field, recursing into the package's own structs; list elements are
// written path[].field.
func jsonFields(typ reflect.Type, prefix string) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		path := prefix
		if name != "" {
			path = prefix + "." + name
			out = append(out, path)
		}
		ft, suffix := f.Type, ""
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			if ft.Kind() == reflect.Slice {
				suffix += "[]"
			}
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == typ.PkgPath() {
			out = append(out, jsonFields(ft, path+suffix)...)
		}
	}
	return out
}

// stringConsts parses a Go file and returns its exported string constants
// (name to value). A constant whose value is not a string literal cannot be
// checked and fails the test, so that such a change is noticed.
func stringConsts(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !n.IsExported() || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: constant %s: %v", path, n.Name, err)
				}
				out[n.Name] = v
			}
		}
	}
	return out
}

// packageStringConsts merges the exported string constants of the non-test
// Go files of a directory.
func packageStringConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range goFiles(t, dir) {
		for k, v := range stringConsts(t, f) {
			out[k] = v
		}
	}
	return out
}

// withPrefix returns, sorted, the values of the constants whose names start
// with one of prefixes.
func withPrefix(consts map[string]string, prefixes ...string) []string {
	var out []string
	for name, v := range consts {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				out = append(out, v)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// goFiles lists the non-test Go files of a directory.
func goFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// captureRegisterer records the collectors metrics.New registers.
type captureRegisterer struct{ collectors []prometheus.Collector }

func (c *captureRegisterer) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return nil
}

func (c *captureRegisterer) MustRegister(cols ...prometheus.Collector) {
	c.collectors = append(c.collectors, cols...)
}

func (c *captureRegisterer) Unregister(prometheus.Collector) bool { return false }

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// registeredMetrics returns every metric metrics.New registers, with its
// variable labels, read from the collectors' descriptors.
func registeredMetrics() map[string][]string {
	reg := &captureRegisterer{}
	metrics.New(reg)
	out := map[string][]string{}
	for _, col := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			m := descName.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			var labels []string
			if l := descLabels.FindStringSubmatch(s); l != nil && l[1] != "" {
				for _, name := range strings.Split(l[1], ",") {
					name = strings.TrimSuffix(strings.TrimPrefix(name, "c("), ")")
					labels = append(labels, name)
				}
			}
			out[m[1]] = labels
		}
	}
	return out
}

func keys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// flagDefiners maps the flag package's defining functions to the index of
// their name argument.
var flagDefiners = map[string]int{
	"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0,
	"Float64": 0, "Duration": 0, "Func": 0, "BoolFunc": 0,
	"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1,
	"Uint64Var": 1, "Float64Var": 1, "DurationVar": 1, "TextVar": 1, "Var": 1,
}

// flagDef is one flag definition of cmd/main.go: its name and the
// expression of its default (nil when the call has none).
type flagDef struct {
	name string
	def  ast.Expr
	pos  token.Position
}

// flagDefs returns the flags cmd/main.go defines through the flag package
// (flag.XxxVar, flag.Xxx, flag.CommandLine.XxxVar).
func flagDefs(t *testing.T, path string) []flagDef {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	consts := stringConstsOf(f)
	var out []flagDef
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !isFlagPackage(sel.X) {
			return true
		}
		idx, ok := flagDefiners[sel.Sel.Name]
		if !ok || idx >= len(call.Args) {
			return true
		}
		d := flagDef{pos: fset.Position(call.Pos())}
		if idx+1 < len(call.Args) {
			d.def = call.Args[idx+1]
		}
		switch a := call.Args[idx].(type) {
		case *ast.BasicLit:
			if v, err := strconv.Unquote(a.Value); err == nil {
				d.name = v
			}
		case *ast.Ident:
			d.name = consts[a.Name]
		}
		if d.name == "" {
			t.Errorf("%s: cannot read the name of a flag.%s call; extend flagDefs", d.pos, sel.Sel.Name)
			return true
		}
		out = append(out, d)
		return true
	})
	return out
}

// managerFlags returns the names of the flags cmd/main.go defines.
func managerFlags(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, d := range flagDefs(t, path) {
		out = append(out, d.name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// isFlagPackage reports whether x is `flag` or `flag.CommandLine`.
func isFlagPackage(x ast.Expr) bool {
	switch e := x.(type) {
	case *ast.Ident:
		return e.Name == "flag"
	case *ast.SelectorExpr:
		id, ok := e.X.(*ast.Ident)
		return ok && id.Name == "flag" && e.Sel.Name == "CommandLine"
	}
	return false
}

func stringConstsOf(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil {
							out[n.Name] = v
						}
					}
				}
			}
		}
	}
	return out
}

// eventAction is one call of the reconciler's event method: its reason
// (empty when it is not a constant, such as a failure's table entry) and its
// action.
type eventAction struct {
	reason, action, from string
}

// eventActions finds every r.event(obj, type, reason, action, ...) call in
// the non-test files of dir. An action that is not a string literal fails
// the test, so that a new way of emitting events is noticed.
func eventActions(t *testing.T, dir string, consts map[string]string) []eventAction {
	t.Helper()
	var out []eventAction
	seen := map[eventAction]bool{}
	for _, path := range goFiles(t, dir) {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "event" || len(call.Args) < 4 {
				return true
			}
			pos := fset.Position(call.Pos())
			lit, ok := call.Args[3].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: the action of an event is not a string literal; extend eventActions", pos)
				return true
			}
			action, _ := strconv.Unquote(lit.Value)
			a := eventAction{action: action}
			if id, ok := call.Args[2].(*ast.Ident); ok {
				a.reason = consts[id.Name]
			}
			if !seen[a] {
				seen[a] = true
				a.from = fmt.Sprintf("the event call at %s:%d", filepath.Base(pos.Filename), pos.Line)
				out = append(out, a)
			}
			return true
		})
	}
	return out
}

var printColumn = regexp.MustCompile(`\+kubebuilder:printcolumn:name="([^"]+)"`)

// printerColumns returns the names of the +kubebuilder:printcolumn markers.
func printerColumns(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, m := range printColumn.FindAllStringSubmatch(readFile(t, path), -1) {
		out = append(out, m[1])
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("expected the repository root at %s: %v", root, err)
	}
	return root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
