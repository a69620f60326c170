package chart_test

import (
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := k8s.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// namespacesFor creates the namespaces an install needs: its own (the
// restricted profile enforced, as config/manager labels it), the watched
// ones and the monitoring namespace the NetworkPolicy names.
func namespacesFor(t *testing.T, r release) {
	t.Helper()
	ensureNamespace(t, r.namespace, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	for _, ns := range []string{"payments", "orders", "monitoring"} {
		ensureNamespace(t, ns, nil)
	}
}

// TestEveryObjectDryRuns sends every object each install renders to the API
// server as a server-side dry-run create with strict field validation: the
// schema (an unknown or mistyped field is an error, not a warning),
// defaulting and admission, RBAC escalation checks included. The
// ServiceMonitor and PrometheusRule are checked against the CRDs generated
// from the Prometheus Operator's API types.
func TestEveryObjectDryRuns(t *testing.T) {
	needAPIServer(t)
	for _, r := range []release{clusterRelease, namespacedRelease, fullRelease, minimalRelease} {
		t.Run(r.name, func(t *testing.T) {
			namespacesFor(t, r)
			objs := render(t, r)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				obj := o.DeepCopy()
				if err := k8s.Create(t.Context(), obj, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
					t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				}
			}
			t.Logf("%d objects dry-run: %v", len(objs), kinds)
			want := []string{"Deployment", "ServiceAccount", "ClusterRole", "Role", "RoleBinding", "ClusterRoleBinding", "Service", "PodDisruptionBudget"}
			switch r.name {
			case fullRelease.name:
				want = append(want, "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap")
			case minimalRelease.name:
				want = []string{"Deployment"}
				if len(objs) != 1 {
					t.Errorf("with everything optional off, want only the Deployment, got %v", kinds)
				}
			}
			for _, k := range want {
				if kinds[k] == 0 {
					t.Errorf("rendered no %s", k)
				}
			}
		})
	}
}

// TestDryRunRefusesABrokenObject proves the dry-run is strict: a
// ServiceMonitor endpoint with a misspelt field and a PrometheusRule rule
// with a list for expr are refused, so the CRDs carry real schemas.
func TestDryRunRefusesABrokenObject(t *testing.T) {
	needAPIServer(t)
	namespacesFor(t, fullRelease)
	objs := render(t, fullRelease)
	smObj := only(t, objs, "ServiceMonitor")
	sm := smObj.DeepCopy()
	endpoints := sm.Object["spec"].(map[string]any)["endpoints"].([]any)
	endpoints[0].(map[string]any)["intervall"] = "30s"
	if err := k8s.Create(t.Context(), sm, client.DryRunAll, client.FieldValidation("Strict")); err == nil || !strings.Contains(err.Error(), "intervall") {
		t.Errorf("a ServiceMonitor with an unknown field: want an error naming it, got %v", err)
	}
	prObj := only(t, objs, "PrometheusRule")
	pr := prObj.DeepCopy()
	groups := pr.Object["spec"].(map[string]any)["groups"].([]any)
	groups[0].(map[string]any)["rules"].([]any)[0].(map[string]any)["expr"] = []any{"up"}
	if err := k8s.Create(t.Context(), pr, client.DryRunAll, client.FieldValidation("Strict")); err == nil || !strings.Contains(err.Error(), "expr") {
		t.Errorf("a PrometheusRule whose expr is a list: want an error naming expr, got %v", err)
	}
}

// access is one question to ask the API server about a ServiceAccount.
type access struct {
	namespace, verb, group, resource, subresource string
	allowed                                       bool
}

// TestInstalledRBACGrantsWhatTheOperatorNeeds installs the cluster and the
// namespaced release for real and asks the API server
// (SubjectAccessReview) what each ServiceAccount may do: Secrets and the
// tokenwarden kinds where it serves, their status and finalizers (needed to
// set blocking owner references where the OwnerReferencesPermissionEnforcement
// admission plugin runs), Leases in its own namespace; never deleting
// Secrets; nothing outside the watched namespaces in namespaced mode.
func TestInstalledRBACGrantsWhatTheOperatorNeeds(t *testing.T) {
	needAPIServer(t)
	common := func(ns string) []access {
		return []access{
			{ns, "create", "coordination.k8s.io", "leases", "", true},
			{ns, "update", "coordination.k8s.io", "leases", "", true},
			{"kube-system", "create", "coordination.k8s.io", "leases", "", false},
		}
	}
	served := func(ns string, allowed bool) []access {
		var out []access
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch"} {
			out = append(out, access{ns, verb, "", "secrets", "", allowed})
		}
		out = append(out, access{ns, "delete", "", "secrets", "", false})
		for _, kind := range []string{"apicredentials", "tokenproviders"} {
			out = append(out,
				access{ns, "watch", "auth.tokenwarden.io", kind, "", allowed},
				access{ns, "update", "auth.tokenwarden.io", kind, "finalizers", allowed},
				access{ns, "patch", "auth.tokenwarden.io", kind, "status", allowed},
				access{ns, "delete", "auth.tokenwarden.io", kind, "", false},
			)
		}
		return out
	}
	for _, c := range []struct {
		r      release
		checks []access
	}{
		{clusterRelease, append(append(append(common("tokenwarden-system"), served("payments", true)...), served("default", true)...),
			access{"", "list", "auth.tokenwarden.io", "clustertokenproviders", "", true},
			access{"", "update", "auth.tokenwarden.io", "clustertokenproviders", "finalizers", true})},
		{namespacedRelease, append(append(append(append(common("tokenwarden-ns"), served("payments", true)...), served("orders", true)...), served("default", false)...),
			access{"", "list", "", "secrets", "", false})},
	} {
		t.Run(c.r.name, func(t *testing.T) {
			user := install(t, c.r)
			for _, a := range c.checks {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   user,
					Groups: serviceAccountGroups(c.r.namespace),
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: a.namespace, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
					},
				}}
				if err := k8s.Create(t.Context(), sar); err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed != a.allowed {
					t.Errorf("%s may %s %s/%s in %q: %v, want %v", user, a.verb, a.resource, a.subresource, a.namespace, sar.Status.Allowed, a.allowed)
				}
			}
		})
	}
}

// install creates every object a release renders (once; later calls find
// them) and returns the user name of its ServiceAccount.
func install(t *testing.T, r release) string {
	t.Helper()
	namespacesFor(t, r)
	objs := render(t, r)
	for _, o := range objs {
		obj := o.DeepCopy()
		if err := k8s.Create(t.Context(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	sa := only(t, objs, "ServiceAccount")
	return fmt.Sprintf("system:serviceaccount:%s:%s", r.namespace, sa.GetName())
}

func serviceAccountGroups(namespace string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
}

// TestBlockingOwnerReferenceUnderEnforcement: with the
// OwnerReferencesPermissionEnforcement admission plugin on, the operator's
// ServiceAccount (both modes) may create a Secret with a blocking controller
// reference to an APICredential, as the operator does for target Secrets;
// a ServiceAccount that may create Secrets but not update
// apicredentials/finalizers is refused, so the plugin is really on.
func TestBlockingOwnerReferenceUnderEnforcement(t *testing.T) {
	needAPIServer(t)
	namespacesFor(t, clusterRelease)
	owner := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "auth.tokenwarden.io/v1alpha1",
		"kind":       "APICredential",
		"metadata":   map[string]any{"name": "shop", "namespace": "payments"},
		"spec": map[string]any{
			"static": map[string]any{"secretName": "shop-app-token", "tokenKey": "jwt"},
			"target": map[string]any{"secretName": "shop-authorization"},
		},
	}}
	if err := k8s.Create(t.Context(), owner); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(owner), owner); err != nil {
		t.Fatal(err)
	}
	yes := true
	target := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name: "shop-authorization", Namespace: "payments",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "auth.tokenwarden.io/v1alpha1", Kind: "APICredential",
				Name: owner.GetName(), UID: owner.GetUID(), Controller: &yes, BlockOwnerDeletion: &yes,
			}},
		}}
	}
	as := func(user, namespace string) client.Client {
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: serviceAccountGroups(namespace)}
		cl, err := client.New(c, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	for _, r := range []release{clusterRelease, namespacedRelease} {
		user := install(t, r)
		if err := as(user, r.namespace).Create(t.Context(), target(), client.DryRunAll); err != nil {
			t.Errorf("%s: creating a target Secret with a blocking owner reference: %v", r.name, err)
		}
	}

	// The control: Secrets yes, finalizers no.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "secrets-only", Namespace: "payments"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "secrets-only", Namespace: "payments"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "secrets-only"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "secrets-only", Namespace: "payments"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := k8s.Create(t.Context(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	err := as("system:serviceaccount:payments:secrets-only", "payments").Create(t.Context(), target(), client.DryRunAll)
	t.Logf("without finalizers rights: %v", err)
	if err == nil || !strings.Contains(err.Error(), "blockOwnerDeletion") {
		t.Errorf("without update on apicredentials/finalizers: want a refusal naming blockOwnerDeletion, got %v", err)
	}
}
