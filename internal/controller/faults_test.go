package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// The §7 cases of the behaviour contract ("When the cluster or a provider
// misbehaves") against the real manager, API server and sandbox. Each test
// logs the figure it measured, so that the numbers can be quoted.

// tcpProxy forwards TCP connections to an address until cut: then it closes
// every open connection and refuses new ones (accepts and closes them at
// once, so clients fail fast instead of hanging) until heal.
type tcpProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]struct{}
	refused int // connections accepted and closed while down
	wg      sync.WaitGroup
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &tcpProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.refused++
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut while dialling
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes every open connection and refuses new ones until heal.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *tcpProxy) refusedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// apiServerAddr is host:port of the envtest API server, and the host name
// its certificate is checked against.
func apiServerAddr(t *testing.T, c *rest.Config) (hostport, hostname string) {
	t.Helper()
	host := c.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		t.Fatalf("API server address %q: %v", c.Host, err)
	}
	hostport = u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "443")
	}
	return hostport, u.Hostname()
}

// throughProxy makes the manager reach the API server through p. TLS is
// still verified against the API server's name: the proxy only moves bytes.
func throughProxy(p *tcpProxy, hostname string) harnessOption {
	return func(hc *harnessConfig) {
		hc.restConfig = func(c *rest.Config) *rest.Config {
			c.Host = "https://" + p.addr()
			if c.ServerName == "" {
				c.ServerName = hostname
			}
			return c
		}
	}
}

// editSecret changes a Secret of the test's namespace as a user would.
func (h *harness) editSecret(name string, f func(*corev1.Secret)) {
	h.t.Helper()
	edit(h.t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}}, f)
}

// eventCount counts events of a reason, series included: the events
// recorder folds a repeated event into one object with a series count.
func (h *harness) eventCount(reason string) int {
	n := 0
	for _, e := range h.events() {
		if e.Reason != reason {
			continue
		}
		n += seriesCount(e)
	}
	return n
}

func seriesCount(e eventsv1.Event) int {
	if e.Series != nil && e.Series.Count > 1 {
		return int(e.Series.Count)
	}
	return 1
}

func TestFaultAPIServerUnreachable(t *testing.T) {
	needCluster(t)
	target, hostname := apiServerAddr(t, cfg)
	proxy := startTCPProxy(t, target)
	h := newHarness(t, throughProxy(proxy, hostname))
	h.sb.SetLifetime("B", 30*time.Second)
	// Several credentials, so that "every credential whose refresh came
	// due" is measured as the slowest of them.
	const creds = 3
	names := make([]string, creds)
	for i := range names {
		names[i] = fmt.Sprintf("partition-%d", i)
		h.client(names[i])
		h.credential(names[i], authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(names[i]), Target: targetSpec(names[i] + "-token")})
	}
	old := map[string]string{}
	var latestExpiry time.Time
	for _, n := range names {
		h.waitCondition(n, authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
		s := h.targetSecret(n + "-token")
		old[n] = string(s.Data["token"])
		exp, err := time.Parse(time.RFC3339, string(s.Data["expires-at"]))
		if err != nil {
			t.Fatalf("%s expires-at: %v", n, err)
		}
		if exp.After(latestExpiry) {
			latestExpiry = exp
		}
	}

	const cutFor = 60 * time.Second
	proxy.cut()
	cutAt := time.Now()
	callsAtCut := h.sb.TotalCalls()
	// The scenario is a duration: the refreshes come due (~10 s after
	// issue) and the tokens expire (30 s) while the API server is away.
	time.Sleep(cutFor)
	duringCut := h.sb.TotalCalls() - callsAtCut
	refused := proxy.refusedCount()
	proxy.heal()
	healedAt := time.Now()
	if !latestExpiry.Before(healedAt) {
		t.Fatalf("a token (expires %s) did not expire during the cut (%s to %s): the scenario is void",
			latestExpiry.Format(time.RFC3339), cutAt.Format(time.RFC3339), healedAt.Format(time.RFC3339))
	}
	if refused == 0 {
		t.Errorf("the manager made no connection attempt through the proxy during the cut: is it really behind it?")
	}
	if duringCut != 0 {
		t.Errorf("%d provider calls during the %s API server cut, want 0 (a token that cannot be stored is wasted)", duringCut, cutFor)
	}

	recovered := map[string]time.Duration{}
	h.eventually(120*time.Second, func() string {
		for _, n := range names {
			if _, ok := recovered[n]; ok {
				continue
			}
			s := h.targetSecret(n + "-token")
			if s == nil {
				continue
			}
			if tok := string(s.Data["token"]); tok != old[n] && h.sb.Valid(tok) {
				recovered[n] = time.Since(healedAt)
			}
		}
		if len(recovered) < creds {
			return fmt.Sprintf("fresh tokens for %d of %d credentials", len(recovered), creds)
		}
		return ""
	})
	var slowest time.Duration
	var each []string
	for _, n := range names {
		slowest = max(slowest, recovered[n])
		each = append(each, fmt.Sprintf("%s %s", n, recovered[n].Round(time.Millisecond)))
	}
	if slowest > 30*time.Second {
		t.Errorf("slowest fresh token %s after the API server came back, want <= 30s (%s)", slowest.Round(time.Millisecond), strings.Join(each, ", "))
	}
	for _, n := range names {
		h.waitCondition(n, authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	}
	after := h.sb.TotalCalls() - callsAtCut
	if after != creds {
		t.Errorf("%d provider calls from the cut to the fresh tokens of %d credentials, want %d", after, creds, creds)
	}
	t.Logf("API server cut %s (%d connections refused): %d provider calls during the cut; fresh tokens after heal: slowest %s (%s); %d provider calls from cut to fresh tokens",
		cutFor, refused, duringCut, slowest.Round(time.Millisecond), strings.Join(each, ", "), after)
}

func TestFaultDriftedTokenKeysRestored(t *testing.T) {
	h := newHarness(t)
	h.client("drift")
	h.credential("drift", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("drift"), Target: targetSpec("drift-token")})
	h.waitCondition("drift", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	orig := h.targetSecret("drift-token")
	token := string(orig.Data["token"])
	expires := string(orig.Data["expires-at"])

	restored := func(step string, want int) func() string {
		return func() string {
			s := h.targetSecret("drift-token")
			if s == nil {
				return step + ": target Secret missing"
			}
			if string(s.Data["token"]) != token || string(s.Data["authorization"]) != "Bearer "+token || string(s.Data["expires-at"]) != expires {
				return step + ": token keys not restored yet"
			}
			if string(s.Data["user-note"]) != "mine" {
				return fmt.Sprintf("%s: the user's key was not kept: %q", step, s.Data["user-note"])
			}
			if n := h.eventCount(EventTargetRestored); n < want {
				return fmt.Sprintf("%s: %d TargetRestored events, want %d", step, n, want)
			}
			return ""
		}
	}

	// 1. token overwritten with junk, and a key of the user's own added.
	edited := time.Now()
	h.editSecret("drift-token", func(s *corev1.Secret) {
		s.Data["token"] = []byte("junk-edited-by-hand")
		s.Data["user-note"] = []byte("mine")
	})
	h.eventually(15*time.Second, restored("token overwritten", 1))
	tookEdit := time.Since(edited)

	// 2. authorization removed.
	removed := time.Now()
	h.editSecret("drift-token", func(s *corev1.Secret) { delete(s.Data, "authorization") })
	h.eventually(15*time.Second, restored("authorization removed", 2))
	tookRemove := time.Since(removed)

	if n := h.sb.Calls("drift"); n != 1 {
		t.Errorf("%d provider calls, want 1 (restores must not mint)", n)
	}
	t.Logf("overwritten token restored in %s, removed authorization in %s; provider calls %d; TargetRestored events %d",
		tookEdit.Round(time.Millisecond), tookRemove.Round(time.Millisecond), h.sb.Calls("drift"), h.eventCount(EventTargetRestored))
}

func TestFaultLateCABundleConfigMap(t *testing.T) {
	h := newHarness(t)
	h.client("lateca")
	tr := h.flowB("lateca")
	tr.CABundle = &authv1alpha1.CABundle{ConfigMapName: ptr.To("sandbox-ca-cm"), Key: "ca.crt"}
	h.credential("lateca", authv1alpha1.APICredentialSpec{TokenRequest: tr, Target: targetSpec("lateca-token")})
	c := h.waitCondition("lateca", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonSourceSecretMissing, readyWait)
	if msg := condition(c, authv1alpha1.ConditionDegraded).Message; !strings.Contains(msg, `ConfigMap "sandbox-ca-cm"`) {
		t.Errorf("Degraded message does not name the ConfigMap: %q", msg)
	}
	if n := h.sb.Calls("lateca"); n != 0 {
		t.Errorf("%d provider calls without the CA bundle, want 0", n)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-ca-cm", Namespace: h.ns},
		Data:       map[string]string{"ca.crt": string(h.sb.CA.CertPEM)},
	}
	if err := k8s.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	h.waitCondition("lateca", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
	took := time.Since(created)
	h.waitCondition("lateca", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, "", 5*time.Second)
	if n := h.sb.Calls("lateca"); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
	t.Logf("Ready %s after the CA bundle ConfigMap was created; %d provider call(s)", took.Round(time.Millisecond), h.sb.Calls("lateca"))
}

// notFoundCounter is the sandbox's answer for any path but the token paths:
// 404, counted per Basic user, as the sandbox counts its token paths.
type notFoundCounter struct {
	mu    sync.Mutex
	calls map[string][]time.Time
}

func (n *notFoundCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, _, _ := r.BasicAuth()
	n.mu.Lock()
	if n.calls == nil {
		n.calls = map[string][]time.Time{}
	}
	n.calls[id] = append(n.calls[id], time.Now())
	n.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"error":"not_found"}`))
}

func (n *notFoundCounter) count(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.calls[id])
}

func (n *notFoundCounter) times(id string) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.calls[id]...)
}

func offsets(start time.Time, ts []time.Time) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Sub(start).Round(100 * time.Millisecond).String())
	}
	return "[" + b.String() + "]"
}

func TestFaultBrokenConfigurationNotHammered(t *testing.T) {
	nf := &notFoundCounter{}
	h := newHarness(t, func(hc *harnessConfig) { hc.sandbox.Fallback = nf })
	const window, bar = 3 * time.Minute, 6

	h.client("broken-404")
	wrongPath := h.flowB("broken-404")
	wrongPath.URL = h.sb.URL + "/no-such-path"
	h.client("broken-field")
	noToken := h.flowB("broken-field")
	noToken.Response = &authv1alpha1.ResponseMapping{TokenField: "no_such_field"}
	start := time.Now()
	h.credential("broken-404", authv1alpha1.APICredentialSpec{TokenRequest: wrongPath, Target: targetSpec("broken-404-token")})
	h.credential("broken-field", authv1alpha1.APICredentialSpec{TokenRequest: noToken, Target: targetSpec("broken-field-token")})

	// Both fail as InvalidResponse (404: unexpected status; no token field).
	for _, name := range []string{"broken-404", "broken-field"} {
		h.waitCondition(name, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonInvalidResponse, readyWait)
	}

	// The scenario is a duration: count what the provider sees in it.
	var fieldTimes []time.Time
	last := 0
	for time.Since(start) < window {
		if n := h.sb.Calls("broken-field"); n != last {
			for range n - last {
				fieldTimes = append(fieldTimes, time.Now())
			}
			last = n
		}
		if n := nf.count("broken-404"); n > bar {
			t.Fatalf("404 credential: %d calls in %s, want <= %d: %s", n, time.Since(start).Round(time.Second), bar, offsets(start, nf.times("broken-404")))
		}
		if last > bar {
			t.Fatalf("no-token credential: %d calls in %s, want <= %d: %s", last, time.Since(start).Round(time.Second), bar, offsets(start, fieldTimes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	n404, nField := nf.count("broken-404"), h.sb.Calls("broken-field")
	if n404 > bar || nField > bar {
		t.Errorf("calls in the first %s: 404 %d, no token field %d; want <= %d each", window, n404, nField, bar)
	}
	if n404 == 0 || nField == 0 {
		t.Errorf("calls in the first %s: 404 %d, no token field %d; want at least the first call each", window, n404, nField)
	}
	if n := h.sb.Calls("broken-404"); n != 0 {
		t.Errorf("%d calls of the 404 credential reached a token path", n)
	}
	t.Logf("calls in the first %s (bar %d): 404 credential %d at %s; no-token-field credential %d at ~%s",
		window, bar, n404, offsets(start, nf.times("broken-404")), nField, offsets(start, fieldTimes))
}

func TestFaultRacingCredentialsOneTarget(t *testing.T) {
	h := newHarness(t)
	const races = 5
	type pair struct{ target, a, b string }
	pairs := make([]pair, races)
	for i := range pairs {
		p := pair{target: fmt.Sprintf("race-%d-token", i), a: fmt.Sprintf("race-%d-a", i), b: fmt.Sprintf("race-%d-b", i)}
		h.client(p.a)
		h.client(p.b)
		pairs[i] = p
	}
	for _, p := range pairs {
		// Back to back, no wait.
		h.credential(p.a, authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(p.a), Target: targetSpec(p.target)})
		h.credential(p.b, authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(p.b), Target: targetSpec(p.target)})
	}
	winsA, totalCalls := 0, 0
	for _, p := range pairs {
		var winner, loser *authv1alpha1.APICredential
		h.eventually(readyWait, func() string {
			a, b := h.get(p.a), h.get(p.b)
			for _, c := range [][2]*authv1alpha1.APICredential{{a, b}, {b, a}} {
				ready := condition(c[0], authv1alpha1.ConditionReady)
				conflict := condition(c[1], authv1alpha1.ConditionDegraded)
				if ready != nil && ready.Status == metav1.ConditionTrue &&
					conflict != nil && conflict.Status == metav1.ConditionTrue && conflict.Reason == authv1alpha1.ReasonTargetConflict {
					winner, loser = c[0], c[1]
					return ""
				}
			}
			return fmt.Sprintf("%s: %s reason %q, %s reason %q", p.target, p.a, a.Status.Reason, p.b, b.Status.Reason)
		})
		if winner.Name == p.a {
			winsA++
		}
		calls := h.sb.Calls(p.a) + h.sb.Calls(p.b)
		totalCalls += calls
		if calls != 1 {
			t.Errorf("%s: %d provider calls (%s %d, %s %d), want exactly 1", p.target, calls, p.a, h.sb.Calls(p.a), p.b, h.sb.Calls(p.b))
		}
		if n := h.sb.Calls(loser.Name); n != 0 {
			t.Errorf("%s: the loser %s made %d provider calls, want 0", p.target, loser.Name, n)
		}
		s := h.targetSecret(p.target)
		owner := metav1.GetControllerOf(s)
		if owner == nil || owner.UID != winner.UID {
			t.Errorf("%s: controller owner %+v, want the Ready %s (%s)", p.target, owner, winner.Name, winner.UID)
		}
		if tok := string(s.Data["token"]); !h.sb.Valid(tok) {
			t.Errorf("%s holds no valid token", p.target)
		} else if cl, err := h.sb.Claims(tok); err != nil || cl.Subject != winner.Name {
			t.Errorf("%s: the token is not the owner's (%s)", p.target, winner.Name)
		}
	}
	final := 0
	for _, p := range pairs {
		final += h.sb.Calls(p.a) + h.sb.Calls(p.b)
	}
	if final != races {
		t.Errorf("%d provider calls over %d races, want %d", final, races, races)
	}
	t.Logf("%d races: %d won by the first created, %d by the second; %d provider calls in all (%d per race)",
		races, winsA, races-winsA, final, final/races)
}

func TestFaultBudgetHeldCredentialWritesNoStatus(t *testing.T) {
	h := newHarness(t, func(hc *harnessConfig) { hc.auth.HostRequestsPerMinute = 1 })
	h.client("budget-a")
	h.credential("budget-a", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("budget-a"), Target: targetSpec("budget-a-token")})
	h.waitCondition("budget-a", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	firstAt := time.Now()

	h.client("budget-b")
	h.credential("budget-b", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("budget-b"), Target: targetSpec("budget-b-token")})
	// Its first wait recorded: the first pass's status (no token yet).
	var waiting *authv1alpha1.APICredential
	h.eventually(readyWait, func() string {
		waiting = h.get("budget-b")
		if cond := condition(waiting, authv1alpha1.ConditionReady); cond == nil || cond.Reason != authv1alpha1.ReasonNotIssued {
			return fmt.Sprintf("budget-b: no wait recorded yet: Ready %+v", cond)
		}
		return ""
	})
	rv := waiting.ResourceVersion
	firstStatus := time.Now()
	readsBefore := h.apiReads.Load()
	const watch = 5 * time.Second
	// Count status writes while it is held: first over the 5 s asked for,
	// then over the rest of the wait, until its call goes out. The object
	// is read before the call count, so a write that follows the call is
	// never counted as a write while held.
	writesFirst, writesHeld := 0, 0
	var readsHeld int64
	var deg *metav1.Condition
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(tick) {
		// Until 5 s before the budget frees (a minute after the first
		// call), nothing may be read for the waiting credential.
		if time.Since(firstAt) < 55*time.Second {
			readsHeld = h.apiReads.Load() - readsBefore
		}
		c := h.get("budget-b")
		if h.sb.Calls("budget-b") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("budget-b: no call %s after the first token with a budget of 1/min", time.Since(firstAt).Round(time.Second))
		}
		if c.ResourceVersion != rv {
			writesHeld++
			if time.Since(firstStatus) <= watch {
				writesFirst++
			}
			rv = c.ResourceVersion
		}
		if d := condition(c, authv1alpha1.ConditionDegraded); d != nil && d.Status == metav1.ConditionTrue {
			deg = d
		}
	}
	heldFor := time.Since(firstStatus)
	if readsHeld > 0 {
		t.Errorf("budget-b: %d uncached API reads (source Secrets) while waiting for the host budget, want 0", readsHeld)
	}
	if writesFirst != 0 {
		t.Errorf("budget-b: %d status writes in the first %s of waiting after its first status was recorded, want 0", writesFirst, watch)
	}
	if writesHeld != 0 {
		t.Errorf("budget-b: %d status writes in %s of waiting for the host budget, want 0", writesHeld, heldFor.Round(time.Second))
	}
	if deg != nil {
		t.Errorf("budget-b: Degraded=True/%s while waiting for the budget: waiting is not a failure", deg.Reason)
	}
	next := "none"
	if nt := waiting.Status.NextRefreshTime; nt != nil {
		next = fmt.Sprintf("%s after the first token", nt.Sub(firstAt).Round(time.Second))
	}
	t.Logf("waiting credential: %d status writes in the first %s, %d in the whole %s it was held, %d source Secret reads (status.nextRefreshTime while held: %s); its call went out %s after the first token",
		writesFirst, watch, writesHeld, heldFor.Round(time.Second), readsHeld, next, time.Since(firstAt).Round(time.Second))

	h.waitCondition("budget-b", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	// The counter works: the pass that made the call read the sources.
	if n := h.apiReads.Load() - readsBefore; n == 0 {
		t.Errorf("budget-b: no uncached reads counted at all, even for the pass that called the provider")
	}
	if n := h.sb.Calls("budget-b"); n != 1 {
		t.Errorf("budget-b: %d provider calls, want 1", n)
	}
	t.Logf("budget-b Ready %s after the first token; %d provider call(s)", time.Since(firstAt).Round(time.Second), h.sb.Calls("budget-b"))
}
