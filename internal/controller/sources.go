package controller

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/share"
)

// problemf is a failure found before any provider call. Its message names
// fields, Secrets and keys, never values.
func problemf(reason failure.Reason, format string, args ...any) *failure.Error {
	return &failure.Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// referencedSecrets lists, sorted and once each, the Secrets a spec reads.
func referencedSecrets(spec *authv1alpha1.APICredentialSpec) []string {
	var names []string
	add := func(n authv1alpha1.SecretName) {
		if n != "" {
			names = append(names, string(n))
		}
	}
	if s := spec.Static; s != nil {
		add(s.SecretName)
	}
	if tr := spec.TokenRequest; tr != nil {
		if tr.BasicAuth != nil {
			add(tr.BasicAuth.SecretName)
		}
		if tr.ClientCertificate != nil {
			add(tr.ClientCertificate.SecretName)
		}
		if tr.CABundle != nil && tr.CABundle.SecretName != nil {
			add(*tr.CABundle.SecretName)
		}
		for _, list := range [][]authv1alpha1.Parameter{tr.Form, tr.JSON, tr.Headers} {
			for _, p := range list {
				if p.ValueFrom != nil {
					add(p.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// referencedConfigMap is the ConfigMap a spec reads (its CA bundle), or "".
func referencedConfigMap(spec *authv1alpha1.APICredentialSpec) string {
	if tr := spec.TokenRequest; tr != nil && tr.CABundle != nil && tr.CABundle.ConfigMapName != nil {
		return *tr.CABundle.ConfigMapName
	}
	return ""
}

// inputsVersion fingerprints what a token is minted from: the spec's
// generation and the identity and resourceVersion of every referenced
// Secret and ConfigMap, read as metadata from the cache. It holds no
// content, so it can sit in status without helping anyone guess a password.
// An object that does not exist is reported in missing (as `Secret "name"`).
func (r *APICredentialReconciler) inputsVersion(ctx context.Context, cred *authv1alpha1.APICredential) (version string, missing []string, err error) {
	h := sha256.New()
	fmt.Fprintf(h, "generation=%d\n", cred.Generation)
	add := func(kind, name string) error {
		meta := metadataOf(kind)
		err := r.Metadata.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: name}, meta)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, fmt.Sprintf("%s %q", kind, name))
			fmt.Fprintf(h, "%s=%s missing\n", kind, name)
		case err != nil:
			return fmt.Errorf("reading metadata of %s %s: %w", kind, name, err)
		default:
			fmt.Fprintf(h, "%s=%s uid=%s rv=%s\n", kind, name, meta.UID, meta.ResourceVersion)
		}
		return nil
	}
	for _, name := range referencedSecrets(&cred.Spec) {
		if err := add("Secret", name); err != nil {
			return "", nil, err
		}
	}
	if name := referencedConfigMap(&cred.Spec); name != "" {
		if err := add("ConfigMap", name); err != nil {
			return "", nil, err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], missing, nil
}

// secretReader reads referenced Secrets once each from the API server (not
// the cache: source Secrets are never cached in full).
type secretReader struct {
	ctx    context.Context
	reader client.Reader
	// meta, when set, is the metadata cache: the resourceVersion it shows
	// lets the read be served from the API server's watch cache. The
	// Secret's data is read on demand only, never kept after the pass.
	meta client.Reader
	ns   string
	read map[string]*corev1.Secret
}

// atLeastCached returns the options of a read not older than the metadata
// cache's resourceVersion of the object: the API server answers it from its
// watch cache instead of a quorum read of etcd, and it is still no older
// than the change that triggered this pass (the metadata cache heard of it
// from that same watch cache). Without a cached version, a quorum read.
func atLeastCached(ctx context.Context, meta client.Reader, kind string, key types.NamespacedName) []client.GetOption {
	if meta == nil {
		return nil
	}
	m := metadataOf(kind)
	if err := meta.Get(ctx, key, m); err != nil || m.ResourceVersion == "" {
		return nil
	}
	return []client.GetOption{&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: m.ResourceVersion}}}
}

// sourceReader reads the source Secrets of one pass in ns.
func (r *APICredentialReconciler) sourceReader(ctx context.Context, ns string) *secretReader {
	return &secretReader{ctx: ctx, reader: r.APIReader, meta: r.Metadata, ns: ns}
}

func (s *secretReader) value(secret authv1alpha1.SecretName, key authv1alpha1.SecretKey, field string) ([]byte, error) {
	sec, ok := s.read[string(secret)]
	if !ok {
		nn := types.NamespacedName{Namespace: s.ns, Name: string(secret)}
		sec = &corev1.Secret{}
		err := s.reader.Get(s.ctx, nn, sec, atLeastCached(s.ctx, s.meta, "Secret", nn)...)
		if apierrors.IsNotFound(err) {
			return nil, problemf(failure.SourceSecretMissing, "%s: Secret %q not found", field, secret)
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s: %w", secret, err)
		}
		if s.read == nil {
			s.read = map[string]*corev1.Secret{}
		}
		s.read[string(secret)] = sec
	}
	v, ok := sec.Data[string(key)]
	if !ok {
		return nil, problemf(failure.SourceSecretMissing, "%s: Secret %q has no key %q", field, secret, key)
	}
	return v, nil
}

// resolved is a token request with every value read from its Secret.
type resolved struct {
	request auth.Request
	// certNotAfter is the client certificate's expiry, zero without one.
	certNotAfter time.Time
	// key is the keyed hash of everything the request is made of: subjects
	// with the same key send byte-identical requests and share a token.
	key share.Key
}

// resolve reads every referenced value and checks what can be checked
// locally (keys exist, the client certificate decodes and is current), so
// that a credential with a local problem costs the provider nothing.
func (r *APICredentialReconciler) resolve(ctx context.Context, cred *authv1alpha1.APICredential, now time.Time) (*resolved, error) {
	tr := cred.Spec.TokenRequest
	src := r.sourceReader(ctx, cred.Namespace)
	out := &resolved{request: auth.Request{
		URL:    tr.URL,
		Method: string(tr.Method),
	}}
	req := &out.request
	if tr.Timeout != nil {
		req.Timeout = tr.Timeout.Duration
	}
	if m := tr.Response; m != nil {
		req.Response = auth.ResponseMapping{TokenField: m.TokenField, ExpiresInField: m.ExpiresInField, ExpiresAtField: m.ExpiresAtField}
		if m.DefaultLifetime != nil {
			req.Response.DefaultLifetime = m.DefaultLifetime.Duration
		}
	}
	if b := tr.BasicAuth; b != nil {
		user, err := src.value(b.SecretName, b.UsernameKey, "spec.tokenRequest.basicAuth.usernameKey")
		if err != nil {
			return nil, err
		}
		pass, err := src.value(b.SecretName, b.PasswordKey, "spec.tokenRequest.basicAuth.passwordKey")
		if err != nil {
			return nil, err
		}
		req.Basic = &auth.BasicCredentials{Username: string(user), Password: string(pass)}
	}
	var err error
	if req.Form, err = r.parameters(src, tr.Form, "spec.tokenRequest.form"); err != nil {
		return nil, err
	}
	if req.JSON, err = r.parameters(src, tr.JSON, "spec.tokenRequest.json"); err != nil {
		return nil, err
	}
	if req.Headers, err = r.parameters(src, tr.Headers, "spec.tokenRequest.headers"); err != nil {
		return nil, err
	}
	h := r.pool().Hasher()
	h.Add("url", []byte(req.URL))
	h.Add("method", []byte(cmp.Or(req.Method, "POST")))
	h.Add("timeout", []byte(req.Timeout.String()))
	h.Add("response", fmt.Appendf(nil, "%q %q %q %s", req.Response.TokenField, req.Response.ExpiresInField,
		req.Response.ExpiresAtField, req.Response.DefaultLifetime))
	if b := req.Basic; b != nil {
		h.Add("basic.username", []byte(b.Username))
		h.Add("basic.password", []byte(b.Password))
	}
	for _, list := range []struct {
		name   string
		fields []auth.Field
	}{{"form", req.Form}, {"json", req.JSON}, {"headers", req.Headers}} {
		h.Add(list.name, []byte(strconv.Itoa(len(list.fields))))
		for _, f := range list.fields {
			h.Add(f.Name, []byte(f.Value))
		}
	}
	if ca := tr.CABundle; ca != nil {
		pem, err := r.caBundle(ctx, src, cred.Namespace, ca)
		if err != nil {
			return nil, err
		}
		h.Add("caBundle", pem)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, problemf(failure.InvalidSpec, "spec.tokenRequest.caBundle: key %q holds no PEM certificate", ca.Key)
		}
		req.RootCAs, req.RootCAsPEM = pool, pem
	}
	if cc := tr.ClientCertificate; cc != nil {
		var cs auth.CertificateSource
		const field = "spec.tokenRequest.clientCertificate"
		if cc.PKCS12Key != nil {
			if cs.PKCS12, err = src.value(cc.SecretName, *cc.PKCS12Key, field+".pkcs12Key"); err != nil {
				return nil, err
			}
		} else if cc.CertificateKey != nil && cc.PrivateKeyKey != nil {
			if cs.CertificatePEM, err = src.value(cc.SecretName, *cc.CertificateKey, field+".certificateKey"); err != nil {
				return nil, err
			}
			if cs.PrivateKeyPEM, err = src.value(cc.SecretName, *cc.PrivateKeyKey, field+".privateKeyKey"); err != nil {
				return nil, err
			}
		}
		if cc.PassphraseKey != nil {
			if cs.Passphrase, err = src.value(cc.SecretName, *cc.PassphraseKey, field+".passphraseKey"); err != nil {
				return nil, err
			}
		}
		h.Add("clientCertificate.pkcs12", cs.PKCS12)
		h.Add("clientCertificate.certificate", cs.CertificatePEM)
		h.Add("clientCertificate.privateKey", cs.PrivateKeyPEM)
		h.Add("clientCertificate.passphrase", cs.Passphrase)
		cert, notAfter, err := auth.LoadClientCertificate(cs, now)
		out.certNotAfter = notAfter
		if err != nil {
			return out, problemf(failure.InvalidClientCertificate, "%s (Secret %q): %v", field, cc.SecretName, err)
		}
		req.Certificate = cert
	}
	out.key = h.Sum()
	return out, nil
}

func (r *APICredentialReconciler) parameters(src *secretReader, params []authv1alpha1.Parameter, field string) ([]auth.Field, error) {
	var out []auth.Field
	for i, p := range params {
		switch {
		case p.Value != nil:
			out = append(out, auth.Field{Name: p.Name, Value: *p.Value})
		case p.ValueFrom != nil:
			ref := p.ValueFrom.SecretKeyRef
			v, err := src.value(ref.Name, ref.Key, field+"["+strconv.Itoa(i)+"].valueFrom")
			if err != nil {
				return nil, err
			}
			out = append(out, auth.Field{Name: p.Name, Value: string(v)})
		}
	}
	return out, nil
}

func (r *APICredentialReconciler) caBundle(ctx context.Context, src *secretReader, ns string, ca *authv1alpha1.CABundle) ([]byte, error) {
	if ca.SecretName != nil {
		return src.value(*ca.SecretName, ca.Key, "spec.tokenRequest.caBundle")
	}
	nn := types.NamespacedName{Namespace: ns, Name: *ca.ConfigMapName}
	if pem, ok := r.bundles.lookup(ctx, r.Metadata, nn, ca.Key); ok {
		return pem, nil
	}
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, nn, cm, atLeastCached(ctx, r.Metadata, "ConfigMap", nn)...)
	if apierrors.IsNotFound(err) {
		r.bundles.drop(nn)
		return nil, problemf(failure.SourceSecretMissing, "spec.tokenRequest.caBundle: ConfigMap %q not found", *ca.ConfigMapName)
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s: %w", *ca.ConfigMapName, err)
	}
	pem, ok := []byte(nil), false
	if v, found := cm.Data[string(ca.Key)]; found {
		pem, ok = []byte(v), true
	} else if v, found := cm.BinaryData[string(ca.Key)]; found {
		pem, ok = v, true
	}
	if !ok {
		return nil, problemf(failure.SourceSecretMissing, "spec.tokenRequest.caBundle: ConfigMap %q has no key %q", *ca.ConfigMapName, ca.Key)
	}
	r.bundles.keep(cm, ca.Key, pem)
	return pem, nil
}
