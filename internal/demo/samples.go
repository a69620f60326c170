package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// CASecretName is the Secret, added to every namespace holding a sample
// APICredential, that holds the sandbox CA under CASecretKey; every rewritten
// tokenRequest trusts it through spec.tokenRequest.caBundle.
const (
	CASecretName = "sandbox-ca"
	CASecretKey  = "ca.crt"
)

// ClusterResourceNamespace is where the samples' ClusterTokenProviders keep
// their Secrets; the demo and the e2e suite start the manager with
// --cluster-resource-namespace set to it, as the shipped install does.
const ClusterResourceNamespace = "tokenwarden-system"

// StaticTokenLifetime is the exp of the JWT put into the static (flow D)
// sample: far beyond its default warnBefore of a week, so it is Ready and
// not Degraded.
const StaticTokenLifetime = 90 * 24 * time.Hour

// Scheme knows the core types and APICredential.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := authv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Credential is one sample APICredential as the demo and the suite see it.
type Credential struct {
	Namespace, Name string
	// Flow is A, B or C (from the token URL's path, which the samples share
	// with the sandbox) or D (static).
	Flow string
	// ClientID is the sandbox client the credential authenticates as; the
	// sandbox counts its calls under this id. Empty for flow D.
	ClientID string
	// TargetSecret is spec.target.secretName.
	TargetSecret string
	// Provider is "Kind/name" of the provider a consumer (spec.providerRef)
	// takes its token from; empty otherwise. A consumer's Flow and ClientID
	// are its provider's.
	Provider string
}

// requester is a sample object that sends token requests: an APICredential
// with spec.tokenRequest, a TokenProvider or a ClusterTokenProvider.
type requester struct {
	namespace string // where its references resolve
	name      string
	tr        *authv1alpha1.TokenRequest
}

// Samples are the objects of config/samples, loaded in the order of its
// kustomization, ready to be pointed at a sandbox provider.
type Samples struct {
	objects []client.Object
	gvks    []schema.GroupVersionKind
	creds   []Credential
	// Clients maps each sandbox client id to its secret: one client per
	// token-request sample, named after the APICredential. Start the
	// sandbox with them (SandboxOptions.Clients).
	Clients map[string]string
	// Passphrase protects the PKCS#12 files the sandbox writes and is put
	// into the certificate Secret of the flow-A sample.
	Passphrase string
	// values are every secret value generated here, for leak checks.
	values []string
}

// LoadSamples reads the resources listed in the kustomization.yaml of each
// dir (config/samples, config/samples/providers) and assigns each sample
// that sends token requests (an APICredential with tokenRequest, a
// TokenProvider, a ClusterTokenProvider) a sandbox client with a fresh random
// secret.
func LoadSamples(dirs ...string) (*Samples, error) {
	s := &Samples{Clients: map[string]string{}}
	s.Passphrase = s.random("p12")
	for _, dir := range dirs {
		if err := s.load(dir); err != nil {
			return nil, err
		}
	}
	// The cluster resource namespace exists in a real install, not in the
	// demo's bare control plane: add it when a sample needs it.
	if s.needsNamespace(ClusterResourceNamespace) {
		ns := &corev1.Namespace{ObjectMeta: metaIn("", ClusterResourceNamespace)}
		s.objects = append(s.objects, ns)
		s.gvks = append(s.gvks, corev1.SchemeGroupVersion.WithKind("Namespace"))
	}
	for _, rq := range s.requesters() {
		if _, dup := s.Clients[rq.name]; dup {
			return nil, fmt.Errorf("two samples named %s: the sandbox client ids would clash", rq.name)
		}
		s.Clients[rq.name] = s.random("secret")
	}
	for _, c := range s.APICredentials() {
		cred := Credential{Namespace: c.Namespace, Name: c.Name, Flow: "D", TargetSecret: string(c.Spec.Target.SecretName)}
		tr, id := c.Spec.TokenRequest, c.Name
		if ref := c.Spec.ProviderRef; ref != nil {
			kind := ref.Kind
			if kind == "" {
				kind = authv1alpha1.KindTokenProvider
			}
			cred.Provider = kind + "/" + ref.Name
			rq, ok := s.provider(kind, c.Namespace, ref.Name)
			if !ok {
				return nil, fmt.Errorf("sample %s/%s: %s %s is not among the samples", c.Namespace, c.Name, kind, ref.Name)
			}
			tr, id = rq.tr, rq.name
		}
		if tr != nil {
			u, err := url.Parse(tr.URL)
			if err != nil {
				return nil, fmt.Errorf("sample %s/%s: %w", c.Namespace, c.Name, err)
			}
			if cred.Flow, err = flowOfPath(u.Path); err != nil {
				return nil, fmt.Errorf("sample %s/%s: %w", c.Namespace, c.Name, err)
			}
			cred.ClientID = id
		}
		s.creds = append(s.creds, cred)
	}
	if len(s.creds) == 0 {
		return nil, fmt.Errorf("no APICredential in %v", dirs)
	}
	return s, nil
}

// SampleDirs are the folders of samples under repo that the demo and the
// e2e suite load: config/samples (one APICredential per flow) and, when it
// exists, config/samples/providers (a ClusterTokenProvider and a
// TokenProvider with their consumers).
func SampleDirs(repo string) []string {
	dirs := []string{filepath.Join(repo, "config", "samples")}
	if _, err := os.Stat(filepath.Join(repo, "config", "samples", "providers", "kustomization.yaml")); err == nil {
		dirs = append(dirs, filepath.Join(repo, "config", "samples", "providers"))
	}
	return dirs
}

// needsNamespace reports whether a sample lives in namespace ns (a Secret
// of a ClusterTokenProvider) while no sample creates it.
func (s *Samples) needsNamespace(ns string) bool {
	used := false
	for _, o := range s.objects {
		if n, ok := o.(*corev1.Namespace); ok && n.Name == ns {
			return false
		}
		if _, ok := o.(*authv1alpha1.ClusterTokenProvider); ok && ns == ClusterResourceNamespace {
			used = true
		}
		if o.GetNamespace() == ns {
			used = true
		}
	}
	return used
}

// requesters lists the samples that send token requests, in sample order.
func (s *Samples) requesters() []requester {
	var out []requester
	for _, o := range s.objects {
		switch c := o.(type) {
		case *authv1alpha1.APICredential:
			if c.Spec.TokenRequest != nil {
				out = append(out, requester{namespace: c.Namespace, name: c.Name, tr: c.Spec.TokenRequest})
			}
		case *authv1alpha1.TokenProvider:
			out = append(out, requester{namespace: c.Namespace, name: c.Name, tr: &c.Spec.TokenRequest})
		case *authv1alpha1.ClusterTokenProvider:
			out = append(out, requester{namespace: ClusterResourceNamespace, name: c.Name, tr: &c.Spec.TokenRequest})
		}
	}
	return out
}

// provider finds the sample provider a consumer in namespace names.
func (s *Samples) provider(kind, namespace, name string) (requester, bool) {
	for _, o := range s.objects {
		switch c := o.(type) {
		case *authv1alpha1.TokenProvider:
			if kind == authv1alpha1.KindTokenProvider && c.Namespace == namespace && c.Name == name {
				return requester{namespace: c.Namespace, name: c.Name, tr: &c.Spec.TokenRequest}, true
			}
		case *authv1alpha1.ClusterTokenProvider:
			if kind == authv1alpha1.KindClusterTokenProvider && c.Name == name {
				return requester{namespace: ClusterResourceNamespace, name: c.Name, tr: &c.Spec.TokenRequest}, true
			}
		}
	}
	return requester{}, false
}

// load reads the resources of dir/kustomization.yaml.
func (s *Samples) load(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	decoder := serializer.NewCodecFactory(Scheme()).UniversalDeserializer()
	for _, res := range k.Resources {
		if info, err := os.Stat(filepath.Join(dir, res)); err == nil && info.IsDir() {
			// A folder of samples of its own (config/samples/providers) is
			// loaded by naming it.
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return fmt.Errorf("sample %s (only files are supported): %w", res, err)
		}
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("sample %s: %w", res, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				return fmt.Errorf("sample %s: %w", res, err)
			}
			co, ok := obj.(client.Object)
			if !ok {
				return fmt.Errorf("sample %s: %s is not an object", res, gvk)
			}
			if sec, ok := co.(*corev1.Secret); ok {
				// One place for values: fold stringData into data.
				if sec.Data == nil {
					sec.Data = map[string][]byte{}
				}
				for k, v := range sec.StringData {
					sec.Data[k] = []byte(v)
				}
				sec.StringData = nil
			}
			s.objects = append(s.objects, co)
			s.gvks = append(s.gvks, *gvk)
		}
	}
	return nil
}

// stripComments drops comment-only lines, so that a document holding
// nothing but comments counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// flowOfPath maps a sample's token path to the sandbox flow serving it; the
// samples use the real providers' paths and the sandbox serves the same.
func flowOfPath(p string) (string, error) {
	switch p {
	case sandbox.PathFlowA:
		return "A", nil
	case sandbox.PathFlowB:
		return "B", nil
	case sandbox.PathFlowC:
		return "C", nil
	}
	return "", fmt.Errorf("token path %q is none of the sandbox's (%s, %s, %s)", p, sandbox.PathFlowA, sandbox.PathFlowB, sandbox.PathFlowC)
}

func (s *Samples) random(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	v := prefix + "-" + hex.EncodeToString(b)
	s.values = append(s.values, v)
	return v
}

// Credentials lists the sample APICredentials in sample order.
func (s *Samples) Credentials() []Credential { return append([]Credential(nil), s.creds...) }

// Consumers are the credentials that take their token from a provider.
func (s *Samples) Consumers() []Credential {
	var out []Credential
	for _, c := range s.creds {
		if c.Provider != "" {
			out = append(out, c)
		}
	}
	return out
}

// ConsumerNamespaces are the namespaces of Consumers, sorted, once each.
func (s *Samples) ConsumerNamespaces() []string {
	var out []string
	for _, c := range s.Consumers() {
		if !slices.Contains(out, c.Namespace) {
			out = append(out, c.Namespace)
		}
	}
	slices.Sort(out)
	return out
}

// SecretValues are every secret value the samples were filled with (client
// secrets, the PKCS#12 passphrase, the static token and its secret); none
// may ever appear in a log line, an event or a status.
func (s *Samples) SecretValues() []string { return append([]string(nil), s.values...) }

// APICredentials returns the sample APICredentials (the objects themselves).
func (s *Samples) APICredentials() []*authv1alpha1.APICredential {
	var out []*authv1alpha1.APICredential
	for _, o := range s.objects {
		if c, ok := o.(*authv1alpha1.APICredential); ok {
			out = append(out, c)
		}
	}
	return out
}

// Objects returns every object in the order they are applied: namespaces,
// then Secrets, then the rest (APICredentials), each in sample order, so
// that no APICredential is seen before the Secrets it reads.
func (s *Samples) Objects() []client.Object {
	out, _ := s.ordered()
	return out
}

func (s *Samples) ordered() ([]client.Object, []schema.GroupVersionKind) {
	rank := func(o client.Object) int {
		switch o.(type) {
		case *corev1.Namespace:
			return 0
		case *corev1.Secret:
			return 1
		}
		return 2
	}
	var objs []client.Object
	var gvks []schema.GroupVersionKind
	for r := 0; r <= 2; r++ {
		for i, o := range s.objects {
			if rank(o) == r {
				objs = append(objs, o)
				gvks = append(gvks, s.gvks[i])
			}
		}
	}
	return objs, gvks
}

func (s *Samples) secret(namespace, name string) (*corev1.Secret, error) {
	for _, o := range s.objects {
		if sec, ok := o.(*corev1.Secret); ok && sec.Namespace == namespace && sec.Name == name {
			return sec, nil
		}
	}
	return nil, fmt.Errorf("a sample references Secret %s/%s, which is not among the samples", namespace, name)
}

// Provider is what PointAt needs to know of a running sandbox.
type Provider interface {
	// BaseURL is https://host:port.
	BaseURL() string
	// CACertPEM is the CA that signed the server certificate.
	CACertPEM() []byte
	// ClientFile returns the file the sandbox wrote for a client: ext is
	// "p12", "crt" or "key".
	ClientFile(clientID, ext string) ([]byte, error)
}

// PointAt rewrites the samples to use p: each token URL keeps its path and
// gets the sandbox's scheme and host; each token request trusts the sandbox
// CA through a caBundle Secret; the source Secrets are filled with the
// sandbox client's credentials, a real PKCS#12 bundle for flow A, and for
// the static flow a freshly signed JWT.
func (s *Samples) PointAt(p Provider) error {
	base, err := url.Parse(p.BaseURL())
	if err != nil {
		return err
	}
	for _, c := range s.APICredentials() {
		if st := c.Spec.Static; st != nil {
			sec, err := s.secret(c.Namespace, string(st.SecretName))
			if err != nil {
				return err
			}
			// A console that issues application tokens signs them, so that
			// its protected API accepts them; otherwise any well-formed JWT.
			jwt := StaticJWT(c.Name, time.Now().Add(StaticTokenLifetime))
			if console, ok := p.(interface {
				AppToken(subject string, exp time.Time) (string, error)
			}); ok {
				if jwt, err = console.AppToken(c.Name, time.Now().Add(StaticTokenLifetime)); err != nil {
					return err
				}
			}
			s.values = append(s.values, jwt)
			sec.Data[string(st.TokenKey)] = []byte(jwt)
			if st.SecretKey != nil {
				sec.Data[string(*st.SecretKey)] = []byte(s.random("app-secret"))
			}
		}
	}
	caNamespaces := map[string]bool{}
	for _, rq := range s.requesters() {
		id, tr, ns := rq.name, rq.tr, rq.namespace
		u, err := url.Parse(tr.URL)
		if err != nil {
			return err
		}
		u.Scheme, u.Host = base.Scheme, base.Host
		tr.URL = u.String()
		caName := authv1alpha1.SecretName(CASecretName)
		tr.CABundle = &authv1alpha1.CABundle{SecretName: &caName, Key: CASecretKey}
		if !caNamespaces[ns] {
			caNamespaces[ns] = true
			s.objects = append(s.objects, &corev1.Secret{
				ObjectMeta: metaIn(ns, CASecretName),
				Data:       map[string][]byte{CASecretKey: p.CACertPEM()},
			})
			s.gvks = append(s.gvks, corev1.SchemeGroupVersion.WithKind("Secret"))
		}
		secret := s.Clients[id]
		if ba := tr.BasicAuth; ba != nil {
			sec, err := s.secret(ns, string(ba.SecretName))
			if err != nil {
				return err
			}
			sec.Data[string(ba.UsernameKey)] = []byte(id)
			sec.Data[string(ba.PasswordKey)] = []byte(secret)
		}
		if cc := tr.ClientCertificate; cc != nil {
			if err := s.fillCertificate(p, rq, cc); err != nil {
				return err
			}
		}
		for _, params := range [][]authv1alpha1.Parameter{tr.Form, tr.JSON, tr.Headers} {
			for _, prm := range params {
				if prm.ValueFrom == nil {
					continue
				}
				ref := prm.ValueFrom.SecretKeyRef
				sec, err := s.secret(ns, string(ref.Name))
				if err != nil {
					return err
				}
				v, err := parameterValue(prm.Name, id, secret)
				if err != nil {
					return fmt.Errorf("sample %s/%s: %w", ns, id, err)
				}
				sec.Data[string(ref.Key)] = []byte(v)
			}
		}
	}
	return nil
}

func (s *Samples) fillCertificate(p Provider, rq requester, cc *authv1alpha1.ClientCertificate) error {
	id := rq.name
	sec, err := s.secret(rq.namespace, string(cc.SecretName))
	if err != nil {
		return err
	}
	if cc.PKCS12Key != nil {
		if cc.PassphraseKey == nil {
			return fmt.Errorf("sample %s/%s: a PKCS#12 bundle without passphraseKey is not supported by the sandbox", rq.namespace, rq.name)
		}
		p12, err := p.ClientFile(id, "p12")
		if err != nil {
			return err
		}
		sec.Data[string(*cc.PKCS12Key)] = p12
		sec.Data[string(*cc.PassphraseKey)] = []byte(s.Passphrase)
		return nil
	}
	if cc.PassphraseKey != nil {
		return fmt.Errorf("sample %s/%s: the sandbox writes unencrypted PEM keys; drop passphraseKey", rq.namespace, rq.name)
	}
	crt, err := p.ClientFile(id, "crt")
	if err != nil {
		return err
	}
	key, err := p.ClientFile(id, "key")
	if err != nil {
		return err
	}
	sec.Data[string(*cc.CertificateKey)] = crt
	sec.Data[string(*cc.PrivateKeyKey)] = key
	return nil
}

// parameterValue picks the client id or the secret for a form, JSON or
// header parameter read from a Secret, by its name (clientId, client_secret,
// apiKey, ...).
func parameterValue(name, id, secret string) (string, error) {
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "secret") || strings.Contains(n, "password"):
		return secret, nil
	case strings.Contains(n, "id") || strings.Contains(n, "user") || strings.Contains(n, "key"):
		return id, nil
	}
	return "", fmt.Errorf("parameter %q: cannot tell whether it is the client id or the secret", name)
}

// YAML renders the objects, in the order of Objects, as a multi-document
// manifest for kubectl apply.
func (s *Samples) YAML() ([]byte, error) {
	var out bytes.Buffer
	objs, gvks := s.ordered()
	for i, o := range objs {
		o.GetObjectKind().SetGroupVersionKind(gvks[i])
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes(), nil
}

// Apply creates the objects with c, namespaces first.
func (s *Samples) Apply(ctx context.Context, c client.Client) error {
	for _, o := range s.Objects() {
		err := c.Create(ctx, o)
		if _, isNS := o.(*corev1.Namespace); isNS && apierrors.IsAlreadyExists(err) {
			continue // the install's own namespace, say
		}
		if err != nil {
			return fmt.Errorf("creating %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// StaticJWT returns an HS256-signed JWT for subject expiring at exp, signed
// with a random key nobody keeps: tokenwarden only reads its exp claim.
func StaticJWT(subject string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	payload, _ := json.Marshal(map[string]any{
		"sub": subject,
		"iat": time.Now().Unix(),
		"exp": exp.Unix(),
		"jti": hex.EncodeToString(jti),
	})
	input := enc(header) + "." + enc(payload)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + enc(mac.Sum(nil))
}
