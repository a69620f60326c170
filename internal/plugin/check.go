package plugin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/controller"
	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// CheckOptions are the options of `check`.
type CheckOptions struct {
	*Env
	Files []string
	// SecretFiles are [NAME=]PATH: a YAML Secret (or ConfigMap) manifest,
	// used for references to NAME (default: the manifest's own name).
	SecretFiles          []string
	AllowedHosts         []string
	AllowPrivateNetworks bool
	// Resolve looks the token host up, to apply the address policy to its
	// addresses; without it check uses no network at all.
	Resolve bool
}

// NewCmdCheck returns the check command.
func NewCmdCheck(env *Env) *cobra.Command {
	o := &CheckOptions{Env: env}
	cmd := &cobra.Command{
		Use:   "check -f FILE [--secret-file [NAME=]PATH ...]",
		Short: "Check a credential or provider manifest offline, as the API server and the operator would",
		Long: `Check APICredential, TokenProvider and ClusterTokenProvider manifests before
applying them, without a cluster and without any token request:

  1. As the API server would: the CRD's OpenAPI schema and CEL rules
     (the CRDs are built into the plugin), defaults applied, unknown fields
     refused as kubectl apply refuses them.
  2. As the operator would, with the Secrets given by --secret-file (or
     found in the same file): every referenced Secret and key exists; the
     client certificate decodes with its passphrase, matches its key, and is
     valid now (its expiry and chain are shown); a static token is usable
     and when it expires; the caBundle holds certificates; the token request
     passes the operator's own checks (method and body, headers, Basic
     username, the URL, --allowed-hosts), spec.target.template renders,
     and the private-network policy
     allows its host (an IP address offline; a name with --resolve, which
     looks it up but connects nowhere).

Secret values are never printed. A --secret-file is a YAML Secret manifest
(data or stringData), as kubectl create secret ... --dry-run=client -o yaml
writes it; NAME= uses it for references to NAME whatever its own name.

The exit status is 1 when a problem was found.`,
		Example: `  # A manifest and the Secret holding its PKCS#12 file and passphrase
  kubectl create secret generic bank-m2m-cert --from-file=certificate.p12=bank.p12 \
    --from-literal=passphrase="$PASS" --dry-run=client -o yaml > /tmp/bank-m2m-cert.yaml
  kubectl tokenwarden check -f bank.yaml --secret-file /tmp/bank-m2m-cert.yaml

  # The Secret file is named differently from the reference
  kubectl tokenwarden check -f psp.yaml --secret-file psp-api-key=./secrets/staging-key.yaml

  # With the operator's host allowlist
  kubectl tokenwarden check -f psp.yaml --allowed-hosts 'api.example.com,*.example.org'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.Files) == 0 {
				return errors.New("give the manifest with -f FILE (- for standard input)")
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringArrayVarP(&o.Files, "filename", "f", nil, "Manifest holding APICredentials, TokenProviders or ClusterTokenProviders (and optionally their Secrets); - reads standard input. Repeatable.")
	cmd.Flags().StringArrayVar(&o.SecretFiles, "secret-file", nil, "[NAME=]PATH of a YAML Secret or ConfigMap manifest the spec references. Repeatable.")
	cmd.Flags().StringSliceVar(&o.AllowedHosts, "allowed-hosts", nil, "The operator's --allowed-hosts, to check the URL against.")
	cmd.Flags().BoolVar(&o.AllowPrivateNetworks, "allow-private-networks", false, "The operator's --allow-private-networks.")
	cmd.Flags().BoolVar(&o.Resolve, "resolve", false, "Look the token host up (DNS only, no connection) and apply the private-network policy to its addresses.")
	return cmd
}

// ErrProblems is returned by check after a report that found problems: the
// report says what they are, the exit status only that there were some.
var ErrProblems = errors.New("check found problems")

// sources are the Secrets and ConfigMaps given, by name.
type sources struct {
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

// report collects the findings about one object.
type report struct {
	w        io.Writer
	problems int
}

func (r *report) ok(format string, args ...any) { fmt.Fprintf(r.w, "  ok     "+format+"\n", args...) }
func (r *report) warn(format string, args ...any) {
	fmt.Fprintf(r.w, "  warn   "+format+"\n", args...)
}
func (r *report) info(format string, args ...any) { fmt.Fprintf(r.w, "         "+format+"\n", args...) }
func (r *report) fail(format string, args ...any) {
	r.problems++
	fmt.Fprintf(r.w, "  ERROR  "+format+"\n", args...)
}

// Run checks every object of the files.
func (o *CheckOptions) Run(ctx context.Context) error {
	schemas, err := loadSchemas()
	if err != nil {
		return err
	}
	src := &sources{secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}}
	var objects []*unstructured.Unstructured
	for _, f := range o.Files {
		docs, err := o.readDocs(f)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if err := src.add("", d); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if d.GroupVersionKind().Group == authv1alpha1.GroupVersion.Group {
				objects = append(objects, d)
			}
		}
	}
	for _, sf := range o.SecretFiles {
		name, path, found := strings.Cut(sf, "=")
		if !found {
			name, path = "", sf
		}
		docs, err := o.readDocs(path)
		if err != nil {
			return err
		}
		added := 0
		for _, d := range docs {
			if d.GetKind() == "Secret" || d.GetKind() == "ConfigMap" {
				if err := src.add(name, d); err != nil {
					return fmt.Errorf("--secret-file %s: %w", path, err)
				}
				added++
			}
		}
		if added == 0 {
			return fmt.Errorf("--secret-file %s: no Secret or ConfigMap manifest in it", path)
		}
	}
	if len(objects) == 0 {
		return errors.New("no APICredential, TokenProvider or ClusterTokenProvider found in the files")
	}
	total := 0
	for _, obj := range objects {
		r := &report{w: o.Out}
		o.checkObject(ctx, r, schemas, src, obj)
		total += r.problems
	}
	if total > 0 {
		fmt.Fprintf(o.Out, "%d problem(s) found.\n", total)
		return ErrProblems
	}
	fmt.Fprintln(o.Out, "No problems found. No token was requested: the provider's answer is not checked.")
	return nil
}

// readDocs reads every YAML document of a file (- is standard input).
func (o *CheckOptions) readDocs(path string) ([]*unstructured.Unstructured, error) {
	var in io.Reader
	if path == "-" {
		in = o.In
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var out []*unstructured.Unstructured
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "List" {
			items, _ := m["items"].([]any)
			for _, i := range items {
				if im, ok := i.(map[string]any); ok {
					out = append(out, &unstructured.Unstructured{Object: im})
				}
			}
			continue
		}
		out = append(out, u)
	}
}

// add records a Secret or ConfigMap under name, or its own name.
func (s *sources) add(name string, u *unstructured.Unstructured) error {
	if u.GetAPIVersion() != "v1" {
		return nil
	}
	switch u.GetKind() {
	case "Secret":
		var sec corev1.Secret
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sec); err != nil {
			return fmt.Errorf("reading Secret %s: %w", u.GetName(), err)
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		// stringData is merged into data by the API server; do the same.
		for k, v := range sec.StringData {
			sec.Data[k] = []byte(v)
		}
		s.secrets[cmpOr(name, sec.Name)] = &sec
	case "ConfigMap":
		var cm corev1.ConfigMap
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cm); err != nil {
			return fmt.Errorf("reading ConfigMap %s: %w", u.GetName(), err)
		}
		s.configMaps[cmpOr(name, cm.Name)] = &cm
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// value reads one referenced key, reporting what is missing as the
// operator would (SourceSecretMissing). A Secret that was not given at all
// is a warning: the check cannot know whether it exists in the cluster.
func (s *sources) value(r *report, secret authv1alpha1.SecretName, key authv1alpha1.SecretKey, field string) ([]byte, bool) {
	sec, ok := s.secrets[string(secret)]
	if !ok {
		r.warn("%s: Secret %q not given (--secret-file): not checked", field, secret)
		return nil, false
	}
	v, ok := sec.Data[string(key)]
	if !ok {
		r.fail("%s: %s: Secret %q has no key %q", failure.SourceSecretMissing, field, secret, key)
		return nil, false
	}
	return v, true
}

func (o *CheckOptions) checkObject(ctx context.Context, r *report, schemas map[string]*schemaValidator, src *sources, obj *unstructured.Unstructured) {
	name := obj.GetName()
	if ns := obj.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	fmt.Fprintf(r.w, "%s %s\n", obj.GetKind(), name)
	sv, ok := schemas[obj.GetKind()]
	if !ok {
		r.fail("kind %q is not served by %s", obj.GetKind(), authv1alpha1.GroupVersion)
		return
	}
	if errs := sv.validate(ctx, obj); len(errs) > 0 {
		for _, e := range errs {
			// The value is left out: it may be long, and the API server's
			// message already says what is wrong with it.
			r.fail("API server would refuse it: %s: %s", fieldOf(e.Field), errorText(e.Type.String(), e.Detail))
		}
		return
	}
	r.ok("accepted by the CRD schema and its CEL rules (%s)", authv1alpha1.GroupVersion)

	switch obj.GetKind() {
	case "APICredential":
		var c authv1alpha1.APICredential
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &c); err != nil {
			r.fail("cannot decode: %v", err)
			return
		}
		switch {
		case c.Spec.TokenRequest != nil:
			o.checkTokenRequest(ctx, r, src, c.Spec.TokenRequest)
		case c.Spec.Static != nil:
			o.checkStatic(r, src, c.Spec.Static)
		case c.Spec.ProviderRef != nil:
			r.info("takes its token from %s %q: the provider's spec is checked where it is defined", c.Spec.ProviderRef.Kind, c.Spec.ProviderRef.Name)
		}
		if len(c.Spec.Target.Template) > 0 {
			if err := controller.CheckTemplates(&c.Spec.Target); err != nil {
				r.fail("%s: %v", failure.ReasonOf(err), err)
			} else {
				r.ok("spec.target.template renders")
			}
		}
	case authv1alpha1.KindTokenProvider:
		var p authv1alpha1.TokenProvider
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &p); err != nil {
			r.fail("cannot decode: %v", err)
			return
		}
		o.checkTokenRequest(ctx, r, src, &p.Spec.TokenRequest)
	case authv1alpha1.KindClusterTokenProvider:
		var p authv1alpha1.ClusterTokenProvider
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &p); err != nil {
			r.fail("cannot decode: %v", err)
			return
		}
		r.info("its Secrets are read from the operator's cluster resource namespace (%s by default)", DefaultClusterResourceNamespace)
		o.checkTokenRequest(ctx, r, src, &p.Spec.TokenRequest)
		if p.Spec.AllowedNamespaces == nil {
			r.warn("spec.allowedNamespaces is not set: no namespace may consume this provider")
		}
	}
}

func fieldOf(f string) string {
	if f == "" || f == "<nil>" {
		return "object"
	}
	return f
}

func errorText(typ, detail string) string {
	if detail == "" {
		return typ
	}
	return typ + ": " + detail
}

// checkTokenRequest runs the operator's own checks of a token request,
// with the values from the given Secrets.
func (o *CheckOptions) checkTokenRequest(ctx context.Context, r *report, src *sources, tr *authv1alpha1.TokenRequest) {
	now := o.now()
	host, err := auth.HostOf(tr.URL)
	if err != nil {
		r.fail("%s: spec.tokenRequest.url: %v", failure.InvalidSpec, err)
		return
	}
	req := auth.Request{URL: tr.URL, Method: string(tr.Method)}
	if tr.BasicAuth != nil {
		b := tr.BasicAuth
		user, okU := src.value(r, b.SecretName, b.UsernameKey, "spec.tokenRequest.basicAuth.usernameKey")
		pass, okP := src.value(r, b.SecretName, b.PasswordKey, "spec.tokenRequest.basicAuth.passwordKey")
		req.Basic = &auth.BasicCredentials{Username: placeholder(user, okU), Password: placeholder(pass, okP)}
	}
	req.Form = parameters(r, src, tr.Form, "spec.tokenRequest.form")
	req.JSON = parameters(r, src, tr.JSON, "spec.tokenRequest.json")
	req.Headers = parameters(r, src, tr.Headers, "spec.tokenRequest.headers")
	tc := auth.NewClient(auth.Options{AllowedHosts: o.AllowedHosts, AllowPrivateNetworks: o.AllowPrivateNetworks})
	if err := tc.Check(req); err != nil {
		r.fail("%s: %v", failure.InvalidSpec, err)
	} else {
		r.ok("token request passes the operator's checks (method and body, headers, Basic username, URL, allowed hosts); host %s", host)
	}
	o.addressPolicy(ctx, r, tr.URL, host)
	if ca := tr.CABundle; ca != nil {
		o.checkCABundle(r, src, ca)
	}
	if cc := tr.ClientCertificate; cc != nil {
		o.checkClientCertificate(r, src, cc, now)
	}
}

// placeholder stands in for a value that was not given, so that the
// remaining checks still run.
func placeholder(v []byte, ok bool) string {
	if !ok {
		return "placeholder"
	}
	return string(v)
}

func parameters(r *report, src *sources, params []authv1alpha1.Parameter, field string) []auth.Field {
	var out []auth.Field
	for i, p := range params {
		switch {
		case p.Value != nil:
			out = append(out, auth.Field{Name: p.Name, Value: *p.Value})
		case p.ValueFrom != nil:
			ref := p.ValueFrom.SecretKeyRef
			v, ok := src.value(r, ref.Name, ref.Key, fmt.Sprintf("%s[%d].valueFrom", field, i))
			out = append(out, auth.Field{Name: p.Name, Value: placeholder(v, ok)})
		}
	}
	return out
}

// addressPolicy applies the operator's private-network policy to the URL:
// offline for an IP literal, after a DNS lookup with --resolve for a name.
func (o *CheckOptions) addressPolicy(ctx context.Context, r *report, rawURL, host string) {
	name, _, _ := net.SplitHostPort(host)
	var ips []netip.Addr
	if _, err := netip.ParseAddr(name); err != nil {
		if !o.Resolve {
			r.info("address policy: %s is not looked up (--resolve does); the operator refuses it at dial time if it resolves only to private, loopback, link-local or other non-public addresses%s",
				name, map[bool]string{true: " (off here: --allow-private-networks)", false: ", unless --allow-private-networks"}[o.AllowPrivateNetworks])
			return
		}
		if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", name); err != nil {
			r.warn("address policy: looking up %s failed, not checked: %v", name, err)
			return
		}
	}
	if err := auth.CheckAddresses(rawURL, ips, o.AllowPrivateNetworks); err != nil {
		r.fail("%s: spec.tokenRequest.url: %v", failure.InvalidSpec, err)
		return
	}
	if len(ips) > 0 {
		r.ok("address policy: %s resolves to %v, which the operator may dial", name, ips)
	} else {
		r.ok("address policy: %s may be dialed", name)
	}
}

func (o *CheckOptions) checkCABundle(r *report, src *sources, ca *authv1alpha1.CABundle) {
	var pem []byte
	if ca.SecretName != nil {
		v, ok := src.value(r, *ca.SecretName, ca.Key, "spec.tokenRequest.caBundle")
		if !ok {
			return
		}
		pem = v
	} else {
		cm, ok := src.configMaps[*ca.ConfigMapName]
		if !ok {
			r.warn("spec.tokenRequest.caBundle: ConfigMap %q not given (--secret-file): not checked", *ca.ConfigMapName)
			return
		}
		if v, ok := cm.Data[string(ca.Key)]; ok {
			pem = []byte(v)
		} else if v, ok := cm.BinaryData[string(ca.Key)]; ok {
			pem = v
		} else {
			r.fail("%s: spec.tokenRequest.caBundle: ConfigMap %q has no key %q", failure.SourceSecretMissing, *ca.ConfigMapName, ca.Key)
			return
		}
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		r.fail("%s: spec.tokenRequest.caBundle: key %q holds no PEM certificate", failure.InvalidSpec, ca.Key)
		return
	}
	r.ok("spec.tokenRequest.caBundle holds PEM certificates")
}

func (o *CheckOptions) checkClientCertificate(r *report, src *sources, cc *authv1alpha1.ClientCertificate, now time.Time) {
	const field = "spec.tokenRequest.clientCertificate"
	var cs auth.CertificateSource
	var ok bool
	switch {
	case cc.PKCS12Key != nil:
		if cs.PKCS12, ok = src.value(r, cc.SecretName, *cc.PKCS12Key, field+".pkcs12Key"); !ok {
			return
		}
	case cc.CertificateKey != nil && cc.PrivateKeyKey != nil:
		if cs.CertificatePEM, ok = src.value(r, cc.SecretName, *cc.CertificateKey, field+".certificateKey"); !ok {
			return
		}
		if cs.PrivateKeyPEM, ok = src.value(r, cc.SecretName, *cc.PrivateKeyKey, field+".privateKeyKey"); !ok {
			return
		}
	}
	if cc.PassphraseKey != nil {
		if cs.Passphrase, ok = src.value(r, cc.SecretName, *cc.PassphraseKey, field+".passphraseKey"); !ok {
			return
		}
	}
	cert, notAfter, err := auth.LoadClientCertificate(cs, now)
	if err != nil {
		r.fail("%s: %s (Secret %q): %v", failure.InvalidClientCertificate, field, cc.SecretName, err)
		if !notAfter.IsZero() {
			r.info("the certificate's NotAfter is %s", stamp(notAfter, now))
		}
		return
	}
	leaf := cert.Leaf
	r.ok("client certificate decodes, matches its key and is valid now")
	r.info("subject: %s", leaf.Subject)
	r.info("issuer:  %s", leaf.Issuer)
	r.info("valid:   %s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), stamp(leaf.NotAfter, now))
	if left := leaf.NotAfter.Sub(now); left < controller.CertificateWarning {
		r.warn("the client certificate expires within %d days: the operator warns (ClientCertificateExpiringSoon)", int(controller.CertificateWarning.Hours()/24))
	}
	o.reportChain(r, leaf, cert.Certificate[1:], now)
}

// reportChain lists the certificates sent after the leaf and whether each
// one signed the one before it.
func (o *CheckOptions) reportChain(r *report, leaf *x509.Certificate, rest [][]byte, now time.Time) {
	if len(rest) == 0 {
		r.info("chain:   the leaf only; the provider must know its issuer")
		return
	}
	child := leaf
	for i, der := range rest {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			r.warn("chain[%d]: does not parse", i+1)
			return
		}
		r.info("chain[%d]: %s, valid to %s", i+1, c.Subject, stamp(c.NotAfter, now))
		if err := child.CheckSignatureFrom(c); err != nil {
			r.warn("chain[%d] did not sign the certificate before it: the chain is out of order or incomplete", i+1)
		}
		if now.After(c.NotAfter) {
			r.warn("chain[%d] has expired", i+1)
		}
		child = c
	}
}

func (o *CheckOptions) checkStatic(r *report, src *sources, st *authv1alpha1.StaticToken) {
	now := o.now()
	jwt, ok := src.value(r, st.SecretName, st.TokenKey, "spec.static.tokenKey")
	if !ok {
		return
	}
	var secret []byte
	if st.SecretKey != nil {
		if secret, ok = src.value(r, st.SecretName, *st.SecretKey, "spec.static.secretKey"); !ok {
			return
		}
	}
	_, exp, hasExp, err := auth.ComposeStatic(string(jwt), string(secret))
	if err != nil {
		r.fail("%s: spec.static (Secret %q): %v", failure.InvalidCredentials, st.SecretName, err)
		return
	}
	switch {
	case !hasExp:
		r.ok("static token is usable; it has no exp claim, so it is not tracked")
	case !exp.After(now):
		r.fail("%s: the static token expired %s", authv1alpha1.ReasonTokenExpired, stamp(exp, now))
	default:
		r.ok("static token is usable; it expires %s", stamp(exp, now))
		if st.WarnBefore != nil && exp.Sub(now) < st.WarnBefore.Duration {
			r.warn("it expires within spec.static.warnBefore (%s): Degraded=True, %s", st.WarnBefore.Duration, authv1alpha1.ReasonTokenExpiringSoon)
		}
	}
}
