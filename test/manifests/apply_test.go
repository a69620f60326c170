package manifests_test

import (
	"strings"
	"testing"
)

// The namespaces are created for real before the dry run: a server-side dry
// run does not persist anything, so namespaced objects in a namespace that
// the same apply would create are refused ("namespaces ... not found"). The
// operator's namespace is applied from the rendered manifests themselves, so
// it carries config/manager's pod-security labels and the API server checks
// the Deployment against the restricted profile (it answers with a warning,
// which the test treats as a failure; enforcement proper is on Pods, see
// podsecurity_test.go). Everything else is only dry-run, so that the
// installs do not leak into each other's checks.

// dryRunApply applies rendered manifests with --dry-run=server and checks
// that every object was accepted and that no PodSecurity warning came back.
func dryRunApply(t *testing.T, rendered []byte) {
	t.Helper()
	objs := decode(t, rendered)
	stdout, stderr, err := kubectl(t, rendered, "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if got := strings.Count(stdout, "(server dry run)"); got != len(objs) {
		t.Errorf("kubectl reported %d objects as applied (server dry run), the manifests have %d:\n%s", got, len(objs), stdout)
	}
	if strings.Contains(stderr, "PodSecurity") {
		t.Errorf("the API server warned about Pod Security:\n%s", stderr)
	}
	t.Logf("kubectl apply --dry-run=server:\n%s", stdout)
}

// applyNamespaces applies the rendered Namespace objects for real.
func applyNamespaces(t *testing.T, rendered []byte) {
	t.Helper()
	namespaces := ofKind(decode(t, rendered), "Namespace")
	if len(namespaces) == 0 {
		return
	}
	mustKubectl(t, toYAML(t, namespaces...), "apply", "-f", "-")
}

func TestDefaultServerDryRun(t *testing.T) {
	rendered := render(t, "default")
	applyNamespaces(t, rendered)
	dryRunApply(t, rendered)
}

func TestNamespacedServerDryRun(t *testing.T) {
	rendered := render(t, "namespaced")
	applyNamespaces(t, rendered)
	ensureNamespace(t, "payments", nil) // the watched namespace exists before the install
	dryRunApply(t, rendered)
}

func TestNetworkPolicyServerDryRun(t *testing.T) {
	applyNamespaces(t, render(t, "default"))
	dryRunApply(t, render(t, "network-policy"))
}

// TestNamespacedPermissions installs config/namespaced for real and asks
// the API server what the operator's ServiceAccount may do: exactly what
// the manager needs in the watched namespace and its own, nothing elsewhere.
func TestNamespacedPermissions(t *testing.T) {
	rendered := render(t, "namespaced")
	applyNamespaces(t, rendered)
	ensureNamespace(t, "payments", nil)
	ensureNamespace(t, "unwatched", nil)
	mustKubectl(t, rendered, "apply", "-f", "-")

	const creds = "apicredentials.auth.tokenwarden.io"
	cases := []struct {
		args []string
		want bool
	}{
		// The watched namespace: the rules of config/rbac/role.yaml.
		{[]string{"get", "secrets", "-n", "payments"}, true},
		{[]string{"list", "secrets", "-n", "payments"}, true},
		{[]string{"watch", "secrets", "-n", "payments"}, true},
		{[]string{"create", "secrets", "-n", "payments"}, true},
		{[]string{"update", "secrets", "-n", "payments"}, true},
		{[]string{"patch", "secrets", "-n", "payments"}, true},
		{[]string{"delete", "secrets", "-n", "payments"}, false},
		{[]string{"deletecollection", "secrets", "-n", "payments"}, false},
		{[]string{"get", creds, "-n", "payments"}, true},
		{[]string{"list", creds, "-n", "payments"}, true},
		{[]string{"watch", creds, "-n", "payments"}, true},
		{[]string{"update", creds, "-n", "payments"}, false},
		{[]string{"delete", creds, "-n", "payments"}, false},
		{[]string{"update", creds, "--subresource=status", "-n", "payments"}, true},
		{[]string{"patch", creds, "--subresource=status", "-n", "payments"}, true},
		{[]string{"get", "configmaps", "-n", "payments"}, true},
		// list/watch serve the metadata-only watch of CA bundle ConfigMaps.
		{[]string{"list", "configmaps", "-n", "payments"}, true},
		{[]string{"watch", "configmaps", "-n", "payments"}, true},
		{[]string{"update", "configmaps", "-n", "payments"}, false},
		// Blocking owner references where OwnerReferencesPermissionEnforcement is on.
		{[]string{"update", creds, "--subresource=finalizers", "-n", "payments"}, true},
		{[]string{"create", "events", "-n", "payments"}, true},
		{[]string{"create", "events.events.k8s.io", "-n", "payments"}, true},
		// Other namespaces and the whole cluster: nothing.
		{[]string{"get", "secrets", "-n", "unwatched"}, false},
		{[]string{"list", "secrets", "-n", "unwatched"}, false},
		{[]string{"list", "secrets", "--all-namespaces"}, false},
		{[]string{"list", creds, "-n", "unwatched"}, false},
		{[]string{"list", creds, "--all-namespaces"}, false},
		{[]string{"get", "configmaps", "-n", "unwatched"}, false},
		{[]string{"get", "secrets", "-n", operatorNS}, false},
		{[]string{"list", "namespaces"}, false},
		// Leader election, in the operator's namespace only.
		{[]string{"create", "leases.coordination.k8s.io", "-n", operatorNS}, true},
		{[]string{"update", "leases.coordination.k8s.io", "-n", operatorNS}, true},
		{[]string{"create", "leases.coordination.k8s.io", "-n", "payments"}, false},
		{[]string{"create", "events.events.k8s.io", "-n", operatorNS}, true},
		// The authenticated metrics endpoint.
		{[]string{"create", "tokenreviews.authentication.k8s.io"}, true},
		{[]string{"create", "subjectaccessreviews.authorization.k8s.io"}, true},
	}
	for _, c := range cases {
		args := append([]string{"auth", "can-i"}, c.args...)
		args = append(args, "--as="+operatorSA)
		stdout, stderr, err := kubectl(t, nil, args...)
		got := strings.TrimSpace(stdout) == "yes"
		if strings.TrimSpace(stdout) != "yes" && strings.TrimSpace(stdout) != "no" {
			t.Errorf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
			continue
		}
		if got != c.want {
			t.Errorf("can the operator %s? got %t, want %t", strings.Join(c.args, " "), got, c.want)
		}
	}
}
