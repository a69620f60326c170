package controller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

const (
	tick      = 100 * time.Millisecond
	readyWait = 20 * time.Second
)

// checkTarget asserts the target Secret's shape: keys, owner, labels and
// annotations.
func (h *harness) checkTarget(cred *authv1alpha1.APICredential, secretName string) *corev1.Secret {
	h.t.Helper()
	s := h.targetSecret(secretName)
	if s == nil {
		h.t.Fatalf("target Secret %s missing", secretName)
	}
	tok := string(s.Data["token"])
	if tok == "" {
		h.t.Fatalf("target Secret %s has no token", secretName)
	}
	if got := string(s.Data["authorization"]); got != "Bearer "+tok {
		h.t.Errorf("authorization is not Bearer + token")
	}
	exp, err := time.Parse(time.RFC3339, string(s.Data["expires-at"]))
	if cred.Spec.Static == nil || len(s.Data["expires-at"]) > 0 {
		if err != nil || !exp.After(time.Now()) {
			h.t.Errorf("expires-at %q is not a future RFC 3339 time", s.Data["expires-at"])
		}
		if s.Annotations[authv1alpha1.AnnotationExpiresAt] != string(s.Data["expires-at"]) {
			h.t.Errorf("expires-at annotation %q differs from key %q", s.Annotations[authv1alpha1.AnnotationExpiresAt], s.Data["expires-at"])
		}
	}
	if _, err := time.Parse(time.RFC3339, s.Annotations[authv1alpha1.AnnotationIssuedAt]); err != nil {
		h.t.Errorf("issued-at annotation: %v", err)
	}
	if s.Type != corev1.SecretTypeOpaque {
		h.t.Errorf("type %q", s.Type)
	}
	if s.Labels[authv1alpha1.LabelManagedBy] != "tokenwarden" || s.Labels[authv1alpha1.LabelCredential] != cred.Name {
		h.t.Errorf("labels %v", s.Labels)
	}
	owner := metav1.GetControllerOf(s)
	if owner == nil || owner.UID != cred.UID || owner.Kind != "APICredential" {
		h.t.Errorf("controller owner %+v, want APICredential %s", owner, cred.UID)
	}
	return s
}

func TestEachFlowBecomesReady(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	// Flow A: client certificate (PKCS#12, legacy encryption, as many issued
	// .pfx files are) + Basic GET.
	passA := h.client("bank-m2m")
	cc, err := h.sb.CA.IssueClient("bank-m2m", sandbox.KeyRSA, time.Now().Add(-time.Hour), time.Now().Add(20*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	passphrase := randomValue("pass")
	p12, err := cc.PKCS12(passphrase, true)
	if err != nil {
		t.Fatal(err)
	}
	cert := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bank-m2m-cert", Namespace: h.ns},
		Data:       map[string][]byte{"certificate.p12": p12, "passphrase": []byte(passphrase)},
	}
	if err := k8s.Create(ctx, cert); err != nil {
		t.Fatal(err)
	}
	_ = passA
	a := h.credential("bank", authv1alpha1.APICredentialSpec{
		TokenRequest: &authv1alpha1.TokenRequest{
			URL:       h.sb.URL + sandbox.PathFlowA,
			Method:    authv1alpha1.MethodGET,
			BasicAuth: &authv1alpha1.BasicAuth{SecretName: "bank-m2m", UsernameKey: "id", PasswordKey: "secret"},
			ClientCertificate: &authv1alpha1.ClientCertificate{
				SecretName: "bank-m2m-cert", PKCS12Key: ptr.To(authv1alpha1.SecretKey("certificate.p12")),
				PassphraseKey: ptr.To(authv1alpha1.SecretKey("passphrase")),
			},
			CABundle: h.caBundle(),
		},
		Target: targetSpec("bank-token"),
	})

	// Flow B: OAuth2 client credentials.
	h.client("psp")
	b := h.credential("psp", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("psp"), Target: targetSpec("psp-token")})

	// Flow C: JSON credentials, 201, camelCase, absolute expiry.
	h.client("send")
	c := h.credential("send", authv1alpha1.APICredentialSpec{
		TokenRequest: &authv1alpha1.TokenRequest{
			URL: h.sb.URL + sandbox.PathFlowC,
			JSON: []authv1alpha1.Parameter{
				{Name: "clientId", ValueFrom: &authv1alpha1.ValueSource{SecretKeyRef: authv1alpha1.SecretKeySelector{Name: "send", Key: "id"}}},
				{Name: "clientSecret", ValueFrom: &authv1alpha1.ValueSource{SecretKeyRef: authv1alpha1.SecretKeySelector{Name: "send", Key: "secret"}}},
			},
			Response:            &authv1alpha1.ResponseMapping{TokenField: "accessToken", ExpiresAtField: "expiresAt"},
			InvalidatesPrevious: true,
			CABundle:            h.caBundle(),
		},
		Target: targetSpec("send-token"),
	})

	// Flow D: static application token.
	jwt := jwtWithExp(time.Now().Add(30 * 24 * time.Hour))
	appSecret := randomValue("appsecret")
	secrets.add(jwt)
	h.secret("shop-app-token", map[string]string{"jwt": jwt, "secret": appSecret})
	d := h.credential("shop", authv1alpha1.APICredentialSpec{
		Static: &authv1alpha1.StaticToken{SecretName: "shop-app-token", TokenKey: "jwt", SecretKey: ptr.To(authv1alpha1.SecretKey("secret"))},
		Target: targetSpec("shop-authorization"),
	})

	for _, cred := range []*authv1alpha1.APICredential{a, b, c, d} {
		got := h.waitCondition(cred.Name, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, readyWait)
		h.checkTarget(got, string(cred.Spec.Target.SecretName))
		if got.Status.TokenExpiresAt == nil || got.Status.LastRefreshTime == nil {
			t.Errorf("%s: status lacks tokenExpiresAt or lastRefreshTime: %+v", cred.Name, got.Status)
		}
		if got.Status.ObservedGeneration != got.Generation {
			t.Errorf("%s: observedGeneration %d, generation %d", cred.Name, got.Status.ObservedGeneration, got.Generation)
		}
	}
	// Flow tokens are genuine sandbox tokens.
	for _, name := range []string{"bank-token", "psp-token", "send-token"} {
		if tok := string(h.targetSecret(name).Data["token"]); !h.sb.Valid(tok) {
			t.Errorf("%s holds a token the sandbox does not accept", name)
		}
	}
	if got := string(h.targetSecret("shop-authorization").Data["authorization"]); got != "Bearer "+appSecret+"."+jwt {
		t.Errorf("static authorization is not Bearer {secret}.{jwt}")
	}
	// Flow A's certificate expires in 20 days: status and a warning event.
	if got := h.get("bank"); got.Status.ClientCertificateExpiresAt == nil ||
		!got.Status.ClientCertificateExpiresAt.Time.Equal(cc.Cert.NotAfter.Truncate(time.Second)) {
		t.Errorf("clientCertificateExpiresAt = %v, want %v", got.Status.ClientCertificateExpiresAt, cc.Cert.NotAfter)
	}
	h.eventually(5*time.Second, func() string {
		r := h.eventReasons()
		if r[EventClientCertificateExpiringSoon] != 1 || r[EventTokenRefreshed] < 4 {
			return fmt.Sprintf("events %v", r)
		}
		return ""
	})
	for _, id := range []string{"bank-m2m", "psp", "send"} {
		if n := h.sb.Calls(id); n != 1 {
			t.Errorf("%s: %d provider calls, want 1", id, n)
		}
	}
}

// watchExposure samples the target Secret every tick until stop is closed and
// reports every token seen and every moment it held an expired one.
func (h *harness) watchExposure(name string, stop <-chan struct{}) (tokens *[]string, expired *[]string, wait func()) {
	var mu sync.Mutex
	var seen, bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := ""
		for {
			select {
			case <-stop:
				return
			case <-time.After(tick):
			}
			s := &corev1.Secret{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, s); err != nil {
				continue
			}
			now := time.Now()
			exp, err := time.Parse(time.RFC3339, string(s.Data["expires-at"]))
			mu.Lock()
			if tok := string(s.Data["token"]); tok != last {
				last = tok
				seen = append(seen, tok)
				secrets.add(tok)
			}
			if err != nil || !now.Before(exp) {
				bad = append(bad, fmt.Sprintf("at %s the Secret held a token expiring %s", now.Format(time.RFC3339Nano), s.Data["expires-at"]))
			}
			mu.Unlock()
		}
	}()
	return &seen, &bad, func() { <-done }
}

func TestShortTokensRefreshOncePerLifetimeWithoutExposure(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 6*time.Second)
	h.client("short")
	h.credential("short", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("short"), Target: targetSpec("short-token")},
		refreshBefore(3*time.Second))
	h.waitCondition("short", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	start := h.sb.Calls("short")

	stop := make(chan struct{})
	tokens, expired, wait := h.watchExposure("short-token", stop)
	time.Sleep(33 * time.Second) // over five 6 s lifetimes
	close(stop)
	wait()

	calls := h.sb.Calls("short") - start
	// Each sample after the first that shows a new token is one refresh.
	refreshes := len(*tokens) - 1
	t.Logf("%d provider calls, %d new tokens seen in 33 s", calls, refreshes)
	if calls < 5 {
		t.Errorf("only %d refreshes in 33 s of 6 s tokens", calls)
	}
	if calls != refreshes && calls != refreshes+1 { // the last one may land after the final sample
		t.Errorf("%d provider calls for %d refreshes: want exactly one per refresh", calls, refreshes)
	}
	if len(*expired) > 0 {
		t.Errorf("the target Secret held an expired token %d times, first: %s", len(*expired), (*expired)[0])
	}
	if got := h.eventReasons()[EventRefreshFailed]; got != 0 {
		t.Errorf("%d RefreshFailed events", got)
	}
}

func TestRestartMakesNoProviderCalls(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 90*time.Second) // refresh window opens after ~36 s
	for i := range 3 {
		id := fmt.Sprintf("restart-%d", i)
		h.client(id)
		h.credential(id, authv1alpha1.APICredentialSpec{TokenRequest: h.flowB(id), Target: targetSpec(id + "-token")})
	}
	for i := range 3 {
		h.waitCondition(fmt.Sprintf("restart-%d", i), authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	}
	before := h.sb.TotalCalls()
	rv := map[string]string{}
	for i := range 3 {
		rv[fmt.Sprint(i)] = h.get(fmt.Sprintf("restart-%d", i)).ResourceVersion
	}
	h.stopManager()
	h.startManager()
	time.Sleep(8 * time.Second)
	if got := h.sb.TotalCalls() - before; got != 0 {
		t.Errorf("%d provider calls after a restart with valid tokens, want 0", got)
	}
	for i := range 3 {
		if got := h.get(fmt.Sprintf("restart-%d", i)).ResourceVersion; got != rv[fmt.Sprint(i)] {
			t.Errorf("restart-%d: status written after a restart that changed nothing", i)
		}
	}
}

func TestConflictingSecretWriteIsRetriedWithoutSecondCall(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 8*time.Second)
	h.client("conflict")
	h.credential("conflict", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("conflict"), Target: targetSpec("conflict-token")},
		refreshBefore(5*time.Second))
	h.waitCondition("conflict", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	// The next write of the Secret fails, first with a 409 (retried inline
	// as a write), then with a 500 (retried by the next pass, which writes
	// the token already minted).
	for _, injected := range []error{
		apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "conflict-token", fmt.Errorf("injected")),
		apierrors.NewInternalError(fmt.Errorf("injected")),
	} {
		old := string(h.targetSecret("conflict-token").Data["token"])
		calls := h.sb.Calls("conflict")
		h.failErr = injected
		h.failUpdates.Store(1)
		h.eventually(15*time.Second, func() string {
			if tok := string(h.targetSecret("conflict-token").Data["token"]); tok == old {
				return "token not refreshed yet"
			}
			return ""
		})
		if got := h.sb.Calls("conflict") - calls; got != 1 {
			t.Errorf("%d provider calls for one refresh whose first write failed with %v, want 1", got, injected)
		}
		if h.failUpdates.Load() != 0 {
			t.Errorf("the injected %v was not hit", injected)
		}
	}
}

func TestRateLimitedHostCoolsDownForEveryCredential(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 8*time.Second)
	h.client("rl-a")
	h.credential("rl-a", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("rl-a"), Target: targetSpec("rl-a-token")},
		refreshBefore(5*time.Second))
	h.waitCondition("rl-a", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	old := string(h.targetSecret("rl-a-token").Data["token"])

	h.sb.Inject(sandbox.Fault{Kind: sandbox.FaultRespond, Status: 429, Header: map[string]string{"Retry-After": "5"},
		Body: []byte(`{"error":"rate_limited"}`)})
	c := h.waitCondition("rl-a", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonRateLimited, 15*time.Second)
	throttledAt := time.Now()
	if got := string(h.targetSecret("rl-a-token").Data["token"]); got != old {
		t.Errorf("the old token was not kept after a 429")
	}
	if cond := condition(c, authv1alpha1.ConditionReady); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready %s while the old token is still valid", cond.Status)
	}
	total := h.sb.TotalCalls()
	// A new credential for the same host must wait for the cool-down too.
	h.client("rl-b")
	h.credential("rl-b", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("rl-b"), Target: targetSpec("rl-b-token")})
	for time.Since(throttledAt) < 4500*time.Millisecond {
		if got := h.sb.TotalCalls(); got != total {
			t.Fatalf("%d calls to the throttled host %s after the 429 (Retry-After: 5)", got-total, time.Since(throttledAt))
		}
		time.Sleep(tick)
	}
	h.waitCondition("rl-b", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
	h.waitCondition("rl-a", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, "", 20*time.Second)
	if r := h.eventReasons(); r[EventRateLimited] < 1 {
		t.Errorf("no RateLimited event: %v", r)
	}
}

func TestProviderDownKeepsTokenAndBacksOff(t *testing.T) {
	h := newHarness(t)
	h.sb.SetLifetime("B", 12*time.Second)
	h.client("down")
	h.credential("down", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("down"), Target: targetSpec("down-token")},
		refreshBefore(9*time.Second))
	h.waitCondition("down", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	good := h.targetSecret("down-token")
	exp, _ := time.Parse(time.RFC3339, string(good.Data["expires-at"]))
	calls := h.sb.Calls("down")

	h.sb.Inject(sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, Times: -1})
	c := h.waitCondition("down", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonProviderUnavailable, 15*time.Second)
	if time.Now().Before(exp) && condition(c, authv1alpha1.ConditionReady).Status != metav1.ConditionTrue {
		t.Errorf("Ready went False before the token expired")
	}
	h.waitCondition("down", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonTokenExpired, 20*time.Second)
	if got := h.targetSecret("down-token"); !bytes.Equal(got.Data["token"], good.Data["token"]) {
		t.Errorf("the last good token was not kept")
	}
	// Count calls over 25 s of outage: the backoff never goes under the 10 s
	// floor, and after expiry it is capped at 30 s.
	h.sb.ResetCalls()
	time.Sleep(25 * time.Second)
	n := h.sb.Calls("down")
	t.Logf("%d calls in 25 s of outage (%d before)", n, calls)
	if n < 1 || n > 3 {
		t.Errorf("%d calls in 25 s of outage, want 1-3 (10 s floor, 30 s cap once expired)", n)
	}
	h.sb.ClearFaults()
	h.waitCondition("down", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 35*time.Second)
	if got := h.get("down").Status.ConsecutiveFailures; got != 0 {
		t.Errorf("consecutiveFailures %d after recovery", got)
	}
}

func TestWrongPasswordDoesNotStormAndFixIsImmediate(t *testing.T) {
	h := newHarness(t)
	h.client("wrong")
	good := randomValue("secret")
	h.sb.AddClient("wrong", good) // the provider now expects good; the Secret holds another
	h.credential("wrong", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("wrong"), Target: targetSpec("wrong-token")})
	c := h.waitCondition("wrong", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonInvalidCredentials, readyWait)
	if cond := condition(c, authv1alpha1.ConditionReady); cond.Reason != authv1alpha1.ReasonNotIssued {
		t.Errorf("Ready reason %s, want NotIssued", cond.Reason)
	}
	if !strings.Contains(condition(c, authv1alpha1.ConditionDegraded).Message, "401") {
		t.Errorf("Degraded message does not give the status code: %q", condition(c, authv1alpha1.ConditionDegraded).Message)
	}
	time.Sleep(30 * time.Second)
	if n := h.sb.Calls("wrong"); n != 1 {
		t.Errorf("%d provider calls in 30 s with a wrong password, want 1", n)
	}
	fixedAt := time.Now()
	h.updateSecret("wrong", map[string]string{"secret": good})
	h.waitCondition("wrong", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 5*time.Second)
	t.Logf("token %s after the password was fixed", time.Since(fixedAt).Round(time.Millisecond))
	h.waitCondition("wrong", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, "", 5*time.Second)
}

func TestForeignTargetSecretIsLeftUntouched(t *testing.T) {
	h := newHarness(t)
	h.client("foreign")
	foreign := h.secret("taken", map[string]string{"token": "someone-elses", "other": "data"})
	h.credential("foreign", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("foreign"), Target: targetSpec("taken")})
	c := h.waitCondition("foreign", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonTargetConflict, readyWait)
	if !strings.Contains(condition(c, authv1alpha1.ConditionDegraded).Message, "spec.target.secretName") {
		t.Errorf("message does not name the field: %q", condition(c, authv1alpha1.ConditionDegraded).Message)
	}
	time.Sleep(2 * time.Second)
	got := h.targetSecret("taken")
	if got.ResourceVersion != foreign.ResourceVersion || string(got.Data["token"]) != "someone-elses" || len(got.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret was modified")
	}
	if n := h.sb.Calls("foreign"); n != 0 {
		t.Errorf("%d provider calls for a credential whose target is taken, want 0", n)
	}
	if r := h.eventReasons(); r[EventTargetConflict] != 1 {
		t.Errorf("events %v, want one TargetConflict", r)
	}
	// Once the squatter is gone, the credential takes the name.
	if err := k8s.Delete(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	h.waitCondition("foreign", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
}

func TestDeletedTargetIsRecreatedWithoutProviderCall(t *testing.T) {
	h := newHarness(t)
	h.client("recreate")
	h.credential("recreate", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("recreate"), Target: targetSpec("recreate-token")})
	h.waitCondition("recreate", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	s := h.targetSecret("recreate-token")
	if err := k8s.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, func() string {
		n := h.targetSecret("recreate-token")
		if n == nil || n.UID == s.UID {
			return "not recreated yet"
		}
		if !bytes.Equal(n.Data["token"], s.Data["token"]) {
			return "recreated with another token"
		}
		return ""
	})
	if n := h.sb.Calls("recreate"); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
}

func TestNoOpReconcileWritesNothing(t *testing.T) {
	h := newHarness(t)
	h.client("noop")
	h.credential("noop", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("noop"), Target: targetSpec("noop-token")})
	h.waitCondition("noop", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	time.Sleep(time.Second)
	c := h.get("noop")
	s := h.targetSecret("noop-token")
	events := len(h.events())
	// Unrelated changes: a label on the credential, a label on the target.
	c.Labels = map[string]string{"team": "payments"}
	if err := k8s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	s.Labels["team"] = "payments"
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if n := h.sb.Calls("noop"); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
	if got := h.get("noop"); !equality.Semantic.DeepEqual(got.Status, c.Status) {
		t.Errorf("status changed on a no-op reconcile:\n%+v\n%+v", c.Status, got.Status)
	}
	if got := len(h.events()); got != events {
		t.Errorf("%d new events on a no-op reconcile", got-events)
	}
}

func TestStaticTokenWarnsThenExpires(t *testing.T) {
	h := newHarness(t)
	// One token expires within the week: warned at once.
	h.secret("soon", map[string]string{"jwt": jwtWithExp(time.Now().Add(72 * time.Hour))})
	h.credential("soon", authv1alpha1.APICredentialSpec{
		Static: &authv1alpha1.StaticToken{SecretName: "soon", TokenKey: "jwt"}, Target: targetSpec("soon-authorization"),
	})
	c := h.waitCondition("soon", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonTokenExpiringSoon, readyWait)
	if cond := condition(c, authv1alpha1.ConditionReady); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready %s for a static token that has not expired", cond.Status)
	}
	// Another expires in seconds: warned, then Ready=False TokenExpired.
	h.secret("brief", map[string]string{"jwt": jwtWithExp(time.Now().Add(5 * time.Second))})
	h.credential("brief", authv1alpha1.APICredentialSpec{
		Static: &authv1alpha1.StaticToken{SecretName: "brief", TokenKey: "jwt", WarnBefore: &metav1.Duration{Duration: 3 * time.Second}},
		Target: targetSpec("brief-authorization"),
	})
	h.waitCondition("brief", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	h.waitCondition("brief", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonTokenExpired, 10*time.Second)
	if got := string(h.targetSecret("brief-authorization").Data["authorization"]); !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("the expired static token was removed from the target Secret")
	}
	// A new token in the source Secret is synced at once.
	h.updateSecret("brief", map[string]string{"jwt": jwtWithExp(time.Now().Add(30 * 24 * time.Hour))})
	h.waitCondition("brief", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid, 5*time.Second)
	h.waitCondition("brief", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, "", 5*time.Second)
	if r := h.eventReasons(); r[EventTokenExpiringSoon] != 2 {
		t.Errorf("events %v, want one TokenExpiringSoon per credential", r)
	}
}

func TestRefreshRequestAnnotationAndSuspend(t *testing.T) {
	h := newHarness(t)
	h.client("ondemand")
	h.credential("ondemand", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("ondemand"), Target: targetSpec("ondemand-token")})
	h.waitCondition("ondemand", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	first := string(h.targetSecret("ondemand-token").Data["token"])
	time.Sleep(10 * time.Second) // the floor between two calls

	c := h.get("ondemand")
	c.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: "after-revocation-1"}
	if err := k8s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, func() string {
		if h.get("ondemand").Status.LastHandledRefreshRequest != "after-revocation-1" {
			return "refresh request not handled"
		}
		return ""
	})
	if got := string(h.targetSecret("ondemand-token").Data["token"]); got == first {
		t.Errorf("no new token after a refresh request")
	}
	if n := h.sb.Calls("ondemand"); n != 2 {
		t.Errorf("%d provider calls, want 2", n)
	}

	// Suspended: no calls, even on request; status says so.
	c = h.get("ondemand")
	c.Spec.Suspend = true
	c.Annotations[authv1alpha1.AnnotationRefreshRequestedAt] = "while-suspended"
	if err := k8s.Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	h.waitCondition("ondemand", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, authv1alpha1.ReasonSuspended, 10*time.Second)
	time.Sleep(12 * time.Second)
	if n := h.sb.Calls("ondemand"); n != 2 {
		t.Errorf("%d provider calls while suspended, want 2", n)
	}
	if got := h.get("ondemand"); got.Status.Reason != authv1alpha1.ReasonSuspended || got.Status.NextRefreshTime != nil {
		t.Errorf("suspended status: reason %q, nextRefreshTime %v", got.Status.Reason, got.Status.NextRefreshTime)
	}
}
