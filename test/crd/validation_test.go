// Package crd_test installs the generated CRD into a real API server and
// proves that its validation rejects what it must, with a message that names
// the field, and accepts every shipped sample.
package crd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = authv1alpha1.AddToScheme(scheme)
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	_ = env.Stop()
	os.Exit(code)
}

// namespace creates a namespace of its own for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-"}}
	if err := k8s.Create(t.Context(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

type option func(*authv1alpha1.APICredential)

// credential is a valid flow B APICredential changed by opts.
func credential(ns string, opts ...option) *authv1alpha1.APICredential {
	c := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cred-", Namespace: ns},
		Spec: authv1alpha1.APICredentialSpec{
			TokenRequest: &authv1alpha1.TokenRequest{
				URL: "https://api.example.com/api/token",
				BasicAuth: &authv1alpha1.BasicAuth{
					SecretName: "psp-api-key", UsernameKey: "key", PasswordKey: "secret",
				},
				Form: []authv1alpha1.Parameter{{Name: "grant_type", Value: ptr.To("client_credentials")}},
			},
			Target: authv1alpha1.TargetSecret{SecretName: "psp-token"},
		},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func withStatic(c *authv1alpha1.APICredential) {
	c.Spec.Static = &authv1alpha1.StaticToken{SecretName: "shop", TokenKey: "jwt"}
}

func key(s string) *authv1alpha1.SecretKey { k := authv1alpha1.SecretKey(s); return &k }

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestValidationRejects(t *testing.T) {
	ns := namespace(t)
	secretRef := &authv1alpha1.ValueSource{SecretKeyRef: authv1alpha1.SecretKeySelector{Name: "s", Key: "k"}}
	cases := []struct {
		name string
		opt  option
		// want is the field path and the message the API server must return.
		want []string
	}{
		{"both tokenRequest and static", withStatic,
			[]string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"neither tokenRequest nor static", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest = nil },
			[]string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"http url", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.URL = "http://api.example.com/token" },
			[]string{"spec.tokenRequest.url", "must start with https://"}},
		{"form and json", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.JSON = []authv1alpha1.Parameter{{Name: "clientId", Value: ptr.To("x")}}
		}, []string{"at most one of spec.tokenRequest.form and spec.tokenRequest.json"}},
		{"pkcs12Key and PEM keys", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.ClientCertificate = &authv1alpha1.ClientCertificate{
				SecretName: "cert", PKCS12Key: key("c.p12"), CertificateKey: key("tls.crt"), PrivateKeyKey: key("tls.key"),
			}
		}, []string{"spec.tokenRequest.clientCertificate", "needs either pkcs12Key, or certificateKey and privateKeyKey"}},
		{"no certificate key at all", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.ClientCertificate = &authv1alpha1.ClientCertificate{SecretName: "cert"}
		}, []string{"spec.tokenRequest.clientCertificate", "needs either pkcs12Key, or certificateKey and privateKeyKey"}},
		{"certificateKey without privateKeyKey", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.ClientCertificate = &authv1alpha1.ClientCertificate{SecretName: "cert", CertificateKey: key("tls.crt")}
		}, []string{"spec.tokenRequest.clientCertificate", "certificateKey and privateKeyKey must be set together"}},
		{"form entry with value and valueFrom", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.Form[0].ValueFrom = secretRef
		}, []string{"spec.tokenRequest.form[0]", "each entry needs exactly one of value and valueFrom"}},
		{"json entry with neither value nor valueFrom", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.Form = nil
			c.Spec.TokenRequest.JSON = []authv1alpha1.Parameter{{Name: "clientId"}}
		}, []string{"spec.tokenRequest.json[0]", "each entry needs exactly one of value and valueFrom"}},
		{"header entry with value and valueFrom", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.Headers = []authv1alpha1.Parameter{{Name: "X-Api-Key", Value: ptr.To("x"), ValueFrom: secretRef}}
		}, []string{"spec.tokenRequest.headers[0]", "each entry needs exactly one of value and valueFrom"}},
		{"zero timeout", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.Timeout = duration(0) },
			[]string{"spec.tokenRequest.timeout", "must be positive"}},
		{"negative refreshBefore", func(c *authv1alpha1.APICredential) {
			c.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: duration(-time.Minute)}
		}, []string{"spec.refresh.refreshBefore", "must be positive"}},
		{"zero defaultLifetime", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.Response = &authv1alpha1.ResponseMapping{DefaultLifetime: duration(0)}
		}, []string{"spec.tokenRequest.response.defaultLifetime", "must be positive"}},
		{"negative warnBefore", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withStatic(c)
			c.Spec.Static.WarnBefore = duration(-time.Hour)
		}, []string{"spec.static.warnBefore", "must be positive"}},
		{"invalid target secretName", func(c *authv1alpha1.APICredential) { c.Spec.Target.SecretName = "Bad_Name" },
			[]string{"spec.target.secretName", "must be a valid Secret name"}},
		{"invalid basicAuth secretName", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.BasicAuth.SecretName = "psp/api" },
			[]string{"spec.tokenRequest.basicAuth.secretName", "must be a valid Secret name"}},
		{"invalid valueFrom secret name", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest.Form[0] = authv1alpha1.Parameter{Name: "grant_type", ValueFrom: &authv1alpha1.ValueSource{
				SecretKeyRef: authv1alpha1.SecretKeySelector{Name: "-bad-", Key: "k"}}}
		}, []string{"spec.tokenRequest.form[0].valueFrom.secretKeyRef.name", "must be a valid Secret name"}},
		{"invalid static secretName", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withStatic(c)
			c.Spec.Static.SecretName = "UPPER"
		}, []string{"spec.static.secretName", "must be a valid Secret name"}},
		{"caBundle with secret and configMap", func(c *authv1alpha1.APICredential) {
			n := authv1alpha1.SecretName("roots")
			c.Spec.TokenRequest.CABundle = &authv1alpha1.CABundle{SecretName: &n, ConfigMapName: ptr.To("roots"), Key: "ca.crt"}
		}, []string{"spec.tokenRequest.caBundle", "exactly one of secretName and configMapName"}},
		{"template key that is not a Secret key", func(c *authv1alpha1.APICredential) {
			c.Spec.Target.Template = map[string]string{"token env": "TOKEN={{ .Token }}"}
		}, []string{"spec.target.template", "keys must be valid Secret keys"}},
		{"unknown method", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.Method = "PUT" },
			[]string{"spec.tokenRequest.method", "Unsupported value"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(t.Context(), credential(ns, tc.opt))
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidationAcceptsAndDefaults(t *testing.T) {
	ns := namespace(t)
	c := credential(ns)
	if err := k8s.Create(t.Context(), c); err != nil {
		t.Fatalf("valid credential refused: %v", err)
	}
	tr := c.Spec.TokenRequest
	if tr.Method != authv1alpha1.MethodPOST || tr.Timeout == nil || tr.Timeout.Duration != 15*time.Second || tr.InvalidatesPrevious {
		t.Errorf("defaults not applied: method=%q timeout=%v invalidatesPrevious=%v", tr.Method, tr.Timeout, tr.InvalidatesPrevious)
	}
	s := credential(ns, func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest = nil; withStatic(c) })
	if err := k8s.Create(t.Context(), s); err != nil {
		t.Fatalf("valid static credential refused: %v", err)
	}
	if s.Spec.Static.WarnBefore == nil || s.Spec.Static.WarnBefore.Duration != 168*time.Hour {
		t.Errorf("warnBefore default not applied: %v", s.Spec.Static.WarnBefore)
	}
}

// TestSamplesAreAccepted creates every object of config/samples/ in a fresh
// namespace.
func TestSamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	flows := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			ns := namespace(t)
			for _, obj := range readObjects(t, f) {
				if obj.GetKind() == "Namespace" {
					continue
				}
				if obj.GetKind() == "APICredential" {
					flows++
				}
				obj.SetNamespace(ns)
				if err := k8s.Create(context.Background(), obj); err != nil {
					t.Errorf("%s %s refused: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
	if flows < 4 {
		t.Errorf("want one sample APICredential per flow (4), found %d", flows)
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("decoding %s: %v", path, err)
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}
