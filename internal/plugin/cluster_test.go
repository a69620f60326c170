package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// The suite shares one API server; each test works in its own namespace.
var (
	kubeconfig string
	k8s        client.Client
)

// now is the fake clock's time in every test: status times are set around
// it, so that "in 4m" is exact.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	if testing.Short() {
		return m.Run(), nil
	}
	env, cfg, err := testenv.Start()
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "tokenwarden-plugin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return 0, err
	}
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = authv1alpha1.AddToScheme(s)
	if k8s, err = client.New(cfg, client.Options{Scheme: s}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// writeKubeconfig writes a kubeconfig for cfg, so that the tests go through
// the same --kubeconfig flag as users do.
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

func needCluster(t *testing.T) {
	t.Helper()
	if k8s == nil {
		t.Skip("needs the envtest API server (not in -short mode)")
	}
}

// run executes the plugin with args against the suite's API server.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, clocktesting.NewFakePassiveClock(now))
	if kubeconfig != "" {
		args = append([]string{"--kubeconfig", kubeconfig}, args...)
	}
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "plugin-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// credOpt shapes a test APICredential.
type credOpt func(*authv1alpha1.APICredential)

func withURL(u string) credOpt {
	return func(c *authv1alpha1.APICredential) {
		c.Spec.TokenRequest = &authv1alpha1.TokenRequest{URL: u}
	}
}

func withStatic() credOpt {
	return func(c *authv1alpha1.APICredential) {
		c.Spec.TokenRequest = nil
		c.Spec.Static = &authv1alpha1.StaticToken{SecretName: "shop-app", TokenKey: "jwt"}
	}
}

func withProvider(kind, name string) credOpt {
	return func(c *authv1alpha1.APICredential) {
		c.Spec.TokenRequest = nil
		c.Spec.ProviderRef = &authv1alpha1.ProviderReference{Kind: kind, Name: name}
	}
}

func withLabel(k, v string) credOpt {
	return func(c *authv1alpha1.APICredential) {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[k] = v
	}
}

// withStatus sets the status written through the status subresource.
func withStatus(f func(*authv1alpha1.TokenStatus)) credOpt {
	return func(c *authv1alpha1.APICredential) { f(&c.Status.TokenStatus) }
}

func createCredential(t *testing.T, ns, name string, opts ...credOpt) *authv1alpha1.APICredential {
	t.Helper()
	c := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: authv1alpha1.APICredentialSpec{
			TokenRequest: &authv1alpha1.TokenRequest{URL: "https://api.example.com/token"},
			Target:       authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(name + "-token")},
		},
	}
	for _, o := range opts {
		o(c)
	}
	status := c.Status
	ctx := context.Background()
	if err := k8s.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if status.Conditions != nil {
		c.Status = status
		if err := k8s.Status().Update(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func ready(status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: authv1alpha1.ConditionReady, Status: status, Reason: reason, Message: "ready " + reason, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}
}

func degraded(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: authv1alpha1.ConditionDegraded, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now.Add(-time.Minute))}
}

func at(d time.Duration) *metav1.Time { return ptr.To(metav1.NewTime(now.Add(d))) }

func healthy(st *authv1alpha1.TokenStatus) {
	st.Conditions = []metav1.Condition{ready(metav1.ConditionTrue, authv1alpha1.ReasonTokenValid), degraded(metav1.ConditionFalse, authv1alpha1.ReasonRefreshSucceeded, "ok")}
	st.Reason = authv1alpha1.ReasonTokenValid
	st.TokenExpiresAt = at(10 * time.Minute)
	st.LastRefreshTime = at(-2 * time.Minute)
	st.LastAttemptTime = at(-2 * time.Minute)
	st.NextRefreshTime = at(4 * time.Minute)
}

func staticNoExp(st *authv1alpha1.TokenStatus) {
	st.Conditions = []metav1.Condition{ready(metav1.ConditionTrue, authv1alpha1.ReasonTokenValid), degraded(metav1.ConditionFalse, authv1alpha1.ReasonRefreshSucceeded, "ok")}
	st.Reason = authv1alpha1.ReasonTokenValid
	st.LastRefreshTime = at(-time.Hour)
}

func rateLimited(st *authv1alpha1.TokenStatus) {
	st.Conditions = []metav1.Condition{ready(metav1.ConditionTrue, authv1alpha1.ReasonTokenValid),
		degraded(metav1.ConditionTrue, authv1alpha1.ReasonRateLimited, "api.example.com:443 is rate limiting (HTTP 429); retry in 1m30s")}
	st.Reason = authv1alpha1.ReasonRateLimited
	st.TokenExpiresAt = at(5 * time.Minute)
	st.LastRefreshTime = at(-5 * time.Minute)
	st.LastAttemptTime = at(-5 * time.Second)
	st.NextRefreshTime = at(90 * time.Second)
	st.ConsecutiveFailures = 1
}

// line finds the table row of ref.
func line(t *testing.T, out, ref string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == ref || (len(f) > 1 && f[1] == ref)) {
			return l
		}
	}
	t.Fatalf("no row for %s in:\n%s", ref, out)
	return ""
}

func TestStatusTable(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	createCredential(t, ns, "psp", withStatus(healthy))
	createCredential(t, ns, "psp-b", withStatus(rateLimited))
	createCredential(t, ns, "other-host", withURL("https://auth.example.org/token"), withStatus(healthy))
	createCredential(t, ns, "shop", withStatic(), withStatus(staticNoExp))
	createCredential(t, ns, "consumer", withProvider(authv1alpha1.KindTokenProvider, "bank"), withStatus(healthy))
	tp := &authv1alpha1.TokenProvider{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bank"},
		Spec:       authv1alpha1.TokenProviderSpec{TokenRequest: authv1alpha1.TokenRequest{URL: "https://api.example.com/other"}},
	}
	if err := k8s.Create(context.Background(), tp); err != nil {
		t.Fatal(err)
	}
	tp.Status.Consumers = 1
	healthy(&tp.Status.TokenStatus)
	if err := k8s.Status().Update(context.Background(), tp); err != nil {
		t.Fatal(err)
	}

	out, _, err := run(t, "status", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status -n %s:\n%s", ns, out)
	for ref, want := range map[string][]string{
		// The host of psp-b is cooling down after a 429: psp asks the same
		// host, so it waits too; other-host does not.
		"apicredential/psp":        {"True", "TokenValid", "in 10m", "in 4m", "429, in 90s", "api.example.com:443"},
		"apicredential/psp-b":      {"True", "RateLimited", "in 5m", "in 90s", "429, in 90s"},
		"apicredential/other-host": {"TokenValid", "auth.example.org:443"},
		"apicredential/shop":       {"True", "never (no exp)", "never (static)", "static"},
		"apicredential/consumer":   {"tokenprovider/bank", "429, in 90s"},
		"tokenprovider/bank":       {"True", "1 consumer(s)", "429, in 90s"},
	} {
		row := line(t, out, ref)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("row %q lacks %q", row, w)
			}
		}
	}
	if row := line(t, out, "apicredential/other-host"); strings.Contains(row, "429") {
		t.Errorf("another host shows a cool-down: %q", row)
	}
	if !strings.HasPrefix(out, "NAME ") {
		t.Errorf("header without -A should start with NAME:\n%s", out)
	}

	// -A adds the namespace column; -l filters.
	createCredential(t, ns, "labelled", withLabel("team", "checkout"), withStatus(healthy))
	out, _, err = run(t, "status", "-A", "-l", "team=checkout")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "NAMESPACE ") || !strings.Contains(out, ns) || !strings.Contains(out, "apicredential/labelled") || strings.Contains(out, "apicredential/psp ") {
		t.Errorf("status -A -l team=checkout:\n%s", out)
	}
}

func TestStatusDetail(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	createCredential(t, ns, "psp-b", withStatus(rateLimited))
	out, _, err := run(t, "status", "psp-b", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status psp-b -n %s:\n%s", ns, out)
	for _, w := range []string{
		"APICredential " + ns + "/psp-b",
		"Degraded:", "True, RateLimited: api.example.com:443 is rate limiting (HTTP 429); retry in 1m30s",
		"Next refresh:", now.Add(90*time.Second).Format(time.RFC3339) + " (in 90s)",
		"Consecutive failures:",
		"Host cool-down:", "429 until",
		"Token Secret:", "psp-b-token",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("detail lacks %q:\n%s", w, out)
		}
	}
	if _, _, err := run(t, "status", "missing", "-n", ns); err == nil || !strings.Contains(err.Error(), `APICredential "missing" not found in namespace `+ns) {
		t.Errorf("missing credential: %v", err)
	}
}

func TestRenew(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	createCredential(t, ns, "psp", withStatus(healthy))
	createCredential(t, ns, "psp-b", withStatus(rateLimited))
	createCredential(t, ns, "shop", withStatic())
	createCredential(t, ns, "consumer", withProvider(authv1alpha1.KindClusterTokenProvider, "send"))

	out, _, err := run(t, "renew", "psp", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	want := now.Format(time.RFC3339Nano)
	if got := annotation(t, ns, "psp"); got != want {
		t.Errorf("annotation = %q, want %q", got, want)
	}
	if !strings.Contains(out, "refresh requested") || !strings.Contains(out, "at most one request per 10s") {
		t.Errorf("renew output:\n%s", out)
	}

	// --all annotates what can be refreshed, says why the rest is skipped,
	// and says what holds psp-b back.
	out, _, err = run(t, "renew", "--all", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	if got := annotation(t, ns, "psp-b"); got != want {
		t.Errorf("psp-b annotation = %q", got)
	}
	for _, name := range []string{"shop", "consumer"} {
		if got := annotation(t, ns, name); got != "" {
			t.Errorf("%s was annotated (%q), but the annotation has no effect on it", name, got)
		}
	}
	for _, w := range []string{
		"apicredential/shop in " + ns + " skipped: a static token",
		"apicredential/consumer in " + ns + " skipped: it takes its token from clustertokenprovider/send",
		"cooling down after a 429 until " + now.Add(90*time.Second).Format(time.RFC3339),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("renew --all lacks %q:\n%s", w, out)
		}
	}
	// The status table shows the request as pending until the operator
	// echoes it.
	out, _, _ = run(t, "status", "-n", ns)
	if row := line(t, out, "apicredential/psp"); !strings.Contains(row, "(renew requested)") {
		t.Errorf("pending renew not shown: %q", row)
	}

	for _, args := range [][]string{
		{"renew"},
		{"renew", "psp", "--all"},
		{"renew", "--all", "-l", "a=b"},
		{"renew", "psp", "-A"},
		{"renew", "nokind/psp"},
	} {
		if _, _, err := run(t, append(args, "-n", ns)...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func annotation(t *testing.T, ns, name string) string {
	t.Helper()
	var c authv1alpha1.APICredential
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
		t.Fatal(err)
	}
	return c.Annotations[authv1alpha1.AnnotationRefreshRequestedAt]
}

// testJWT builds a JWS with a random 256-byte signature.
func testJWT(t *testing.T, claims map[string]any) (token, signature string) {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	sig := make([]byte, 256)
	if _, err := rand.Read(sig); err != nil {
		t.Fatal(err)
	}
	signature = base64.RawURLEncoding.EncodeToString(sig)
	return enc(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "key-2026"}) + "." + enc(claims) + "." + signature, signature
}

func writeTarget(t *testing.T, ns, name, token string) {
	t.Helper()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{
			authv1alpha1.AnnotationExpiresAt: now.Add(10 * time.Minute).Format(time.RFC3339),
			authv1alpha1.AnnotationIssuedAt:  now.Add(-2 * time.Minute).Format(time.RFC3339),
		}},
		Data: map[string][]byte{"token": []byte(token), "authorization": []byte("Bearer " + token)},
	}
	if err := k8s.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
}

// assertNoLeak fails when out holds any substring of at least 16 bytes of
// a secret.
func assertNoLeak(t *testing.T, out string, secrets map[string]string) {
	t.Helper()
	const n = 16
	for what, s := range secrets {
		for i := 0; i+n <= len(s); i++ {
			if strings.Contains(out, s[i:i+n]) {
				t.Fatalf("output holds %q, part of the %s:\n%s", s[i:i+n], what, out)
			}
		}
	}
}

func TestInspectJWT(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	createCredential(t, ns, "psp", withStatus(healthy))
	token, sig := testJWT(t, map[string]any{
		"sub": "merchant-42", "aud": "payments", "scope": "payments:write",
		"iat": now.Add(-2 * time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	writeTarget(t, ns, "psp-token", token)

	out, _, err := run(t, "inspect", "psp", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inspect psp -n %s:\n%s", ns, out)
	for _, w := range []string{
		"Format: JWT", `"alg": "RS256"`, `"kid": "key-2026"`, `"sub": "merchant-42"`, `"scope": "payments:write"`,
		now.Add(-2*time.Minute).Format(time.RFC3339) + " (2m ago)",
		now.Add(10*time.Minute).Format(time.RFC3339) + " (in 10m)",
		"signature (342 bytes) not shown",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect lacks %q:\n%s", w, out)
		}
	}
	assertNoLeak(t, out, map[string]string{"token": token, "signature": sig})
}

func TestInspectStaticAndOpaque(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	// A static token with its secret prefix: neither the secret nor the
	// signature is shown.
	createCredential(t, ns, "shop", withStatic())
	jwt, sig := testJWT(t, map[string]any{"sub": "shop", "exp": now.Add(30 * 24 * time.Hour).Unix()})
	secret := "s3cr3t-app-secret-value-0123456789"
	writeTarget(t, ns, "shop-token", secret+"."+jwt)
	out, _, err := run(t, "inspect", "apicred/shop", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"sub": "shop"`) || !strings.Contains(out, "the secret (35 bytes with its dot) is not shown") {
		t.Errorf("static inspect:\n%s", out)
	}
	assertNoLeak(t, out, map[string]string{"token": secret + "." + jwt, "secret": secret, "signature": sig})

	// An opaque token: length and the expiry from status only.
	createCredential(t, ns, "opaque", withStatus(healthy))
	opaque := "0pAqUe-t0ken-v4lue-that-is-not-a-jwt-at-all"
	writeTarget(t, ns, "opaque-token", opaque)
	out, _, err = run(t, "inspect", "opaque", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"not a JWT", fmt.Sprintf("%d bytes", len(opaque)), now.Add(10 * time.Minute).Format(time.RFC3339)} {
		if !strings.Contains(out, w) {
			t.Errorf("opaque inspect lacks %q:\n%s", w, out)
		}
	}
	assertNoLeak(t, out, map[string]string{"token": opaque})

	// No target Secret yet.
	createCredential(t, ns, "fresh")
	if _, _, err := run(t, "inspect", "fresh", "-n", ns); err == nil || !strings.Contains(err.Error(), "no token has been written yet") {
		t.Errorf("missing Secret: %v", err)
	}
}

func TestInspectProviders(t *testing.T) {
	needCluster(t)
	ns := newNamespace(t)
	ctx := context.Background()
	tp := &authv1alpha1.TokenProvider{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bank"},
		Spec:       authv1alpha1.TokenProviderSpec{TokenRequest: authv1alpha1.TokenRequest{URL: "https://api.example.com/token"}},
	}
	ctp := &authv1alpha1.ClusterTokenProvider{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-send"},
		Spec:       authv1alpha1.ClusterTokenProviderSpec{TokenProviderSpec: authv1alpha1.TokenProviderSpec{TokenRequest: authv1alpha1.TokenRequest{URL: "https://send.example.com/auth"}}},
	}
	for _, o := range []client.Object{tp, ctp} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The provider's token Secret is "<name>-token": in its namespace for a
	// TokenProvider, in the cluster resource namespace for a
	// ClusterTokenProvider (here a test namespace given by the flag).
	bankJWT, bankSig := testJWT(t, map[string]any{"sub": "bank-client", "exp": now.Add(5 * time.Minute).Unix()})
	writeTarget(t, ns, "bank-token", bankJWT)
	clusterNS := newNamespace(t)
	sendJWT, sendSig := testJWT(t, map[string]any{"sub": "send-client", "exp": now.Add(5 * time.Minute).Unix()})
	writeTarget(t, clusterNS, ctp.Name+"-token", sendJWT)

	out, _, err := run(t, "inspect", "tp/bank", "-n", ns)
	if err != nil || !strings.Contains(out, `"sub": "bank-client"`) || !strings.Contains(out, "Secret bank-token in "+ns) {
		t.Errorf("inspect tp/bank: %v\n%s", err, out)
	}
	assertNoLeak(t, out, map[string]string{"token": bankJWT, "signature": bankSig})

	out, _, err = run(t, "inspect", "ctp/"+ctp.Name, "--cluster-resource-namespace", clusterNS)
	if err != nil || !strings.Contains(out, `"sub": "send-client"`) || !strings.Contains(out, "in "+clusterNS) {
		t.Errorf("inspect ctp: %v\n%s", err, out)
	}
	assertNoLeak(t, out, map[string]string{"token": sendJWT, "signature": sendSig})

	// status lists the ClusterTokenProvider with -A, and renew annotates it.
	out, _, err = run(t, "status", "-A")
	if err != nil {
		t.Fatal(err)
	}
	line(t, out, "clustertokenprovider/"+ctp.Name)
	if _, _, err := run(t, "renew", "ctp/"+ctp.Name); err != nil {
		t.Fatal(err)
	}
	var got authv1alpha1.ClusterTokenProvider
	if err := k8s.Get(ctx, client.ObjectKey{Name: ctp.Name}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations[authv1alpha1.AnnotationRefreshRequestedAt] != now.Format(time.RFC3339Nano) {
		t.Errorf("ClusterTokenProvider annotations: %v", got.Annotations)
	}
}
