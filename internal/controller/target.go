package controller

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// AnnotationInputs on a target Secret is the inputs version (see
// inputsVersion) the token was minted from; a restarted operator whose
// status was lost compares it to decide whether the token still matches the
// spec and source Secrets.
const AnnotationInputs = "auth.tokenwarden.io/inputs"

// minted is a token as it goes into the target Secret. Its times are whole
// seconds (as in the RFC 3339 annotations), the expiry rounded down.
type minted struct {
	token         string
	authorization string
	issuedAt      time.Time
	expiresAt     time.Time // zero: a static token without exp
	inputs        string
}

func (m minted) state() refresh.Token {
	return refresh.Token{IssuedAt: m.issuedAt, ExpiresAt: m.expiresAt}
}

// target is what a pass found under the target Secret's name.
type target struct {
	secret   *corev1.Secret // ours; nil when there is none
	conflict *problem       // set when the name is taken by a Secret we may not write
	token    refresh.Token
	inputs   string
}

// loadTarget reads the target Secret: its metadata from the cache of all
// Secrets' metadata (so a foreign Secret is seen without caching its data),
// and, when it is ours, the full object from the cache of owned Secrets.
func (r *APICredentialReconciler) loadTarget(ctx context.Context, cred *authv1alpha1.APICredential) (target, error) {
	key := types.NamespacedName{Namespace: cred.Namespace, Name: string(cred.Spec.Target.SecretName)}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.secretMeta.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return target{}, nil
		}
		return target{}, fmt.Errorf("reading metadata of target Secret: %w", err)
	}
	if !metav1.IsControlledBy(meta, cred) {
		return target{conflict: problemf(authv1alpha1.ReasonTargetConflict,
			"spec.target.secretName: Secret %q exists and is not owned by this APICredential; tokenwarden will not overwrite it", key.Name)}, nil
	}
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		// Ours, but someone removed the label that puts it in the cache.
		err = r.APIReader.Get(ctx, key, sec)
	}
	if apierrors.IsNotFound(err) {
		return target{}, nil
	}
	if err != nil {
		return target{}, fmt.Errorf("reading target Secret: %w", err)
	}
	if sec.Immutable != nil && *sec.Immutable {
		return target{conflict: problemf(authv1alpha1.ReasonTargetConflict,
			"spec.target.secretName: Secret %q is immutable; tokenwarden cannot update it", key.Name)}, nil
	}
	t := target{secret: sec, inputs: sec.Annotations[AnnotationInputs]}
	t.token.IssuedAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationIssuedAt])
	t.token.ExpiresAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationExpiresAt])
	return t, nil
}

// holds reports whether the target Secret already holds m.
func (t target) holds(m minted) bool {
	return t.secret != nil && t.token.IssuedAt.Equal(m.issuedAt) && t.token.ExpiresAt.Equal(m.expiresAt) && t.inputs == m.inputs
}

// keys returns the key names of the target Secret, defaults applied.
func keys(spec *authv1alpha1.TargetSecret) (token, authorization, expiresAt string) {
	token, authorization, expiresAt = "token", "authorization", "expires-at"
	if k := spec.Keys; k != nil {
		if k.Token != "" {
			token = string(k.Token)
		}
		if k.Authorization != "" {
			authorization = string(k.Authorization)
		}
		if k.ExpiresAt != "" {
			expiresAt = string(k.ExpiresAt)
		}
	}
	return token, authorization, expiresAt
}

// templateData is what spec.target.template sees.
type templateData struct {
	Token, ExpiresAt, Authorization string
}

// renderData builds the target Secret's data. Template errors are reported
// without the template engine's text, which could quote a value.
func renderData(spec *authv1alpha1.TargetSecret, m minted) (map[string][]byte, error) {
	tokenKey, authKey, expKey := keys(spec)
	data := map[string][]byte{
		tokenKey: []byte(m.token),
		authKey:  []byte(m.authorization),
	}
	td := templateData{Token: m.token, Authorization: m.authorization}
	if !m.expiresAt.IsZero() {
		td.ExpiresAt = m.expiresAt.UTC().Format(time.RFC3339)
		data[expKey] = []byte(td.ExpiresAt)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Template)) {
		tmpl, err := template.New(k).Option("missingkey=error").Parse(spec.Template[k])
		if err != nil {
			return nil, problemf(authv1alpha1.ReasonInvalidSpec, "spec.target.template[%s]: not a valid Go template", k)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, td); err != nil {
			return nil, problemf(authv1alpha1.ReasonInvalidSpec, "spec.target.template[%s]: the template failed; it may use .Token, .ExpiresAt and .Authorization", k)
		}
		data[k] = buf.Bytes()
	}
	return data, nil
}

// checkTemplates renders the templates with placeholder values, so that a
// broken template is reported before the provider is asked for a token.
func checkTemplates(spec *authv1alpha1.TargetSecret) error {
	_, err := renderData(spec, minted{token: "t", authorization: "Bearer t", expiresAt: time.Unix(0, 0)})
	return err
}

// writeTarget creates or updates the target Secret with m. A conflict is
// retried here as a write, re-reading the Secret; it never leads to a second
// token request.
func (r *APICredentialReconciler) writeTarget(ctx context.Context, cred *authv1alpha1.APICredential, existing *corev1.Secret, m minted) error {
	data, err := renderData(&cred.Spec.Target, m)
	if err != nil {
		return err
	}
	labels := map[string]string{}
	maps.Copy(labels, cred.Spec.Target.Labels)
	labels[authv1alpha1.LabelManagedBy] = authv1alpha1.ManagedByValue
	labels[authv1alpha1.LabelCredential] = cred.Name
	annotations := map[string]string{}
	maps.Copy(annotations, cred.Spec.Target.Annotations)
	annotations[authv1alpha1.AnnotationIssuedAt] = m.issuedAt.UTC().Format(time.RFC3339)
	if !m.expiresAt.IsZero() {
		annotations[authv1alpha1.AnnotationExpiresAt] = m.expiresAt.UTC().Format(time.RFC3339)
	}
	annotations[AnnotationInputs] = m.inputs

	if existing == nil {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: string(cred.Spec.Target.SecretName), Namespace: cred.Namespace,
				Labels: labels, Annotations: annotations,
			},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if err := controllerutil.SetControllerReference(cred, sec, r.Scheme); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, sec); err != nil {
			return err
		}
		r.awaitOwnWrite(ctx, sec)
		return nil
	}
	sec := existing.DeepCopy()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// Keep what others added to the Secret's metadata; own the data.
		if sec.Labels == nil {
			sec.Labels = map[string]string{}
		}
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		maps.Copy(sec.Labels, labels)
		maps.Copy(sec.Annotations, annotations)
		if m.expiresAt.IsZero() {
			delete(sec.Annotations, authv1alpha1.AnnotationExpiresAt)
		}
		sec.Data = data
		err := r.Client.Update(ctx, sec)
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh := &corev1.Secret{}
		if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sec), fresh); gerr != nil {
			return gerr
		}
		if !metav1.IsControlledBy(fresh, cred) {
			return problemf(authv1alpha1.ReasonTargetConflict, "spec.target.secretName: Secret %q is no longer owned by this APICredential", sec.Name)
		}
		sec = fresh
		return err
	})
	if err == nil {
		r.awaitOwnWrite(ctx, sec)
	}
	return err
}
