package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/metrics"
)

func TestPrivateAddressRefusedUnlessAllowed(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.auth.AllowPrivateNetworks = false })
	h.client("private")
	h.credential("private", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("private"), Target: targetSpec("private-token")})
	c := h.waitCondition("private", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonInvalidSpec, readyWait)
	msg := condition(c, authv1alpha1.ConditionDegraded).Message
	if !strings.Contains(msg, "loopback") && !strings.Contains(msg, "private") {
		t.Errorf("Degraded message does not say why the address is refused: %q", msg)
	}
	if n := h.sb.Calls("private"); n != 0 {
		t.Errorf("%d provider calls to a refused address", n)
	}
	// The same operator restarted with --allow-private-networks picks the
	// credential up at once.
	h.stopManager()
	h.config.auth.AllowPrivateNetworks = true
	h.startManager()
	h.waitCondition("private", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
}

// mapResolver resolves every name to one address.
type mapResolver map[string]string

func (m mapResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if ip, ok := m[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestAllowedHostsRefuseOtherHosts(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.sandbox.Hostnames = []string{"tokens.example.com"}
		c.auth.AllowedHosts = []string{"*.example.com"}
		c.auth.Resolver = mapResolver{"tokens.example.com": "127.0.0.1"}
	})
	h.client("outside")
	h.credential("outside", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("outside"), Target: targetSpec("outside-token")})
	c := h.waitCondition("outside", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonInvalidSpec, readyWait)
	if msg := condition(c, authv1alpha1.ConditionDegraded).Message; !strings.Contains(msg, "allowed") {
		t.Errorf("Degraded message does not mention the allowed hosts: %q", msg)
	}
	if n := h.sb.Calls("outside"); n != 0 {
		t.Errorf("%d provider calls to a host outside --allowed-hosts", n)
	}
	// The same sandbox under an allowed name works.
	h.client("inside")
	req := h.flowB("inside")
	req.URL = strings.Replace(req.URL, "127.0.0.1", "tokens.example.com", 1)
	h.credential("inside", authv1alpha1.APICredentialSpec{TokenRequest: req, Target: targetSpec("inside-token")})
	h.waitCondition("inside", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
}

func TestWatchNamespacesIgnoresOtherNamespaces(t *testing.T) {
	h := newHarness(t)
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tw-other-"}}
	if err := k8s.Create(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	secret := randomValue("secret")
	h.sb.AddClient("elsewhere", secret)
	if err := k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: other.Name},
		StringData: map[string]string{"id": "elsewhere", "secret": secret},
	}); err != nil {
		t.Fatal(err)
	}
	ignored := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: other.Name},
		Spec:       authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("elsewhere"), Target: targetSpec("elsewhere-token")},
	}
	if err := k8s.Create(context.Background(), ignored); err != nil {
		t.Fatal(err)
	}
	h.client("watched")
	h.credential("watched", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("watched"), Target: targetSpec("watched-token")})
	// Created after the ignored one: had the cache covered other
	// namespaces, the ignored credential would have arrived first.
	h.waitCondition("watched", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	got := &authv1alpha1.APICredential{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(ignored), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 0 || got.Status.ObservedGeneration != 0 {
		t.Errorf("an APICredential outside the watched namespace was reconciled: %+v", got.Status)
	}
	if n := h.sb.Calls("elsewhere"); n != 0 {
		t.Errorf("%d provider calls for an APICredential outside the watched namespace", n)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape GETs /metrics with an optional bearer token.
func scrape(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The metrics server's certificate is self-signed in this test.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // G402: the metrics certificate is self-signed; the test checks authn/authz
	}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsNeedAuthorizedToken(t *testing.T) {
	addr := freeAddr(t)
	h := newHarness(t, func(c *harnessConfig) { c.metricsAddr = addr })
	h.client("metered")
	h.credential("metered", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("metered"), Target: targetSpec("metered-token")})
	c := h.waitCondition("metered", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)

	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cfg)
	token := func(sa string, allowed bool) string {
		if _, err := cs.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if allowed {
			name := h.ns + "-" + sa
			if err := k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
				Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}); err != nil {
				t.Fatal(err)
			}
			if err := k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: h.ns}}}); err != nil {
				t.Fatal(err)
			}
		}
		tr, err := cs.CoreV1().ServiceAccounts(h.ns).CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	scraper := token("scraper", true)
	stranger := token("stranger", false)
	secrets.add(scraper, stranger)

	var body string
	h.eventually(10*time.Second, func() string {
		code, b := scrape(t, addr, scraper)
		if code != http.StatusOK {
			return fmt.Sprintf("authorized scrape: %d %s", code, b)
		}
		body = b
		return ""
	})
	want := fmt.Sprintf(`%s{name="metered",namespace=%q} %s`, metrics.TokenExpiry, h.ns,
		fmt.Sprintf("%g", float64(c.Status.TokenExpiresAt.Unix())))
	if !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
	for _, name := range []string{metrics.NextRefresh, metrics.RefreshAttempts, metrics.ProviderRequestDuration} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if !strings.Contains(body, metrics.RefreshAttempts+`{reason="RefreshSucceeded",result="success"}`) {
		t.Errorf("no successful attempt counted")
	}
	if leaked := secrets.leaked(body); len(leaked) > 0 {
		t.Errorf("%d secret values in the metrics", len(leaked))
	}
	if code, _ := scrape(t, addr, ""); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("scrape without a token: %d, want 401 or 403", code)
	}
	if code, _ := scrape(t, addr, stranger); code != http.StatusForbidden {
		t.Errorf("scrape with an unauthorized token: %d, want 403", code)
	}
}

func heapAfterGC() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryDoesNotGrowWithUnrelatedSecrets runs alone (not in parallel) so
// that the heap it measures is the manager's.
func TestMemoryDoesNotGrowWithUnrelatedSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 250 MiB of Secrets")
	}
	h := newHarness(t, func(c *harnessConfig) { c.serial = true })
	const creds, unrelated, size = 200, 1000, 256 << 10
	ctx := context.Background()
	h.client("mem")
	for i := range creds {
		h.credential(fmt.Sprintf("mem-%d", i), authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("mem"), Target: targetSpec(fmt.Sprintf("mem-%d-token", i))})
	}
	h.eventually(60*time.Second, func() string {
		var list authv1alpha1.APICredentialList
		if err := k8s.List(ctx, &list, client.InNamespace(h.ns)); err != nil {
			return err.Error()
		}
		ready := 0
		for _, c := range list.Items {
			if cond := condition(&c, authv1alpha1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
				ready++
			}
		}
		if ready != creds {
			return fmt.Sprintf("%d of %d credentials Ready", ready, creds)
		}
		return ""
	})
	before := heapAfterGC()
	// A barrier: a credential whose source Secret is created after the
	// unrelated ones. The metadata watch delivers Secrets in order, so once
	// it is Ready every unrelated Secret has reached the operator.
	h.sb.AddClient("mem-barrier", "barrier-secret")
	h.credential("mem-barrier", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("mem-barrier"), Target: targetSpec("mem-barrier-token")})

	data := make([]byte, size)
	_, _ = rand.Read(data)
	var wg sync.WaitGroup
	errs := make(chan error, unrelated)
	sem := make(chan struct{}, 8)
	for i := range unrelated {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- k8s.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Namespace: h.ns},
				Data:       map[string][]byte{"blob": data},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("creating unrelated Secrets: %v", err)
		}
	}
	h.secret("mem-barrier", map[string]string{"id": "mem-barrier", "secret": "barrier-secret"})
	h.waitCondition("mem-barrier", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	after := heapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("heap after GC: %.1f MiB with %d credentials, %.1f MiB after %d unrelated %d KiB Secrets (growth %.1f MiB)",
		float64(before)/(1<<20), creds, float64(after)/(1<<20), unrelated, size>>10, float64(growth)/(1<<20))
	if growth > 20<<20 {
		t.Errorf("heap grew by %.1f MiB with unrelated Secrets, want < 20 MiB", float64(growth)/(1<<20))
	}
	// The credentials send one identical request: they share one token.
	if n := h.sb.Calls("mem"); n != 1 {
		t.Errorf("%d provider calls for %d credentials with one identical request, want 1", n, creds)
	}
}
