package controller

// The fast layer: Reconcile against controller-runtime's fake client (with
// the status subresource), a fake clock and a scripted token client. It
// covers the reconciler's own decisions (refresh, wait, every failure class,
// minted-token rewrite, suspend, static, conflicts) and every case that is
// about time, which a fake clock drives in microseconds instead of the real
// minutes the envtest suite would need. The envtest suite keeps the wiring
// and what only a real API server shows.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

const fxNamespace = "payments"

// epoch is a whole second: status times are stored in whole seconds.
var epoch = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// scriptedTokens is the token client of the fast layer: it answers from a
// script, then with fresh tokens of the configured lifetime.
type scriptedTokens struct {
	clock    *clocktesting.FakeClock
	lifetime time.Duration

	mu       sync.Mutex
	script   []error // answers to the next calls; nil means a token
	always   error   // answer once the script is spent; nil means a token
	calls    []time.Time
	cooldown time.Time
}

func (s *scriptedTokens) Fetch(_ context.Context, _ auth.Request) (auth.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var err error
	if len(s.script) > 0 {
		err, s.script = s.script[0], s.script[1:]
	} else {
		err = s.always
	}
	var rl *auth.RateLimitedError
	if errors.As(err, &rl) && rl.Local {
		return auth.Token{}, err // held back: the provider saw nothing
	}
	s.calls = append(s.calls, now)
	if err != nil {
		return auth.Token{}, err
	}
	return auth.Token{Value: fmt.Sprintf("tok-%d-%d", len(s.calls), now.Unix()), IssuedAt: now, ExpiresAt: now.Add(s.lifetime)}, nil
}

func (s *scriptedTokens) HoldUntil(string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cooldown
}

func (s *scriptedTokens) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// recordedEvents keeps what the reconciler emitted.
type recordedEvents struct {
	mu   sync.Mutex
	list []recordedEvent
}

type recordedEvent struct{ typ, reason, action, note string }

func (e *recordedEvents) Eventf(_ runtime.Object, _ runtime.Object, typ, reason, action, note string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, recordedEvent{typ, reason, action, fmt.Sprintf(note, args...)})
}

func (e *recordedEvents) reasons() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, ev := range e.list {
		out[ev.reason]++
	}
	return out
}

// fx is one fast-layer fixture: a fake API, a clock, a token client and
// the reconciler, with one APICredential named "cred".
type fx struct {
	t      *testing.T
	clock  *clocktesting.FakeClock
	api    client.WithWatch
	tokens *scriptedTokens
	events *recordedEvents
	r      *APICredentialReconciler

	// Injected API failures: the next n calls of a kind fail with err.
	mu                       sync.Mutex
	failSecretGets           int
	failSecretUpdates        int
	failErr                  error
	statusPatches, secretPut int
	sourceReads              int
}

type fxOption func(*authv1alpha1.APICredential)

func withSpec(f func(*authv1alpha1.APICredentialSpec)) fxOption {
	return func(c *authv1alpha1.APICredential) { f(&c.Spec) }
}

func fxFlowB() authv1alpha1.APICredentialSpec {
	return authv1alpha1.APICredentialSpec{
		TokenRequest: &authv1alpha1.TokenRequest{
			URL:       "https://psp.example.com/api/token",
			BasicAuth: &authv1alpha1.BasicAuth{SecretName: "psp-client", UsernameKey: "id", PasswordKey: "secret"},
			Form:      []authv1alpha1.Parameter{{Name: "grant_type", Value: ptr.To("client_credentials")}},
		},
		Target: authv1alpha1.TargetSecret{SecretName: "psp-token"},
	}
}

func newFx(t *testing.T, lifetime time.Duration, opts ...fxOption) *fx {
	t.Helper()
	cred := &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{Name: "cred", Namespace: fxNamespace, UID: "0b1e5c0e-0000-4000-8000-000000000001", Generation: 1},
		Spec:       fxFlowB(),
	}
	for _, o := range opts {
		o(cred)
	}
	source := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "psp-client", Namespace: fxNamespace, UID: "5ec0e7-1"},
		Data:       map[string][]byte{"id": []byte("psp"), "secret": []byte("s3cr3t-value")},
	}
	f := &fx{t: t, clock: clocktesting.NewFakeClock(epoch), events: &recordedEvents{}}
	f.tokens = &scriptedTokens{clock: f.clock, lifetime: lifetime}
	f.api = fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&authv1alpha1.APICredential{}).
		WithObjects(cred, source).
		WithInterceptorFuncs(interceptor.Funcs{
			Get:              f.interceptGet,
			Update:           f.interceptUpdate,
			SubResourcePatch: f.interceptStatusPatch,
		}).Build()
	f.r = f.reconciler()
	return f
}

// reconciler is a new reconciler over the same API and clock, with empty
// memory: what a restarted operator is.
func (f *fx) reconciler() *APICredentialReconciler {
	return &APICredentialReconciler{
		Client: f.api, APIReader: f.api, Metadata: f.api, Scheme: scheme,
		Clock: f.clock, Tokens: f.tokens, Recorder: f.events, Rand: func() float64 { return 0.5 },
	}
}

func (f *fx) interceptGet(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok && f.take(&f.failSecretGets) {
		return f.failErr
	}
	if _, ok := obj.(*corev1.Secret); ok && key.Name == "psp-client" {
		f.mu.Lock()
		f.sourceReads++
		f.mu.Unlock()
	}
	return c.Get(ctx, key, obj, opts...)
}

func (f *fx) interceptUpdate(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		if f.take(&f.failSecretUpdates) {
			return f.failErr
		}
		f.mu.Lock()
		f.secretPut++
		f.mu.Unlock()
	}
	return c.Update(ctx, obj, opts...)
}

func (f *fx) interceptStatusPatch(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	f.mu.Lock()
	f.statusPatches++
	f.mu.Unlock()
	return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
}

func (f *fx) take(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *fx) patches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusPatches
}

// reconcile runs one pass and fails the test on an error.
func (f *fx) reconcile() ctrl.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: fxNamespace, Name: "cred"}})
	if err != nil {
		f.t.Fatalf("Reconcile at %s: %v", f.clock.Now().Sub(epoch), err)
	}
	return res
}

// runFor drives the reconciler as the workqueue would, for d of fake time:
// a pass, then the clock moved to the requested wake-up (or by maxStep when
// none was asked). It calls check after every pass.
func (f *fx) runFor(d time.Duration, check func()) {
	f.t.Helper()
	end := f.clock.Now().Add(d)
	const maxStep = 10 * time.Minute
	for f.clock.Now().Before(end) {
		res := f.reconcile()
		if check != nil {
			check()
		}
		step := res.RequeueAfter
		if step <= 0 || step > maxStep {
			step = maxStep
		}
		f.clock.Step(step)
	}
}

func (f *fx) cred() *authv1alpha1.APICredential {
	f.t.Helper()
	c := &authv1alpha1.APICredential{}
	if err := f.api.Get(context.Background(), types.NamespacedName{Namespace: fxNamespace, Name: "cred"}, c); err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fx) target() *corev1.Secret {
	f.t.Helper()
	s := &corev1.Secret{}
	err := f.api.Get(context.Background(), types.NamespacedName{Namespace: fxNamespace, Name: "psp-token"}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fx) update(mutate func(*authv1alpha1.APICredential)) {
	f.t.Helper()
	c := f.cred()
	mutate(c)
	c.Generation++ // the fake API does not count generations
	if err := f.api.Update(context.Background(), c); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fx) updateSource(key, value string) {
	f.t.Helper()
	s := &corev1.Secret{}
	if err := f.api.Get(context.Background(), types.NamespacedName{Namespace: fxNamespace, Name: "psp-client"}, s); err != nil {
		f.t.Fatal(err)
	}
	s.Data[key] = []byte(value)
	if err := f.api.Update(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
}

func degraded(c *authv1alpha1.APICredential) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, authv1alpha1.ConditionDegraded)
}

func ready(c *authv1alpha1.APICredential) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, authv1alpha1.ConditionReady)
}

func TestReconcileFirstTokenThenWaits(t *testing.T) {
	f := newFx(t, 5*time.Minute)
	res := f.reconcile()
	if n := f.tokens.count(); n != 1 {
		t.Fatalf("%d provider calls for the first token, want 1", n)
	}
	s := f.target()
	if s == nil || !strings.HasPrefix(string(s.Data["token"]), "tok-1-") || string(s.Data["authorization"]) != "Bearer "+string(s.Data["token"]) {
		t.Fatalf("target Secret %+v", s)
	}
	if got := string(s.Data["expires-at"]); got != epoch.Add(5*time.Minute).Format(time.RFC3339) {
		t.Errorf("expires-at %q", got)
	}
	c := f.cred()
	if r := ready(c); r.Status != metav1.ConditionTrue || r.Reason != authv1alpha1.ReasonTokenValid || r.ObservedGeneration != 1 {
		t.Errorf("Ready %+v", r)
	}
	if d := degraded(c); d.Status != metav1.ConditionFalse || d.Reason != authv1alpha1.ReasonRefreshSucceeded {
		t.Errorf("Degraded %+v", d)
	}
	// The default for 5 min is 3 min before expiry, jitter moves it earlier.
	want := refresh.Schedule(refresh.Token{IssuedAt: epoch, ExpiresAt: epoch.Add(5 * time.Minute)}, 0, false, jitter(c.UID, epoch))
	want = ceilSecond(want)
	if c.Status.NextRefreshTime == nil || !c.Status.NextRefreshTime.Time.Equal(want) {
		t.Errorf("nextRefreshTime %v, want %v", c.Status.NextRefreshTime, want)
	}
	if res.RequeueAfter != want.Sub(epoch) {
		t.Errorf("RequeueAfter %v, want %v", res.RequeueAfter, want.Sub(epoch))
	}
	if c.Status.LastAttemptTime == nil || !c.Status.LastAttemptTime.Time.Equal(epoch) {
		t.Errorf("lastAttemptTime %v", c.Status.LastAttemptTime)
	}
	if r := f.events.reasons(); r[EventTokenRefreshed] != 1 || len(r) != 1 {
		t.Errorf("events %v", r)
	}
	// A pass before the refresh is due calls nothing and writes nothing.
	patches := f.patches()
	f.clock.Step(time.Minute)
	f.reconcile()
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls before the refresh is due", n)
	}
	if got := f.patches() - patches; got != 0 {
		t.Errorf("%d status writes on a no-op pass", got)
	}
	if r := f.events.reasons(); r[EventTokenRefreshed] != 1 {
		t.Errorf("events on a no-op pass: %v", r)
	}
}

// One provider call per refresh, each made while the token in the Secret is
// still valid, for lifetimes from seconds to a day, both refresh defaults.
func TestReconcileRefreshesOncePerLifetimeWithoutExposure(t *testing.T) {
	for _, lifetime := range []time.Duration{6 * time.Second, 20 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour} {
		for _, invalidates := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v invalidatesPrevious=%v", lifetime, invalidates), func(t *testing.T) {
				f := newFx(t, lifetime, withSpec(func(s *authv1alpha1.APICredentialSpec) { s.TokenRequest.InvalidatesPrevious = invalidates }))
				lastCalls, lastExpiry := 0, time.Time{}
				f.runFor(6*lifetime, func() {
					now := f.clock.Now()
					if n := f.tokens.count(); n != lastCalls {
						if n != lastCalls+1 {
							t.Fatalf("at %v: %d calls in one pass", now.Sub(epoch), n-lastCalls)
						}
						if lastCalls > 0 && !now.Before(lastExpiry) {
							t.Fatalf("at %v: refreshed %v after the token expired", now.Sub(epoch), now.Sub(lastExpiry))
						}
						lastCalls = n
						lastExpiry, _ = time.Parse(time.RFC3339, string(f.target().Data["expires-at"]))
					}
					if !now.Before(lastExpiry) {
						t.Fatalf("at %v the Secret holds a token that expired at %v", now.Sub(epoch), lastExpiry.Sub(epoch))
					}
				})
				// Each token is used for lifetime-refreshBefore-jitter, and
				// at least half its lifetime (tokens under 20 s) or 10 s.
				calls := f.tokens.count()
				rb := refresh.DefaultRefreshBefore(lifetime, invalidates)
				most := int(6*lifetime/max(lifetime-rb-lifetime/10, min(refresh.Floor, lifetime/2))) + 1
				least := int(6*lifetime/max(lifetime-rb, min(refresh.Floor, lifetime/2))) - 1
				t.Logf("%d calls over 6 lifetimes (bounds %d-%d)", calls, least, most)
				if calls < least || calls > most {
					t.Errorf("%d calls over 6 lifetimes, want %d-%d", calls, least, most)
				}
			})
		}
	}
}

func TestReconcileRestartMakesNoCall(t *testing.T) {
	f := newFx(t, 10*time.Minute)
	f.reconcile()
	f.clock.Step(2 * time.Minute)
	patches := f.patches()
	// A restarted operator: no memory, the same Secret and status.
	f.r = f.reconciler()
	f.reconcile()
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls after a restart with a valid token, want 1", n)
	}
	if got := f.patches() - patches; got != 0 {
		t.Errorf("%d status writes after a restart that changed nothing", got)
	}
	// With its status lost too (restored from a backup without status),
	// the annotations on the Secret still say the token is current.
	c := f.cred()
	c.Status = authv1alpha1.APICredentialStatus{}
	if err := f.api.Status().Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	f.r = f.reconciler()
	f.reconcile()
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls after a restart with lost status, want 1", n)
	}
	if r := ready(f.cred()); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v after the status was rebuilt", r)
	}
}

// The regression found in review: a pass whose read of the target Secret
// failed wrote Ready=False/NotIssued while a good token sat in the Secret.
func TestReconcileFailedTargetLoadWritesNoStatus(t *testing.T) {
	f := newFx(t, 10*time.Minute)
	f.reconcile()
	before := f.cred().Status
	f.clock.Step(time.Minute)
	patches := f.patches()
	f.failErr = apierrors.NewInternalError(errors.New("etcd leader changed"))
	f.failSecretGets = 1
	_, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: fxNamespace, Name: "cred"}})
	if err == nil {
		t.Fatal("Reconcile hid an API error from the workqueue")
	}
	if got := f.patches() - patches; got != 0 {
		t.Errorf("%d status writes after the target could not be read", got)
	}
	after := f.cred().Status
	if r := ready(&authv1alpha1.APICredential{Status: after}); r.Status != metav1.ConditionTrue || r.Reason != authv1alpha1.ReasonTokenValid {
		t.Errorf("Ready became %s/%s while a good token is in the Secret", r.Status, r.Reason)
	}
	if !after.NextRefreshTime.Equal(before.NextRefreshTime) {
		t.Errorf("the planned refresh moved from %v to %v", before.NextRefreshTime, after.NextRefreshTime)
	}
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls", n)
	}
}

// A failed write of the Secret never costs a second token: a 409 is retried
// in the same pass; a 500 fails the pass, and the next one writes the token
// already minted.
func TestReconcileFailedWriteReusesMintedToken(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		failPass bool
	}{
		{"409 retried as a write", apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "psp-token", errors.New("injected")), false},
		{"500 retried by the next pass", apierrors.NewInternalError(errors.New("injected")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, 5*time.Minute)
			f.reconcile()
			first := string(f.target().Data["token"])
			f.clock.Step(f.cred().Status.NextRefreshTime.Sub(f.clock.Now()))
			f.failErr, f.failSecretUpdates = tc.err, 1
			_, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: fxNamespace, Name: "cred"}})
			if (err != nil) != tc.failPass {
				t.Fatalf("Reconcile error %v, want failure %v", err, tc.failPass)
			}
			if tc.failPass {
				f.reconcile()
			}
			if n := f.tokens.count(); n != 2 {
				t.Errorf("%d provider calls for one refresh whose write failed, want 2 in all", n)
			}
			if got := string(f.target().Data["token"]); got == first || !strings.HasPrefix(got, "tok-2-") {
				t.Errorf("the Secret holds %q, want the second token", got)
			}
			// Deleting the Secret: rewritten with the same token, no call.
			tok := f.target()
			if err := f.api.Delete(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			f.reconcile()
			if got := f.target(); got == nil || string(got.Data["token"]) != string(tok.Data["token"]) {
				t.Errorf("a deleted target was not rewritten with the minted token")
			}
			if n := f.tokens.count(); n != 2 {
				t.Errorf("%d provider calls after the target was deleted, want 2", n)
			}
		})
	}
}

// failureCase is one way an attempt can fail, and what must follow.
type failureCase struct {
	name string
	// err is the token client's answer; setup breaks something locally.
	err   error
	setup func(*fx)
	// recovering: a token minted from the same inputs exists.
	reason, event string
	// sent: the request reached the network (lastAttemptTime is set).
	sent bool
	// retry is the expected wait before the next attempt; zero: only on a
	// change.
	retry time.Duration
	// counted: a failed attempt (consecutiveFailures, metric), not a
	// problem found before the attempt started.
	counted bool
}

func failureCases() []failureCase {
	return []failureCase{
		{name: "429 with Retry-After", err: &auth.RateLimitedError{Host: "psp.example.com:443", StatusCode: 429, RetryAfter: 45 * time.Second, HasRetryAfter: true},
			reason: authv1alpha1.ReasonRateLimited, event: failure.EventRateLimited, sent: true, retry: 45 * time.Second, counted: true},
		// Full jitter at attempt 1 (ceiling 2 s, rnd 0.5): 1 s, floored at 10 s.
		{name: "503", err: &auth.TransientError{Host: "psp.example.com:443", StatusCode: 503, Problem: "provider error"},
			reason: authv1alpha1.ReasonProviderUnavailable, event: failure.EventRefreshFailed, sent: true, retry: refresh.Floor, counted: true},
		{name: "401", err: &auth.InvalidCredentialsError{Host: "psp.example.com:443", StatusCode: 401, OAuthError: "invalid_client"},
			reason: authv1alpha1.ReasonInvalidCredentials, event: failure.EventRefreshFailed, sent: true, retry: refresh.SlowRetry, counted: true},
		// Doubling, attempt 1: 4 s floored at 10 s, +5 % (rnd 0.5), rounded
		// up to the second status holds.
		{name: "404", err: &auth.InvalidResponseError{Host: "psp.example.com:443", StatusCode: 404, Problem: "unexpected status"},
			reason: authv1alpha1.ReasonInvalidResponse, event: failure.EventRefreshFailed, sent: true, retry: 11 * time.Second, counted: true},
		{name: "address refused by policy", err: &auth.ConfigurationError{Field: "url", Problem: "resolves to 10.0.0.1, a private address"},
			reason: authv1alpha1.ReasonInvalidSpec, event: failure.EventRefreshFailed, sent: false, retry: 0, counted: true},
		{name: "client certificate rejected locally", err: &auth.ClientCertificateError{Problem: "expired"},
			reason: authv1alpha1.ReasonInvalidClientCertificate, event: failure.EventRefreshFailed, sent: false, retry: refresh.SlowRetry, counted: true},
		{name: "missing key", setup: func(f *fx) {
			f.update(func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.BasicAuth.PasswordKey = "password" })
		}, reason: authv1alpha1.ReasonSourceSecretMissing, event: failure.EventRefreshFailed, retry: refresh.SlowRetry, counted: true},
		{name: "broken template", setup: func(f *fx) {
			f.update(func(c *authv1alpha1.APICredential) { c.Spec.Target.Template = map[string]string{"env": "{{ .Nope }}"} })
		}, reason: authv1alpha1.ReasonInvalidSpec, event: failure.EventRefreshFailed, retry: 0, counted: true},
		{name: "missing Secret", setup: func(f *fx) {
			f.update(func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.BasicAuth.SecretName = "gone" })
		}, reason: authv1alpha1.ReasonSourceSecretMissing, event: failure.EventRefreshFailed, retry: refresh.SlowRetry},
		{name: "invalid URL", setup: func(f *fx) {
			f.update(func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.URL = "http://psp.example.com/token" })
		}, reason: authv1alpha1.ReasonInvalidSpec, event: failure.EventRefreshFailed, retry: 0},
		{name: "target taken by a foreign Secret", setup: func(f *fx) {
			if err := f.api.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "psp-token", Namespace: fxNamespace}}); err != nil {
				f.t.Fatal(err)
			}
		}, reason: authv1alpha1.ReasonTargetConflict, event: failure.EventTargetConflict, retry: refresh.SlowRetry},
	}
}

// Every failure class, on a credential that never had a token: the
// condition, the event, the retry plan, lastAttemptTime and what a pass
// before the retry does (nothing).
func TestReconcileFailureClasses(t *testing.T) {
	for _, tc := range failureCases() {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, 5*time.Minute)
			if tc.setup != nil {
				tc.setup(f)
			}
			if tc.err != nil {
				f.tokens.always = tc.err
			}
			res := f.reconcile()
			c := f.cred()
			d := degraded(c)
			if d == nil || d.Status != metav1.ConditionTrue || d.Reason != tc.reason {
				t.Fatalf("Degraded %+v, want True/%s", d, tc.reason)
			}
			if r := ready(c); r.Status != metav1.ConditionFalse || r.Reason != authv1alpha1.ReasonNotIssued {
				t.Errorf("Ready %+v", r)
			}
			if r := f.events.reasons(); r[tc.event] != 1 || len(r) != 1 {
				t.Errorf("events %v, want one %s", r, tc.event)
			}
			if (c.Status.LastAttemptTime != nil) != tc.sent {
				t.Errorf("lastAttemptTime %v, want set: %v", c.Status.LastAttemptTime, tc.sent)
			}
			if want := map[bool]int32{true: 1, false: 0}[tc.counted]; c.Status.ConsecutiveFailures != want {
				t.Errorf("consecutiveFailures %d, want %d", c.Status.ConsecutiveFailures, want)
			}
			if tc.retry == 0 {
				if c.Status.NextRefreshTime != nil || res.RequeueAfter != 0 {
					t.Errorf("nextRefreshTime %v, RequeueAfter %v; want neither (only a change retries)", c.Status.NextRefreshTime, res.RequeueAfter)
				}
			} else {
				want := epoch.Add(tc.retry)
				if c.Status.NextRefreshTime == nil || !c.Status.NextRefreshTime.Time.Equal(want) {
					t.Errorf("nextRefreshTime %v, want %v", c.Status.NextRefreshTime, want)
				}
				if res.RequeueAfter != tc.retry {
					t.Errorf("RequeueAfter %v, want %v", res.RequeueAfter, tc.retry)
				}
			}
			// A pass before the retry (an unrelated event) does nothing.
			calls, patches := f.tokens.count(), f.patches()
			f.clock.Step(time.Second)
			f.reconcile()
			if n := f.tokens.count() - calls; n != 0 {
				t.Errorf("%d provider calls before the retry", n)
			}
			if n := f.patches() - patches; n != 0 {
				t.Errorf("%d status writes before the retry", n)
			}
			if r := f.events.reasons(); r[tc.event] != 1 {
				t.Errorf("events %v after a pass that changed nothing", r)
			}
			if strings.Contains(d.Message, "s3cr3t-value") {
				t.Errorf("condition message holds a secret value: %q", d.Message)
			}
		})
	}
}

// The same failures on a credential whose token is still valid: the token
// stays, Ready stays True, and a transient failure retries before expiry.
func TestReconcileFailureKeepsTheLastGoodToken(t *testing.T) {
	for _, tc := range failureCases() {
		if tc.setup != nil {
			continue // local problems before any token: covered above
		}
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, 5*time.Minute)
			f.reconcile()
			good := string(f.target().Data["token"])
			f.clock.Step(f.cred().Status.NextRefreshTime.Sub(f.clock.Now()))
			f.tokens.always = tc.err
			f.reconcile()
			c := f.cred()
			if got := string(f.target().Data["token"]); got != good {
				t.Errorf("the last good token was replaced")
			}
			if r := ready(c); r.Status != metav1.ConditionTrue {
				t.Errorf("Ready %s/%s while the token is valid", r.Status, r.Reason)
			}
			if d := degraded(c); d.Reason != tc.reason {
				t.Errorf("Degraded reason %s, want %s", d.Reason, tc.reason)
			}
			exp, _ := time.Parse(time.RFC3339, string(f.target().Data["expires-at"]))
			if tc.reason == authv1alpha1.ReasonProviderUnavailable || tc.reason == authv1alpha1.ReasonInvalidResponse {
				if next := c.Status.NextRefreshTime; next == nil || !next.Time.Before(exp) {
					t.Errorf("retry at %v, not before the token expires at %v", next, exp)
				}
			}
		})
	}
}

// A provider that is down: the token stays until it expires, attempts never
// come closer than 10 s, and at most 30 s apart once it has expired; the
// first success after recovery clears the failure.
func TestReconcileProviderDownBacksOff(t *testing.T) {
	f := newFx(t, 2*time.Minute)
	f.reconcile()
	exp, _ := time.Parse(time.RFC3339, string(f.target().Data["expires-at"]))
	f.tokens.always = &auth.TransientError{Host: "psp.example.com:443", StatusCode: 503, Problem: "provider error"}
	f.tokens.mu.Lock()
	f.tokens.calls = nil
	f.tokens.mu.Unlock()
	f.runFor(10*time.Minute, nil)
	calls := f.tokens.calls
	for i := 1; i < len(calls); i++ {
		gap := calls[i].Sub(calls[i-1])
		if gap < refresh.Floor {
			t.Errorf("attempts %v apart at %v", gap, calls[i].Sub(epoch))
		}
		if !calls[i-1].Before(exp) && gap > refresh.ExpiredBackoffMax+time.Second {
			t.Errorf("attempts %v apart after expiry at %v, want at most %v", gap, calls[i].Sub(epoch), refresh.ExpiredBackoffMax)
		}
	}
	t.Logf("%d attempts in 10 minutes of outage", len(calls))
	c := f.cred()
	if r := ready(c); r.Reason != authv1alpha1.ReasonTokenExpired {
		t.Errorf("Ready reason %s after expiry", r.Reason)
	}
	f.tokens.always = nil
	f.runFor(refresh.ExpiredBackoffMax+time.Second, nil)
	c = f.cred()
	if r := ready(c); r.Status != metav1.ConditionTrue || c.Status.ConsecutiveFailures != 0 {
		t.Errorf("not recovered within 30 s: Ready %s, consecutiveFailures %d", r.Status, c.Status.ConsecutiveFailures)
	}
}

// A configuration that never produced a token and gets no usable answer
// is not hammered: at most 6 calls in 3 minutes, then one every 10 minutes.
// Once the same inputs produced a token, the same answer is a passing fault.
func TestReconcileBrokenConfigurationIsNotHammered(t *testing.T) {
	f := newFx(t, 5*time.Minute)
	f.tokens.always = &auth.InvalidResponseError{Host: "psp.example.com:443", StatusCode: 404, Problem: "unexpected status"}
	f.runFor(3*time.Minute, nil)
	if n := f.tokens.count(); n > 6 || n < 4 {
		t.Errorf("%d calls in the first 3 minutes, want 4-6", n)
	}
	first := f.tokens.count()
	f.runFor(time.Hour, nil)
	if n := f.tokens.count() - first; n > 7 {
		t.Errorf("%d calls in the following hour, want about 6", n)
	}
	t.Logf("%d calls in 3 minutes, %d in the hour after", first, f.tokens.count()-first)

	// The fix (a spec change) is tried at once.
	f.tokens.always = nil
	f.update(func(c *authv1alpha1.APICredential) { c.Spec.TokenRequest.URL = "https://psp.example.com/oauth/token" })
	calls := f.tokens.count()
	f.reconcile()
	if n := f.tokens.count() - calls; n != 1 {
		t.Fatalf("%d calls after the fix, want 1 at once", n)
	}
	// Now a 404 is treated as a provider fault: retried within 30 s of
	// expiry, not every 10 minutes.
	f.tokens.always = &auth.InvalidResponseError{Host: "psp.example.com:443", StatusCode: 404, Problem: "unexpected status"}
	exp, _ := time.Parse(time.RFC3339, string(f.target().Data["expires-at"]))
	f.runFor(exp.Sub(f.clock.Now())+2*time.Minute, nil)
	last := f.tokens.calls[len(f.tokens.calls)-1]
	if gap := f.clock.Now().Sub(last); gap > refresh.ExpiredBackoffMax+time.Minute {
		t.Errorf("last attempt %v ago, want recovery-style retries", gap)
	}
}

// A wrong password costs one call per 10 minutes; fixing the Secret is
// tried at once.
func TestReconcileWrongPasswordDoesNotStormAndFixIsImmediate(t *testing.T) {
	f := newFx(t, 5*time.Minute)
	f.tokens.always = &auth.InvalidCredentialsError{Host: "psp.example.com:443", StatusCode: 401}
	f.runFor(25*time.Minute, nil)
	if n := f.tokens.count(); n != 3 {
		t.Errorf("%d calls in 25 minutes with a wrong password, want 3 (every 10 minutes)", n)
	}
	f.tokens.always = nil
	f.updateSource("secret", "fixed-value")
	f.reconcile()
	if n := f.tokens.count(); n != 4 {
		t.Errorf("%d calls after the fix, want one more at once", n)
	}
	if c := f.cred(); ready(c).Status != metav1.ConditionTrue || degraded(c).Status != metav1.ConditionFalse {
		t.Errorf("not Ready after the fix")
	}
}

// The host's shared 429 cool-down and the operator's own per-host budget
// hold a credential back without a failure.
func TestReconcileHostLimitsAreNotFailures(t *testing.T) {
	t.Run("host cool-down", func(t *testing.T) {
		f := newFx(t, 5*time.Minute)
		f.tokens.cooldown = epoch.Add(40 * time.Second)
		res := f.reconcile()
		if n := f.tokens.count(); n != 0 {
			t.Errorf("%d calls during the host's cool-down", n)
		}
		if res.RequeueAfter != 40*time.Second {
			t.Errorf("RequeueAfter %v, want the cool-down's end", res.RequeueAfter)
		}
		if d := degraded(f.cred()); d != nil && d.Status == metav1.ConditionTrue {
			t.Errorf("Degraded %+v while waiting for the cool-down", d)
		}
	})
	t.Run("per-host budget", func(t *testing.T) {
		f := newFx(t, 5*time.Minute)
		f.tokens.script = []error{&auth.RateLimitedError{Host: "psp.example.com:443", RetryAfter: 3 * time.Second, HasRetryAfter: true, Local: true}}
		res := f.reconcile()
		c := f.cred()
		if d := degraded(c); d != nil && d.Status == metav1.ConditionTrue {
			t.Errorf("Degraded %+v after a local hold", d)
		}
		if c.Status.LastAttemptTime != nil || c.Status.ConsecutiveFailures != 0 {
			t.Errorf("a local hold counted as an attempt: %+v", c.Status)
		}
		if res.RequeueAfter != 3*time.Second {
			t.Errorf("RequeueAfter %v", res.RequeueAfter)
		}
		f.clock.Step(3 * time.Second)
		f.reconcile()
		if n := f.tokens.count(); n != 1 {
			t.Errorf("%d calls once the budget allowed", n)
		}
	})
}

func TestReconcileRefreshRequestAndSuspend(t *testing.T) {
	f := newFx(t, time.Hour)
	f.reconcile()
	f.clock.Step(time.Minute)
	setAnnotation := func(v string) {
		c := f.cred()
		c.Annotations = map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: v}
		if err := f.api.Update(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	setAnnotation("after-revocation-1")
	f.reconcile()
	if n := f.tokens.count(); n != 2 {
		t.Fatalf("%d calls after a refresh request, want 2", n)
	}
	if got := f.cred().Status.LastHandledRefreshRequest; got != "after-revocation-1" {
		t.Errorf("lastHandledRefreshRequest %q", got)
	}
	// A second request within 10 s waits for the floor.
	setAnnotation("again")
	f.clock.Step(2 * time.Second)
	res := f.reconcile()
	if n := f.tokens.count(); n != 2 || res.RequeueAfter != refresh.Floor-2*time.Second {
		t.Errorf("%d calls, RequeueAfter %v; want 2 and the rest of the floor", n, res.RequeueAfter)
	}

	f.update(func(c *authv1alpha1.APICredential) {
		c.Spec.Suspend = true
		c.Annotations[authv1alpha1.AnnotationRefreshRequestedAt] = "while-suspended"
	})
	f.runFor(3*time.Hour, nil)
	c := f.cred()
	if n := f.tokens.count(); n != 2 {
		t.Errorf("%d calls while suspended", n)
	}
	if d := degraded(c); d.Status != metav1.ConditionFalse || d.Reason != authv1alpha1.ReasonSuspended || c.Status.Reason != authv1alpha1.ReasonSuspended || c.Status.NextRefreshTime != nil {
		t.Errorf("suspended status %+v", c.Status)
	}
	if r := ready(c); r.Reason != authv1alpha1.ReasonTokenExpired {
		t.Errorf("Ready %s after the suspended token expired", r.Reason)
	}
	f.update(func(c *authv1alpha1.APICredential) { c.Spec.Suspend = false })
	f.reconcile()
	if n := f.tokens.count(); n != 3 {
		t.Errorf("%d calls after unsuspending, want a new token at once", n)
	}
}

func TestReconcileStaticToken(t *testing.T) {
	exp := epoch.Add(10 * 24 * time.Hour)
	f := newFx(t, 0, withSpec(func(s *authv1alpha1.APICredentialSpec) {
		s.TokenRequest = nil
		s.Static = &authv1alpha1.StaticToken{SecretName: "shop-app", TokenKey: "jwt", WarnBefore: &metav1.Duration{Duration: 7 * 24 * time.Hour}}
	}))
	jwt := jwtWithExp(exp)
	if err := f.api.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-app", Namespace: fxNamespace}, Data: map[string][]byte{"jwt": []byte(jwt)},
	}); err != nil {
		t.Fatal(err)
	}
	res := f.reconcile()
	c := f.cred()
	if got := string(f.target().Data["authorization"]); got != "Bearer "+jwt {
		t.Errorf("authorization is not Bearer + the JWT")
	}
	if c.Status.NextRefreshTime != nil || f.tokens.count() != 0 {
		t.Errorf("static: nextRefreshTime %v, %d provider calls", c.Status.NextRefreshTime, f.tokens.count())
	}
	if ev := f.events.list; len(ev) != 1 || ev[0].reason != EventTokenRefreshed || ev[0].action != "Sync" {
		t.Errorf("events %+v, want one TokenRefreshed with action Sync", ev)
	}
	// Wakes up when the warning starts: 3 days from now.
	if res.RequeueAfter != 3*24*time.Hour {
		t.Errorf("RequeueAfter %v, want the start of the warning", res.RequeueAfter)
	}
	f.clock.Step(res.RequeueAfter)
	f.reconcile()
	f.reconcile()
	if d := degraded(f.cred()); d.Reason != authv1alpha1.ReasonTokenExpiringSoon {
		t.Errorf("Degraded %s, want TokenExpiringSoon", d.Reason)
	}
	if r := f.events.reasons(); r[EventTokenExpiringSoon] != 1 {
		t.Errorf("events %v, want one TokenExpiringSoon", r)
	}
	f.clock.Step(8 * 24 * time.Hour)
	f.reconcile()
	if r := ready(f.cred()); r.Status != metav1.ConditionFalse || r.Reason != authv1alpha1.ReasonTokenExpired {
		t.Errorf("Ready %+v after exp", r)
	}
	if got := string(f.target().Data["authorization"]); got != "Bearer "+jwt {
		t.Errorf("the expired static token was removed")
	}
}

// Token keys edited or removed by hand are restored from the current token
// without a provider call, by this process or a restarted one; keys the
// user added are left alone.
func TestReconcileRestoresEditedTokenKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(data map[string][]byte)
		restart bool
	}{
		{"token edited", func(d map[string][]byte) { d["token"] = []byte("edited-by-hand") }, false},
		{"authorization edited", func(d map[string][]byte) { d["authorization"] = []byte("Bearer nope") }, false},
		{"token removed", func(d map[string][]byte) { delete(d, "token") }, false},
		{"expires-at removed", func(d map[string][]byte) { delete(d, "expires-at") }, false},
		{"token edited, after a restart", func(d map[string][]byte) { d["token"] = []byte("edited-by-hand") }, true},
		{"authorization removed, after a restart", func(d map[string][]byte) { delete(d, "authorization") }, true},
		{"both edited, after a restart: a new token", func(d map[string][]byte) {
			d["token"], d["authorization"] = []byte("x"), []byte("Bearer x")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFx(t, time.Hour)
			f.reconcile()
			good := f.target()
			s := good.DeepCopy()
			tc.edit(s.Data)
			s.Data["user-key"] = []byte("kept")
			if err := f.api.Update(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if tc.restart {
				f.r = f.reconciler()
			}
			f.clock.Step(time.Minute)
			f.reconcile()
			got := f.target()
			unrecoverable := strings.HasPrefix(tc.name, "both")
			for _, k := range []string{"token", "authorization", "expires-at"} {
				if !unrecoverable && string(got.Data[k]) != string(good.Data[k]) {
					t.Errorf("key %s = %q, want it restored", k, got.Data[k])
				}
			}
			if string(got.Data["user-key"]) != "kept" {
				t.Errorf("the user's key was not kept: %q", got.Data["user-key"])
			}
			wantCalls := map[bool]int{false: 1, true: 2}[unrecoverable]
			if n := f.tokens.count(); n != wantCalls {
				t.Errorf("%d provider calls, want %d", n, wantCalls)
			}
			if !unrecoverable && f.events.reasons()[EventTargetRestored] != 1 {
				t.Errorf("events %v, want one TargetRestored", f.events.reasons())
			}
			// Restored once: the next pass finds nothing to do.
			puts := f.secretPut
			f.reconcile()
			if f.secretPut != puts {
				t.Errorf("the Secret was written again by a pass with nothing to restore")
			}
		})
	}
}

// Two APICredentials naming one target at once: the pass that loses the
// race to create the Secret makes no provider call.
func TestReconcileRacingCredentialsMintOneToken(t *testing.T) {
	f := newFx(t, time.Hour)
	other := f.cred().DeepCopy()
	other.ObjectMeta = metav1.ObjectMeta{Name: "other", Namespace: fxNamespace, UID: "0b1e5c0e-0000-4000-8000-000000000002", Generation: 1}
	other.Status = authv1alpha1.APICredentialStatus{}
	if err := f.api.Create(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	// "other" reads the target's metadata (absent), then "cred" runs a
	// whole pass before "other" goes on.
	first := true
	raced := f.r
	inner := f.reconciler()
	raced.Metadata = interceptor.NewClient(f.api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			err := c.Get(ctx, key, obj, opts...)
			if key.Name == "psp-token" && first {
				first = false
				if _, rerr := inner.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: fxNamespace, Name: "cred"}}); rerr != nil {
					t.Errorf("cred's pass: %v", rerr)
				}
			}
			return err
		},
	})
	if _, err := raced.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: fxNamespace, Name: "other"}}); err != nil {
		t.Fatal(err)
	}
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls for two credentials racing for one target, want 1", n)
	}
	o := &authv1alpha1.APICredential{}
	if err := f.api.Get(context.Background(), types.NamespacedName{Namespace: fxNamespace, Name: "other"}, o); err != nil {
		t.Fatal(err)
	}
	if d := degraded(o); d == nil || d.Reason != authv1alpha1.ReasonTargetConflict {
		t.Errorf("the loser's Degraded %+v, want TargetConflict", d)
	}
	if owner := metav1.GetControllerOf(f.target()); owner == nil || owner.Name != "cred" {
		t.Errorf("target owned by %+v, want cred", owner)
	}
}

// A CA bundle ConfigMap that does not exist yet is a missing source, named
// as a ConfigMap; once it exists the next pass asks for the token.
func TestReconcileLateCABundleConfigMap(t *testing.T) {
	f := newFx(t, time.Hour, withSpec(func(s *authv1alpha1.APICredentialSpec) {
		s.TokenRequest.CABundle = &authv1alpha1.CABundle{ConfigMapName: ptr.To("psp-ca"), Key: "ca.crt"}
	}))
	f.reconcile()
	c := f.cred()
	if d := degraded(c); d.Reason != authv1alpha1.ReasonSourceSecretMissing || !strings.Contains(d.Message, `ConfigMap "psp-ca"`) {
		t.Fatalf("Degraded %s: %q", d.Reason, d.Message)
	}
	if n := f.tokens.count(); n != 0 {
		t.Errorf("%d provider calls without the CA bundle", n)
	}
	ca, err := sandbox.NewCA("psp test CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.api.Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "psp-ca", Namespace: fxNamespace},
		Data:       map[string]string{"ca.crt": string(ca.CertPEM)},
	}); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Second)
	f.reconcile()
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls once the ConfigMap exists, want 1", n)
	}
	if r := ready(f.cred()); r.Status != metav1.ConditionTrue {
		t.Errorf("Ready %s/%s", r.Status, r.Reason)
	}
}

// Waiting for the host costs nothing: a credential whose refresh is due but
// whose host holds requests back reads no source Secret and writes no
// status until the host lets it go.
func TestReconcileWaitingForTheHostReadsAndWritesNothing(t *testing.T) {
	f := newFx(t, 5*time.Minute)
	f.reconcile()
	due := f.cred().Status.NextRefreshTime.Time
	f.clock.Step(due.Sub(f.clock.Now()))
	f.tokens.cooldown = f.clock.Now().Add(90 * time.Second)
	reads, patches := f.sourceReads, f.patches()
	for range 5 {
		res := f.reconcile()
		if res.RequeueAfter <= 0 || res.RequeueAfter > 90*time.Second {
			t.Fatalf("RequeueAfter %v while held for 90 s", res.RequeueAfter)
		}
		f.clock.Step(15 * time.Second)
	}
	if n := f.sourceReads - reads; n != 0 {
		t.Errorf("%d source Secret reads while held by the host", n)
	}
	if n := f.patches() - patches; n != 0 {
		t.Errorf("%d status writes while held by the host", n)
	}
	if n := f.tokens.count(); n != 1 {
		t.Errorf("%d provider calls while held", n)
	}
	if got := f.cred().Status.NextRefreshTime.Time; !got.Equal(due) {
		t.Errorf("nextRefreshTime moved to %v while held, want the plan %v", got, due)
	}
	f.clock.Step(f.tokens.cooldown.Sub(f.clock.Now()))
	f.tokens.cooldown = time.Time{}
	f.reconcile()
	if n := f.tokens.count(); n != 2 {
		t.Errorf("%d provider calls once the host let go, want 2", n)
	}
}

// Credentials waiting for a host go in order of their tokens' expiry: a
// freed slot wakes the waiter whose token expires first.
func TestHostSlotFreeWakesTheMostUrgentWaiter(t *testing.T) {
	r := &APICredentialReconciler{}
	released := r.releasedFor(kindAPICredential)
	mk := func(name string) subjectKey {
		return credentialSubject(&authv1alpha1.APICredential{ObjectMeta: metav1.ObjectMeta{Namespace: fxNamespace, Name: name}}).key()
	}
	r.hold(mk("later"), "h:443", epoch.Add(10*time.Minute))
	r.hold(mk("soon"), "h:443", epoch.Add(time.Minute))
	r.hold(mk("none"), "h:443", time.Time{})
	r.hold(mk("other-host"), "o:443", time.Time{})
	var order []string
	for range 3 {
		r.HostSlotFree("h:443")
		ev := <-released
		order = append(order, ev.Object.GetName())
	}
	if got := strings.Join(order, ","); got != "none,soon,later" {
		t.Errorf("woken in the order %s, want none,soon,later", got)
	}
	r.HostSlotFree("h:443") // everyone already woken: nothing
	select {
	case ev := <-released:
		t.Errorf("woke %s twice", ev.Object.GetName())
	case <-time.After(50 * time.Millisecond):
	}
}
