package chart_test

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// managerFlags returns the flags the manager defines: the flag.*Var calls
// of cmd/main.go, and the zap logging flags it binds.
func managerFlags(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(root, "cmd", "main.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !strings.HasSuffix(sel.Sel.Name, "Var") {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "flag" {
			return true
		}
		if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			name, err := strconv.Unquote(lit.Value)
			if err == nil {
				names = append(names, name)
			}
		}
		return true
	})
	if len(names) < 10 {
		t.Fatalf("found only %d flags in cmd/main.go: %v", len(names), names)
	}
	fs := flag.NewFlagSet("zap", flag.ContinueOnError)
	(&zap.Options{}).BindFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)
	return names
}

// TestEveryManagerFlagIsAValue: each flag of the manager is passed by the
// chart from a value (in the install with every optional value set, or in
// the namespaced mode for --watch-namespaces), so that no behaviour needs
// extraArgs.
func TestEveryManagerFlagIsAValue(t *testing.T) {
	passed := map[string]bool{}
	for _, r := range []release{fullRelease, namespacedRelease} {
		r.sets = append(r.sets, "leaderElection.namespace=tokenwarden-system")
		for name := range flags(deployment(t, render(t, r)).Spec.Template.Spec.Containers[0].Args) {
			passed[name] = true
		}
	}
	for _, name := range managerFlags(t) {
		if !passed[name] {
			t.Errorf("the manager flag --%s is not set from any chart value", name)
		}
	}
}

// TestValuesReachTheirFlags: a changed value changes its flag.
func TestValuesReachTheirFlags(t *testing.T) {
	r := clusterRelease
	r.sets = []string{
		"config.hostRequestsPerMinute=30",
		"config.hostMaxInFlight=4",
		"config.maxConcurrentReconciles=8",
		"config.allowPrivateNetworks=true",
		"config.allowedHosts={a.example.com,*.example.org}",
		"leaderElection.leaseDuration=30s",
		"metrics.port=9443",
		"logging.level=debug",
		"logging.encoder=console",
	}
	got := flags(deployment(t, render(t, r)).Spec.Template.Spec.Containers[0].Args)
	for name, want := range map[string]string{
		"host-requests-per-minute":       "30",
		"host-max-in-flight":             "4",
		"max-concurrent-reconciles":      "8",
		"allow-private-networks":         "true",
		"allowed-hosts":                  "a.example.com,*.example.org",
		"leader-election-lease-duration": "30s",
		"metrics-bind-address":           ":9443",
		"zap-log-level":                  "debug",
		"zap-encoder":                    "console",
	} {
		if got[name] != want {
			t.Errorf("--%s=%q, want %q", name, got[name], want)
		}
	}
}
