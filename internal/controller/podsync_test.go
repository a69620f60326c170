package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

func (h *harness) pod(name string, labels map[string]string) {
	h.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "payments-client:dev"}}},
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		h.t.Fatalf("creating Pod %s: %v", name, err)
	}
}

func (h *harness) podAnnotation(name string) string {
	h.t.Helper()
	p := &corev1.Pod{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, p); err != nil {
		h.t.Fatal(err)
	}
	return p.Annotations[authv1alpha1.AnnotationSecretsUpdatedAt]
}

// TestSyncPodsAnnotatesSelectedPods: after each new token, the Pods that
// spec.target.syncPods selects get a new annotation (which makes the
// kubelet refresh their Secret volumes); other Pods are left alone.
func TestSyncPodsAnnotatesSelectedPods(t *testing.T) {
	h := newHarness(t)
	h.client("psp")
	h.pod("payer", map[string]string{"app": "payer"})
	h.pod("other", map[string]string{"app": "other"})
	target := targetSpec("psp-token")
	target.SyncPods = &authv1alpha1.PodSync{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "payer"}}}
	h.credential("psp", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("psp"), Target: target})
	c := h.waitCondition("psp", authv1alpha1.ConditionPodsSynced, metav1.ConditionTrue, authv1alpha1.ReasonPodsSynced, readyWait)
	first := h.podAnnotation("payer")
	if first == "" {
		t.Fatalf("the selected Pod was not annotated (PodsSynced: %+v)", condition(c, authv1alpha1.ConditionPodsSynced))
	}
	if got := h.podAnnotation("other"); got != "" {
		t.Errorf("a Pod the selector does not match was annotated: %q", got)
	}
	edit(t, c, func(c *authv1alpha1.APICredential) {
		c.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: "again"}
	})
	start := time.Now()
	h.eventually(readyWait, func() string {
		if h.podAnnotation("payer") == first {
			return "the selected Pod was not told of the second token"
		}
		return ""
	})
	t.Logf("Pod annotated %.2f s after the refresh was asked", time.Since(start).Seconds())
}

// TestSyncPodsWithoutRBACSaysSo: without the optional pod-sync RBAC the
// token is still written and PodsSynced=False says why.
func TestSyncPodsWithoutRBACSaysSo(t *testing.T) {
	h := newHarness(t)
	h.forbidPods.Store(true)
	h.client("psp")
	h.pod("payer", map[string]string{"app": "payer"})
	target := targetSpec("psp-token")
	target.SyncPods = &authv1alpha1.PodSync{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "payer"}}}
	h.credential("psp", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("psp"), Target: target})
	c := h.waitCondition("psp", authv1alpha1.ConditionPodsSynced, metav1.ConditionFalse, authv1alpha1.ReasonPodSyncForbidden, readyWait)
	if r := condition(c, authv1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want True: the token is written whatever the Pods", r)
	}
	if msg := condition(c, authv1alpha1.ConditionPodsSynced).Message; msg == "" {
		t.Error("PodSyncForbidden without a message")
	}
}
