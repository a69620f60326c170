package manifests_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// restrictedNS enforces the restricted Pod Security profile; the API
// server's PodSecurity admission (on by default) refuses violating Pods.
const restrictedNS = "psa-restricted"

// podFromTemplate returns a Pod with the spec and labels of the Deployment's
// pod template, in restrictedNS.
func podFromTemplate(t *testing.T, deploy unstructured.Unstructured) unstructured.Unstructured {
	t.Helper()
	spec, found, err := unstructured.NestedMap(deploy.Object, "spec", "template", "spec")
	if err != nil || !found {
		t.Fatalf("the Deployment has no pod template spec (found %t): %v", found, err)
	}
	labels, _, _ := unstructured.NestedStringMap(deploy.Object, "spec", "template", "metadata", "labels")
	pod := unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"spec":       spec,
	}}
	pod.SetName("manager-template")
	pod.SetNamespace(restrictedNS)
	pod.SetLabels(labels)
	return pod
}

// dryRunPod creates pod with --dry-run=server and returns kubectl's output
// and error.
func dryRunPod(t *testing.T, pod unstructured.Unstructured) (string, error) {
	t.Helper()
	stdout, stderr, err := kubectl(t, toYAML(t, pod), "create", "--dry-run=server", "-f", "-")
	return stdout + stderr, err
}

// editContainers applies edit to the securityContext map of every container.
func editContainers(t *testing.T, pod unstructured.Unstructured, edit func(sc map[string]any)) {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(pod.Object, "spec", "containers")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range containers {
		cm := c.(map[string]any)
		sc, _ := cm["securityContext"].(map[string]any)
		if sc == nil {
			sc = map[string]any{}
			cm["securityContext"] = sc
		}
		edit(sc)
	}
	if err := unstructured.SetNestedSlice(pod.Object, containers, "spec", "containers"); err != nil {
		t.Fatal(err)
	}
}

// TestRestrictedPodSecurity creates the manager's pod template as a Pod
// (dry run) in a namespace that enforces the restricted profile, for both
// installs, and shows that the check is real: copies with one protection
// removed are refused by the same admission.
func TestRestrictedPodSecurity(t *testing.T) {
	ensureNamespace(t, restrictedNS, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	for _, dir := range []string{"default", "namespaced"} {
		t.Run(dir, func(t *testing.T) {
			pod := podFromTemplate(t, only(t, renderObjects(t, dir), "Deployment"))
			out, err := dryRunPod(t, pod)
			if err != nil {
				t.Fatalf("the manager's pod template is refused in a restricted namespace: %v\n%s", err, out)
			}
			if !strings.Contains(out, "created (server dry run)") || strings.Contains(out, "PodSecurity") {
				t.Fatalf("unexpected answer to the dry-run Pod:\n%s", out)
			}
		})
	}

	broken := []struct {
		name  string
		edit  func(t *testing.T, pod unstructured.Unstructured)
		names string // what the refusal must mention
	}{
		{"runAsNonRoot removed", func(t *testing.T, pod unstructured.Unstructured) {
			unstructured.RemoveNestedField(pod.Object, "spec", "securityContext", "runAsNonRoot")
			editContainers(t, pod, func(sc map[string]any) { delete(sc, "runAsNonRoot") })
		}, "runAsNonRoot"},
		{"allowPrivilegeEscalation removed", func(t *testing.T, pod unstructured.Unstructured) {
			editContainers(t, pod, func(sc map[string]any) { delete(sc, "allowPrivilegeEscalation") })
		}, "allowPrivilegeEscalation"},
		{"capabilities not dropped", func(t *testing.T, pod unstructured.Unstructured) {
			editContainers(t, pod, func(sc map[string]any) { delete(sc, "capabilities") })
		}, "capabilities"},
		{"seccomp profile removed", func(t *testing.T, pod unstructured.Unstructured) {
			unstructured.RemoveNestedField(pod.Object, "spec", "securityContext", "seccompProfile")
			editContainers(t, pod, func(sc map[string]any) { delete(sc, "seccompProfile") })
		}, "seccompProfile"},
		{"runs as root", func(t *testing.T, pod unstructured.Unstructured) {
			editContainers(t, pod, func(sc map[string]any) { sc["runAsUser"] = int64(0) })
		}, "runAsUser=0"},
	}
	for _, b := range broken {
		t.Run("refused/"+b.name, func(t *testing.T) {
			pod := podFromTemplate(t, only(t, renderObjects(t, "default"), "Deployment"))
			b.edit(t, pod)
			out, err := dryRunPod(t, pod)
			if err == nil {
				t.Fatalf("a pod template with %s was accepted in a restricted namespace:\n%s", b.name, out)
			}
			if !strings.Contains(out, `violates PodSecurity "restricted:latest"`) || !strings.Contains(out, b.names) {
				t.Fatalf("refused, but not by PodSecurity for %s:\n%s", b.names, out)
			}
		})
	}
}

// TestDeploymentHardening asserts the protections on the rendered
// Deployment itself, so that a failure names the field.
func TestDeploymentHardening(t *testing.T) {
	deploy := typed[appsv1.Deployment](t, only(t, renderObjects(t, "default"), "Deployment"))
	spec := deploy.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("the pod has no securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod securityContext.runAsUser is unset or root")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext.seccompProfile is not RuntimeDefault")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	if len(spec.Containers) == 0 {
		t.Fatal("no containers")
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			t.Errorf("container %s: runAsNonRoot is false", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s: runAsUser is 0", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities are not drop [ALL] with nothing added: %+v", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile is %s", c.Name, sc.SeccompProfile.Type)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[res]
			lim, hasLim := c.Resources.Limits[res]
			if !hasReq || req.IsZero() {
				t.Errorf("container %s: no %s request", c.Name, res)
			}
			if !hasLim || lim.IsZero() {
				t.Errorf("container %s: no %s limit", c.Name, res)
			}
			if hasReq && hasLim && lim.Cmp(req) < 0 {
				t.Errorf("container %s: %s limit %s is below the request %s", c.Name, res, lim.String(), req.String())
			}
		}
		if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
			t.Errorf("container %s: image %q has no pinned tag", c.Name, c.Image)
		}
	}
	// Leader election on and metrics behind authentication, as
	// docs/security.md ("The operator's Pod") promises.
	args := strings.Join(spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--leader-elect") || strings.Contains(args, "--leader-elect=false") {
		t.Errorf("leader election is not on: %s", args)
	}
	if strings.Contains(args, "--metrics-secure=false") {
		t.Errorf("metrics are served without authentication: %s", args)
	}
}
