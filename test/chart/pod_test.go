package chart_test

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func deployment(t *testing.T, objs []unstructured.Unstructured) appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(only(t, objs, "Deployment").Object, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// kustomizeDeployment is the manager Deployment of config/manager.
func kustomizeDeployment(t *testing.T) appsv1.Deployment {
	t.Helper()
	return deployment(t, decode(t, readFile(t, filepath.Join(root, "config", "manager", "manager.yaml"))))
}

// flags parses --name=value and bare --name (a boolean true) arguments.
func flags(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		name, value, found := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !found {
			value = "true"
		}
		out[name] = value
	}
	return out
}

// TestPodSettingsEqualKustomize: with default values the chart's manager
// Pod runs as config/manager's does: the same Pod and container security
// contexts (the restricted profile), ServiceAccount token, command, ports,
// probes, resources, environment, volumes and grace period, and every
// argument of config/manager with the same value.
func TestPodSettingsEqualKustomize(t *testing.T) {
	want := kustomizeDeployment(t).Spec.Template.Spec
	got := deployment(t, render(t, clusterRelease)).Spec.Template.Spec
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"pod securityContext", want.SecurityContext, got.SecurityContext},
		{"automountServiceAccountToken", want.AutomountServiceAccountToken, got.AutomountServiceAccountToken},
		{"terminationGracePeriodSeconds", want.TerminationGracePeriodSeconds, got.TerminationGracePeriodSeconds},
		{"volumes", want.Volumes, got.Volumes},
		{"hostNetwork/hostPID/hostIPC", []bool{want.HostNetwork, want.HostPID, want.HostIPC}, []bool{got.HostNetwork, got.HostPID, got.HostIPC}},
		{"number of containers", len(want.Containers), len(got.Containers)},
		{"init containers", want.InitContainers, got.InitContainers},
	} {
		if !apiequality.Semantic.DeepEqual(c.want, c.got) {
			t.Errorf("%s: chart %+v, config/manager %+v", c.what, c.got, c.want)
		}
	}
	if len(got.Containers) != 1 || len(want.Containers) != 1 {
		t.Fatalf("want one container each; chart %d, config/manager %d", len(got.Containers), len(want.Containers))
	}
	wc, gc := want.Containers[0], got.Containers[0]
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"container name", wc.Name, gc.Name},
		{"container securityContext", wc.SecurityContext, gc.SecurityContext},
		{"command", wc.Command, gc.Command},
		{"ports", wc.Ports, gc.Ports},
		{"livenessProbe", wc.LivenessProbe, gc.LivenessProbe},
		{"readinessProbe", wc.ReadinessProbe, gc.ReadinessProbe},
		{"resources", wc.Resources, gc.Resources},
		{"env", wc.Env, gc.Env},
		{"volumeMounts", wc.VolumeMounts, gc.VolumeMounts},
	} {
		if !apiequality.Semantic.DeepEqual(c.want, c.got) {
			t.Errorf("%s: chart %+v, config/manager %+v", c.what, c.got, c.want)
		}
	}
	gotFlags := flags(gc.Args)
	for name, value := range flags(wc.Args) {
		if gotFlags[name] != value {
			t.Errorf("config/manager passes --%s=%s, the chart %q", name, value, gotFlags[name])
		}
	}
}

// TestPodSettingsCheckCatchesDrift proves the comparison above can fail: a
// value that loosens the container's security context renders a
// Deployment that differs from config/manager's.
func TestPodSettingsCheckCatchesDrift(t *testing.T) {
	want := kustomizeDeployment(t).Spec.Template.Spec.Containers[0].SecurityContext
	r := clusterRelease
	r.sets = []string{"securityContext.readOnlyRootFilesystem=false"}
	got := deployment(t, render(t, r)).Spec.Template.Spec.Containers[0].SecurityContext
	if apiequality.Semantic.DeepEqual(want, got) {
		t.Fatal("a changed securityContext compared equal to config/manager's")
	}
}

// TestPodPassesRestrictedPodSecurity creates each install's manager Pod
// (server-side dry-run) in a namespace that enforces the restricted Pod
// Security profile: the API server's PodSecurity admission accepts it, and
// refuses a copy whose container may escalate privileges, so the check is
// real.
func TestPodPassesRestrictedPodSecurity(t *testing.T) {
	needAPIServer(t)
	ns := "restricted"
	ensureNamespace(t, ns, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	for _, r := range []release{clusterRelease, namespacedRelease, fullRelease, minimalRelease} {
		tpl := deployment(t, render(t, r)).Spec.Template
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: ns, Labels: tpl.Labels},
			Spec:       tpl.Spec,
		}
		pod.Spec.ServiceAccountName = "default"
		if err := k8s.Create(t.Context(), pod.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("%s: the restricted profile refuses the manager Pod: %v", r.name, err)
		}
		bad := pod.DeepCopy()
		escalate := true
		bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &escalate
		err := k8s.Create(t.Context(), bad, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "allowPrivilegeEscalation") {
			t.Errorf("%s: a Pod with allowPrivilegeEscalation=true was not refused by the restricted profile: %v", r.name, err)
		}
	}
}

// TestImageIsKustomizes: by default the chart runs the image that
// config/manager/kustomization.yaml sets (the chart's appVersion is its tag).
func TestImageIsKustomizes(t *testing.T) {
	var k struct {
		Images []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "config", "manager", "kustomization.yaml")), &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Images) != 1 {
		t.Fatalf("config/manager/kustomization.yaml sets %d images, want 1", len(k.Images))
	}
	want := k.Images[0].NewName + ":" + k.Images[0].NewTag
	got := deployment(t, render(t, clusterRelease)).Spec.Template.Spec.Containers[0].Image
	if got != want {
		t.Errorf("the chart runs %s, config/manager %s (image.repository and the chart's appVersion)", got, want)
	}
}
