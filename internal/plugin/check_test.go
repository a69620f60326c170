package plugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// issue makes a certificate for key signed by parent (self-signed when
// parent is nil), valid from notBefore to notAfter.
func issue(t *testing.T, cn string, key, parentKey *ecdsa.PrivateKey, parent *x509.Certificate, notBefore, notAfter time.Time, isCA bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"tokenwarden test"}},
		NotBefore:    notBefore, NotAfter: notAfter,
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pfx returns a PKCS#12 file with a leaf valid from notBefore to notAfter,
// signed by a test CA that goes in the file as its chain.
func pfx(t *testing.T, passphrase string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	caKey, leafKey := newKey(t), newKey(t)
	ca := issue(t, "Test Bank CA", caKey, nil, nil, now.Add(-365*24*time.Hour), now.Add(5*365*24*time.Hour), true)
	leaf := issue(t, "merchant-42", leafKey, caKey, ca, notBefore, notAfter, false)
	data, err := pkcs12.Modern2023.Encode(leafKey, leaf, []*x509.Certificate{ca}, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeSecretFile writes a Secret manifest as kubectl create secret
// --dry-run=client -o yaml would.
func writeSecretFile(t *testing.T, dir, name string, data map[string][]byte) string {
	t.Helper()
	sec := corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
	b, err := yaml.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const bankCredential = `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: bank, namespace: payments}
spec:
  tokenRequest:
    url: URL
    method: GET
    clientCertificate:
      secretName: bank-m2m-cert
      pkcs12Key: certificate.p12
      passphraseKey: passphrase
  target: {secretName: bank-token}
`

func writeManifest(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "credential.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRun runs check without a cluster.
func checkRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	saved := kubeconfig
	kubeconfig = ""
	defer func() { kubeconfig = saved }()
	out, _, err := run(t, append([]string{"check"}, args...)...)
	return out, err
}

func TestCheckClientCertificate(t *testing.T) {
	dir := t.TempDir()
	const pass = "correct horse battery staple"
	manifest := writeManifest(t, dir, strings.Replace(bankCredential, "URL", "https://auth.bank.example.com/api/v1/authorize", 1))
	cases := []struct {
		name       string
		p12        []byte
		passphrase string
		problem    bool
		want       []string
	}{{
		name: "valid", p12: pfx(t, pass, now.Add(-time.Hour), now.Add(400*24*time.Hour)), passphrase: pass,
		want: []string{
			"ok     client certificate decodes, matches its key and is valid now",
			"subject: CN=merchant-42,O=tokenwarden test",
			"issuer:  CN=Test Bank CA,O=tokenwarden test",
			now.Add(400 * 24 * time.Hour).Format("2006-01-02"),
			"chain[1]: CN=Test Bank CA,O=tokenwarden test",
			"No problems found",
		},
	}, {
		name: "wrong passphrase", p12: pfx(t, pass, now.Add(-time.Hour), now.Add(400*24*time.Hour)), passphrase: "Tr0ub4dor&3", problem: true,
		want: []string{`ERROR  InvalidClientCertificate: spec.tokenRequest.clientCertificate (Secret "bank-m2m-cert"): client certificate: wrong passphrase for the PKCS#12 file`},
	}, {
		name: "expired", p12: pfx(t, pass, now.Add(-90*24*time.Hour), now.Add(-24*time.Hour)), passphrase: pass, problem: true,
		want: []string{
			`ERROR  InvalidClientCertificate: spec.tokenRequest.clientCertificate (Secret "bank-m2m-cert"): client certificate: the certificate has expired`,
			"the certificate's NotAfter is " + now.Add(-24*time.Hour).Format(time.RFC3339) + " (24h ago)",
		},
	}, {
		name: "expires soon", p12: pfx(t, pass, now.Add(-300*24*time.Hour), now.Add(5*24*time.Hour)), passphrase: pass,
		want: []string{"warn   the client certificate expires within 30 days"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secretFile := writeSecretFile(t, t.TempDir(), "bank-m2m-cert", map[string][]byte{
				"certificate.p12": tc.p12, "passphrase": []byte(tc.passphrase),
			})
			out, err := checkRun(t, "-f", manifest, "--secret-file", secretFile)
			if tc.problem != errors.Is(err, ErrProblems) {
				t.Errorf("err = %v, want problems: %v\n%s", err, tc.problem, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, tc.passphrase) {
				t.Errorf("output holds the passphrase:\n%s", out)
			}
		})
	}
}

func TestCheckAddressPolicy(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		url  string
		args []string
		want string
	}{
		{"https://10.0.0.7/token", nil, "ERROR  InvalidSpec: spec.tokenRequest.url: invalid token request: url: address 10.0.0.7 is a private address, which the private-network policy refuses"},
		{"https://10.0.0.7/token", []string{"--allow-private-networks"}, "ok     address policy: 10.0.0.7 may be dialed"},
		{"https://localhost:8443/token", []string{"--resolve"}, "resolves to a loopback address, which the private-network policy refuses"},
		{"https://api.example.com/token", nil, "address policy: api.example.com is not looked up (--resolve does)"},
	} {
		manifest := writeManifest(t, dir, "apiVersion: auth.tokenwarden.io/v1alpha1\nkind: APICredential\nmetadata: {name: a, namespace: p}\nspec:\n  tokenRequest: {url: \""+tc.url+"\"}\n  target: {secretName: t}\n")
		out, _ := checkRun(t, append([]string{"-f", manifest}, tc.args...)...)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s %v: output lacks %q:\n%s", tc.url, tc.args, tc.want, out)
		}
	}
}

// TestCheckMakesNoRequest points a credential at a local TLS server with the
// private-network policy off, so that only check's own restraint keeps it
// from connecting.
func TestCheckMakesNoRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	dir := t.TempDir()
	const pass = "pw"
	manifest := writeManifest(t, dir, strings.Replace(bankCredential, "URL", "https://"+ln.Addr().String()+"/token", 1))
	secretFile := writeSecretFile(t, dir, "bank-m2m-cert", map[string][]byte{
		"certificate.p12": pfx(t, pass, now.Add(-time.Hour), now.Add(400*24*time.Hour)), "passphrase": []byte(pass),
	})
	out, err := checkRun(t, "-f", manifest, "--secret-file", secretFile, "--allow-private-networks")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Give a stray connection time to be accepted.
	time.Sleep(200 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("check connected to the token endpoint %d times", n)
	}
}

func TestCheckSpec(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name     string
		manifest string
		args     []string
		want     []string
	}{{
		name: "CEL: exactly one source",
		manifest: `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: none, namespace: payments}
spec:
  target: {secretName: t}
`,
		want: []string{"API server would refuse it: spec: Invalid value: exactly one of spec.tokenRequest, spec.static and spec.providerRef must be set"},
	}, {
		name: "CEL: https",
		manifest: `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: plain, namespace: payments}
spec:
  tokenRequest: {url: "http://api.example.com/token"}
  target: {secretName: t}
`,
		want: []string{"spec.tokenRequest.url: Invalid value: spec.tokenRequest.url must start with https://"},
	}, {
		name: "schema: enum and unknown field",
		manifest: `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: put, namespace: payments}
spec:
  tokenRequest: {url: "https://api.example.com/token", method: PUT, retries: 3}
  target: {secretName: t}
`,
		want: []string{`spec.tokenRequest.method: Unsupported value`, `unknown field "spec.tokenRequest.retries"`},
	}, {
		name: "operator: GET with a body",
		manifest: `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: get, namespace: payments}
spec:
  tokenRequest:
    url: https://api.example.com/token
    method: GET
    form: [{name: grant_type, value: client_credentials}]
  target: {secretName: t}
`,
		want: []string{"ok     accepted by the CRD schema", "ERROR  InvalidSpec: invalid token request: method: a GET request cannot carry a form or json body"},
	}, {
		name: "operator: allowed hosts and a missing key",
		manifest: `apiVersion: v1
kind: Secret
metadata: {name: psp-api-key, namespace: payments}
stringData: {key: "id:with-colon"}
---
apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: psp, namespace: payments}
spec:
  tokenRequest:
    url: https://api.example.com/token
    basicAuth: {secretName: psp-api-key, usernameKey: key, passwordKey: secret}
  target: {secretName: t}
`,
		args: []string{"--allowed-hosts", "*.example.org"},
		want: []string{
			`ERROR  SourceSecretMissing: spec.tokenRequest.basicAuth.passwordKey: Secret "psp-api-key" has no key "secret"`,
			"ERROR  InvalidSpec: invalid token request: url: host api.example.com is not in the allowed hosts",
		},
	}, {
		name: "operator: a broken template",
		manifest: `apiVersion: auth.tokenwarden.io/v1alpha1
kind: APICredential
metadata: {name: tmpl, namespace: payments}
spec:
  tokenRequest: {url: "https://api.example.com/token"}
  target:
    secretName: t
    template: {token.env: "TOKEN={{ .Token "}
`,
		want: []string{"ERROR  InvalidSpec: spec.target.template[token.env]: not a valid Go template"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := checkRun(t, append([]string{"-f", writeManifest(t, dir, tc.manifest)}, tc.args...)...)
			if !errors.Is(err, ErrProblems) {
				t.Errorf("err = %v, want ErrProblems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestCheckSamples: every shipped sample passes the API server part.
func TestCheckSamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "providers", "*provider*.yaml"))
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, "kustomization.yaml") || strings.HasSuffix(f, "namespace.yaml") {
			continue
		}
		out, _ := checkRun(t, "-f", f)
		if strings.Contains(out, "API server would refuse") {
			t.Errorf("%s:\n%s", f, out)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, sub := range []string{"status", "renew", "inspect", "check"} {
		t.Run(sub, func(t *testing.T) {
			saved := kubeconfig
			kubeconfig = ""
			defer func() { kubeconfig = saved }()
			out, _, err := run(t, sub, "--help")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"Usage:", "kubectl tokenwarden " + sub, "Examples:", "  kubectl tokenwarden " + sub + " ", "--kubeconfig", "-n, --namespace"} {
				if !strings.Contains(out, w) {
					t.Errorf("%s --help lacks %q:\n%s", sub, w, out)
				}
			}
		})
	}
}
