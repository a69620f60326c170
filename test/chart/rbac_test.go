package chart_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// kustomizeObjects reads the YAML files a kustomization lists under
// resources (files only, not folders), as kustomize would before it adds
// its prefix and namespace.
func kustomizeObjects(t *testing.T, dir string) []unstructured.Unstructured {
	t.Helper()
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, dir, "kustomization.yaml")), &k); err != nil {
		t.Fatal(err)
	}
	var objs []unstructured.Unstructured
	for _, r := range k.Resources {
		if !strings.HasSuffix(r, ".yaml") {
			continue
		}
		objs = append(objs, decode(t, readFile(t, filepath.Join(root, dir, r)))...)
	}
	if len(objs) == 0 {
		t.Fatalf("%s lists no YAML file", dir)
	}
	return objs
}

// role is a Role or ClusterRole reduced to what grants access.
type role struct {
	kind   string
	rules  []rbacv1.PolicyRule
	labels map[string]string // the aggregate-to-* labels only
}

// roles maps each Role and ClusterRole of objs, by name without prefix, to
// its kind, normalised rules and aggregation labels. A Role outside the
// operator's namespace is keyed name@namespace.
func roles(t *testing.T, objs []unstructured.Unstructured, prefix, operatorNS string) map[string]role {
	t.Helper()
	out := map[string]role{}
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		var r rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		name, ok := strings.CutPrefix(o.GetName(), prefix)
		if !ok {
			t.Errorf("%s %s is not named %s...", o.GetKind(), o.GetName(), prefix)
			continue
		}
		agg := map[string]string{}
		for k, v := range o.GetLabels() {
			if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
				agg[k] = v
			}
		}
		key := name
		if o.GetKind() == "Role" && o.GetNamespace() != operatorNS {
			key = name + "@" + o.GetNamespace()
		}
		out[key] = role{kind: o.GetKind(), rules: normalise(r.Rules), labels: agg}
	}
	return out
}

// normalise sorts the lists inside each rule and the rules, so that rules
// granting the same access in another order compare equal.
func normalise(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(rules))
	for _, r := range rules {
		r = *r.DeepCopy()
		for _, l := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			slices.Sort(l)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// ruleDiff describes how got grants other access than want; "" when equal.
func ruleDiff(want, got []rbacv1.PolicyRule) string {
	w, g := normalise(want), normalise(got)
	var b strings.Builder
	for _, r := range w {
		if !slices.ContainsFunc(g, func(x rbacv1.PolicyRule) bool { return x.String() == r.String() }) {
			fmt.Fprintf(&b, "\n  missing: %s", r.String())
		}
	}
	for _, r := range g {
		if !slices.ContainsFunc(w, func(x rbacv1.PolicyRule) bool { return x.String() == r.String() }) {
			fmt.Fprintf(&b, "\n  extra:   %s", r.String())
		}
	}
	return b.String()
}

func compareRoles(t *testing.T, want, got map[string]role, what string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: the chart renders no %s %s", what, w.kind, name)
			continue
		}
		if g.kind != w.kind {
			t.Errorf("%s: %s is a %s in the chart, a %s in config", what, name, g.kind, w.kind)
		}
		if d := ruleDiff(w.rules, g.rules); d != "" {
			t.Errorf("%s: the rules of %s drifted from config/rbac:%s", what, name, d)
		}
		if fmt.Sprint(g.labels) != fmt.Sprint(w.labels) {
			t.Errorf("%s: %s aggregates with %v in the chart, %v in config", what, name, g.labels, w.labels)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: the chart renders a %s %s that the kustomize install has not", what, g.kind, name)
		}
	}
}

// TestClusterRBACEqualsKustomize: in cluster mode the chart renders exactly
// the Roles and ClusterRoles of config/rbac (the install of config/default),
// with the same rules; manager-role's come from config/rbac/role.yaml, which
// make manifests generates from the RBAC markers, so new kinds reach the
// chart through make helm-crds, and this test fails until they do.
func TestClusterRBACEqualsKustomize(t *testing.T) {
	want := roles(t, kustomizeObjects(t, "config/rbac"), "", "system")
	got := roles(t, render(t, clusterRelease), "tokenwarden-", clusterRelease.namespace)
	compareRoles(t, want, got, "cluster mode")
	if len(want["manager-role"].rules) == 0 {
		t.Fatal("config/rbac has no manager-role rules")
	}
}

// TestNamespacedRBACEqualsKustomize: in namespaced mode, as config/namespaced:
// manager-role becomes a Role in each watched namespace, the ClusterRoles
// aggregated into edit/admin/view and the manager ClusterRole are gone, and
// the metrics ClusterRoles and the leader election Role stay.
func TestNamespacedRBACEqualsKustomize(t *testing.T) {
	base := roles(t, kustomizeObjects(t, "config/rbac"), "", "system")
	want := map[string]role{}
	for _, ns := range []string{"payments", "orders"} { // ci/namespaced-values.yaml
		r := base["manager-role"]
		r.kind = "Role"
		want["manager-role@"+ns] = r
	}
	for _, name := range []string{"leader-election-role", "metrics-auth-role", "metrics-reader"} {
		want[name] = base[name]
	}
	got := roles(t, render(t, namespacedRelease), "twns-tokenwarden-", namespacedRelease.namespace)
	compareRoles(t, want, got, "namespaced mode")
}

// TestRBACComparisonCatchesDrift proves the comparison is not vacuous: a
// kind added to role.yaml, or a verb taken away, is reported.
func TestRBACComparisonCatchesDrift(t *testing.T) {
	want := roles(t, kustomizeObjects(t, "config/rbac"), "", "system")["manager-role"].rules
	added := append(slices.Clone(want), rbacv1.PolicyRule{APIGroups: []string{"auth.tokenwarden.io"}, Resources: []string{"widgets"}, Verbs: []string{"get"}})
	if d := ruleDiff(added, want); !strings.Contains(d, "widgets") {
		t.Errorf("a new resource in role.yaml was not reported: %q", d)
	}
	fewer := normalise(want)
	fewer[0].Verbs = fewer[0].Verbs[1:]
	if d := ruleDiff(want, fewer); d == "" {
		t.Error("a verb missing from the chart was not reported")
	}
}

// TestBindingsNameTheServiceAccount: every RoleBinding and
// ClusterRoleBinding binds a role the chart renders to the chart's
// ServiceAccount in the release namespace, as config/rbac's bindings do.
func TestBindingsNameTheServiceAccount(t *testing.T) {
	for _, r := range []release{clusterRelease, namespacedRelease, fullRelease} {
		objs := render(t, r)
		sa := only(t, objs, "ServiceAccount")
		rendered := map[string]bool{}
		for _, o := range objs {
			if o.GetKind() == "Role" || o.GetKind() == "ClusterRole" {
				rendered[o.GetKind()+"/"+o.GetName()] = true
			}
		}
		bindings := 0
		for _, o := range objs {
			if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
				continue
			}
			bindings++
			var b rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatal(err)
			}
			if !rendered[b.RoleRef.Kind+"/"+b.RoleRef.Name] {
				t.Errorf("%s: %s %s binds %s %s, which the chart does not render", r.name, o.GetKind(), o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
			}
			if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != sa.GetName() || b.Subjects[0].Namespace != r.namespace {
				t.Errorf("%s: %s %s binds %v, want the ServiceAccount %s/%s", r.name, o.GetKind(), o.GetName(), b.Subjects, r.namespace, sa.GetName())
			}
		}
		// config/rbac has three bindings (manager, leader election, metrics
		// auth); the namespaced mode has one manager binding per namespace.
		// The full release adds the optional pod-sync binding (rbac.podSync).
		want := 3
		switch r.name {
		case namespacedRelease.name:
			want = 4
		case fullRelease.name:
			want = 4
		}
		if bindings != want {
			t.Errorf("%s: %d bindings, want %d", r.name, bindings, want)
		}
	}
}
