// Package monitoring_test checks the monitoring bundle of config/prometheus:
//
//   - promtool accepts the alert rules and their unit tests pass (a firing and
//     a silent case for every alert, rules_test.yaml);
//   - every PromQL expression of the rules and of the Grafana dashboard
//     parses and names only metrics the operator exports (read from the
//     metrics package as registered), or a short list of metrics others
//     export (Prometheus's up, controller-runtime's leader election gauge),
//     and the check fails on a name nobody exports;
//   - every alert links to a section of docs/troubleshooting.md that exists.
//
// promtool is $PROMTOOL, else bin/promtool-<PROMTOOL_VERSION of
// hack/make/chart.mk>, built by `make promtool` when missing.
package monitoring_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

var root = testenv.Root()

// prometheusRule is the part of config/prometheus/rules.yaml the tests read.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadRules(t *testing.T) prometheusRule {
	t.Helper()
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(root, "config", "prometheus", "rules.yaml")), &pr); err != nil {
		t.Fatalf("config/prometheus/rules.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("config/prometheus/rules.yaml is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	return pr
}

// dashboard is the part of the Grafana dashboard JSON the tests read.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // rows hold panels
}

func loadDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, path), &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// query is one PromQL expression and where it was found.
type query struct {
	where string
	expr  string
}

func ruleQueries(pr prometheusRule) []query {
	var out []query
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: fmt.Sprintf("rules.yaml group %s, alert %s", g.Name, r.Alert+r.Record), expr: r.Expr})
		}
	}
	return out
}

func dashboardQueries(d dashboard) []query {
	var out []query
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				out = append(out, query{where: fmt.Sprintf("dashboard panel %q, target %d", p.Title, i), expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// tool returns the path of a tool that hack/make/chart.mk builds: $ENV, or
// bin/<name>-<version>, built with make when missing.
func tool(t *testing.T, name, env, versionVar string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	mk := readFile(t, filepath.Join(root, "hack", "make", "chart.mk"))
	m := regexp.MustCompile(`(?m)^` + versionVar + ` \?= (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("hack/make/chart.mk sets no %s", versionVar)
	}
	path := filepath.Join(root, "bin", name+"-"+string(m[1]))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	t.Logf("building %s with make %s (a few minutes, once)", path, name)
	cmd := exec.Command("make", "-s", name)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make %s: %v\n%s", name, err, out.String())
	}
	return path
}
