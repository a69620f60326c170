package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// podSyncResult is what telling the selected Pods of a new token gave.
type podSyncResult struct {
	reason  string // ReasonPodsSynced, ReasonPodSyncForbidden or ReasonPodSyncFailed
	message string
}

// syncPods annotates the Pods selected by spec.target.syncPods once a new
// token is in the target Secret: an update of the Pod object makes the
// kubelet re-sync its Secret volumes at once, instead of at its periodic
// sync (up to 90 s with the default settings). Pods are listed as metadata
// from the API server, only now: tokenwarden caches no Pod. Nothing here
// holds a token value; the annotation is the time of the write.
func (r *APICredentialReconciler) syncPods(ctx context.Context, p *pass) {
	sp := p.cred.Spec.Target.SyncPods
	if sp == nil || p.kind != kindAPICredential {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(&sp.Selector)
	if err != nil {
		p.podSync = &podSyncResult{authv1alpha1.ReasonPodSyncFailed, "spec.target.syncPods.selector: " + err.Error()}
		return
	}
	ns := p.cred.Namespace
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.APIReader.List(ctx, pods, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		p.podSync = podSyncError(err, "list", ns)
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		authv1alpha1.AnnotationSecretsUpdatedAt: r.Clock.Now().UTC().Format(time.RFC3339Nano),
	}}})
	n := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !pod.DeletionTimestamp.IsZero() {
			continue
		}
		err := r.Client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			logf.FromContext(ctx).Info("Annotating a Pod after a new token failed", "pod", pod.Name, "error", err.Error())
			p.podSync = podSyncError(err, "patch", ns)
			return
		}
		n++
	}
	p.podSync = &podSyncResult{authv1alpha1.ReasonPodsSynced,
		fmt.Sprintf("%d Pods selected by spec.target.syncPods were told of the new token", n)}
}

func podSyncError(err error, verb, ns string) *podSyncResult {
	if apierrors.IsForbidden(err) {
		return &podSyncResult{authv1alpha1.ReasonPodSyncForbidden, fmt.Sprintf(
			"spec.target.syncPods: the operator may not %s Pods in namespace %q; install the optional pod-sync RBAC (docs/security.md), meanwhile the kubelet picks new tokens up at its own pace", verb, ns)}
	}
	return &podSyncResult{authv1alpha1.ReasonPodSyncFailed, fmt.Sprintf(
		"spec.target.syncPods: could not %s Pods in namespace %q (%s); the kubelet picks new tokens up at its own pace", verb, ns, apierrors.ReasonForError(err))}
}

// finishPodSync keeps the PodsSynced condition: absent without syncPods,
// set from this pass's result when it told Pods, as it was otherwise.
func (p *pass) finishPodSync() {
	if p.cred.Spec.Target.SyncPods == nil {
		meta.RemoveStatusCondition(&p.status.Conditions, authv1alpha1.ConditionPodsSynced)
		return
	}
	if p.podSync == nil {
		return
	}
	status := metav1.ConditionFalse
	if p.podSync.reason == authv1alpha1.ReasonPodsSynced {
		status = metav1.ConditionTrue
	}
	setCondition(p, authv1alpha1.ConditionPodsSynced, status, p.podSync.reason, p.podSync.message)
}
