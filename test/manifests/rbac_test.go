package manifests_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// managerRules reads config/rbac/role.yaml, generated from the RBAC markers.
func managerRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := typed[rbacv1.ClusterRole](t, only(t, decode(t, data), "ClusterRole"))
	if role.Name != "manager-role" {
		t.Fatalf("config/rbac/role.yaml holds ClusterRole %q, want manager-role", role.Name)
	}
	return role.Rules
}

// Verbs the operator may hold on Secrets and APICredentials (and their
// subresources): read, and write the Secrets it owns. Never delete: target
// Secrets go with their APICredential through the owner reference.
var allowedVerbs = []string{"get", "list", "watch", "create", "update", "patch"}

// TestManagerRoleIsMinimal checks config/rbac/role.yaml.
func TestManagerRoleIsMinimal(t *testing.T) {
	for i, r := range managerRules(t) {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %d grants non-resource URLs %v", i, r.NonResourceURLs)
		}
		for _, field := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.ResourceNames} {
			if slices.Contains(field, "*") {
				t.Errorf("rule %d uses a wildcard: %+v", i, r)
			}
		}
		for _, v := range r.Verbs {
			if v == "escalate" || v == "bind" || v == "impersonate" || v == "deletecollection" {
				t.Errorf("rule %d grants %s: %+v", i, v, r)
			}
		}
		for _, res := range r.Resources {
			base := strings.Split(res, "/")[0]
			sensitive := (base == "secrets" && slices.Contains(r.APIGroups, "")) ||
				(base == "apicredentials" && slices.Contains(r.APIGroups, "auth.tokenwarden.io"))
			if !sensitive {
				continue
			}
			for _, v := range r.Verbs {
				if !slices.Contains(allowedVerbs, v) {
					t.Errorf("rule %d grants %q on %s; allowed are %v", i, v, res, allowedVerbs)
				}
			}
			if base == "secrets" && slices.Contains(r.Verbs, "delete") {
				t.Errorf("rule %d grants delete on secrets", i)
			}
		}
	}
}

// TestDefaultInstallsManagerRole checks that config/default binds the
// generated rules unchanged, cluster-wide.
func TestDefaultInstallsManagerRole(t *testing.T) {
	objs := renderObjects(t, "default")
	var role *rbacv1.ClusterRole
	for _, o := range ofKind(objs, "ClusterRole") {
		if o.GetName() == "tokenwarden-manager-role" {
			role = typed[rbacv1.ClusterRole](t, o)
		}
	}
	if role == nil {
		t.Fatal("config/default has no ClusterRole tokenwarden-manager-role")
	}
	if !reflect.DeepEqual(role.Rules, managerRules(t)) {
		t.Errorf("config/default's manager ClusterRole differs from config/rbac/role.yaml:\n%+v", role.Rules)
	}
	if len(ofKind(objs, "NetworkPolicy")) != 0 {
		t.Error("config/default includes NetworkPolicies; config/network-policy is meant to be opt-in")
	}
}

// watchedNamespaces returns the --watch-namespaces of the Deployment.
func watchedNamespaces(t *testing.T, objs []unstructured.Unstructured) []string {
	t.Helper()
	deploy := typed[appsv1.Deployment](t, only(t, objs, "Deployment"))
	for _, a := range deploy.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--watch-namespaces="); ok {
			return strings.Split(v, ",")
		}
	}
	t.Fatal("the namespaced Deployment has no --watch-namespaces")
	return nil
}

// TestNamespacedRBAC checks the structure of config/namespaced: the
// generated rules as a Role in every watched namespace and only there, no
// cluster-wide grant on Secrets or APICredentials, no CRD.
func TestNamespacedRBAC(t *testing.T) {
	objs := renderObjects(t, "namespaced")
	want := managerRules(t)

	watched := watchedNamespaces(t, objs)
	if !slices.Equal(watched, []string{"payments"}) {
		t.Errorf("--watch-namespaces=%s, want payments (the example)", strings.Join(watched, ","))
	}
	if n := len(ofKind(objs, "CustomResourceDefinition")); n != 0 {
		t.Errorf("config/namespaced includes %d CRDs; the CRD is installed once per cluster with config/crd", n)
	}

	roles := map[string]*rbacv1.Role{} // namespace/name
	for _, o := range ofKind(objs, "Role") {
		roles[o.GetNamespace()+"/"+o.GetName()] = typed[rbacv1.Role](t, o)
	}
	var managerNamespaces []string
	for key, role := range roles {
		if role.Name != "tokenwarden-manager-role" {
			continue
		}
		managerNamespaces = append(managerNamespaces, role.Namespace)
		if !reflect.DeepEqual(role.Rules, want) {
			t.Errorf("Role %s differs from config/rbac/role.yaml:\n%+v", key, role.Rules)
		}
	}
	slices.Sort(managerNamespaces)
	sortedWatched := slices.Sorted(slices.Values(watched))
	if !slices.Equal(managerNamespaces, sortedWatched) {
		t.Errorf("manager Roles in %v, --watch-namespaces %v: keep them in step (README.md)", managerNamespaces, sortedWatched)
	}
	if _, ok := roles[operatorNS+"/tokenwarden-leader-election-role"]; !ok {
		t.Error("no leader election Role in the operator's namespace")
	}

	for _, o := range ofKind(objs, "RoleBinding") {
		rb := typed[rbacv1.RoleBinding](t, o)
		if rb.RoleRef.Kind != "Role" {
			t.Errorf("RoleBinding %s/%s binds a %s", rb.Namespace, rb.Name, rb.RoleRef.Kind)
		}
		if _, ok := roles[rb.Namespace+"/"+rb.RoleRef.Name]; !ok {
			t.Errorf("RoleBinding %s/%s binds Role %s, which is not in its namespace", rb.Namespace, rb.Name, rb.RoleRef.Name)
		}
		for _, s := range rb.Subjects {
			if s.Kind != "ServiceAccount" || s.Namespace+"/"+s.Name != operatorNS+"/tokenwarden-controller-manager" {
				t.Errorf("RoleBinding %s/%s binds %+v, not the operator's ServiceAccount", rb.Namespace, rb.Name, s)
			}
		}
	}
	for _, ns := range watched {
		found := false
		for _, o := range ofKind(objs, "RoleBinding") {
			found = found || (o.GetNamespace() == ns && o.GetName() == "tokenwarden-manager-rolebinding")
		}
		if !found {
			t.Errorf("no manager RoleBinding in watched namespace %s", ns)
		}
	}

	// Cluster-wide: only what the metrics endpoint needs.
	for _, o := range ofKind(objs, "ClusterRole") {
		cr := typed[rbacv1.ClusterRole](t, o)
		for _, r := range cr.Rules {
			for _, res := range r.Resources {
				if base := strings.Split(res, "/")[0]; base == "secrets" || base == "apicredentials" || res == "*" {
					t.Errorf("ClusterRole %s grants %v on %s in a namespaced install", cr.Name, r.Verbs, res)
				}
			}
		}
	}
	for _, o := range ofKind(objs, "ClusterRoleBinding") {
		crb := typed[rbacv1.ClusterRoleBinding](t, o)
		if crb.RoleRef.Name != "tokenwarden-metrics-auth-role" {
			t.Errorf("ClusterRoleBinding %s binds %s; a namespaced install binds only the metrics-auth ClusterRole", crb.Name, crb.RoleRef.Name)
		}
	}
}

// TestWatchedNamespaceBase checks that the per-namespace base holds exactly
// a Role and its RoleBinding, so that nothing added to config/rbac later
// slips into every watched namespace.
func TestWatchedNamespaceBase(t *testing.T) {
	var kinds []string
	for _, o := range renderObjects(t, "namespaced/watched-namespace") {
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(kinds)
	want := []string{"Role/tokenwarden-manager-role", "RoleBinding/tokenwarden-manager-rolebinding"}
	if !slices.Equal(kinds, want) {
		t.Errorf("config/namespaced/watched-namespace renders %v, want %v", kinds, want)
	}
}
