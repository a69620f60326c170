// Package controller turns APICredentials into fresh tokens in target
// Secrets: load, decide (internal/refresh), act (internal/auth), record.
package controller

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/metrics"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
	"github.com/tokenwarden/tokenwarden/internal/share"
)

// Event reasons other than failures' (those are in internal/failure).
const (
	EventTokenRefreshed                = "TokenRefreshed"
	EventTargetRestored                = "TargetRestored"
	EventTokenExpiringSoon             = "TokenExpiringSoon"
	EventClientCertificateExpiringSoon = "ClientCertificateExpiringSoon"
)

// APIErrorRetryMax caps the workqueue's per-item backoff after a pass failed
// on an API server error, so that every credential is back within 30 s of
// the API server's recovery (controller-runtime's default grows to 1000 s).
const APIErrorRetryMax = 30 * time.Second

// CertificateWarning is how long before a client certificate's expiry
// tokenwarden warns.
const CertificateWarning = 30 * 24 * time.Hour

// secretRefIndex indexes APICredentials by every Secret name they read or
// write, and configMapRefIndex by the ConfigMap they read, to map an event
// back to the APICredentials concerned.
const (
	secretRefIndex    = ".spec.secretNames"
	configMapRefIndex = ".spec.configMapNames"
)

// TokenClient is what the reconciler needs of internal/auth.
type TokenClient interface {
	Fetch(ctx context.Context, r auth.Request) (auth.Token, error)
	// HoldUntil is when a request to host could go; zero: now.
	HoldUntil(host string) time.Time
}

// APICredentialReconciler keeps the token of each APICredential fresh.
type APICredentialReconciler struct {
	// Client reads from the manager's cache (APICredentials, owned Secrets)
	// and writes to the API server.
	Client client.Client
	// APIReader reads source Secrets and ConfigMaps from the API server,
	// only when a token is requested, so that they are never cached. The
	// reads ask for at least the resourceVersion the metadata cache shows,
	// which the API server serves from its watch cache, not from etcd.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Clock     clock.PassiveClock
	Tokens    TokenClient
	Recorder  events.EventRecorder
	// Rand returns values in [0,1) for backoff jitter.
	Rand func() float64
	// Metrics records attempts and per-credential timestamps; nil records
	// nothing.
	Metrics *metrics.Metrics
	// Workers is how many APICredentials are reconciled at once (default
	// 1). Passes of one APICredential never overlap.
	Workers int
	// Namespaces limits the watch to these namespaces (a namespaced
	// install); empty means all.
	Namespaces []string

	// Metadata reads the metadata of any Secret or ConfigMap (sources, and
	// foreign Secrets squatting a target name). SetupWithManager sets it,
	// when nil, to a metadata-only cache of the Secrets tokenwarden does not
	// own and of all ConfigMaps, completed by the owned Secrets' cache.
	Metadata client.Reader

	// ClusterResourceNamespace is where the Secret and ConfigMap references
	// of ClusterTokenProviders resolve and where their token Secrets live.
	ClusterResourceNamespace string
	// ClusterProviders serves ClusterTokenProviders. A cluster-wide install
	// sets it; a namespaced one cannot (it may neither list a cluster-scoped
	// kind nor read Namespaces), and its consumers of a ClusterTokenProvider
	// get ProviderNotFound saying so.
	ClusterProviders bool

	// Shared groups subjects whose resolved token requests are identical,
	// so that they share one token and one call; made on first use when nil.
	Shared *share.Pool[subjectKey]

	mu sync.Mutex
	// minted holds the last token minted per APICredential, so that a
	// failed write, or a deleted target Secret, is mended with the same
	// token instead of a second provider call.
	minted map[subjectKey]mintedFor
	// certWarned remembers the certificate expiry already warned about.
	certWarned map[subjectKey]time.Time
	// waiting holds, per token host, the credentials held back by the host
	// (its cool-down, probe, bulkhead or budget) and when their tokens
	// expire; HostRecovered wakes them all, HostSlotFree the most urgent.
	waiting map[string]map[subjectKey]waiter
	// released carries, per kind, the subjects woken by HostRecovered or
	// HostSlotFree to their controller's workqueue.
	released map[string]chan event.GenericEvent
	// rechecked lists the credentials whose spec failure this process has
	// re-checked: a spec failure may come from the address policy of an
	// operator since restarted with other flags, and a re-check costs the
	// provider nothing (it fails before any call).
	rechecked map[subjectKey]bool
	// writes tells a pass when the cache shows what it wrote.
	writes *ownWrites
	// bundles keeps the CA bundles read from ConfigMaps, each while its
	// resourceVersion stays the same.
	bundles caBundles
}

// waiter is a credential waiting for its host.
type waiter struct {
	expires time.Time // of its current token; zero: it has none
	woken   bool      // already sent to the workqueue by HostSlotFree
}

type mintedFor struct {
	uid types.UID
	minted
}

// SetupWithManager registers the controller, its watches and its index.
func (r *APICredentialReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &authv1alpha1.APICredential{}, secretRefIndex,
		func(o client.Object) []string {
			c := o.(*authv1alpha1.APICredential)
			return append(referencedSecrets(&c.Spec), string(c.Spec.Target.SecretName))
		}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &authv1alpha1.APICredential{}, providerRefIndex,
		func(o client.Object) []string {
			c := o.(*authv1alpha1.APICredential)
			if ref := c.Spec.ProviderRef; ref != nil {
				return []string{providerIndexKey(refKind(ref), c.Namespace, ref.Name)}
			}
			return nil
		}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &authv1alpha1.APICredential{}, configMapRefIndex,
		func(o client.Object) []string {
			if n := referencedConfigMap(&o.(*authv1alpha1.APICredential).Spec); n != "" {
				return []string{n}
			}
			return nil
		}); err != nil {
		return err
	}
	metaCache, err := newMetadataCache(mgr, r.Namespaces)
	if err != nil {
		return err
	}
	if r.Metadata == nil {
		r.Metadata = metadataReader{Reader: metaCache, owned: mgr.GetCache()}
	}
	written := []client.Object{&corev1.Secret{}, &authv1alpha1.APICredential{}, &authv1alpha1.TokenProvider{}}
	if r.clusterProviders() {
		written = append(written, &authv1alpha1.ClusterTokenProvider{})
	}
	if r.writes, err = newOwnWrites(ctx, mgr.GetCache(), written...); err != nil {
		return err
	}
	released := r.releasedFor(kindAPICredential)
	if err := r.setupProviders(ctx, mgr, metaCache); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("apicredential").
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(r.Workers, 1),
			// Only the per-item backoff, capped: a bucket shared by all
			// items would hold thousands of credentials back after an API
			// server outage.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, APIErrorRetryMax),
			// client-go's FIFO workqueue, not controller-runtime's priority
			// queue: that queue ranks the events of an informer's initial
			// list below all others, and a requeued credential keeps the
			// rank it was taken with. After a restart under saturation the
			// credentials refreshed first (their Secret writes come back as
			// normal-rank events) outrank the rest for as long as they keep
			// the workers busy: measured, 2,115 of 5,000 credentials were
			// refreshed in the 3 minutes after a restart, the others not at
			// all. In a FIFO queue every due credential waits its turn.
			UsePriorityQueue: ptr.To(false),
		}).
		For(&authv1alpha1.APICredential{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		// Source Secrets and ConfigMaps, and foreign Secrets squatting a
		// target name, are watched as metadata only: tokenwarden never
		// caches their data. Owned Secrets come on the owned watch below.
		WatchesRawSource(source.Kind(metaCache, client.Object(metadataOf("Secret")),
			handler.EnqueueRequestsFromMapFunc(r.credentialsFor(secretRefIndex)))).
		WatchesRawSource(source.Kind(metaCache, client.Object(metadataOf("ConfigMap")),
			handler.EnqueueRequestsFromMapFunc(r.credentialsFor(configMapRefIndex)))).
		// Credentials released at once when their failing host answers.
		WatchesRawSource(source.Channel(released, &handler.EnqueueRequestForObject{})).
		// Consumers follow their provider and its token Secret; an owned
		// Secret may also be another credential's source or squat its
		// target name.
		Watches(&authv1alpha1.TokenProvider{}, handler.EnqueueRequestsFromMapFunc(r.consumersOf)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(both(r.consumersOf, r.credentialsFor(secretRefIndex))))
	if r.clusterProviders() {
		b = b.Watches(&authv1alpha1.ClusterTokenProvider{}, handler.EnqueueRequestsFromMapFunc(r.consumersOf)).
			WatchesRawSource(source.Kind(metaCache, client.Object(metadataOfNamespace()),
				handler.EnqueueRequestsFromMapFunc(r.clusterConsumersIn)))
	}
	return b.Complete(r)
}

// metadataOf is an empty metadata-only object of a core kind.
func metadataOf(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}

// both maps an object with f and g.
func both(f, g handler.MapFunc) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		return append(f(ctx, o), g(ctx, o)...)
	}
}

// credentialsFor maps an object to the APICredentials that name it in index.
func (r *APICredentialReconciler) credentialsFor(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list authv1alpha1.APICredentialList
		if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{index: o.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "Listing APICredentials for an object", "index", index, "object", client.ObjectKeyFromObject(o))
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, c := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
		}
		return out
	}
}

// pass is one reconcile of one APICredential: what was loaded and the status
// being built, written once at the end.
type pass struct {
	subject
	now    time.Time
	status authv1alpha1.APICredentialStatus
	// token is the token in the target Secret once the pass is done.
	token refresh.Token
	// wake is when the next pass must run (zero: only on a change).
	wake time.Time
	// recovering is true when the target Secret holds a token minted from
	// the current inputs: a broken answer is then a passing fault.
	recovering bool
	// podSync is what telling the Pods of spec.target.syncPods gave, when
	// this pass wrote a token.
	podSync *podSyncResult
}

func (p *pass) wakeAt(t time.Time) {
	if t.IsZero() || !t.After(p.now) {
		return
	}
	if p.wake.IsZero() || t.Before(p.wake) {
		p.wake = t
	}
}

func (p *pass) result() ctrl.Result {
	if p.wake.IsZero() {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: p.wake.Sub(p.now)}
}

// Reconcile loads the APICredential, decides, acts, and records the outcome
// in one status write, made only when something changed.
func (r *APICredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cred := &authv1alpha1.APICredential{}
	if err := r.Client.Get(ctx, req.NamespacedName, cred); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(subjectKey{kind: kindAPICredential, NamespacedName: req.NamespacedName})
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !cred.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	p, err := r.runPass(ctx, credentialSubject(cred))
	if p == nil {
		return ctrl.Result{}, err
	}
	r.Metrics.SetCredential(cred.Namespace, cred.Name, timeOf(p.status.TokenExpiresAt),
		timeOf(p.status.NextRefreshTime), timeOf(p.status.ClientCertificateExpiresAt))
	if serr := r.writeStatus(ctx, cred, p.status); serr != nil {
		return ctrl.Result{}, errors.Join(err, serr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return p.result(), nil
}

// runPass loads the target of s, decides, acts and builds the status to
// write. A nil pass means the target could not be read: nothing is known
// about the token, so the status written last stays as it is (Ready, the
// planned refresh), and the workqueue retries within APIErrorRetryMax.
func (r *APICredentialReconciler) runPass(ctx context.Context, s subject) (*pass, error) {
	t, err := r.loadTarget(ctx, s)
	if err != nil {
		return nil, err
	}
	p := &pass{subject: s, now: r.Clock.Now(), status: *s.cred.Status.DeepCopy(), token: t.token}
	err = r.run(ctx, p, t)
	p.finish()
	return p, err
}

func (r *APICredentialReconciler) run(ctx context.Context, p *pass, t target) error {
	cred := p.cred
	if t.conflict != nil {
		r.localFailure(p, t.conflict)
		return nil
	}
	if cred.Spec.Suspend {
		p.status.NextRefreshTime = nil
		setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionFalse, authv1alpha1.ReasonSuspended,
			"spec.suspend is true: no provider calls and no writes")
		return nil
	}
	if cred.Spec.ProviderRef != nil {
		return r.copyFromProvider(ctx, p, t)
	}
	inputs, missing, err := r.inputsVersion(ctx, cred)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		r.localFailure(p, problemf(failure.SourceSecretMissing, "referenced %s not found", missing[0]))
		return nil
	}
	if cred.Spec.Static != nil {
		return r.syncStatic(ctx, p, t, inputs)
	}
	p.recovering = t.secret != nil && t.inputs == inputs && !t.token.IssuedAt.IsZero()
	// A token minted earlier but not in the target Secret (its write failed,
	// or someone deleted the Secret) is written again, never asked for twice.
	mem, inMemory := r.lastMinted(p.subject)
	if inMemory && mem.inputs == inputs && mem.state().Valid(p.now) && !t.holds(mem.minted) {
		if err := r.writeTarget(ctx, p, t.secret, mem.minted); err != nil {
			return r.writeFailed(p, err)
		}
		p.token = mem.state()
		r.schedule(p, mem.minted)
		return nil
	}
	// A newer token minted for an identical request (another credential's,
	// or a provider's) replaces this one at once: with a provider that
	// revokes the previous token, the old one is already dead.
	if m, ok := r.sharedNewer(p, t, inputs); ok {
		if err := r.writeTarget(ctx, p, t.secret, m); err != nil {
			return r.writeFailed(p, err)
		}
		r.adopt(p, m)
		return nil
	}
	if t.drifted && t.token.Valid(p.now) {
		// Token keys edited or removed by hand: restored from the current
		// token, without a provider call. One that cannot be recovered
		// counts as no token.
		m, ok := t.restorable(mem, inMemory)
		if !ok {
			p.token = refresh.Token{}
			return r.decide(ctx, p, t, inputs)
		}
		if err := r.writeTarget(ctx, p, t.secret, m); err != nil {
			return r.writeFailed(p, err)
		}
		r.event(p.owner, corev1.EventTypeNormal, EventTargetRestored, "Restore",
			"Keys of Secret %s changed by hand were restored from the current token", cred.Spec.Target.SecretName)
	}
	return r.decide(ctx, p, t, inputs)
}

// decide asks internal/refresh what to do and does it.
func (r *APICredentialReconciler) decide(ctx context.Context, p *pass, t target, inputs string) error {
	cred := p.cred
	tr := cred.Spec.TokenRequest
	host, err := auth.HostOf(tr.URL)
	if err != nil {
		r.localFailure(p, problemf(failure.InvalidSpec, "spec.tokenRequest.url: %v", err))
		return nil
	}
	last := p.status.ObservedInputs
	if last == "" {
		last = t.inputs
	}
	requested := cred.Annotations[authv1alpha1.AnnotationRefreshRequestedAt]
	lastFailure := lastFailure(p.status.TokenStatus)
	in := refresh.Input{
		Now:                 p.now,
		Token:               p.token,
		Changed:             inputs != last || requested != p.status.LastHandledRefreshRequest || (lastFailure == refresh.Spec && r.firstRecheck(p.key())),
		RefreshBefore:       refreshBeforeSpec(cred),
		InvalidatesPrevious: tr.InvalidatesPrevious,
		Jitter:              jitter(cred.UID, p.token.IssuedAt),
		LastFailure:         lastFailure,
		LastAttempt:         timeOf(p.status.LastAttemptTime),
		HostHoldUntil:       r.Tokens.HoldUntil(host),
	}
	if p.status.ConsecutiveFailures > 0 {
		in.RetryAt = timeOf(p.status.NextRefreshTime)
	}
	d := refresh.Decide(in)
	if d.Action == refresh.Wait {
		if own := r.withoutHost(in); own.Action == refresh.Refresh || own.At.Before(d.At) {
			// Held back by the host only: waiting is not news. Status keeps
			// the planned time, nothing is read until the host lets go, and
			// the wake-up is the host's own time, not rounded for status.
			p.wakeAt(d.At)
			r.hold(p.key(), host, p.token.ExpiresAt)
			return nil
		}
		at := ceilSecond(d.At)
		p.wakeAt(at)
		r.unhold(p.key(), host)
		if tr.InvalidatesPrevious && p.token.Valid(p.now) {
			r.joinEarly(ctx, p, inputs)
		}
		// A zero time (a spec failure) waits for a change.
		p.status.NextRefreshTime = metaTime(at)
		return nil
	}
	r.unhold(p.key(), host)
	return r.refresh(ctx, p, t, inputs, host)
}

// refresh requests a new token and writes it.
func (r *APICredentialReconciler) refresh(ctx context.Context, p *pass, t target, inputs, host string) error {
	cred := p.cred
	log := logf.FromContext(ctx)
	if err := CheckTemplates(&cred.Spec.Target); err != nil {
		return r.attemptFailed(p, err, inputs)
	}
	res, err := r.resolve(ctx, cred, p.now)
	if res != nil && !res.certNotAfter.IsZero() {
		p.status.ClientCertificateExpiresAt = metaTime(res.certNotAfter)
		r.warnCertificate(p, res.certNotAfter)
	}
	if err != nil {
		return r.attemptFailed(p, err, inputs)
	}
	r.pool().Join(p.key(), res.key, inputs)
	if t.secret == nil {
		sec, err := r.claim(ctx, p.subject)
		if err != nil {
			return r.writeFailed(p, err)
		}
		t.secret = sec
	}
	// One request per key at a time: a subject whose identical request is
	// in flight waits for that answer, and one whose identical request has
	// just been answered takes that token if it is not due itself.
	accept := func(tok share.Token) bool {
		m := mintedOf(tok, inputs)
		return r.newerShared(p, t, m) && r.scheduleOf(p, m).After(p.now)
	}
	tok, shared, others, err := r.pool().Fetch(res.key, p.key(), accept, func() (share.Token, error) {
		t, err := r.Tokens.Fetch(ctx, res.request)
		return share.Token{Value: t.Value, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt}, err
	})
	r.wake(others)
	if errors.Is(err, share.ErrInFlight) {
		// Woken when the identical request ends; the fallback wake-up is
		// that request's longest possible wait.
		p.wakeAt(p.now.Add(requestTimeout(p.cred) + time.Second))
		return nil
	}
	var rl *auth.RateLimitedError
	if errors.As(err, &rl) && rl.Local {
		// The host held the call back (another caller took the slot since
		// HoldUntil said it was free); the provider saw nothing, so this is
		// neither a failed attempt nor a change of plan.
		p.wakeAt(p.now.Add(max(rl.RetryAfter, time.Second)))
		r.hold(p.key(), host, p.token.ExpiresAt)
		return nil
	}
	if sem, _ := failure.Of(failure.ReasonOf(err)); !shared && (err == nil || sem.Sent) {
		// Rounded up, as status holds whole seconds: the minimum interval
		// counted from it is never shorter than the real one.
		p.status.LastAttemptTime = metaTime(ceilSecond(p.now))
	}
	if err != nil {
		log.Info("Token request failed", "host", host, "reason", failure.ReasonOf(err), "error", err.Error())
		return r.attemptFailed(p, err, inputs)
	}
	m := mintedOf(tok, inputs)
	r.remember(p.subject, m)
	r.attemptDone(p, inputs)
	r.Metrics.Attempt(true, authv1alpha1.ReasonRefreshSucceeded)
	if err := r.writeTarget(ctx, p, t.secret, m); err != nil {
		return r.writeFailed(p, err)
	}
	p.token = m.state()
	p.status.LastRefreshTime = metaTime(m.issuedAt)
	// The note names no time: it is the note of every event of the series
	// (status.tokenExpiresAt has the expiry).
	r.event(p.owner, corev1.EventTypeNormal, EventTokenRefreshed, "Refresh",
		"New token written to Secret %s", cred.Spec.Target.SecretName)
	log.Info("Token refreshed", "secret", cred.Spec.Target.SecretName, "expiresAt", m.expiresAt.UTC().Format(time.RFC3339))
	r.schedule(p, m)
	return nil
}

// mintedOf is a token as it goes into a target Secret.
func mintedOf(tok share.Token, inputs string) minted {
	return minted{
		token:         tok.Value,
		authorization: "Bearer " + tok.Value,
		// Rounded up like lastAttemptTime, so the two compare as one call.
		issuedAt:  ceilSecond(tok.IssuedAt),
		expiresAt: tok.ExpiresAt.Truncate(time.Second),
		inputs:    inputs,
	}
}

// pool returns the pool of shared tokens, made on first use.
func (r *APICredentialReconciler) pool() *share.Pool[subjectKey] {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Shared == nil {
		r.Shared = share.New[subjectKey]()
	}
	return r.Shared
}

// sharedNewer is the newest token minted for the subject's request by any
// subject with an identical one, when it is newer than the subject's own
// token and still valid.
func (r *APICredentialReconciler) sharedNewer(p *pass, t target, inputs string) (minted, bool) {
	k, ok := r.pool().KeyOf(p.key(), inputs)
	if !ok {
		return minted{}, false
	}
	tok, ok := r.pool().Latest(k)
	if !ok {
		return minted{}, false
	}
	m := mintedOf(tok, inputs)
	return m, r.newerShared(p, t, m)
}

// newerShared reports whether m, the latest token of the subject's key, is
// another token than the one in its target, not older (issue times are
// whole seconds: two tokens of one second compare by the pool's order) and
// still valid.
func (r *APICredentialReconciler) newerShared(p *pass, t target, m minted) bool {
	return m.token != t.value && !m.issuedAt.Before(p.token.IssuedAt) && m.state().Valid(p.now)
}

// adopt records a shared token written to the subject's target.
func (r *APICredentialReconciler) adopt(p *pass, m minted) {
	r.remember(p.subject, m)
	p.token = m.state()
	p.status.ObservedInputs = m.inputs
	p.status.LastRefreshTime = metaTime(m.issuedAt)
	r.event(p.owner, corev1.EventTypeNormal, EventTokenRefreshed, "Share",
		"New token, shared with an identical token request, written to Secret %s", p.cred.Spec.Target.SecretName)
	r.schedule(p, m)
}

// joinEarly learns the request key of a subject that holds a valid token,
// once per process, so that when another subject with an identical request
// refreshes first this one takes the new token at once. Only subjects whose
// provider revokes the previous token need this before their own refresh
// (it costs one read of their Secrets); the others join at their refresh.
func (r *APICredentialReconciler) joinEarly(ctx context.Context, p *pass, inputs string) {
	if _, ok := r.pool().KeyOf(p.key(), inputs); ok {
		return
	}
	if res, err := r.resolve(ctx, p.cred, p.now); err == nil {
		r.pool().Join(p.key(), res.key, inputs)
	}
}

// scheduleOf is when the subject would refresh token m.
func (r *APICredentialReconciler) scheduleOf(p *pass, m minted) time.Time {
	tr := p.cred.Spec.TokenRequest
	return refresh.Schedule(m.state(), refreshBeforeSpec(p.cred), tr.InvalidatesPrevious, jitter(p.cred.UID, m.issuedAt))
}

// schedule records a good token in status and plans its refresh.
func (r *APICredentialReconciler) schedule(p *pass, m minted) {
	at := ceilSecond(r.scheduleOf(p, m))
	p.status.ConsecutiveFailures = 0
	p.status.NextRefreshTime = metaTime(at)
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionFalse, authv1alpha1.ReasonRefreshSucceeded, "The last token request succeeded")
	p.wakeAt(at)
}

// attemptDone records that the current inputs and refresh request were acted
// on, so that neither triggers another call.
func (r *APICredentialReconciler) attemptDone(p *pass, inputs string) {
	p.status.ObservedInputs = inputs
	p.status.LastHandledRefreshRequest = p.cred.Annotations[authv1alpha1.AnnotationRefreshRequestedAt]
}

// attemptFailed records a failed refresh attempt (local or at the provider)
// and plans the retry by the failure table. An error without a failure
// reason is API server trouble: it is returned for the workqueue to retry.
func (r *APICredentialReconciler) attemptFailed(p *pass, err error, inputs string) error {
	reason := failure.ReasonOf(err)
	sem, ok := failure.Of(reason)
	if !ok {
		return err
	}
	r.attemptDone(p, inputs)
	r.Metrics.Attempt(false, string(reason))
	p.status.ConsecutiveFailures++
	var cooldown time.Duration
	var rl *auth.RateLimitedError
	if errors.As(err, &rl) {
		cooldown = rl.RetryAfter
	}
	next := ceilSecond(refresh.NextAttempt(refresh.Failure{
		Class: sem.Retry, Attempt: int(p.status.ConsecutiveFailures), Cooldown: cooldown, Recovering: p.recovering,
	}, p.now, p.token, r.rand()))
	if sem.Retry == refresh.Spec {
		// Found now, so the once-per-start re-check is spent.
		r.firstRecheck(p.key())
	}
	p.status.NextRefreshTime = metaTime(next)
	p.wakeAt(next)
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, string(reason), err.Error())
	r.event(p.owner, corev1.EventTypeWarning, sem.Event, "Refresh", "%s", err.Error())
	return nil
}

// writeFailed handles a failed write of the target Secret: a conflict of
// ownership is recorded; anything else is retried by the workqueue, and the
// token minted for it is written then (see lastMinted).
func (r *APICredentialReconciler) writeFailed(p *pass, err error) error {
	var fe *failure.Error
	if errors.As(err, &fe) {
		r.localFailure(p, fe)
		return nil
	}
	return err
}

// localFailure records a problem found before any attempt started (a
// target conflict, a missing Secret, an invalid URL). It counts no failed
// attempt; the event is emitted only when the Degraded reason changes, and
// the retry planned by the failure table is kept while it lies ahead, so a
// credential waiting for a fix neither repeats itself nor rewrites status.
func (r *APICredentialReconciler) localFailure(p *pass, fe *failure.Error) {
	sem, _ := failure.Of(fe.Reason)
	prev := meta.FindStatusCondition(p.status.Conditions, authv1alpha1.ConditionDegraded)
	same := prev != nil && prev.Status == metav1.ConditionTrue && prev.Reason == string(fe.Reason)
	if !same {
		r.event(p.owner, corev1.EventTypeWarning, sem.Event, "Refresh", "%s", fe.Message)
	}
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, string(fe.Reason), fe.Message)
	next := timeOf(p.status.NextRefreshTime)
	if !same || !next.After(p.now) {
		next = ceilSecond(refresh.NextAttempt(refresh.Failure{Class: sem.Retry, Attempt: 1}, p.now, p.token, r.rand()))
	}
	p.status.NextRefreshTime = metaTime(next)
	p.wakeAt(next)
}

// finish sets Ready from the token in the target Secret and the summary
// fields every pass shares.
func (p *pass) finish() {
	p.status.ObservedGeneration = p.cred.Generation
	p.finishPodSync()
	staticNoExpiry := p.cred.Spec.Static != nil && !p.token.IssuedAt.IsZero() && p.token.ExpiresAt.IsZero()
	switch {
	case staticNoExpiry:
		p.status.TokenExpiresAt = nil
		setCondition(p, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid,
			"The target Secret holds the static token; it has no expiry")
	case p.token.Valid(p.now):
		p.status.TokenExpiresAt = metaTime(p.token.ExpiresAt)
		setCondition(p, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonTokenValid,
			"The target Secret holds a token valid until "+p.token.ExpiresAt.UTC().Format(time.RFC3339))
		p.wakeAt(p.token.ExpiresAt)
	case !p.token.ExpiresAt.IsZero():
		p.status.TokenExpiresAt = metaTime(p.token.ExpiresAt)
		setCondition(p, authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonTokenExpired,
			"The token in the target Secret expired at "+p.token.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		setCondition(p, authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotIssued,
			"No token has been written to the target Secret yet")
	}
	if p.cred.Spec.Suspend {
		p.status.Reason = authv1alpha1.ReasonSuspended
	} else if d := meta.FindStatusCondition(p.status.Conditions, authv1alpha1.ConditionDegraded); d != nil && d.Status == metav1.ConditionTrue {
		p.status.Reason = d.Reason
	} else {
		p.status.Reason = meta.FindStatusCondition(p.status.Conditions, authv1alpha1.ConditionReady).Reason
	}
}

func setCondition(p *pass, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&p.status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: p.cred.Generation,
		// Kept by SetStatusCondition unless the status flips; set here so
		// that time comes from the injected clock.
		LastTransitionTime: metav1.NewTime(p.now),
	})
}

// writeStatus writes status once, and only when it changed.
func (r *APICredentialReconciler) writeStatus(ctx context.Context, cred *authv1alpha1.APICredential, status authv1alpha1.APICredentialStatus) error {
	if equality.Semantic.DeepEqual(cred.Status, status) {
		return nil
	}
	if err := PatchStatus(ctx, r.Client, cred, status); err != nil {
		return err
	}
	r.awaitWrite(credentialSubject(cred), cred)(ctx)
	return nil
}

// lastFailure reads the retry class of the last failed attempt from status.
// A Degraded reason that is not a failure (or not known to this version)
// counts as none: the schedule decides.
func lastFailure(s authv1alpha1.TokenStatus) refresh.Class {
	d := meta.FindStatusCondition(s.Conditions, authv1alpha1.ConditionDegraded)
	if s.ConsecutiveFailures == 0 || d == nil || d.Status != metav1.ConditionTrue {
		return refresh.None
	}
	sem, ok := failure.Of(failure.Reason(d.Reason))
	if !ok {
		return refresh.None
	}
	return sem.Retry
}

// withoutHost is the decision as if the host let every request go.
func (r *APICredentialReconciler) withoutHost(in refresh.Input) refresh.Decision {
	in.HostHoldUntil = time.Time{}
	return refresh.Decide(in)
}

// hold records that the subject of key waits for host, with its token's
// expiry.
func (r *APICredentialReconciler) hold(key subjectKey, host string, expires time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string]map[subjectKey]waiter{}
	}
	if r.waiting[host] == nil {
		r.waiting[host] = map[subjectKey]waiter{}
	}
	r.waiting[host][key] = waiter{expires: expires}
	r.Metrics.SetHostWaiting(host, len(r.waiting[host]))
}

// unhold records that the subject of key no longer waits for host.
func (r *APICredentialReconciler) unhold(key subjectKey, host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.waiting[host]; w != nil {
		if _, ok := w[key]; ok {
			delete(w, key)
			r.Metrics.SetHostWaiting(host, len(w))
		}
	}
}

// HostRecovered wakes every credential and provider waiting for host; it
// fits auth.Options.OnHostRecovered and does not block.
func (r *APICredentialReconciler) HostRecovered(host string) {
	r.mu.Lock()
	keys := make([]subjectKey, 0, len(r.waiting[host]))
	for k, w := range r.waiting[host] {
		keys = append(keys, k)
		r.waiting[host][k] = waiter{expires: w.expires, woken: true}
	}
	r.mu.Unlock()
	r.wake(keys)
}

// HostSlotFree wakes the waiter of host whose token expires first (one
// without a token before all), so that waiting credentials go in order of
// urgency; it fits auth.Options.OnHostSlotFree and does not block.
func (r *APICredentialReconciler) HostSlotFree(host string) {
	r.mu.Lock()
	var (
		first subjectKey
		found bool
		exp   time.Time
	)
	for k, w := range r.waiting[host] {
		if w.woken {
			continue
		}
		if !found || w.expires.Before(exp) || (w.expires.Equal(exp) && k.String() < first.String()) {
			first, exp, found = k, w.expires, true
		}
	}
	if found {
		r.waiting[host][first] = waiter{expires: exp, woken: true}
	}
	r.mu.Unlock()
	if found {
		r.wake([]subjectKey{first})
	}
}

// releasedFor is the channel that wakes subjects of kind, made on first use.
func (r *APICredentialReconciler) releasedFor(kind string) chan event.GenericEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released == nil {
		r.released = map[string]chan event.GenericEvent{}
	}
	ch, ok := r.released[kind]
	if !ok {
		ch = make(chan event.GenericEvent, 1024)
		r.released[kind] = ch
	}
	return ch
}

// wake sends subjects to their controllers' workqueues. A kind without a
// controller (none was set up) is skipped.
func (r *APICredentialReconciler) wake(keys []subjectKey) {
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	chans := map[string]chan event.GenericEvent{}
	for _, k := range keys {
		if ch, ok := r.released[k.kind]; ok {
			chans[k.kind] = ch
		}
	}
	r.mu.Unlock()
	go func() {
		for _, k := range keys {
			if ch, ok := chans[k.kind]; ok {
				ch <- k.wakeEvent()
			}
		}
	}()
}

// requestTimeout is the timeout of the subject's token request.
func requestTimeout(cred *authv1alpha1.APICredential) time.Duration {
	if tr := cred.Spec.TokenRequest; tr != nil && tr.Timeout != nil {
		return tr.Timeout.Duration
	}
	return auth.DefaultTimeout
}

func refreshBeforeSpec(cred *authv1alpha1.APICredential) time.Duration {
	if r := cred.Spec.Refresh; r != nil && r.RefreshBefore != nil {
		return r.RefreshBefore.Duration
	}
	return 0
}

// jitter is a stable value in [0,1) per credential and token, so that every
// pass computes the same refresh time for the same token while a fleet of
// credentials spreads out.
func jitter(uid types.UID, issued time.Time) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	_, _ = h.Write([]byte(issued.UTC().Format(time.RFC3339)))
	return float64(h.Sum64()>>11) / float64(1<<53)
}

func (r *APICredentialReconciler) rand() float64 {
	if r.Rand == nil {
		return 0.5
	}
	return r.Rand()
}

// event records an Event about obj. A Normal event refers to obj without
// its resourceVersion, so that the recorder sees the events of one object,
// reason and action as one series: the first is created, the rest raise
// the series' count, which the recorder writes at most every 30 minutes.
// Otherwise every refresh would write an Event of its own, as many API
// writes as the Secret's. Warnings keep the version they are about.
func (r *APICredentialReconciler) event(obj runtime.Object, typ, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	if o, ok := obj.(client.Object); ok && typ == corev1.EventTypeNormal && o.GetResourceVersion() != "" {
		ref := o.DeepCopyObject().(client.Object)
		ref.SetResourceVersion("")
		obj = ref
	}
	r.Recorder.Eventf(obj, nil, typ, reason, action, note, args...)
}

func (r *APICredentialReconciler) warnCertificate(p *pass, notAfter time.Time) {
	if notAfter.Sub(p.now) > CertificateWarning {
		return
	}
	key := p.key()
	r.mu.Lock()
	warned := r.certWarned[key].Equal(notAfter)
	if !warned {
		if r.certWarned == nil {
			r.certWarned = map[subjectKey]time.Time{}
		}
		r.certWarned[key] = notAfter
	}
	r.mu.Unlock()
	if !warned {
		r.event(p.owner, corev1.EventTypeWarning, EventClientCertificateExpiringSoon, "Refresh",
			"The client certificate in Secret %s expires at %s", p.cred.Spec.TokenRequest.ClientCertificate.SecretName,
			notAfter.UTC().Format(time.RFC3339))
	}
}

func (r *APICredentialReconciler) remember(s subject, m minted) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.minted == nil {
		r.minted = map[subjectKey]mintedFor{}
	}
	r.minted[s.key()] = mintedFor{uid: s.owner.GetUID(), minted: m}
}

func (r *APICredentialReconciler) lastMinted(s subject) (mintedFor, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.minted[s.key()]
	return m, ok && m.uid == s.owner.GetUID()
}

// firstRecheck reports true once per subject and process.
func (r *APICredentialReconciler) firstRecheck(key subjectKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rechecked[key] {
		return false
	}
	if r.rechecked == nil {
		r.rechecked = map[subjectKey]bool{}
	}
	r.rechecked[key] = true
	return true
}

// forget drops what the reconciler remembers of a deleted subject.
func (r *APICredentialReconciler) forget(key subjectKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.minted, key)
	delete(r.certWarned, key)
	delete(r.rechecked, key)
	if r.Shared != nil {
		r.Shared.Leave(key)
	}
	for host, w := range r.waiting {
		if _, ok := w[key]; ok {
			delete(w, key)
			r.Metrics.SetHostWaiting(host, len(w))
		}
	}
	if key.kind == kindAPICredential {
		r.Metrics.Forget(key.Namespace, key.Name)
	}
}

func metaTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// ceilSecond rounds a planned time up to the whole second that status can
// hold, so that status never shows a time earlier than the plan.
func ceilSecond(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
