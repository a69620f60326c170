package monitoring_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// rawRules is config/prometheus/rules.yaml as a generic document.
func rawRules(t *testing.T) map[string]any {
	t.Helper()
	loadRules(t) // fails on a file that is not a PrometheusRule
	var raw map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "config", "prometheus", "rules.yaml")), &raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

// promtool runs promtool in a temporary folder holding spec (the groups of
// a PrometheusRule) as rules.yaml and a copy of rules_test.yaml; it returns
// promtool's output and error.
func promtool(t *testing.T, spec any, args ...string) (string, error) {
	t.Helper()
	bin := tool(t, "promtool", "PROMTOOL", "PROMTOOL_VERSION")
	dir := t.TempDir()
	groups, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), groups, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := readFile(t, filepath.Join(root, "config", "prometheus", "rules_test.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPromtool runs promtool check rules and promtool test rules on the
// groups of config/prometheus/rules.yaml. promtool reads plain rule files, so
// the PrometheusRule's spec is written to a temporary rules.yaml next to a
// copy of rules_test.yaml (which names rules.yaml).
func TestPromtool(t *testing.T) {
	spec := rawRules(t)["spec"]
	for _, args := range [][]string{
		{"check", "rules", "rules.yaml"},
		{"test", "rules", "rules_test.yaml"},
	} {
		out, err := promtool(t, spec, args...)
		t.Logf("promtool %v:\n%s", args, out)
		if err != nil {
			t.Errorf("promtool %v: %v", args, err)
		}
	}
}

// TestPromtoolTestsCatchBrokenAlerts proves the unit tests are not vacuous:
// for each alert, an expression that never fires and one that always fires
// each make promtool test rules fail.
func TestPromtoolTestsCatchBrokenAlerts(t *testing.T) {
	raw := rawRules(t)
	groups := raw["spec"].(map[string]any)["groups"].([]any)
	for gi, g := range groups {
		for ri, r := range g.(map[string]any)["rules"].([]any) {
			alert, _ := r.(map[string]any)["alert"].(string)
			if alert == "" {
				continue
			}
			for _, mutant := range []string{"vector(1) == 0", "vector(1)"} {
				spec := rawRules(t)["spec"]
				spec.(map[string]any)["groups"].([]any)[gi].(map[string]any)["rules"].([]any)[ri].(map[string]any)["expr"] = mutant
				if out, err := promtool(t, spec, "test", "rules", "rules_test.yaml"); err == nil {
					t.Errorf("%s with expr %q: promtool test rules passed:\n%s", alert, mutant, out)
				}
			}
		}
	}
}

// TestEveryAlertHasAFiringAndASilentCase reads rules_test.yaml: each alert
// of rules.yaml must be expected to fire at some eval_time and expected
// silent (exp_alerts empty) at another.
func TestEveryAlertHasAFiringAndASilentCase(t *testing.T) {
	var tests struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "config", "prometheus", "rules_test.yaml")), &tests); err != nil {
		t.Fatal(err)
	}
	firing, silent := map[string]bool{}, map[string]bool{}
	for _, tg := range tests.Tests {
		for _, c := range tg.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				firing[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range loadRules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if !firing[r.Alert] {
				t.Errorf("rules_test.yaml has no case where %s fires", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("rules_test.yaml has no case where %s stays silent", r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("rules.yaml has no alerts")
	}
}
