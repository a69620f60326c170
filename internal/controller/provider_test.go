package controller

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// flowC is a flow C request (JSON body, absolute expiry) for sandbox client
// id, whose provider revokes the previous token when it issues a new one.
func (h *harness) flowC(id string) *authv1alpha1.TokenRequest {
	ref := func(key string) *authv1alpha1.ValueSource {
		return &authv1alpha1.ValueSource{SecretKeyRef: authv1alpha1.SecretKeySelector{Name: authv1alpha1.SecretName(id), Key: authv1alpha1.SecretKey(key)}}
	}
	return &authv1alpha1.TokenRequest{
		URL:                 h.sb.URL + sandbox.PathFlowC,
		JSON:                []authv1alpha1.Parameter{{Name: "clientId", ValueFrom: ref("id")}, {Name: "clientSecret", ValueFrom: ref("secret")}},
		Response:            &authv1alpha1.ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"},
		InvalidatesPrevious: true,
		CABundle:            h.caBundle(),
	}
}

// clusterProvider creates a ClusterTokenProvider of this harness.
func (h *harness) clusterProvider(name string, tr *authv1alpha1.TokenRequest, allowed *authv1alpha1.AllowedNamespaces, rb time.Duration) *authv1alpha1.ClusterTokenProvider {
	h.t.Helper()
	p := &authv1alpha1.ClusterTokenProvider{
		// Cluster-scoped: named after the harness, as parallel tests share
		// the API server.
		ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-" + name, Labels: map[string]string{harnessLabel: h.ns}},
		Spec: authv1alpha1.ClusterTokenProviderSpec{
			TokenProviderSpec: authv1alpha1.TokenProviderSpec{TokenRequest: *tr},
			AllowedNamespaces: allowed,
		},
	}
	if rb > 0 {
		p.Spec.Refresh = &authv1alpha1.RefreshPolicy{RefreshBefore: &metav1.Duration{Duration: rb}}
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		h.t.Fatalf("creating ClusterTokenProvider %s: %v", name, err)
	}
	h.t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p
}

// consumer creates an APICredential in namespace ns that takes its token
// from the provider of kind and name.
func (h *harness) consumer(ns, name, kind, provider string) *authv1alpha1.APICredential {
	h.t.Helper()
	c := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: authv1alpha1.APICredentialSpec{
			ProviderRef: &authv1alpha1.ProviderReference{Kind: kind, Name: provider},
			Target:      targetSpec(name + "-token"),
		},
	}
	if err := k8s.Create(context.Background(), c); err != nil {
		h.t.Fatalf("creating APICredential %s/%s: %v", ns, name, err)
	}
	return c
}

// credIn reads an APICredential of any namespace.
func credIn(t *testing.T, ns, name string) *authv1alpha1.APICredential {
	t.Helper()
	c := &authv1alpha1.APICredential{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, c); err != nil {
		t.Fatalf("reading APICredential %s/%s: %v", ns, name, err)
	}
	return c
}

// tokenIn is the token in Secret ns/name, "" when it does not exist.
func tokenIn(t *testing.T, ns, name string) string {
	t.Helper()
	s := &corev1.Secret{}
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	tok := string(s.Data["token"])
	if tok != "" {
		secrets.add(tok)
	}
	return tok
}

// waitConsumer waits for a consumer's condition.
func (h *harness) waitConsumer(ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *authv1alpha1.APICredential {
	h.t.Helper()
	var c *authv1alpha1.APICredential
	h.eventually(timeout, func() string {
		c = credIn(h.t, ns, name)
		cond := condition(c, typ)
		if cond == nil || cond.Status != status || cond.Reason != reason {
			return fmt.Sprintf("%s/%s %s is %+v, want %s/%s", ns, name, typ, cond, status, reason)
		}
		return ""
	})
	return c
}

// TestProviderFiftyConsumersOneCallPerLifetime: 50 consumers in 10
// namespaces of one ClusterTokenProvider against a provider that revokes the
// previous token (flow C, single-active) cost one provider call per token
// lifetime, and no consumer's target holds a revoked token for longer than
// the copy takes.
func TestProviderFiftyConsumersOneCallPerLifetime(t *testing.T) {
	const (
		lifetime      = 20 * time.Second
		refreshBefore = 8 * time.Second
		run           = 3*lifetime + 5*time.Second
		// From the provider's revocation of the old token (when it issues
		// the new one) to the last of 50 copies: the provider's answer, its
		// token Secret write, then 50 copies on 16 workers (the shipped
		// default is 64), under the race detector on a shared 2-core
		// machine.
		copyBound = 3 * time.Second
	)
	h := newHarness(t, withClusterProviders(10), func(c *harnessConfig) {
		c.sandbox.LifetimeC = lifetime
		c.workers = 16
	})
	h.client("send")
	cp := h.clusterProvider("send", h.flowC("send"), &authv1alpha1.AllowedNamespaces{Names: h.extra}, refreshBefore)
	type ref struct{ ns, name string }
	var consumers []ref
	for i := range 50 {
		ns := h.extra[i%10]
		name := fmt.Sprintf("c%02d", i)
		h.consumer(ns, name, authv1alpha1.KindClusterTokenProvider, cp.Name)
		consumers = append(consumers, ref{ns, name})
	}
	start := time.Now()
	for _, c := range consumers {
		h.waitConsumer(c.ns, c.name, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	}
	t.Logf("50 consumers Ready %.1f s after creation", time.Since(start).Seconds())

	// Sample every consumer target: a token the provider has revoked must
	// leave every target within copyBound.
	var (
		mu       sync.Mutex
		worst    time.Duration
		worstAt  string
		samples  int
		revokedN int
		seen     = map[string]bool{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, ns := range h.extra {
				var list corev1.SecretList
				if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
					continue
				}
				now := time.Now()
				for _, s := range list.Items {
					tok := string(s.Data["token"])
					if tok == "" {
						continue
					}
					secrets.add(tok)
					mu.Lock()
					samples++
					seen[tok] = true
					if at, revoked := h.sb.RevokedAt(tok); revoked {
						revokedN++
						if d := now.Sub(at); d > worst {
							worst, worstAt = d, ns+"/"+s.Name
						}
					}
					mu.Unlock()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	callsBefore := h.sb.Calls("send")
	time.Sleep(run)
	cancel()
	<-done
	calls := h.sb.Calls("send")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d provider calls in all (%d during the %s run), %d distinct tokens in consumer targets, %d samples, %d of a revoked token, longest %.2f s (%s)",
		calls, calls-callsBefore, run, len(seen), samples, revokedN, worst.Seconds(), worstAt)
	// One call per lifetime: a token is refreshed refreshBefore (plus up to
	// 10 % of the lifetime of jitter) before it expires, so over the run at
	// most run/(lifetime-refreshBefore-lifetime/10)+1 calls, at least one
	// per lifetime, and never one per consumer.
	maxCalls := int(run/(lifetime-refreshBefore-lifetime/10)) + 1
	minCalls := int(run / lifetime)
	if calls > maxCalls || calls < minCalls {
		t.Errorf("%d provider calls over %s with %s tokens, want %d to %d (one per lifetime, whatever the 50 consumers)", calls, run, lifetime, minCalls, maxCalls)
	}
	// Every consumer holds the provider's current token (a refresh may have
	// landed just as sampling stopped: give the copies their bound). The
	// provider's token is read on every try, as one more refresh may land
	// within the bound too.
	var current string
	h.eventually(copyBound, func() string {
		current = tokenIn(t, h.ns, cp.Name+authv1alpha1.ProviderTokenSecretSuffix)
		for _, c := range consumers {
			if got := tokenIn(t, c.ns, c.name+"-token"); got != current {
				return c.ns + "/" + c.name + " does not hold the provider's current token"
			}
		}
		return ""
	})
	seen[current] = true
	if calls = h.sb.Calls("send"); len(seen) != calls {
		t.Errorf("consumer targets held %d distinct tokens, want one per provider call (%d)", len(seen), calls)
	}
	if worst > copyBound {
		t.Errorf("a consumer target held a revoked token for %.2f s (%s), want at most %s", worst.Seconds(), worstAt, copyBound)
	}
	p := &authv1alpha1.ClusterTokenProvider{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Name: cp.Name}, p); err != nil {
		t.Fatal(err)
	}
	if p.Status.Consumers != 50 {
		t.Errorf("status.consumers = %d, want 50", p.Status.Consumers)
	}
	c := credIn(t, consumers[0].ns, consumers[0].name)
	if c.Status.Provider == nil || c.Status.Provider.Kind != authv1alpha1.KindClusterTokenProvider || c.Status.LastAttemptTime != nil {
		t.Errorf("consumer status: provider %+v, lastAttemptTime %v; want the ClusterTokenProvider and no attempt", c.Status.Provider, c.Status.LastAttemptTime)
	}
}

// TestProviderNamespaceNotAllowed: a consumer in a namespace the provider
// does not allow gets ProviderNotAllowed and nothing is written.
func TestProviderNamespaceNotAllowed(t *testing.T) {
	h := newHarness(t, withClusterProviders(2))
	h.client("send")
	cp := h.clusterProvider("send", h.flowC("send"), &authv1alpha1.AllowedNamespaces{Names: h.extra[:1]}, 0)
	h.consumer(h.extra[0], "ok", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.consumer(h.extra[1], "denied", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.consumer(h.ns, "own-namespace", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.waitConsumer(h.extra[0], "ok", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	for _, c := range []struct{ ns, name string }{{h.extra[1], "denied"}, {h.ns, "own-namespace"}} {
		got := h.waitConsumer(c.ns, c.name, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderNotAllowed, readyWait)
		if msg := condition(got, authv1alpha1.ConditionDegraded).Message; msg == "" {
			t.Errorf("%s/%s: empty message", c.ns, c.name)
		}
		if tok := tokenIn(t, c.ns, c.name+"-token"); tok != "" {
			t.Errorf("%s/%s: a token was written into a namespace the provider does not allow", c.ns, c.name)
		}
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: c.ns, Name: c.name + "-token"}, s); !apierrors.IsNotFound(err) {
			t.Errorf("%s/%s: target Secret exists (err %v), want nothing written", c.ns, c.name, err)
		}
	}
	// A selector admits a namespace by its labels.
	ns := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Name: h.extra[1]}, ns); err != nil {
		t.Fatal(err)
	}
	edit(t, &authv1alpha1.ClusterTokenProvider{ObjectMeta: metav1.ObjectMeta{Name: cp.Name}}, func(p *authv1alpha1.ClusterTokenProvider) {
		p.Spec.AllowedNamespaces.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"payments.example.com/send": "allowed"}}
	})
	ns.Labels = map[string]string{"payments.example.com/send": "allowed"}
	if err := k8s.Update(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	h.waitConsumer(h.extra[1], "denied", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	if n := h.sb.Calls("send"); n != 1 {
		t.Errorf("%d provider calls, want 1 (consumers never call)", n)
	}
}

// TestProviderNamespaceRemovedStopsCopies: removing a namespace from
// allowedNamespaces stops copies into it at once; its target keeps the last
// token it was given.
func TestProviderNamespaceRemovedStopsCopies(t *testing.T) {
	h := newHarness(t, withClusterProviders(2))
	h.client("send")
	cp := h.clusterProvider("send", h.flowC("send"), &authv1alpha1.AllowedNamespaces{Names: h.extra}, 0)
	h.consumer(h.extra[0], "stays", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.consumer(h.extra[1], "removed", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.waitConsumer(h.extra[0], "stays", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	h.waitConsumer(h.extra[1], "removed", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	last := tokenIn(t, h.extra[1], "removed-token")

	p := &authv1alpha1.ClusterTokenProvider{ObjectMeta: metav1.ObjectMeta{Name: cp.Name}}
	edit(t, p, func(p *authv1alpha1.ClusterTokenProvider) { p.Spec.AllowedNamespaces.Names = h.extra[:1] })
	start := time.Now()
	h.waitConsumer(h.extra[1], "removed", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderNotAllowed, readyWait)
	t.Logf("ProviderNotAllowed %.2f s after the namespace was removed", time.Since(start).Seconds())

	// A new provider token reaches the namespace still allowed, not the other.
	edit(t, p, func(p *authv1alpha1.ClusterTokenProvider) {
		p.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: "now"}
	})
	h.eventually(readyWait, func() string {
		if tokenIn(t, h.extra[0], "stays-token") == last {
			return "the allowed consumer has not received the new token"
		}
		return ""
	})
	if got := tokenIn(t, h.extra[1], "removed-token"); got != last {
		t.Error("the removed namespace received a copy after its removal")
	}
}

// TestProviderDeletedKeepsLastToken: deleting the provider gives its
// consumers ProviderNotFound and leaves their last token in place while it
// is valid.
func TestProviderDeletedKeepsLastToken(t *testing.T) {
	h := newHarness(t, withClusterProviders(1))
	h.client("send")
	cp := h.clusterProvider("send", h.flowC("send"), &authv1alpha1.AllowedNamespaces{Names: h.extra}, 0)
	h.consumer(h.extra[0], "app", authv1alpha1.KindClusterTokenProvider, cp.Name)
	h.waitConsumer(h.extra[0], "app", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	last := tokenIn(t, h.extra[0], "app-token")
	if err := k8s.Delete(context.Background(), cp); err != nil {
		t.Fatal(err)
	}
	c := h.waitConsumer(h.extra[0], "app", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderNotFound, readyWait)
	if r := condition(c, authv1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v after the provider was deleted, want True while the last token is valid", r)
	}
	if got := tokenIn(t, h.extra[0], "app-token"); got != last {
		t.Error("the last token was removed or replaced when the provider was deleted")
	}
}

// TestProviderRestartMakesNoCallsAndNoCopies: a restarted operator makes no
// provider call for a valid provider token and rewrites no consumer target
// that is already current.
func TestProviderRestartMakesNoCallsAndNoCopies(t *testing.T) {
	h := newHarness(t, withClusterProviders(2))
	h.client("send")
	cp := h.clusterProvider("send", h.flowC("send"), &authv1alpha1.AllowedNamespaces{Names: h.extra}, 0)
	for i, ns := range h.extra {
		h.consumer(ns, fmt.Sprintf("app%d", i), authv1alpha1.KindClusterTokenProvider, cp.Name)
	}
	for i, ns := range h.extra {
		name := fmt.Sprintf("app%d", i)
		h.waitConsumer(ns, name, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	}
	readVersions := func() map[string]string {
		out := map[string]string{}
		for i, ns := range h.extra {
			s := &corev1.Secret{}
			if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("app%d-token", i)}, s); err != nil {
				t.Fatal(err)
			}
			out[ns] = s.ResourceVersion
		}
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: cp.Name + "-token"}, s); err != nil {
			t.Fatal(err)
		}
		out["provider"] = s.ResourceVersion
		return out
	}
	versions := readVersions()
	calls := h.sb.Calls("send")
	h.stopManager()
	for i, ns := range h.extra {
		testMetrics.Forget(ns, fmt.Sprintf("app%d", i))
	}
	h.startManager()
	// Barrier: every consumer has had a pass in the new process.
	for i, ns := range h.extra {
		h.waitReconciledIn(ns, fmt.Sprintf("app%d", i))
	}
	time.Sleep(2 * time.Second)
	if n := h.sb.Calls("send") - calls; n != 0 {
		t.Errorf("%d provider calls after the restart, want 0 (the provider token is valid)", n)
	}
	after := readVersions()
	var changed []string
	for k, v := range versions {
		if after[k] != v {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		t.Errorf("Secrets rewritten after the restart: %v, want none (every copy was current)", changed)
	}
}

// TestInlineIdenticalRequestsShareOneToken: two inline APICredentials with
// byte-identical requests against a provider that revokes the previous
// token share one token and one call, and a refresh by either reaches both.
func TestInlineIdenticalRequestsShareOneToken(t *testing.T) {
	h := newHarness(t)
	h.client("send")
	h.credential("a", authv1alpha1.APICredentialSpec{TokenRequest: h.flowC("send"), Target: targetSpec("a-token")})
	h.credential("b", authv1alpha1.APICredentialSpec{TokenRequest: h.flowC("send"), Target: targetSpec("b-token")})
	h.waitCondition("a", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	h.waitCondition("b", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	same := func() string {
		a, b := tokenIn(t, h.ns, "a-token"), tokenIn(t, h.ns, "b-token")
		if a == "" || a != b {
			return "a and b hold different tokens"
		}
		if _, revoked := h.sb.RevokedAt(a); revoked {
			return "the shared token is revoked"
		}
		return ""
	}
	h.eventually(readyWait, same)
	if n := h.sb.Calls("send"); n != 1 {
		t.Errorf("%d provider calls for two identical requests, want 1", n)
	}
	// A refresh asked of one reaches the other at once.
	edit(t, h.get("a"), func(c *authv1alpha1.APICredential) {
		c.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: "now"}
	})
	old := tokenIn(t, h.ns, "b-token")
	start := time.Now()
	h.eventually(readyWait, func() string {
		if tokenIn(t, h.ns, "b-token") == old {
			return "b still holds the token a's refresh revoked"
		}
		return same()
	})
	t.Logf("b held the revoked token for %.2f s after a's refresh was asked", time.Since(start).Seconds())
	if n := h.sb.Calls("send"); n != 2 {
		t.Errorf("%d provider calls after one refresh, want 2", n)
	}
}

// TestTokenProviderServesItsNamespace: a TokenProvider serves consumers of
// its own namespace, and a namespaced install tells a consumer of a
// ClusterTokenProvider that it serves none.
func TestTokenProviderServesItsNamespace(t *testing.T) {
	h := newHarness(t)
	h.client("bank")
	p := &authv1alpha1.TokenProvider{
		ObjectMeta: metav1.ObjectMeta{Name: "bank", Namespace: h.ns},
		Spec:       authv1alpha1.TokenProviderSpec{TokenRequest: *h.flowB("bank")},
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	h.consumer(h.ns, "app", "", "bank")
	h.consumer(h.ns, "other", authv1alpha1.KindTokenProvider, "bank")
	h.consumer(h.ns, "cluster", authv1alpha1.KindClusterTokenProvider, "bank")
	h.waitCondition("app", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	h.waitCondition("other", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
	h.waitCondition("cluster", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderNotFound, readyWait)
	if a, b := tokenIn(t, h.ns, "app-token"), tokenIn(t, h.ns, "other-token"); a == "" || a != b {
		t.Error("the two consumers do not hold the provider's one token")
	}
	if n := h.sb.Calls("bank"); n != 1 {
		t.Errorf("%d provider calls for two consumers, want 1", n)
	}
	h.eventually(readyWait, func() string {
		got := &authv1alpha1.TokenProvider{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
			return err.Error()
		}
		if r := meta.FindStatusCondition(got.Status.Conditions, authv1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue || got.Status.Consumers != 2 {
			return fmt.Sprintf("provider status Ready %+v, consumers %d; want True and 2", r, got.Status.Consumers)
		}
		return ""
	})
	h.consumer(h.ns, "missing", "", "nobody")
	h.waitCondition("missing", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderNotFound, readyWait)
}
