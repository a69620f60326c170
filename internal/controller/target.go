package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// AnnotationInputs on a target Secret is the inputs version (see
// inputsVersion) the token was minted from; a restarted operator whose
// status was lost compares it to decide whether the token still matches the
// spec and source Secrets.
const AnnotationInputs = "auth.tokenwarden.io/inputs"

// AnnotationTokenHash on a target Secret is a SHA-256 fingerprint of the
// token written, so that a pass can tell a token key edited by hand from
// the token it wrote, and restore it without a provider call. It sits next
// to the token itself: whoever can read it can read the token.
const AnnotationTokenHash = "auth.tokenwarden.io/token-hash"

// AnnotationManagedKeys on a target Secret lists the data keys tokenwarden
// wrote; every other key is the user's and is left alone.
const AnnotationManagedKeys = "auth.tokenwarden.io/managed-keys"

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

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
	conflict *failure.Error // set when the name is taken by a Secret we may not write
	token    refresh.Token
	inputs   string
	// value is the token the Secret was written with, recovered from
	// whichever key still holds it; "" when none does.
	value string
	// drifted is true when a key tokenwarden writes does not hold what it
	// wrote (edited or removed by hand).
	drifted bool
}

// loadTarget reads the target Secret: its metadata from the cache of all
// Secrets' metadata (so a foreign Secret is seen without caching its data),
// and, when it is ours, the full object from the cache of owned Secrets.
func (r *APICredentialReconciler) loadTarget(ctx context.Context, s subject) (target, error) {
	cred := s.cred
	key := types.NamespacedName{Namespace: cred.Namespace, Name: string(cred.Spec.Target.SecretName)}
	meta := metadataOf("Secret")
	if err := r.Metadata.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return target{}, nil
		}
		return target{}, fmt.Errorf("reading metadata of target Secret: %w", err)
	}
	if !metav1.IsControlledBy(meta, s.owner) {
		return target{conflict: problemf(failure.TargetConflict,
			"%s: Secret %q exists and is not owned by %s; tokenwarden will not overwrite it", s.targetField(), key.Name, s.this())}, nil
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
		return target{conflict: problemf(failure.TargetConflict,
			"%s: Secret %q is immutable; tokenwarden cannot update it", s.targetField(), key.Name)}, nil
	}
	t := target{secret: sec, inputs: sec.Annotations[AnnotationInputs]}
	t.token.IssuedAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationIssuedAt])
	t.token.ExpiresAt, _ = time.Parse(time.RFC3339, sec.Annotations[authv1alpha1.AnnotationExpiresAt])
	t.value, t.drifted = written(&cred.Spec.Target, sec, t.token)
	return t, nil
}

// written recovers the token a Secret was written with and reports whether
// any key tokenwarden writes differs from it. The token is the token key's
// value, or the one inside the authorization key, whichever matches the
// fingerprint annotation; a Secret written without one trusts its token key.
func written(spec *authv1alpha1.TargetSecret, sec *corev1.Secret, tok refresh.Token) (string, bool) {
	if tok.IssuedAt.IsZero() {
		return "", false // a claim: no token written yet
	}
	tokenKey, authKey, _ := keys(spec)
	fromToken := string(sec.Data[tokenKey])
	fromAuth, _ := strings.CutPrefix(string(sec.Data[authKey]), "Bearer ")
	value := fromToken
	if want, ok := sec.Annotations[AnnotationTokenHash]; ok {
		switch want {
		case tokenHash(fromToken):
		case tokenHash(fromAuth):
			value = fromAuth
		default:
			return "", true
		}
	}
	if value == "" {
		return "", true
	}
	data, err := renderData(spec, minted{token: value, authorization: "Bearer " + value, expiresAt: tok.ExpiresAt})
	if err != nil {
		return value, false // the template problem is reported by the pass
	}
	for k, v := range data {
		if !bytes.Equal(sec.Data[k], v) {
			return value, true
		}
	}
	return value, false
}

// restorable is the token to write back into a drifted target Secret: the
// one this process minted for it, or the one recovered from the Secret.
func (t target) restorable(mem mintedFor, inMemory bool) (minted, bool) {
	m := minted{issuedAt: t.token.IssuedAt, expiresAt: t.token.ExpiresAt, inputs: t.inputs}
	switch {
	case inMemory && mem.issuedAt.Equal(m.issuedAt) && mem.expiresAt.Equal(m.expiresAt):
		m.token = mem.token
	case t.value != "":
		m.token = t.value
	default:
		return minted{}, false
	}
	m.authorization = "Bearer " + m.token
	return m, true
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
			return nil, problemf(failure.InvalidSpec, "spec.target.template[%s]: not a valid Go template", k)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, td); err != nil {
			return nil, problemf(failure.InvalidSpec, "spec.target.template[%s]: the template failed; it may use .Token, .ExpiresAt and .Authorization", k)
		}
		data[k] = buf.Bytes()
	}
	return data, nil
}

// CheckTemplates renders the templates with placeholder values, so that a
// broken template is reported before the provider is asked for a token (and
// by the kubectl plugin's offline check). Its error is a *failure.Error with
// reason InvalidSpec that names the template key, never its text.
func CheckTemplates(spec *authv1alpha1.TargetSecret) error {
	_, err := renderData(spec, minted{token: "t", authorization: "Bearer t", expiresAt: time.Unix(0, 0)})
	return err
}

// writeTarget creates or updates the target Secret with m. A conflict is
// retried here as a write, re-reading the Secret; it never leads to a second
// token request.
// Pods selected by spec.target.syncPods are told of the new token after it.
func (r *APICredentialReconciler) writeTarget(ctx context.Context, p *pass, existing *corev1.Secret, m minted) error {
	if err := r.writeSecret(ctx, p.subject, existing, m); err != nil {
		return err
	}
	r.syncPods(ctx, p)
	return nil
}

// writeSecret is writeTarget without the Pods.
func (r *APICredentialReconciler) writeSecret(ctx context.Context, s subject, existing *corev1.Secret, m minted) error {
	cred := s.cred
	data, err := renderData(&cred.Spec.Target, m)
	if err != nil {
		return err
	}
	labels := s.targetLabels()
	annotations := map[string]string{}
	maps.Copy(annotations, cred.Spec.Target.Annotations)
	annotations[authv1alpha1.AnnotationIssuedAt] = m.issuedAt.UTC().Format(time.RFC3339)
	if !m.expiresAt.IsZero() {
		annotations[authv1alpha1.AnnotationExpiresAt] = m.expiresAt.UTC().Format(time.RFC3339)
	}
	annotations[AnnotationInputs] = m.inputs
	annotations[AnnotationTokenHash] = tokenHash(m.token)
	annotations[AnnotationManagedKeys] = strings.Join(slices.Sorted(maps.Keys(data)), ",")

	if existing == nil {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: string(cred.Spec.Target.SecretName), Namespace: cred.Namespace,
				Labels: labels, Annotations: annotations,
			},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if err := controllerutil.SetControllerReference(s.owner, sec, r.Scheme); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, sec); err != nil {
			return err
		}
		r.awaitWrite(s, sec)(ctx)
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
		previous := sec.Annotations[AnnotationManagedKeys]
		maps.Copy(sec.Labels, labels)
		maps.Copy(sec.Annotations, annotations)
		if m.expiresAt.IsZero() {
			delete(sec.Annotations, authv1alpha1.AnnotationExpiresAt)
		}
		sec.Data = mergeData(sec.Data, previous, data)
		err := r.Client.Update(ctx, sec)
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh := &corev1.Secret{}
		if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sec), fresh); gerr != nil {
			return gerr
		}
		if !metav1.IsControlledBy(fresh, s.owner) {
			return problemf(failure.TargetConflict, "%s: Secret %q is no longer owned by %s", s.targetField(), sec.Name, s.this())
		}
		sec = fresh
		return err
	})
	if err == nil {
		r.awaitWrite(s, sec)(ctx)
	}
	return err
}

// awaitWrite waits for the cache to show a write of s's target, except for a
// consumer: a consumer never calls a provider, so a stale read costs at most
// one more copy of the same token, while waiting would hold a worker for up
// to cacheCatchUp per consumer and delay the copies a new token owes the
// others (with a provider that revokes the previous one, each delay is a
// window with a dead token).
func (r *APICredentialReconciler) awaitWrite(s subject, obj client.Object) func(context.Context) {
	if s.cred.Spec.ProviderRef != nil {
		return func(context.Context) {}
	}
	return func(ctx context.Context) { r.awaitOwnWrite(ctx, obj) }
}

// targetLabels are the labels of a target Secret: the spec's, then
// tokenwarden's own (which put it in the cache of owned Secrets) on top: the
// owning APICredential's name, or the owning provider's.
func (s subject) targetLabels() map[string]string {
	labels := map[string]string{}
	maps.Copy(labels, s.cred.Spec.Target.Labels)
	labels[authv1alpha1.LabelManagedBy] = authv1alpha1.ManagedByValue
	if s.kind == kindAPICredential {
		labels[authv1alpha1.LabelCredential] = s.cred.Name
	} else {
		labels[authv1alpha1.LabelProvider] = s.cred.Name
	}
	return labels
}

// targetField is the field that names the subject's target Secret, for
// messages.
func (s subject) targetField() string {
	if s.kind == kindAPICredential {
		return "spec.target.secretName"
	}
	return "the provider's token Secret"
}

// mergeData is the target Secret's new data: the keys tokenwarden writes
// now, the user's own keys kept, and keys tokenwarden wrote before (listed
// in previous) but writes no more removed. A Secret without the list was
// written by an older tokenwarden that owned all its data.
func mergeData(old map[string][]byte, previous string, data map[string][]byte) map[string][]byte {
	if previous == "" {
		return data
	}
	out := map[string][]byte{}
	maps.Copy(out, old)
	for k := range strings.SplitSeq(previous, ",") {
		delete(out, k)
	}
	maps.Copy(out, data)
	return out
}

// claim creates the target Secret, empty, before the first token is asked
// for, so that of two APICredentials naming one target only the one that
// owns it calls the provider. A Secret that exists by then is the other's.
func (r *APICredentialReconciler) claim(ctx context.Context, s subject) (*corev1.Secret, error) {
	cred := s.cred
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: string(cred.Spec.Target.SecretName), Namespace: cred.Namespace,
			Labels: s.targetLabels(),
		},
		Type: corev1.SecretTypeOpaque,
	}
	if err := controllerutil.SetControllerReference(s.owner, sec, r.Scheme); err != nil {
		return nil, err
	}
	err := r.Client.Create(ctx, sec)
	if apierrors.IsAlreadyExists(err) {
		return nil, problemf(failure.TargetConflict,
			"%s: Secret %q was created by someone else; tokenwarden will not overwrite it", s.targetField(), sec.Name)
	}
	if err != nil {
		return nil, err
	}
	r.awaitOwnWrite(ctx, sec)
	return sec, nil
}
