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
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
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

func withProviderRef(c *authv1alpha1.APICredential) {
	c.Spec.ProviderRef = &authv1alpha1.ProviderReference{Kind: authv1alpha1.KindClusterTokenProvider, Name: "send-payments"}
}

// consumer is a valid APICredential with spec.providerRef (and nothing
// else), changed by opts.
func consumer(ns string, opts ...option) *authv1alpha1.APICredential {
	return credential(ns, append([]option{func(c *authv1alpha1.APICredential) {
		c.Spec.TokenRequest = nil
		withProviderRef(c)
	}}, opts...)...)
}

// tokenRequest is a valid flow C token request.
func tokenRequest() authv1alpha1.TokenRequest {
	ref := func(key authv1alpha1.SecretKey) *authv1alpha1.ValueSource {
		return &authv1alpha1.ValueSource{SecretKeyRef: authv1alpha1.SecretKeySelector{Name: "send-client", Key: key}}
	}
	return authv1alpha1.TokenRequest{
		URL: "https://send.example.com/auth",
		JSON: []authv1alpha1.Parameter{
			{Name: "clientId", ValueFrom: ref("clientId")},
			{Name: "clientSecret", ValueFrom: ref("clientSecret")},
		},
		Response:            &authv1alpha1.ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"},
		InvalidatesPrevious: true,
	}
}

type clusterOption func(*authv1alpha1.ClusterTokenProvider)

// clusterProvider is a valid ClusterTokenProvider (allowing one namespace
// by name) changed by opts.
func clusterProvider(opts ...clusterOption) *authv1alpha1.ClusterTokenProvider {
	p := &authv1alpha1.ClusterTokenProvider{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ctp-"},
		Spec: authv1alpha1.ClusterTokenProviderSpec{
			TokenProviderSpec: authv1alpha1.TokenProviderSpec{TokenRequest: tokenRequest()},
			AllowedNamespaces: &authv1alpha1.AllowedNamespaces{Names: []string{"checkout"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// tokenProvider is a valid TokenProvider changed by opts.
func tokenProvider(ns string, opts ...func(*authv1alpha1.TokenProvider)) *authv1alpha1.TokenProvider {
	p := &authv1alpha1.TokenProvider{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tp-", Namespace: ns},
		Spec:       authv1alpha1.TokenProviderSpec{TokenRequest: tokenRequest()},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// wantInvalid fails unless err is an Invalid error mentioning every want.
func wantInvalid(t *testing.T, err error, want []string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error, got %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
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
		{"none of tokenRequest, static and providerRef", func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest = nil },
			[]string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"both tokenRequest and providerRef", withProviderRef,
			[]string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"both static and providerRef", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withStatic(c)
			withProviderRef(c)
		}, []string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"tokenRequest, static and providerRef", func(c *authv1alpha1.APICredential) {
			withStatic(c)
			withProviderRef(c)
		}, []string{"exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"}},
		{"refresh with providerRef", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: duration(time.Minute)}
		}, []string{"spec.refresh is not allowed with spec.providerRef: the provider owns the timing; set refresh on the provider"}},
		{"providerRef kind not a provider kind", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.ProviderRef.Kind = "ClusterIssuer"
		}, []string{"spec.providerRef.kind", "Unsupported value", `"TokenProvider", "ClusterTokenProvider"`}},
		{"providerRef name not a DNS-1123 subdomain", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.ProviderRef.Name = "Send_Payments"
		}, []string{"spec.providerRef.name", "spec.providerRef.name must be a valid provider name (a DNS-1123 subdomain"}},
		{"providerRef name with a slash", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.ProviderRef.Name = "payments/send"
		}, []string{"spec.providerRef.name", "must be a valid provider name"}},
		{"providerRef name empty", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.ProviderRef.Name = ""
		}, []string{"spec.providerRef.name", "at least 1"}},
		{"providerRef name too long for its token Secret", func(c *authv1alpha1.APICredential) {
			c.Spec.TokenRequest = nil
			withProviderRef(c)
			c.Spec.ProviderRef.Name = strings.Repeat("a", 248)
		}, []string{"spec.providerRef.name", "247"}},
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
			wantInvalid(t, k8s.Create(t.Context(), credential(ns, tc.opt)), tc.want)
		})
	}
}

// TestProviderValidationRejects covers the rules of the provider kinds:
// allowedNamespaces' shape, and the token request they share with an
// APICredential.
func TestProviderValidationRejects(t *testing.T) {
	cases := []struct {
		name string
		opt  clusterOption
		want []string
	}{
		{"allowedNamespaces empty", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces = &authv1alpha1.AllowedNamespaces{}
		}, []string{"spec.allowedNamespaces", "spec.allowedNamespaces needs names, a selector, or both; leave it out to allow no namespace"}},
		{"names item with capitals", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = []string{"checkout", "Payouts"}
		}, []string{"spec.allowedNamespaces.names[1]", "spec.allowedNamespaces.names must hold namespace names (DNS-1123 labels)"}},
		{"names item with a dot", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = []string{"team.payouts"}
		}, []string{"spec.allowedNamespaces.names[0]", "must hold namespace names (DNS-1123 labels)"}},
		{"names item empty", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = []string{""}
		}, []string{"spec.allowedNamespaces.names[0]", "must hold namespace names (DNS-1123 labels)"}},
		{"names item too long", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = []string{strings.Repeat("a", 64)}
		}, []string{"spec.allowedNamespaces.names[0]", "63"}},
		{"names duplicated", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = []string{"checkout", "checkout"}
		}, []string{"spec.allowedNamespaces.names[1]", "Duplicate value"}},
		{"names too many", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.AllowedNamespaces.Names = nil
			for i := range 257 {
				p.Spec.AllowedNamespaces.Names = append(p.Spec.AllowedNamespaces.Names, fmt.Sprintf("ns-%d", i))
			}
		}, []string{"spec.allowedNamespaces.names", "256"}},
		{"http url", func(p *authv1alpha1.ClusterTokenProvider) { p.Spec.TokenRequest.URL = "http://send.example.com/auth" },
			[]string{"spec.tokenRequest.url", "must start with https://"}},
		{"form and json", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.TokenRequest.Form = []authv1alpha1.Parameter{{Name: "grant_type", Value: ptr.To("client_credentials")}}
		}, []string{"at most one of spec.tokenRequest.form and spec.tokenRequest.json"}},
		{"negative refreshBefore", func(p *authv1alpha1.ClusterTokenProvider) {
			p.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: duration(-time.Minute)}
		}, []string{"spec.refresh.refreshBefore", "must be positive"}},
	}
	for _, tc := range cases {
		t.Run("ClusterTokenProvider "+tc.name, func(t *testing.T) {
			wantInvalid(t, k8s.Create(t.Context(), clusterProvider(tc.opt)), tc.want)
		})
	}

	ns := namespace(t)
	t.Run("TokenProvider without tokenRequest", func(t *testing.T) {
		p := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": authv1alpha1.GroupVersion.String(), "kind": authv1alpha1.KindTokenProvider,
			"metadata": map[string]any{"generateName": "tp-", "namespace": ns},
			"spec":     map[string]any{"suspend": true},
		}}
		wantInvalid(t, k8s.Create(t.Context(), p), []string{"spec.tokenRequest", "Required value"})
	})
	t.Run("TokenProvider http url", func(t *testing.T) {
		p := tokenProvider(ns, func(p *authv1alpha1.TokenProvider) { p.Spec.TokenRequest.URL = "http://send.example.com/auth" })
		wantInvalid(t, k8s.Create(t.Context(), p), []string{"spec.tokenRequest.url", "must start with https://"})
	})
	t.Run("TokenProvider has no allowedNamespaces", func(t *testing.T) {
		// A TokenProvider serves its own namespace only: the field does not
		// exist on it, and the API server drops it (or refuses it under
		// strict field validation).
		p := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": authv1alpha1.GroupVersion.String(), "kind": authv1alpha1.KindTokenProvider,
			"metadata": map[string]any{"generateName": "tp-", "namespace": ns},
			"spec": map[string]any{
				"tokenRequest":      map[string]any{"url": "https://send.example.com/auth"},
				"allowedNamespaces": map[string]any{"names": []any{"checkout"}},
			},
		}}
		err := k8s.Create(t.Context(), p, client.FieldValidation(metav1.FieldValidationStrict))
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.allowedNamespaces"`) {
			t.Errorf("want the unknown field spec.allowedNamespaces refused, got %v", err)
		}
	})
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

func TestProviderValidationAcceptsAndDefaults(t *testing.T) {
	ns := namespace(t)
	c := consumer(ns, func(c *authv1alpha1.APICredential) { c.Spec.ProviderRef.Kind = "" })
	if err := k8s.Create(t.Context(), c); err != nil {
		t.Fatalf("valid consumer refused: %v", err)
	}
	if c.Spec.ProviderRef.Kind != authv1alpha1.KindTokenProvider {
		t.Errorf("spec.providerRef.kind defaulted to %q, want %s", c.Spec.ProviderRef.Kind, authv1alpha1.KindTokenProvider)
	}
	if err := k8s.Create(t.Context(), consumer(ns, func(c *authv1alpha1.APICredential) {
		c.Spec.ProviderRef.Name = "send.payments-" + strings.Repeat("a", 247-len("send.payments-"))
	})); err != nil {
		t.Errorf("consumer naming a provider of 247 characters with a dot refused: %v", err)
	}
	if err := k8s.Create(t.Context(), consumer(ns, func(c *authv1alpha1.APICredential) { c.Spec.Suspend = true })); err != nil {
		t.Errorf("suspended consumer refused: %v", err)
	}

	for name, allowed := range map[string]*authv1alpha1.AllowedNamespaces{
		"no allowedNamespaces (deny all)": nil,
		"names only":                      {Names: []string{"checkout", "payouts"}},
		"selector only":                   {Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"payments.example.com/send": "allowed"}}},
		"empty selector (allow all)":      {Selector: &metav1.LabelSelector{}},
		"names and a selector with expressions": {Names: []string{"checkout"}, Selector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"payments"}}}}},
	} {
		t.Run("ClusterTokenProvider "+name, func(t *testing.T) {
			p := clusterProvider(func(p *authv1alpha1.ClusterTokenProvider) { p.Spec.AllowedNamespaces = allowed })
			if err := k8s.Create(t.Context(), p); err != nil {
				t.Fatalf("valid ClusterTokenProvider refused: %v", err)
			}
			tr := p.Spec.TokenRequest
			if tr.Method != authv1alpha1.MethodPOST || tr.Timeout == nil || tr.Timeout.Duration != 15*time.Second || p.Spec.Suspend {
				t.Errorf("defaults not applied: method=%q timeout=%v suspend=%v", tr.Method, tr.Timeout, p.Spec.Suspend)
			}
		})
	}

	tp := tokenProvider(ns, func(p *authv1alpha1.TokenProvider) {
		p.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: duration(time.Minute)}
	})
	if err := k8s.Create(t.Context(), tp); err != nil {
		t.Fatalf("valid TokenProvider refused: %v", err)
	}
	if tp.Spec.TokenRequest.Method != authv1alpha1.MethodPOST || tp.Spec.TokenRequest.Timeout == nil {
		t.Errorf("TokenProvider defaults not applied: %+v", tp.Spec.TokenRequest)
	}
}

// TestSamplesAreAccepted creates every object of config/samples/ and
// config/samples/providers/, each namespace of a sample file mapped to a
// fresh one, so that samples spanning namespaces keep them apart.
func TestSamplesAreAccepted(t *testing.T) {
	files := sampleFiles(t)
	kinds := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(testenv.Root(), "config", "samples"), f)
		t.Run(rel, func(t *testing.T) {
			fresh := map[string]string{}
			for _, obj := range readObjects(t, f) {
				if obj.GetKind() == "Namespace" {
					continue
				}
				kinds[obj.GetKind()]++
				if obj.GetKind() != authv1alpha1.KindClusterTokenProvider {
					if fresh[obj.GetNamespace()] == "" {
						fresh[obj.GetNamespace()] = namespace(t)
					}
					obj.SetNamespace(fresh[obj.GetNamespace()])
				}
				if err := k8s.Create(context.Background(), obj); err != nil {
					t.Errorf("%s %s refused: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
	if kinds["APICredential"] < 4 {
		t.Errorf("want one sample APICredential per flow (4) at least, found %d", kinds["APICredential"])
	}
	for _, k := range []string{authv1alpha1.KindTokenProvider, authv1alpha1.KindClusterTokenProvider} {
		if kinds[k] == 0 {
			t.Errorf("no sample %s", k)
		}
	}
}

// sampleFiles lists the YAML files of config/samples and
// config/samples/providers, kustomization.yaml left out.
func sampleFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{"samples", filepath.Join("samples", "providers")} {
		files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no samples found in config/%s: %v", dir, err)
		}
		for _, f := range files {
			if filepath.Base(f) != "kustomization.yaml" {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestProviderSamplesShowTheContract checks that the provider samples show
// what docs/multi-tenant.md promises: a ClusterTokenProvider whose client
// Secret is in the cluster resource namespace, allowing namespaces both by
// name and by a selector, with consumers in two namespaces, one allowed each
// way; and a TokenProvider with a consumer of its own namespace.
func TestProviderSamplesShowTheContract(t *testing.T) {
	var ctps []*unstructured.Unstructured
	var tps, consumers, secrets, namespaces []*unstructured.Unstructured
	for _, f := range sampleFiles(t) {
		if filepath.Base(filepath.Dir(f)) != "providers" {
			continue
		}
		for _, o := range readObjects(t, f) {
			switch o.GetKind() {
			case authv1alpha1.KindClusterTokenProvider:
				ctps = append(ctps, o)
			case authv1alpha1.KindTokenProvider:
				tps = append(tps, o)
			case "APICredential":
				consumers = append(consumers, o)
			case "Secret":
				secrets = append(secrets, o)
			case "Namespace":
				namespaces = append(namespaces, o)
			}
		}
	}
	if len(ctps) != 1 || len(tps) != 1 {
		t.Fatalf("want one ClusterTokenProvider and one TokenProvider sample, found %d and %d", len(ctps), len(tps))
	}
	ctp := ctps[0]
	names, _, _ := unstructured.NestedStringSlice(ctp.Object, "spec", "allowedNamespaces", "names")
	selector, _, _ := unstructured.NestedStringMap(ctp.Object, "spec", "allowedNamespaces", "selector", "matchLabels")
	if len(names) == 0 || len(selector) == 0 {
		t.Errorf("the ClusterTokenProvider sample allows by names %v and by selector %v; want both", names, selector)
	}
	byName, bySelector := map[string]bool{}, map[string]bool{}
	for _, ns := range namespaces {
		if slices.Contains(names, ns.GetName()) {
			byName[ns.GetName()] = true
		}
		if len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(ns.GetLabels())) {
			bySelector[ns.GetName()] = true
		}
	}
	consumerNS := map[string]bool{}
	for _, c := range consumers {
		kind, _, _ := unstructured.NestedString(c.Object, "spec", "providerRef", "kind")
		name, _, _ := unstructured.NestedString(c.Object, "spec", "providerRef", "name")
		if kind == authv1alpha1.KindClusterTokenProvider && name == ctp.GetName() {
			if !byName[c.GetNamespace()] && !bySelector[c.GetNamespace()] {
				t.Errorf("consumer %s/%s is in a namespace the sample ClusterTokenProvider does not allow", c.GetNamespace(), c.GetName())
			}
			consumerNS[c.GetNamespace()] = true
		}
	}
	if len(consumerNS) < 2 {
		t.Errorf("the ClusterTokenProvider has consumers in %d namespaces, want 2", len(consumerNS))
	}
	var nameOnly, selectorOnly bool
	for ns := range consumerNS {
		nameOnly = nameOnly || (byName[ns] && !bySelector[ns])
		selectorOnly = selectorOnly || (bySelector[ns] && !byName[ns])
	}
	if !nameOnly || !selectorOnly {
		t.Errorf("want one consumer namespace allowed only by name and one only by the selector (consumers in %v)", consumerNS)
	}
	for _, s := range secrets {
		for _, ref := range secretNamesOf(ctp) {
			if s.GetName() == ref && s.GetNamespace() != clusterResourceNamespace {
				t.Errorf("Secret %s of the ClusterTokenProvider is in %s, want the cluster resource namespace %s", ref, s.GetNamespace(), clusterResourceNamespace)
			}
		}
	}
	for _, ns := range namespaces {
		if ns.GetName() == clusterResourceNamespace {
			t.Errorf("the samples create Namespace %s: it belongs to the install (kubectl delete -k would delete the operator)", ns.GetName())
		}
	}
	tp := tps[0]
	found := false
	for _, c := range consumers {
		name, _, _ := unstructured.NestedString(c.Object, "spec", "providerRef", "name")
		kind, _, _ := unstructured.NestedString(c.Object, "spec", "providerRef", "kind")
		found = found || (c.GetNamespace() == tp.GetNamespace() && name == tp.GetName() && kind != authv1alpha1.KindClusterTokenProvider)
	}
	if !found {
		t.Errorf("no consumer of TokenProvider %s/%s in its namespace", tp.GetNamespace(), tp.GetName())
	}
}

// clusterResourceNamespace is the shipped install's cluster resource
// namespace: the operator's own (config/default).
const clusterResourceNamespace = "tokenwarden-system"

// secretNamesOf lists the Secrets a sample provider's token request names.
func secretNamesOf(p *unstructured.Unstructured) []string {
	var out []string
	for _, list := range []string{"json", "form", "headers"} {
		entries, _, _ := unstructured.NestedSlice(p.Object, "spec", "tokenRequest", list)
		for _, e := range entries {
			if n, ok, _ := unstructured.NestedString(e.(map[string]any), "valueFrom", "secretKeyRef", "name"); ok {
				out = append(out, n)
			}
		}
	}
	for _, path := range [][]string{{"basicAuth", "secretName"}, {"clientCertificate", "secretName"}, {"caBundle", "secretName"}} {
		if n, ok, _ := unstructured.NestedString(p.Object, append([]string{"spec", "tokenRequest"}, path...)...); ok {
			out = append(out, n)
		}
	}
	return out
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

// TestProviderNameFitsItsTokenSecret: a provider's token Secret is named
// "<name>-token", so a provider name may have at most 247 characters.
func TestProviderNameFitsItsTokenSecret(t *testing.T) {
	label := strings.Repeat("a", 61)
	name247 := strings.Join([]string{label, label, label, label}, ".") // 4*61+3 = 247
	ok := clusterProvider()
	ok.GenerateName, ok.Name = "", name247
	if err := k8s.Create(t.Context(), ok); err != nil {
		t.Fatalf("a 247-character ClusterTokenProvider name was refused: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), ok) })
	long := clusterProvider()
	long.GenerateName, long.Name = "", name247+"b"
	wantInvalid(t, k8s.Create(t.Context(), long), []string{"metadata.name must be at most 247 characters: the token Secret is named <name>-token"})
	ns := namespace(t)
	tp := tokenProvider(ns)
	tp.GenerateName, tp.Name = "", name247+"b"
	wantInvalid(t, k8s.Create(t.Context(), tp), []string{"metadata.name must be at most 247 characters"})
}
