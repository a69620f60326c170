package chart_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestSchemaRejectsWrongValues: helm refuses to render values of the wrong
// type or outside their set, unknown keys, and a namespaced install without
// namespaces, naming the value.
func TestSchemaRejectsWrongValues(t *testing.T) {
	for _, c := range []struct {
		set  string
		want string // in helm's error
	}{
		{"replicaCount=two", "/replicaCount"},
		{"metrics.port=https", "/metrics/port"},
		{"metrics.secure=maybe", "/metrics/secure"},
		{"config.allowedHosts=a.example.com", "/config/allowedHosts"},
		{"config.hostMaxInFlight=0", "/config/hostMaxInFlight"},
		{"logging.encoder=xml", "/logging/encoder"},
		{"installMode=both", "/installMode"},
		{"installMode=namespaced", "/watchNamespaces"},
		{"watchNamespaces={payments}", "/watchNamespaces"},
		{"leaderElection.leaseDuration=15", "/leaderElection/leaseDuration"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy"},
		{"resources=big", "/resources"},
		{"metrics.prot=8443", "prot"},
		{"replicaCnt=2", "replicaCnt"},
	} {
		r := clusterRelease
		r.sets = []string{c.set}
		_, stderr, err := helm(t, r.args()...)
		if err == nil {
			t.Errorf("--set %s was accepted", c.set)
			continue
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("--set %s: the error does not name %s:\n%s", c.set, c.want, stderr)
		}
	}
}

// TestTemplateRejectsInconsistentValues: what the schema cannot say, the
// templates check.
func TestTemplateRejectsInconsistentValues(t *testing.T) {
	for _, c := range []struct {
		sets []string
		want string
	}{
		{[]string{"leaderElection.enabled=false"}, "leaderElection.enabled"},
		{[]string{"networkPolicy.enabled=true"}, "networkPolicy.apiServerCIDRs"},
		{[]string{"serviceAccount.create=false"}, "serviceAccount.name"},
	} {
		r := clusterRelease
		r.sets = c.sets
		_, stderr, err := helm(t, r.args()...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("--set %v: want an error naming %s, got %v:\n%s", c.sets, c.want, err, stderr)
		}
	}
	r := clusterRelease
	r.sets = []string{"leaderElection.enabled=false", "replicaCount=1"}
	if _, stderr, err := helm(t, r.args()...); err != nil {
		t.Errorf("one replica without leader election was refused: %s", stderr)
	}
}

// valuePaths lists the dotted paths of every value in values.yaml, down to
// the values that are not maps (a map value such as resources or
// nodeSelector is one value; its keys belong to Kubernetes).
func valuePaths(prefix string, v any, schema map[string]any, out *[]string) {
	m, ok := v.(map[string]any)
	props, _ := schema["properties"].(map[string]any)
	if !ok || props == nil {
		*out = append(*out, prefix)
		return
	}
	for k, child := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		sub, _ := props[k].(map[string]any)
		if sub == nil {
			*out = append(*out, p+" (not in the schema)")
			continue
		}
		valuePaths(p, child, sub, out)
	}
}

func loadValuesAndSchema(t *testing.T) (map[string]any, map[string]any) {
	t.Helper()
	var values, schema map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chart, "values.yaml")), &values); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(chart, "values.schema.json")), &schema); err != nil {
		t.Fatal(err)
	}
	return values, schema
}

// TestSchemaTypesEveryValue: every value of values.yaml is a property of
// values.schema.json, with a type and a description, and every object of the
// schema refuses unknown keys.
func TestSchemaTypesEveryValue(t *testing.T) {
	values, schema := loadValuesAndSchema(t)
	var paths []string
	valuePaths("", values, schema, &paths)
	sort.Strings(paths)
	for _, p := range paths {
		if strings.HasSuffix(p, "(not in the schema)") {
			t.Errorf("value %s", p)
			continue
		}
		node := schema
		for _, k := range strings.Split(p, ".") {
			node = node["properties"].(map[string]any)[k].(map[string]any)
		}
		_, typed := node["type"]
		_, oneOf := node["oneOf"]
		_, anyOf := node["anyOf"]
		if !typed && !oneOf && !anyOf {
			t.Errorf("value %s has no type in the schema", p)
		}
		if node["description"] == nil {
			t.Errorf("value %s has no description in the schema", p)
		}
	}
	var open func(path string, n map[string]any)
	open = func(path string, n map[string]any) {
		props, ok := n["properties"].(map[string]any)
		if !ok {
			return
		}
		if n["additionalProperties"] != false {
			t.Errorf("schema object %q accepts unknown keys", path)
		}
		for k, v := range props {
			open(strings.TrimPrefix(path+"."+k, "."), v.(map[string]any))
		}
	}
	open("", schema)
	if len(paths) < 50 {
		t.Errorf("only %d values found; the walk is broken", len(paths))
	}
}

// TestHelmDocListsEveryValue: docs/helm.md names every value (as a `code`
// span in its values table).
func TestHelmDocListsEveryValue(t *testing.T) {
	values, schema := loadValuesAndSchema(t)
	var paths []string
	valuePaths("", values, schema, &paths)
	doc := string(readFile(t, filepath.Join(root, "docs", "helm.md")))
	for _, p := range paths {
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(p) + "` \\|").MatchString(doc) {
			t.Errorf("docs/helm.md has no row for the value %s", p)
		}
	}
}
