package controller

import (
	"context"
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// StatusMergePatch is the JSON merge patch from status was to status is:
// the status fields that changed, as client.MergeFrom would send them, made
// from the two statuses alone instead of two whole objects.
func StatusMergePatch(was, is authv1alpha1.APICredentialStatus) ([]byte, error) {
	type wrapped struct {
		Status authv1alpha1.APICredentialStatus `json:"status"`
	}
	from, err := json.Marshal(wrapped{was})
	if err != nil {
		return nil, err
	}
	to, err := json.Marshal(wrapped{is})
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreateMergePatch(from, to)
}

// PatchStatus sends the merge patch from cred's status to status and asks
// for metadata only in return: a pass needs the resourceVersion it wrote,
// not the object it already has. On success cred holds status and that
// resourceVersion.
func PatchStatus(ctx context.Context, c client.Client, cred *authv1alpha1.APICredential, status authv1alpha1.APICredentialStatus) error {
	data, err := StatusMergePatch(cred.Status, status)
	if err != nil {
		return fmt.Errorf("making the status patch: %w", err)
	}
	written := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: cred.Name}}
	written.SetGroupVersionKind(authv1alpha1.GroupVersion.WithKind("APICredential"))
	if err := c.Status().Patch(ctx, written, client.RawPatch(types.MergePatchType, data)); err != nil {
		return err
	}
	cred.Status = status
	cred.ResourceVersion = written.ResourceVersion
	return nil
}
