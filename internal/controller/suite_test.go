package controller

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/metrics"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// The suite runs the real manager against a real API server (envtest) and
// the sandbox provider over real TLS. Each test has its own namespace, its
// own manager (caching only that namespace) and its own sandbox, so tests
// run in parallel without sharing a host limiter.

var (
	cfg    *rest.Config
	k8s    client.Client // uncached: what tests assert through
	scheme = runtime.NewScheme()
	logs   lockedBuffer
	// testMetrics is shared: controller-runtime serves one registry.
	testMetrics = metrics.New(crmetrics.Registry)
	// secrets collects every secret value used or issued in the suite;
	// none may appear in a log line, event, condition or status field.
	secrets secretSet
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type secretSet struct {
	mu     sync.Mutex
	values map[string]bool
}

func (s *secretSet) add(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]bool{}
	}
	for _, v := range vs {
		if len(v) >= 6 {
			s.values[v] = true
		}
	}
}

// leaked returns the secret values found in text.
func (s *secretSet) leaked(text string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for v := range s.values {
		if strings.Contains(text, v) {
			out = append(out, v)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.UseDevMode(false)))
	_ = clientgoscheme.AddToScheme(scheme)
	_ = authv1alpha1.AddToScheme(scheme)
	code := m.Run()
	if leaked := secrets.leaked(logs.String()); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d secret values appear in the operator's logs\n", len(leaked))
		code = 1
	}
	if os.Getenv("TOKENWARDEN_TEST_LOGS") != "" {
		fmt.Fprint(os.Stderr, logs.String())
	}
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

var (
	env      *envtest.Environment
	envOnce  sync.Once
	envError error
)

// needCluster starts the control plane on first use, so that the fast
// reconciler tables (fake client, fake clock) run without one.
func needCluster(t *testing.T) {
	t.Helper()
	envOnce.Do(func() {
		var c *rest.Config
		env, c, envError = testenv.Start()
		if envError != nil {
			return
		}
		cfg = c
		k8s, envError = client.New(cfg, client.Options{Scheme: scheme})
	})
	if envError != nil {
		t.Fatalf("control plane: %v", envError)
	}
}

// harness is one test's namespace, sandbox provider and manager.
type harness struct {
	config harnessConfig
	t      *testing.T
	ns     string
	extra  []string // more namespaces the manager watches (withClusterProviders)
	sb     *sandbox.Server
	tokens *auth.Client
	stop   context.CancelFunc
	done   chan struct{}
	// failUpdates makes the next n updates of target Secrets fail with
	// failErr, to prove a failed write never causes a second provider call.
	failUpdates atomic.Int32
	failErr     error
	// forbidPods refuses patches of Pods (see interceptPatch).
	forbidPods atomic.Bool
	// apiReads counts the reconciler's uncached reads (source Secrets and
	// ConfigMaps, through APIReader).
	apiReads atomic.Int64
}

// countingReader counts the reads it passes on.
type countingReader struct {
	client.Reader
	n *atomic.Int64
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.n.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// harnessConfig is what a test may change about its harness.
type harnessConfig struct {
	sandbox sandbox.Options
	auth    auth.Options
	// metricsAddr serves /metrics over HTTPS behind authentication and
	// authorization when set.
	metricsAddr string
	// serial keeps the test out of the parallel group (for measurements).
	serial bool
	// restConfig, when set, turns a copy of the suite's rest.Config into the
	// one the manager is built from (e.g. to reach the API server through a
	// proxy a test can cut). Tests still assert through k8s, which does not.
	restConfig func(*rest.Config) *rest.Config
	// clusterProviders serves ClusterTokenProviders (only those labelled for
	// this harness, so that parallel tests do not see each other's), with
	// the test's namespace as the cluster resource namespace and extraNS
	// more namespaces watched for consumers.
	clusterProviders bool
	extraNS          int
	// workers is the reconciler's Workers; 0: 4.
	workers int
}

// withClusterProviders serves ClusterTokenProviders and watches n more
// namespaces (h.extra) besides the test's own.
func withClusterProviders(n int) harnessOption {
	return func(c *harnessConfig) { c.clusterProviders, c.extraNS = true, n }
}

// harnessLabel marks the ClusterTokenProviders of one harness.
const harnessLabel = "test.tokenwarden.io/harness"

type harnessOption func(*harnessConfig)

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	needCluster(t)
	hc := harnessConfig{auth: auth.Options{AllowPrivateNetworks: true, HostRequestsPerMinute: 600}}
	for _, o := range opts {
		o(&hc)
	}
	if !hc.serial {
		t.Parallel()
	}
	sb, err := sandbox.Start(hc.sandbox)
	if err != nil {
		t.Fatalf("starting sandbox: %v", err)
	}
	t.Cleanup(sb.Close)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tw-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	h := &harness{t: t, ns: ns.Name, sb: sb, config: hc}
	for range hc.extraNS {
		x := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tw-x-"}}
		if err := k8s.Create(context.Background(), x); err != nil {
			t.Fatalf("creating namespace: %v", err)
		}
		h.extra = append(h.extra, x.Name)
	}
	h.secret("sandbox-ca", map[string]string{"ca.crt": string(sb.CA.CertPEM)})
	h.startManager()
	t.Cleanup(h.stopManager)
	t.Cleanup(h.checkNoLeaks)
	return h
}

// startManager runs a fresh manager, as after a restart: new reconciler,
// new token client, empty memory.
func (h *harness) startManager() {
	h.t.Helper()
	mo := metricsserver.Options{BindAddress: "0"}
	if h.config.metricsAddr != "" {
		mo = metricsserver.Options{BindAddress: h.config.metricsAddr, SecureServing: true,
			FilterProvider: filters.WithAuthenticationAndAuthorization}
	}
	mcfg := cfg
	if h.config.restConfig != nil {
		mcfg = h.config.restConfig(rest.CopyConfig(cfg))
	}
	mgr, err := ctrl.NewManager(mcfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                mo,
		HealthProbeBindAddress: "0",
		Cache:                  h.cacheOptions(),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		NewClient: func(c *rest.Config, o client.Options) (client.Client, error) {
			cl, err := client.NewWithWatch(c, o)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(cl, interceptor.Funcs{Update: h.interceptUpdate, Patch: h.interceptPatch}), nil
		},
	})
	if err != nil {
		h.t.Fatalf("creating manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &APICredentialReconciler{
		Client:     mgr.GetClient(),
		APIReader:  countingReader{Reader: mgr.GetAPIReader(), n: &h.apiReads},
		Scheme:     mgr.GetScheme(),
		Clock:      clock.RealClock{},
		Recorder:   mgr.GetEventRecorder("tokenwarden"),
		Rand:       func() float64 { return 0.5 },
		Namespaces: append([]string{h.ns}, h.extra...),
		Metrics:    testMetrics,
		Workers:    cmp.Or(h.config.workers, 4),

		ClusterProviders:         h.config.clusterProviders,
		ClusterResourceNamespace: h.ns,
	}
	ao := h.config.auth
	ao.Observe = testMetrics.ObserveRequest
	ao.OnHostRecovered = r.HostRecovered
	ao.OnHostSlotFree = r.HostSlotFree
	h.tokens = auth.NewClient(ao)
	r.Tokens = h.tokens
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		h.t.Fatalf("setting up controller: %v", err)
	}
	h.stop, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := mgr.Start(ctx); err != nil {
			h.t.Errorf("manager stopped: %v", err)
		}
	}()
}

// cacheOptions are the shipped ones for the harness's namespaces, with only
// this harness's ClusterTokenProviders in view.
func (h *harness) cacheOptions() cache.Options {
	o := CacheOptions(append([]string{h.ns}, h.extra...))
	if h.config.clusterProviders {
		o.ByObject[&authv1alpha1.ClusterTokenProvider{}] = cache.ByObject{
			Label: labels.SelectorFromSet(labels.Set{harnessLabel: h.ns}),
		}
	}
	return o
}

func (h *harness) stopManager() {
	if h.stop != nil {
		h.stop()
		<-h.done
		h.stop = nil
	}
}

// interceptPatch refuses patches of Pods while forbidPods is set, as an API
// server does for an operator without the optional pod-sync RBAC.
func (h *harness) interceptPatch(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok && m.Kind == "Pod" && h.forbidPods.Load() {
		return apierrors.NewForbidden(corev1.Resource("pods"), obj.GetName(), errors.New("no pod-sync RBAC"))
	}
	return c.Patch(ctx, obj, patch, opts...)
}

func (h *harness) interceptUpdate(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
	if _, ok := obj.(*corev1.Secret); ok && obj.GetNamespace() == h.ns {
		for {
			n := h.failUpdates.Load()
			if n <= 0 {
				break
			}
			if h.failUpdates.CompareAndSwap(n, n-1) {
				return h.failErr
			}
		}
	}
	return c.Update(ctx, obj, opts...)
}

// randomValue is a secret value for a test, registered for the leak check.
func randomValue(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	v := prefix + "-" + hex.EncodeToString(b)
	secrets.add(v)
	return v
}

func (h *harness) secret(name string, data map[string]string) *corev1.Secret {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, StringData: data}
	if err := k8s.Create(context.Background(), s); err != nil {
		h.t.Fatalf("creating Secret %s: %v", name, err)
	}
	return s
}

// edit changes the object named by obj through the uncached client, as a
// user would: it reads the object into obj, applies f and updates it,
// retrying on a conflict with the operator's own writes (a status write
// moves the object's resourceVersion too).
func edit[T client.Object](t *testing.T, obj T, f func(T)) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), key, obj); err != nil {
			return err
		}
		f(obj)
		return k8s.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("editing %T %s: %v", obj, key, err)
	}
}

// updateSecret sets keys of a Secret of the test's namespace.
func (h *harness) updateSecret(name string, data map[string]string) {
	h.t.Helper()
	h.editSecret(name, func(s *corev1.Secret) {
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
	})
}

// client registers a sandbox client with a fresh secret and stores its
// credentials in a Secret named after it.
func (h *harness) client(id string) (secret string) {
	secret = randomValue("secret")
	h.sb.AddClient(id, secret)
	h.secret(id, map[string]string{"id": id, "secret": secret})
	return secret
}

type credOption func(*authv1alpha1.APICredential)

func (h *harness) credential(name string, spec authv1alpha1.APICredentialSpec, opts ...credOption) *authv1alpha1.APICredential {
	h.t.Helper()
	c := &authv1alpha1.APICredential{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, Spec: spec}
	for _, o := range opts {
		o(c)
	}
	if err := k8s.Create(context.Background(), c); err != nil {
		h.t.Fatalf("creating APICredential %s: %v", name, err)
	}
	return c
}

func (h *harness) caBundle() *authv1alpha1.CABundle {
	n := authv1alpha1.SecretName("sandbox-ca")
	return &authv1alpha1.CABundle{SecretName: &n, Key: "ca.crt"}
}

// flowB is an OAuth2 client-credentials request for sandbox client id.
func (h *harness) flowB(id string) *authv1alpha1.TokenRequest {
	return &authv1alpha1.TokenRequest{
		URL:       h.sb.URL + sandbox.PathFlowB,
		Method:    authv1alpha1.MethodPOST,
		BasicAuth: &authv1alpha1.BasicAuth{SecretName: authv1alpha1.SecretName(id), UsernameKey: "id", PasswordKey: "secret"},
		Form:      []authv1alpha1.Parameter{{Name: "grant_type", Value: ptr.To("client_credentials")}},
		CABundle:  h.caBundle(),
	}
}

func targetSpec(name string) authv1alpha1.TargetSecret {
	return authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(name)}
}

func refreshBefore(d time.Duration) credOption {
	return func(c *authv1alpha1.APICredential) {
		c.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: &metav1.Duration{Duration: d}}
	}
}

func (h *harness) get(name string) *authv1alpha1.APICredential {
	h.t.Helper()
	c := &authv1alpha1.APICredential{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, c); err != nil {
		h.t.Fatalf("reading APICredential %s: %v", name, err)
	}
	return c
}

// targetSecret returns the Secret, or nil when it does not exist.
func (h *harness) targetSecret(name string) *corev1.Secret {
	h.t.Helper()
	s := &corev1.Secret{}
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if tok := string(s.Data["token"]); tok != "" {
		secrets.add(tok)
	}
	return s
}

func condition(c *authv1alpha1.APICredential, typ string) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, typ)
}

// eventually polls f until it returns "" or the timeout passes.
func (h *harness) eventually(timeout time.Duration, f func() string) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		if why = f(); why == "" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReconciled waits until a pass of the named credential has run since
// testMetrics.Forget removed its series: every pass sets it again. It is
// the barrier that replaces "sleep and hope the pass has run".
func (h *harness) waitReconciled(name string) {
	h.t.Helper()
	h.waitReconciledIn(h.ns, name)
}

// waitReconciledIn is waitReconciled for a credential of any namespace.
func (h *harness) waitReconciledIn(ns, name string) {
	h.t.Helper()
	h.eventually(readyWait, func() string {
		families, err := crmetrics.Registry.Gather()
		if err != nil {
			return err.Error()
		}
		for _, mf := range families {
			if mf.GetName() != metrics.NextRefresh && mf.GetName() != metrics.TokenExpiry {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["namespace"] == ns && labels["name"] == name {
					return ""
				}
			}
		}
		return "no pass of " + ns + "/" + name + " yet"
	})
}

func (h *harness) waitCondition(name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *authv1alpha1.APICredential {
	h.t.Helper()
	var c *authv1alpha1.APICredential
	h.eventually(timeout, func() string {
		c = h.get(name)
		cond := condition(c, typ)
		if cond == nil || cond.Status != status || (reason != "" && cond.Reason != reason) {
			return fmt.Sprintf("%s %s: want %s/%s, have %+v", name, typ, status, reason, cond)
		}
		if cond.ObservedGeneration != c.Generation {
			return fmt.Sprintf("%s %s: observedGeneration %d, generation %d", name, typ, cond.ObservedGeneration, c.Generation)
		}
		return ""
	})
	return c
}

func (h *harness) events() []eventsv1.Event {
	h.t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	return list.Items
}

func (h *harness) eventReasons() map[string]int {
	out := map[string]int{}
	for _, e := range h.events() {
		out[e.Reason]++
	}
	return out
}

// checkNoLeaks fails the test when a secret value appears in an event, a
// condition or any status field of the namespace's APICredentials.
func (h *harness) checkNoLeaks() {
	var creds authv1alpha1.APICredentialList
	if err := k8s.List(context.Background(), &creds, client.InNamespace(h.ns)); err != nil {
		h.t.Error(err)
		return
	}
	var secretsList corev1.SecretList
	_ = k8s.List(context.Background(), &secretsList, client.InNamespace(h.ns))
	for _, s := range secretsList.Items {
		if tok := string(s.Data["token"]); tok != "" {
			secrets.add(tok)
		}
	}
	var text strings.Builder
	for _, c := range creds.Items {
		b, _ := json.Marshal(c.Status)
		text.Write(b)
	}
	// Providers' status too: the namespace's TokenProviders and this
	// harness's ClusterTokenProviders.
	var tps authv1alpha1.TokenProviderList
	_ = k8s.List(context.Background(), &tps, client.InNamespace(h.ns))
	var ctps authv1alpha1.ClusterTokenProviderList
	_ = k8s.List(context.Background(), &ctps, client.MatchingLabels{harnessLabel: h.ns})
	for _, p := range tps.Items {
		b, _ := json.Marshal(p.Status)
		text.Write(b)
	}
	for _, p := range ctps.Items {
		b, _ := json.Marshal(p.Status)
		text.Write(b)
	}
	for _, e := range h.events() {
		b, _ := json.Marshal(e)
		text.Write(b)
	}
	if leaked := secrets.leaked(text.String()); len(leaked) > 0 {
		h.t.Errorf("%d secret values appear in events or status", len(leaked))
	}
}

// jwtWithExp is an unsigned-looking JWT with the given exp, for flow D.
func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload := enc(fmt.Appendf(nil, `{"sub":"shop","exp":%d,"nonce":%q}`, exp.Unix(), randomValue("n")))
	return header + "." + payload + "." + enc([]byte(randomValue("sig")))
}
