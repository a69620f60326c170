//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/demo"
)

const (
	// The operator's namespace and names, as config/default prefixes them.
	operatorNamespace = "tokenwarden-system"
	serviceAccount    = "tokenwarden-controller-manager"
	leaseName         = "tokenwarden.auth.tokenwarden.io"
	samplesNamespace  = "payments"

	// Sandbox token lifetime: short, so that several refreshes fit into a
	// few minutes. With the default refreshBefore and the 10 s floor a
	// 20 s token is replaced about every 10 s.
	tokenLifetime = 20 * time.Second

	// The 429 check runs against a second sandbox process that allows one
	// token request per minute and then answers 429 with Retry-After: 5.
	throttledName   = "psp-throttled"
	throttledTarget = "psp-throttled-token"

	// The restart check needs a credential whose refresh is far away: with
	// 20 s tokens every refresh sits on the 10 s floor, so a needless call
	// after a restart would look like a scheduled one. psp-long gets 10 min
	// tokens from a third sandbox process: no call is due during the test.
	longName     = "psp-long"
	longTarget   = "psp-long-token"
	longLifetime = 10 * time.Minute
)

// operator is the running setup of TestOperator.
type operator struct {
	t           *testing.T
	dir         string
	k           kubectl // the admin, for checks
	cp          *demo.ControlPlane
	samples     *demo.Samples
	sb          *demo.Sandbox // serves the four samples
	throttled   *demo.Sandbox // serves psp-throttled
	long        *demo.Sandbox // serves psp-long
	mgr         *demo.Process
	mgrBin      string
	mgrLog      string
	mgrConfig   string // kubeconfig with the ServiceAccount's token
	metricsAddr string
	probeAddr   string
	leaks       []string // values that must never appear in the manager's log
}

// TestOperator is the end-to-end suite: the built manager, authenticated as
// its ServiceAccount with the shipped RBAC, keeps the four samples' tokens
// fresh from the sandbox provider, survives a restart without extra
// provider calls, rides out a 429 burst and a wrong password, and owns the
// Secrets it writes.
func TestOperator(t *testing.T) {
	log.SetLogger(logr.Discard())
	o := &operator{t: t, dir: t.TempDir(), mgrBin: binary(t, "TOKENWARDEN_MANAGER", "manager")}
	sandboxBin := binary(t, "TOKENWARDEN_SANDBOX", "sandbox")
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is needed on PATH: %v", err)
	}

	start := time.Now()
	// With owner-reference permissions enforced, as some distributions do:
	// a blocking owner reference on a target Secret needs update rights on
	// the owner's finalizers, which the shipped RBAC must grant.
	cp, err := demo.StartControlPlane(demo.ControlPlaneOptions{
		Dir:              filepath.Join(o.dir, "control-plane"),
		AdmissionPlugins: []string{"OwnerReferencesPermissionEnforcement"},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.cp = cp
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	t.Logf("control plane up in %s (binaries from %s)", time.Since(start).Round(time.Millisecond), cp.Assets)
	o.k = kubectl{t: t, kubeconfig: cp.AdminKubeconfig}
	t.Cleanup(func() {
		if t.Failed() && o.mgrLog != "" {
			t.Logf("manager log (last lines):\n%s", demo.LastLines(o.mgrLog, 60))
		}
	})

	o.install()
	o.startSandboxes(sandboxBin)
	o.startManager()
	t.Cleanup(o.stopManager)
	o.applySamples()
	t.Logf("setup done in %s", time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"Ready", o.testReady},
		{"Metrics", o.testMetrics},
		{"RateLimited", o.testRateLimited},
		{"Refresh", o.testRefresh},
		{"Restart", o.testRestart},
		{"WrongPassword", o.testWrongPassword},
		{"Delete", o.testDelete},
		{"RateLimitedRecovers", o.testRateLimitedRecovers},
	}
	for _, s := range steps {
		begin := time.Now()
		ok := t.Run(s.name, s.f)
		t.Logf("%s: %s", s.name, time.Since(begin).Round(time.Millisecond))
		if !ok && s.name == "Ready" {
			return
		}
	}
	o.checkManagerLog()
}

// install applies the CRD and the RBAC as shipped. The CRD goes in with
// `kubectl apply -k config/crd` (what `make install` does). The RBAC is
// taken from `kubectl kustomize config/default` (what `make deploy`
// applies), so that config/default's namespace and namePrefix rewrite the
// names and the ServiceAccount subjects exactly as in a real install; of
// its output only the Deployment and the metrics Service are dropped (there
// is no kubelet to run a Pod: the manager runs as a process instead) and the
// CRD, already applied. Any other kind fails the test, so that a new
// manifest in config/default is a conscious decision here too.
func (o *operator) install() {
	t := o.t
	o.k.run("apply", "-k", filepath.Join(root, "config", "crd"))
	o.k.run("wait", "--for=condition=Established", "--timeout=60s", "crd/apicredentials.auth.tokenwarden.io")

	rendered := o.k.run("kustomize", filepath.Join(root, "config", "default"))
	keep := map[string]bool{"Namespace": true, "ServiceAccount": true, "Role": true, "RoleBinding": true, "ClusterRole": true, "ClusterRoleBinding": true}
	drop := map[string]bool{"Deployment": true, "Service": true, "CustomResourceDefinition": true}
	var manifest bytes.Buffer
	var kept []string
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rendered)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		switch {
		case head.Kind == "":
			continue
		case keep[head.Kind]:
			manifest.WriteString("---\n")
			manifest.Write(doc)
			kept = append(kept, head.Kind+"/"+head.Metadata.Name)
		case drop[head.Kind]:
		default:
			t.Fatalf("config/default renders a %s (%s) that the e2e suite neither applies nor knowingly skips", head.Kind, head.Metadata.Name)
		}
	}
	o.k.apply(manifest.Bytes())
	t.Logf("applied from config/default: %s", strings.Join(kept, ", "))

	// The TokenRequest API, as `kubectl create token` uses it: the token a
	// Pod of the Deployment would have mounted.
	token := strings.TrimSpace(o.k.run("create", "token", serviceAccount, "-n", operatorNamespace, "--duration=2h"))
	o.mgrConfig = filepath.Join(o.dir, "manager.kubeconfig")
	if err := demo.WriteTokenKubeconfig(o.mgrConfig, o.cp.Config, serviceAccount, token); err != nil {
		t.Fatal(err)
	}
	// The token is the ServiceAccount's and nothing more.
	who := kubectl{t: t, kubeconfig: o.mgrConfig}
	if out, err := who.try(nil, "auth", "can-i", "list", "secrets", "--all-namespaces"); err != nil || strings.TrimSpace(out) != "yes" {
		t.Fatalf("the ServiceAccount cannot list Secrets: %q %v", out, err)
	}
	if out, _ := who.try(nil, "auth", "can-i", "delete", "secrets", "-n", samplesNamespace); strings.TrimSpace(out) != "no" {
		t.Fatalf("the ServiceAccount may delete Secrets (%q): the shipped RBAC is wider than documented", out)
	}
}

// startSamplesSandbox starts the sandbox provider with clients, issuing
// tokens of lifetime, stops it at the end of the test, and points the
// samples at it.
func (o *operator) startSamplesSandbox(bin string, clients map[string]string, lifetime time.Duration) {
	t := o.t
	var err error
	o.sb, err = demo.StartSandbox(demo.SandboxOptions{
		Binary:     bin,
		Dir:        filepath.Join(o.dir, "sandbox"),
		Clients:    clients,
		Passphrase: o.samples.Passphrase,
		Lifetime:   lifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.sb.Stop(5 * time.Second); err != nil {
			t.Errorf("sandbox: %v", err)
		}
	})
	if err := o.samples.PointAt(o.sb); err != nil {
		t.Fatal(err)
	}
}

func (o *operator) startSandboxes(bin string) {
	t := o.t
	samples, err := demo.LoadSamples(filepath.Join(root, "config", "samples"))
	if err != nil {
		t.Fatal(err)
	}
	o.samples = samples
	o.startSamplesSandbox(bin, samples.Clients, tokenLifetime)
	o.leaks = append(o.leaks, samples.SecretValues()...)

	o.throttled = o.extraSandbox(bin, throttledName, tokenLifetime, "--throttle-per-minute=1", "--retry-after=5")
	o.long = o.extraSandbox(bin, longName, longLifetime)
	t.Logf("sandbox %s (pid %d, %s tokens), throttled sandbox %s (pid %d), long-lived sandbox %s (pid %d, %s tokens)",
		o.sb.URL, o.sb.Pid(), tokenLifetime, o.throttled.URL, o.throttled.Pid(), o.long.URL, o.long.Pid(), longLifetime)
}

// extraSandbox starts another sandbox process with one client, name, that
// has psp's secret.
func (o *operator) extraSandbox(bin, name string, lifetime time.Duration, args ...string) *demo.Sandbox {
	t := o.t
	sb, err := demo.StartSandbox(demo.SandboxOptions{
		Binary:     bin,
		Dir:        filepath.Join(o.dir, "sandbox-"+name),
		Clients:    map[string]string{name: o.samples.Clients["psp"]},
		Passphrase: o.samples.Passphrase,
		Lifetime:   lifetime,
		ExtraArgs:  args,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Stop(5 * time.Second); err != nil {
			t.Errorf("sandbox %s: %v", name, err)
		}
	})
	return sb
}

func (o *operator) startManager() {
	t := o.t
	var err error
	if o.metricsAddr == "" {
		if o.metricsAddr, err = demo.FreeAddr(); err != nil {
			t.Fatal(err)
		}
		if o.probeAddr, err = demo.FreeAddr(); err != nil {
			t.Fatal(err)
		}
		o.mgrLog = filepath.Join(o.dir, "manager.log")
	}
	o.mgr, err = demo.StartManager(demo.ManagerOptions{
		Binary:     o.mgrBin,
		Kubeconfig: o.mgrConfig,
		LogPath:    o.mgrLog,
		Args: []string{
			"--leader-elect",
			"--leader-election-namespace=" + operatorNamespace,
			"--allow-private-networks",
			"--metrics-bind-address=" + o.metricsAddr,
			"--health-probe-bind-address=" + o.probeAddr,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, 200*time.Millisecond, func() string {
		if exited, err := o.mgr.Exited(); exited {
			t.Fatalf("manager exited: %v\n%s", err, demo.LastLines(o.mgrLog, 30))
		}
		resp, err := http.Get("http://" + o.probeAddr + "/readyz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "readyz: " + resp.Status
		}
		return ""
	})
}

func (o *operator) stopManager() {
	if o.mgr == nil {
		return
	}
	if err := o.mgr.Stop(15 * time.Second); err != nil {
		o.t.Errorf("manager: %v\n%s", err, demo.LastLines(o.mgrLog, 30))
	}
	o.mgr = nil
}

// applySamples applies config/samples, rewritten to the sandbox, and two
// copies of the flow-B sample pointed at the throttled and the long-lived
// sandboxes.
func (o *operator) applySamples() {
	t := o.t
	manifest, err := o.samples.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.dir, "samples.yaml")
	if err := os.WriteFile(path, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	o.k.run("apply", "-f", path)
	o.k.apply(o.pspCopy(throttledName, throttledTarget, o.throttled))
	o.k.apply(o.pspCopy(longName, longTarget, o.long))
}

// pspCopy renders the psp sample as APICredential name writing target,
// pointed at sb, with its own client and CA Secrets (Secrets first).
func (o *operator) pspCopy(name, target string, sb *demo.Sandbox) []byte {
	t := o.t
	var psp *authv1alpha1.APICredential
	for _, c := range o.samples.APICredentials() {
		if c.Name == "psp" {
			psp = c.DeepCopy()
		}
	}
	if psp == nil {
		t.Fatal("no psp sample")
	}
	ca := authv1alpha1.SecretName(name + "-ca")
	psp.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: samplesNamespace}
	psp.Spec.TokenRequest.URL = strings.Replace(psp.Spec.TokenRequest.URL, o.sb.URL, sb.URL, 1)
	psp.Spec.TokenRequest.CABundle = &authv1alpha1.CABundle{SecretName: &ca, Key: demo.CASecretKey}
	psp.Spec.TokenRequest.BasicAuth.SecretName = authv1alpha1.SecretName(name)
	psp.Spec.Target.SecretName = authv1alpha1.SecretName(target)
	psp.TypeMeta = metav1.TypeMeta{APIVersion: authv1alpha1.GroupVersion.String(), Kind: "APICredential"}
	objs := []any{
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: string(ca), Namespace: samplesNamespace},
			Data:       map[string][]byte{demo.CASecretKey: sb.CACertPEM()},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: samplesNamespace},
			StringData: map[string]string{
				string(psp.Spec.TokenRequest.BasicAuth.UsernameKey): name,
				string(psp.Spec.TokenRequest.BasicAuth.PasswordKey): o.samples.Clients["psp"],
			},
		},
		psp,
	}
	var buf bytes.Buffer
	for _, obj := range objs {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}

func (o *operator) credential(t *testing.T, name string) *authv1alpha1.APICredential {
	t.Helper()
	c := &authv1alpha1.APICredential{}
	kubectl{t: t, kubeconfig: o.k.kubeconfig}.mustGetJSON(c, "apicredential", name, "-n", samplesNamespace)
	return c
}

func (o *operator) secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	kubectl{t: t, kubeconfig: o.k.kubeconfig}.mustGetJSON(s, "secret", name, "-n", samplesNamespace)
	o.leaks = append(o.leaks, string(s.Data["token"]))
	return s
}

func (o *operator) wait(t *testing.T, timeout time.Duration, args ...string) {
	t.Helper()
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	k.run(append([]string{"wait", "-n", samplesNamespace, "--timeout=" + timeout.String()}, args...)...)
}

func expiresAt(t *testing.T, s *corev1.Secret) time.Time {
	t.Helper()
	v := string(s.Data["expires-at"])
	at, err := time.Parse(time.RFC3339, v)
	if err != nil {
		t.Fatalf("Secret %s: expires-at %q: %v", s.Name, v, err)
	}
	if ann := s.Annotations[authv1alpha1.AnnotationExpiresAt]; ann != v {
		t.Errorf("Secret %s: annotation %s=%q, key expires-at=%q", s.Name, authv1alpha1.AnnotationExpiresAt, ann, v)
	}
	return at
}

func cond(c *authv1alpha1.APICredential, typ string) metav1.Condition {
	if x := meta.FindStatusCondition(c.Status.Conditions, typ); x != nil {
		return *x
	}
	return metav1.Condition{Type: typ, Status: "<none>"}
}

// testReady: kubectl wait sees every sample Ready, and each target Secret
// holds the keys pods mount, owned by its APICredential.
func (o *operator) testReady(t *testing.T) {
	names := []string{}
	for _, c := range o.samples.Credentials() {
		names = append(names, "apicredential/"+c.Name)
	}
	o.wait(t, 90*time.Second, append([]string{"--for=condition=Ready"}, names...)...)
	out := kubectl{t: t, kubeconfig: o.k.kubeconfig}.run("get", "apicredentials", "-n", samplesNamespace)
	t.Logf("kubectl get apicredentials -n %s\n%s", samplesNamespace, out)

	for _, c := range o.samples.Credentials() {
		cred := o.credential(t, c.Name)
		s := o.secret(t, c.TargetSecret)
		token := string(s.Data["token"])
		if token == "" {
			t.Errorf("%s: Secret %s has no token", c.Name, s.Name)
			continue
		}
		if got := string(s.Data["authorization"]); got != "Bearer "+token {
			t.Errorf("%s: authorization %q is not \"Bearer \" + token", c.Name, got)
		}
		exp := expiresAt(t, s)
		left := time.Until(exp)
		if c.Flow == "D" {
			if left < demo.StaticTokenLifetime-time.Hour {
				t.Errorf("%s: static token expires in %s, want about %s", c.Name, left, demo.StaticTokenLifetime)
			}
		} else {
			if left <= 0 || left > tokenLifetime+time.Second {
				t.Errorf("%s: token expires in %s, want within (0, %s]", c.Name, left, tokenLifetime)
			}
			claims, err := jwtClaims(token)
			if err != nil || claims["sub"] != c.ClientID || !strings.HasPrefix(fmt.Sprint(claims["iss"]), o.sb.URL) {
				t.Errorf("%s: token is not the sandbox's for client %s: %v %v", c.Name, c.ClientID, claims, err)
			}
		}
		if s.Labels[authv1alpha1.LabelManagedBy] != authv1alpha1.ManagedByValue || s.Labels[authv1alpha1.LabelCredential] != c.Name {
			t.Errorf("%s: Secret labels %v", c.Name, s.Labels)
		}
		checkOwner(t, s, cred)
		// `kubectl wait --for=condition=Degraded=false` must work as soon as
		// a credential is Ready: Degraded is False, not absent.
		if d := cond(cred, authv1alpha1.ConditionDegraded); d.Status != metav1.ConditionFalse {
			t.Errorf("%s: Ready=True but Degraded %s/%s: %s", c.Name, d.Status, d.Reason, d.Message)
		}
	}

	// Events went through the shipped RBAC (events.k8s.io).
	var events eventsv1.EventList
	kubectl{t: t, kubeconfig: o.k.kubeconfig}.mustGetJSON(&events, "events.events.k8s.io", "-n", samplesNamespace)
	refreshed := map[string]bool{}
	for _, e := range events.Items {
		if e.Reason == "TokenRefreshed" {
			refreshed[e.Regarding.Name] = true
		}
	}
	for _, c := range o.samples.Credentials() {
		if !refreshed[c.Name] {
			t.Errorf("no TokenRefreshed event for %s (events: %d)", c.Name, len(events.Items))
		}
	}
}

// checkOwner: the target Secret is controlled by its APICredential, so the
// garbage collector deletes it with the APICredential.
func checkOwner(t *testing.T, s *corev1.Secret, cred *authv1alpha1.APICredential) {
	t.Helper()
	if len(s.OwnerReferences) != 1 {
		t.Errorf("Secret %s: ownerReferences %+v, want exactly its APICredential", s.Name, s.OwnerReferences)
		return
	}
	ref := s.OwnerReferences[0]
	if ref.APIVersion != authv1alpha1.GroupVersion.String() || ref.Kind != "APICredential" || ref.Name != cred.Name || ref.UID != cred.UID ||
		ref.Controller == nil || !*ref.Controller || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("Secret %s: ownerReference %+v, want controller APICredential %s uid %s with blockOwnerDeletion", s.Name, ref, cred.Name, cred.UID)
	}
}

// testMetrics: /metrics is served over HTTPS behind the shipped
// metrics-auth role (TokenReview and SubjectAccessReview): anonymous is
// refused, a ServiceAccount bound to the shipped metrics-reader role reads.
func (o *operator) testMetrics(t *testing.T) {
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	k.run("create", "serviceaccount", "scraper", "-n", operatorNamespace)
	k.run("create", "clusterrolebinding", "tokenwarden-scraper", "--clusterrole=tokenwarden-metrics-reader", "--serviceaccount="+operatorNamespace+":scraper")
	token := strings.TrimSpace(k.run("create", "token", "scraper", "-n", operatorNamespace))
	// The metrics endpoint has a self-signed certificate (no cert-manager
	// here); what is tested is the authentication and authorization.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // G402: the metrics certificate is self-signed; the test checks authn/authz, not TLS
	get := func(bearer string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+o.metricsAddr+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("anonymous GET /metrics: %d, want 401 or 403", code)
	}
	var code int
	var body string
	eventually(t, 10*time.Second, 500*time.Millisecond, func() string {
		if code, body = get(token); code != http.StatusOK {
			return fmt.Sprintf("GET /metrics as a metrics-reader: %d %s", code, strings.TrimSpace(body))
		}
		return ""
	})
	if !strings.Contains(body, `controller_runtime_reconcile_total{controller="apicredential"`) {
		t.Errorf("/metrics has no reconcile counter of the apicredential controller")
	}
}

// testRateLimited: the throttled sandbox allowed one request; the next
// refresh meets a 429 burst. The credential says so (Degraded=True,
// RateLimited) and keeps its token in the Secret.
func (o *operator) testRateLimited(t *testing.T) {
	o.wait(t, 30*time.Second, "--for=condition=Ready", "apicredential/"+throttledName)
	first := string(o.secret(t, throttledTarget).Data["token"])
	o.wait(t, 45*time.Second, "--for=jsonpath={.status.reason}=RateLimited", "apicredential/"+throttledName)
	cred := o.credential(t, throttledName)
	s := o.secret(t, throttledTarget)
	if d := cond(cred, authv1alpha1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != authv1alpha1.ReasonRateLimited {
		t.Errorf("Degraded %s/%s, want True/RateLimited", d.Status, d.Reason)
	}
	if got := string(s.Data["token"]); got != first || got == "" {
		t.Errorf("the token changed or vanished under a 429 (had %d bytes, now %d)", len(first), len(got))
	}
	exp := expiresAt(t, s)
	r := cond(cred, authv1alpha1.ConditionReady)
	if time.Now().Before(exp) && r.Status != metav1.ConditionTrue {
		t.Errorf("Ready %s/%s while the kept token is valid until %s", r.Status, r.Reason, exp)
	}
	t.Logf("%s: Degraded=True RateLimited, token kept (expires in %s), Ready=%s; message: %s", throttledName, time.Until(exp).Round(time.Second), r.Status, cond(cred, authv1alpha1.ConditionDegraded).Message)
	calls, err := o.throttled.Calls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if calls[throttledName] < 2 {
		t.Errorf("throttled sandbox saw %d calls, want the first plus at least one 429", calls[throttledName])
	}
	var events eventsv1.EventList
	kubectl{t: t, kubeconfig: o.k.kubeconfig}.mustGetJSON(&events, "events.events.k8s.io", "-n", samplesNamespace)
	found := false
	for _, e := range events.Items {
		found = found || (e.Regarding.Name == throttledName && e.Reason == "RateLimited" && e.Type == corev1.EventTypeWarning)
	}
	if !found {
		t.Errorf("no Warning event RateLimited for %s", throttledName)
	}
}

// refreshable lists the sample credentials that talk to the sandbox.
func (o *operator) refreshable() []demo.Credential {
	var out []demo.Credential
	for _, c := range o.samples.Credentials() {
		if c.Flow != "D" {
			out = append(out, c)
		}
	}
	return out
}

// testRefresh watches the target Secrets over several token lifetimes:
// each token is replaced, expires-at moves forward, and the Secret never
// holds an expired token. Every provider call must show up as a new token
// (no call is wasted, e.g. a second request right after a first whose
// token was already written), and no two tokens are issued closer than the
// 10 s floor.
func (o *operator) testRefresh(t *testing.T) {
	const watch = 50 * time.Second // 2.5 lifetimes
	type seen struct {
		tokens     int
		last       string
		lastExp    time.Time
		lastIssued time.Time
		minLeft    time.Duration
		minGap     time.Duration
	}
	state := map[string]*seen{}
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	var calls0 map[string]int
	poll := func() {
		var list corev1.SecretList
		k.mustGetJSON(&list, "secrets", "-n", samplesNamespace, "-l", authv1alpha1.LabelManagedBy+"="+authv1alpha1.ManagedByValue)
		now := time.Now()
		bySecret := map[string]*corev1.Secret{}
		for i := range list.Items {
			bySecret[list.Items[i].Name] = &list.Items[i]
		}
		for _, c := range o.refreshable() {
			s := bySecret[c.TargetSecret]
			if s == nil {
				t.Fatalf("%s: target Secret %s is gone", c.Name, c.TargetSecret)
			}
			tok := string(s.Data["token"])
			exp := expiresAt(t, s)
			issued, err := time.Parse(time.RFC3339, s.Annotations[authv1alpha1.AnnotationIssuedAt])
			if err != nil {
				t.Errorf("%s: annotation %s: %v", c.Name, authv1alpha1.AnnotationIssuedAt, err)
			}
			st := state[c.Name]
			if st == nil {
				st = &seen{minLeft: time.Hour, minGap: time.Hour}
				state[c.Name] = st
			}
			if left := exp.Sub(now); left < st.minLeft {
				st.minLeft = left
			}
			if !now.Before(exp) {
				t.Errorf("%s: Secret holds a token that expired at %s (now %s)", c.Name, exp.Format(time.RFC3339), now.Format(time.RFC3339))
			}
			if tok != st.last {
				if st.last != "" {
					if !exp.After(st.lastExp) {
						t.Errorf("%s: new token expires at %s, not after the previous %s", c.Name, exp, st.lastExp)
					}
					if gap := issued.Sub(st.lastIssued); gap < st.minGap {
						st.minGap = gap
					}
					st.tokens++
				}
				o.leaks = append(o.leaks, tok)
				st.last, st.lastExp, st.lastIssued = tok, exp, issued
			}
		}
	}
	poll() // the tokens in place; st.tokens counts replacements from here
	calls0 = o.allCalls(t)
	for end := time.Now().Add(watch); time.Now().Before(end); {
		time.Sleep(time.Second)
		poll()
	}
	calls1 := o.allCalls(t)
	poll() // a call counted in calls1 has written its token by now
	for _, c := range o.refreshable() {
		st := state[c.Name]
		n := calls1[c.ClientID] - calls0[c.ClientID]
		t.Logf("%s (flow %s): %d provider calls, %d new tokens in %s; least time left before expiry %s; shortest gap between tokens %s",
			c.Name, c.Flow, n, st.tokens, watch, st.minLeft.Round(100*time.Millisecond), st.minGap)
		if st.tokens < 3 {
			t.Errorf("%s: %d new tokens in %s with %s lifetimes, want at least 3", c.Name, st.tokens, watch, tokenLifetime)
		}
		if n > st.tokens {
			t.Errorf("%s: %d provider calls but only %d new tokens reached the Secret: %d calls were wasted", c.Name, n, st.tokens, n-st.tokens)
		}
		if st.minGap < 9*time.Second {
			t.Errorf("%s: two tokens issued %s apart, below the 10 s floor", c.Name, st.minGap)
		}
	}
}

// testRestart stops the manager (SIGTERM) and starts a new process. The new
// one must not ask the provider for tokens it already has. For ~15 s the
// sandboxes' call counts are read every 0.5 s and each call is held
// against the plan the old manager left in status.nextRefreshTime: psp-long
// (10 min tokens, nothing due) must see no call at all; a 20 s credential may
// see the refresh that was due, and after it nothing for the 10 s floor.
// Nor may the new manager rewrite a target Secret whose token is valid.
func (o *operator) testRestart(t *testing.T) {
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	o.wait(t, 30*time.Second, "--for=condition=Ready", "apicredential/"+longName)
	var lease coordinationv1.Lease
	k.mustGetJSON(&lease, "lease", leaseName, "-n", operatorNamespace)
	before := deref(lease.Spec.HolderIdentity)

	o.stopManager()
	calls := o.allCalls(t)
	due := o.plans(t) // the old manager's plan; never re-read from the new one
	versions := map[string]string{}
	for _, name := range []string{longTarget, "shop-authorization"} {
		versions[name] = o.secret(t, name).ResourceVersion
	}
	if d, ok := due[longName]; !ok || time.Until(d) < time.Minute {
		t.Fatalf("%s: next refresh planned at %v, want minutes away", longName, d)
	}
	o.startManager()
	restarted := time.Now()

	// Tolerance: the poll interval plus the second granularity of
	// nextRefreshTime.
	const tolerance = 2 * time.Second
	scheduled := 0
	prev := restarted
	for time.Since(restarted) < 15*time.Second {
		time.Sleep(500 * time.Millisecond)
		now := o.allCalls(t)
		at := time.Now()
		for _, name := range append(o.refreshableNames(), longName) {
			n := now[name] - calls[name]
			if n <= 0 {
				continue
			}
			d, ok := due[name]
			switch {
			case !ok:
				t.Errorf("%s: %d provider call(s) %s after the restart with no refresh planned", name, n, at.Sub(restarted).Round(100*time.Millisecond))
			case at.Add(tolerance).Before(d):
				t.Errorf("%s: %d extra provider call(s) %s after the restart; the next refresh was planned %s later",
					name, n, at.Sub(restarted).Round(100*time.Millisecond), d.Sub(at).Round(time.Second))
			case n > 1:
				t.Errorf("%s: %d provider calls within 0.5 s, %s after the restart", name, n, at.Sub(restarted).Round(100*time.Millisecond))
			default:
				scheduled++
				// The call happened after prev; the next may not come
				// before the 10 s floor.
				due[name] = prev.Add(10 * time.Second)
			}
		}
		calls, prev = now, at
	}
	for name, rv := range versions {
		if got := o.secret(t, name).ResourceVersion; got != rv {
			t.Errorf("Secret %s was rewritten after the restart (resourceVersion %s -> %s)", name, rv, got)
		}
	}
	k.mustGetJSON(&lease, "lease", leaseName, "-n", operatorNamespace)
	after := deref(lease.Spec.HolderIdentity)
	if after == "" || after == before {
		t.Errorf("lease holder %q after the restart, was %q: the new manager did not take over", after, before)
	}
	if scheduled == 0 {
		t.Errorf("no scheduled refresh of a 20 s token in 15 s after the restart: is the new manager working?")
	}
	if !t.Failed() {
		t.Logf("15 s after the restart: %d scheduled refreshes, no extra calls (none for %s), no rewrites; lease %s -> %s", scheduled, longName, before, after)
	}
	o.wait(t, 30*time.Second, "--for=condition=Ready", "apicredential/bank-sandbox", "apicredential/psp", "apicredential/send", "apicredential/shop", "apicredential/"+longName)
}

// allCalls merges the call counts of the main and the long-lived sandbox
// (their client ids differ).
func (o *operator) allCalls(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, sb := range []*demo.Sandbox{o.sb, o.long} {
		c, err := sb.Calls(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c {
			out[k] += v
		}
	}
	return out
}

func (o *operator) refreshableNames() []string {
	var out []string
	for _, c := range o.refreshable() {
		out = append(out, c.ClientID)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// plans reads each refreshable credential's status.nextRefreshTime.
func (o *operator) plans(t *testing.T) map[string]time.Time {
	t.Helper()
	var list authv1alpha1.APICredentialList
	kubectl{t: t, kubeconfig: o.k.kubeconfig}.mustGetJSON(&list, "apicredentials", "-n", samplesNamespace)
	out := map[string]time.Time{}
	for _, c := range list.Items {
		if c.Status.NextRefreshTime != nil {
			out[c.Name] = c.Status.NextRefreshTime.Time
		}
	}
	return out
}

// testWrongPassword rotates psp's secret to a wrong value: the next call
// (at once, because a source Secret changed) is refused, the credential
// says InvalidCredentials and keeps its token; putting the right value back
// heals it.
func (o *operator) testWrongPassword(t *testing.T) {
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	before := string(o.secret(t, "psp-token").Data["token"])
	wrong := "wrong-" + o.samples.Clients["psp"][:8] + "-password"
	o.leaks = append(o.leaks, wrong)
	k.run("patch", "secret", "psp-api-key", "-n", samplesNamespace, "--type=merge", "-p", fmt.Sprintf(`{"stringData":{"secret":%q}}`, wrong))
	o.wait(t, 30*time.Second, "--for=jsonpath={.status.reason}=InvalidCredentials", "apicredential/psp")
	cred := o.credential(t, "psp")
	if d := cond(cred, authv1alpha1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != authv1alpha1.ReasonInvalidCredentials {
		t.Errorf("Degraded %s/%s, want True/InvalidCredentials", d.Status, d.Reason)
	}
	s := o.secret(t, "psp-token")
	if got := string(s.Data["token"]); got == "" {
		t.Errorf("the token vanished after a refused refresh")
	} else if got != before && time.Now().Before(expiresAt(t, s)) {
		// A scheduled refresh may have landed between reading "before" and
		// the patch; what matters is that the refused call wrote nothing.
		t.Logf("a scheduled refresh replaced the token just before the password changed")
	}
	t.Logf("psp: Degraded=True InvalidCredentials: %s", cond(cred, authv1alpha1.ConditionDegraded).Message)

	k.run("patch", "secret", "psp-api-key", "-n", samplesNamespace, "--type=merge", "-p", fmt.Sprintf(`{"stringData":{"secret":%q}}`, o.samples.Clients["psp"]))
	o.wait(t, 30*time.Second, "--for=condition=Degraded=false", "apicredential/psp")
	o.wait(t, 30*time.Second, "--for=condition=Ready", "apicredential/psp")
	if got := string(o.secret(t, "psp-token").Data["token"]); got == before {
		t.Errorf("the token was not renewed after the password was fixed")
	}
}

// testDelete deletes the APICredential send. Its target Secret carries a
// controller ownerReference with blockOwnerDeletion, so in a cluster the
// garbage collector deletes it. envtest runs no kube-controller-manager,
// hence no garbage collector: the Secret stays here, and the test checks
// the ownerReference that a garbage collector acts on, then that the
// operator stops calling the provider for it.
func (o *operator) testDelete(t *testing.T) {
	k := kubectl{t: t, kubeconfig: o.k.kubeconfig}
	cred := o.credential(t, "send")
	s := o.secret(t, "send-token")
	checkOwner(t, s, cred)
	k.run("delete", "apicredential", "send", "-n", samplesNamespace, "--wait=true", "--timeout=30s")
	if out, err := k.try(nil, "get", "apicredential", "send", "-n", samplesNamespace); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("APICredential send still exists: %s %v", out, err)
	}
	s = o.secret(t, "send-token")
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != cred.UID {
		t.Errorf("Secret send-token lost its ownerReference to the deleted APICredential (uid %s): %+v", cred.UID, s.OwnerReferences)
	}
	// An in-flight refresh may still land right after the delete.
	time.Sleep(2 * time.Second)
	c0, err := o.sb.Calls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2*time.Second + tokenLifetime/2 + 2*time.Second)
	c1, err := o.sb.Calls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := c1["send"] - c0["send"]; n != 0 {
		t.Errorf("%d provider calls for the deleted APICredential send", n)
	}
	if n := c1["psp"] - c0["psp"]; n == 0 {
		t.Errorf("no calls for psp in the same time: is the operator still running?")
	}
}

// testRateLimitedRecovers: once the throttled sandbox's minute is over, the
// credential gets a new token.
func (o *operator) testRateLimitedRecovers(t *testing.T) {
	first := string(o.secret(t, throttledTarget).Data["token"])
	cred := o.credential(t, throttledName)
	issued := cred.Status.LastRefreshTime
	eventually(t, 90*time.Second, time.Second, func() string {
		c := o.credential(t, throttledName)
		if c.Status.LastRefreshTime == nil || (issued != nil && !c.Status.LastRefreshTime.After(issued.Time)) {
			return fmt.Sprintf("%s: no token since %v (Degraded %s)", throttledName, issued, cond(c, authv1alpha1.ConditionDegraded).Reason)
		}
		return ""
	})
	if string(o.secret(t, throttledTarget).Data["token"]) == first {
		t.Errorf("%s: lastRefreshTime moved but the token did not change", throttledName)
	}
}

// checkManagerLog: no RBAC denial and no secret value in the manager's log.
func (o *operator) checkManagerLog() {
	t := o.t
	b, err := os.ReadFile(o.mgrLog)
	if err != nil {
		t.Fatal(err)
	}
	var forbidden []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "is forbidden: User") {
			forbidden = append(forbidden, line)
		}
	}
	if len(forbidden) > 0 {
		sort.Strings(forbidden)
		t.Errorf("the manager was denied by RBAC %d times, e.g.:\n%s", len(forbidden), forbidden[0])
	}
	leaked := 0
	for _, v := range o.leaks {
		if len(v) >= 8 && bytes.Contains(b, []byte(v)) {
			leaked++
		}
	}
	if leaked > 0 {
		t.Errorf("%d secret values (passwords, tokens) appear in the manager's log", leaked)
	}
	t.Logf("manager log: %d bytes, no RBAC denials, no secret values", len(b))
}
