package controller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
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
	for i := range 3 {
		testMetrics.Forget(h.ns, fmt.Sprintf("restart-%d", i))
	}
	h.startManager()
	for i := range 3 {
		h.waitReconciled(fmt.Sprintf("restart-%d", i))
	}
	if got := h.sb.TotalCalls() - before; got != 0 {
		t.Errorf("%d provider calls after a restart with valid tokens, want 0", got)
	}
	for i := range 3 {
		if got := h.get(fmt.Sprintf("restart-%d", i)).ResourceVersion; got != rv[fmt.Sprint(i)] {
			t.Errorf("restart-%d: status written after a restart that changed nothing", i)
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

	h.sb.Inject(sandbox.Fault{Kind: sandbox.FaultRespond, Status: 429, Header: map[string]string{"Retry-After": "3"},
		Body: []byte(`{"error":"rate_limited"}`)})
	c := h.waitCondition("rl-a", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonRateLimited, 15*time.Second)
	throttledAt := time.Now()
	if got := string(h.targetSecret("rl-a-token").Data["token"]); got != old {
		t.Errorf("the old token was not kept after a 429")
	}
	if cond := condition(c, authv1alpha1.ConditionReady); cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready %s/%s while the old token is still valid", cond.Status, cond.Reason)
	}
	total := h.sb.TotalCalls()
	// A new credential for the same host must wait for the cool-down too.
	h.client("rl-b")
	h.credential("rl-b", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("rl-b"), Target: targetSpec("rl-b-token")})
	for time.Since(throttledAt) < 2500*time.Millisecond {
		if got := h.sb.TotalCalls(); got != total {
			t.Fatalf("%d calls to the throttled host %s after the 429 (Retry-After: 3)", got-total, time.Since(throttledAt))
		}
		time.Sleep(tick)
	}
	h.waitCondition("rl-b", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
	h.waitCondition("rl-a", authv1alpha1.ConditionDegraded, metav1.ConditionFalse, "", 20*time.Second)
	if r := h.eventReasons(); r[failure.EventRateLimited] < 1 {
		t.Errorf("no RateLimited event: %v", r)
	}
}

func TestFixedSourceSecretIsTriedAtOnce(t *testing.T) {
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
	// The slow retry is TestReconcileWrongPasswordDoesNotStormAndFixIsImmediate;
	// here the watch on the source Secret brings the fix at once.
	if n := h.sb.Calls("wrong"); n != 1 {
		t.Errorf("%d provider calls with a wrong password, want 1", n)
	}
	fixedAt := time.Now()
	h.updateSecret("wrong", map[string]string{"secret": good})
	// At once, but not sooner than 10 s after the failed call.
	h.waitCondition("wrong", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", refresh.Floor+5*time.Second)
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
	got := h.targetSecret("taken")
	if got.ResourceVersion != foreign.ResourceVersion || string(got.Data["token"]) != "someone-elses" || len(got.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret was modified")
	}
	if n := h.sb.Calls("foreign"); n != 0 {
		t.Errorf("%d provider calls for a credential whose target is taken, want 0", n)
	}
	if r := h.eventReasons(); r[failure.EventTargetConflict] != 1 {
		t.Errorf("events %v, want one TargetConflict", r)
	}
	// Once the squatter is gone, the credential takes the name.
	if err := k8s.Delete(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	h.waitCondition("foreign", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
}

// A target name held by another APICredential's Secret: the Secret is in
// the owned cache, not the metadata cache, and its deletion must still reach
// the credential that waits for the name.
func TestTargetHeldByAnotherCredentialIsTakenWhenFreed(t *testing.T) {
	h := newHarness(t)
	h.client("holder")
	h.client("waiter")
	h.credential("holder", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("holder"), Target: targetSpec("held-token")})
	h.waitCondition("holder", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	h.credential("waiter", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("waiter"), Target: targetSpec("held-token")})
	c := h.waitCondition("waiter", authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonTargetConflict, readyWait)
	if next := c.Status.NextRefreshTime; next == nil || time.Until(next.Time) < time.Minute {
		t.Fatalf("the waiter's next attempt %v, want the slow retry minutes away (so that only an event can wake it)", next)
	}
	if n := h.sb.Calls("waiter"); n != 0 {
		t.Errorf("%d provider calls for the waiter while the name is held, want 0", n)
	}
	// The holder goes, and with it its Secret (as the garbage collector,
	// which envtest does not run, would do).
	if err := k8s.Delete(context.Background(), h.get("holder")); err != nil {
		t.Fatal(err)
	}
	held := h.targetSecret("held-token")
	if err := k8s.Delete(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	w := h.waitCondition("waiter", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", 15*time.Second)
	s := h.targetSecret("held-token")
	if owner := metav1.GetControllerOf(s); owner == nil || owner.UID != w.UID {
		t.Errorf("held-token's controller owner %+v, want the waiter (%s)", owner, w.UID)
	}
	t.Logf("the waiter took the freed name %s after its Secret was deleted", time.Since(freed).Round(10*time.Millisecond))
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
	c := h.get("noop")
	s := h.targetSecret("noop-token")
	events := len(h.events())
	// Unrelated changes: a label on the credential, a label on the target.
	// The pass that the target's label change causes (an owned Secret)
	// brings the metric series back: that is when to look.
	testMetrics.Forget(h.ns, "noop")
	edit(t, c.DeepCopy(), func(c *authv1alpha1.APICredential) { c.Labels = map[string]string{"team": "payments"} })
	edit(t, s, func(s *corev1.Secret) {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels["team"] = "payments"
	})
	h.waitReconciled("noop")
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

// The annotation reaches the reconciler through the real watch and its
// predicate; the floor and suspend are TestReconcileRefreshRequestAndSuspend.
func TestRefreshRequestAnnotation(t *testing.T) {
	h := newHarness(t)
	h.client("ondemand")
	h.credential("ondemand", authv1alpha1.APICredentialSpec{TokenRequest: h.flowB("ondemand"), Target: targetSpec("ondemand-token")})
	h.waitCondition("ondemand", authv1alpha1.ConditionReady, metav1.ConditionTrue, "", readyWait)
	first := string(h.targetSecret("ondemand-token").Data["token"])

	edit(t, h.get("ondemand"), func(c *authv1alpha1.APICredential) {
		c.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: "after-revocation-1"}
	})
	// Handled once the 10 s floor after the first call has passed.
	h.eventually(refresh.Floor+10*time.Second, func() string {
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
}
