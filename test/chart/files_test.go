package chart_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestCRDsAreThoseOfConfig: crds/ holds exactly the files of
// config/crd/bases, byte for byte (make helm-crds copies them), so a new
// kind or a regenerated schema cannot be left out of the chart.
func TestCRDsAreThoseOfConfig(t *testing.T) {
	want := yamlFiles(t, filepath.Join(root, "config", "crd", "bases"))
	got := yamlFiles(t, filepath.Join(chart, "crds"))
	if len(want) == 0 {
		t.Fatal("config/crd/bases holds no CRD")
	}
	if !slices.Equal(names(want), names(got)) {
		t.Fatalf("charts/tokenwarden/crds holds %v, config/crd/bases %v; run make helm-crds", names(got), names(want))
	}
	for name, b := range want {
		if !bytes.Equal(b, got[name]) {
			t.Errorf("charts/tokenwarden/crds/%s differs from config/crd/bases/%s; run make helm-crds", name, name)
		}
	}
}

// TestChartCopiesAreCurrent: the files the chart reads with .Files.Get are
// copies of their sources in config/ (make helm-crds copies them).
func TestChartCopiesAreCurrent(t *testing.T) {
	want := yamlFiles(t, filepath.Join(root, "config", "rbac"))
	got := yamlFiles(t, filepath.Join(chart, "files", "rbac"))
	if !slices.Equal(names(want), names(got)) {
		t.Errorf("charts/tokenwarden/files/rbac holds %v, config/rbac %v; run make helm-crds", names(got), names(want))
	}
	for name, b := range want {
		if got[name] != nil && !bytes.Equal(b, got[name]) {
			t.Errorf("charts/tokenwarden/files/rbac/%s differs from config/rbac/%s; run make helm-crds", name, name)
		}
	}
	for copyPath, source := range map[string]string{
		"files/prometheus-rules.yaml": "config/prometheus/rules.yaml",
		"files/dashboard.json":        "config/prometheus/dashboard.json",
	} {
		if !bytes.Equal(readFile(t, filepath.Join(chart, copyPath)), readFile(t, filepath.Join(root, source))) {
			t.Errorf("charts/tokenwarden/%s differs from %s; run make helm-crds", copyPath, source)
		}
	}
}

// TestPrometheusRuleIsConfigs: the chart's PrometheusRule holds the groups
// of config/prometheus/rules.yaml, and its dashboard ConfigMap the
// dashboard of config/prometheus.
func TestPrometheusRuleIsConfigs(t *testing.T) {
	objs := render(t, fullRelease)
	var want map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "config", "prometheus", "rules.yaml")), &want); err != nil {
		t.Fatal(err)
	}
	rule := only(t, objs, "PrometheusRule")
	if !reflect.DeepEqual(rule.Object["spec"], want["spec"]) {
		t.Errorf("the chart's PrometheusRule spec differs from config/prometheus/rules.yaml's")
	}
	var dash []byte
	for _, cm := range ofKind(objs, "ConfigMap") {
		if s, ok := cm.Object["data"].(map[string]any)["tokenwarden.json"].(string); ok {
			dash = []byte(s)
		}
	}
	if !bytes.Equal(bytes.TrimSpace(dash), bytes.TrimSpace(readFile(t, filepath.Join(root, "config", "prometheus", "dashboard.json")))) {
		t.Errorf("the chart's dashboard ConfigMap does not hold config/prometheus/dashboard.json")
	}
}

func yamlFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func names(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
