package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/demo"
)

// tracker watches the target Secrets (label-selected) and the
// APICredentials of every namespace through informers, as a workload
// reading its token through the API would, and samples them every second.
type tracker struct {
	mu  sync.Mutex
	nss map[string]*nsTrack
	// tokenLog records every token observed in namespaces with this
	// prefix (first ones included), for the copy delays of providers.
	tokenPrefix string
	tokenLog    []tokenSeen
}

// tokenSeen is one token observed in a Secret: a hash of it (kept in the
// bench's memory only) and when.
type tokenSeen struct {
	at       time.Time
	ns, name string
	hash     [16]byte
}

type nsTrack struct {
	active  bool // sampled by the 1 s ticker
	secrets map[string]*secretState
	creds   map[string]*credState
	changes []tokenChange
	ticks   []tick
}

type secretState struct {
	token               string
	issuedAt, expiresAt time.Time
	tokens              int       // distinct token values seen, the first included
	tokenAt             time.Time // when the current token was first seen
}

type credState struct {
	created        time.Time // when the bench sent the create request
	readyAt        time.Time // first Ready=True seen
	ready          bool
	tokenExpiresAt time.Time
}

// tokenChange is a new token replacing an older one in a target Secret.
type tokenChange struct {
	at   time.Time
	name string
	// remaining validity of the previous token when the new one was
	// observed, and (from the annotations) at the new token's issued-at.
	remainObserved, remainAnnotated time.Duration
	// oldExpires is the previous token's expiry (annotation).
	oldExpires time.Time
}

// tick is one 1 s sample of a namespace.
type tick struct {
	at           time.Time
	samples      int      // target Secrets sampled
	expired      []string // Secrets whose expires-at is in the past
	maxLate      time.Duration
	readyExpired []string // APICredentials Ready=True with status.tokenExpiresAt in the past
}

func newTracker() *tracker { return &tracker{nss: map[string]*nsTrack{}} }

func tokenHash(token string) [16]byte {
	sum := sha256.Sum256([]byte(token))
	var h [16]byte
	copy(h[:], sum[:16])
	return h
}

// logTokens starts (prefix != "") or stops the token log and returns what
// it had recorded.
func (t *tracker) logTokens(prefix string) []tokenSeen {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.tokenLog
	t.tokenPrefix, t.tokenLog = prefix, nil
	return out
}

func (t *tracker) ns(name string) *nsTrack {
	n := t.nss[name]
	if n == nil {
		n = &nsTrack{secrets: map[string]*secretState{}, creds: map[string]*credState{}}
		t.nss[name] = n
	}
	return n
}

// start runs the informers until ctx ends and waits for their first sync.
func (t *tracker) start(ctx context.Context, cfg *rest.Config) error {
	c, err := cache.New(cfg, cache.Options{
		Scheme:           demo.Scheme(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{
				authv1alpha1.LabelManagedBy: authv1alpha1.ManagedByValue,
			})},
		},
	})
	if err != nil {
		return err
	}
	si, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	if _, err := si.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.secret(o) },
		UpdateFunc: func(_, o any) { t.secret(o) },
		DeleteFunc: func(o any) { t.secretGone(o) },
	}); err != nil {
		return err
	}
	ci, err := c.GetInformer(ctx, &authv1alpha1.APICredential{})
	if err != nil {
		return err
	}
	if _, err := ci.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.cred(o) },
		UpdateFunc: func(_, o any) { t.cred(o) },
		DeleteFunc: func(o any) { t.credGone(o) },
	}); err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("bench informers did not sync")
	}
	go t.sample(ctx)
	return nil
}

func (t *tracker) secret(o any) {
	s, ok := o.(*corev1.Secret)
	if !ok {
		return
	}
	now := time.Now()
	issued, _ := time.Parse(time.RFC3339, s.Annotations[authv1alpha1.AnnotationIssuedAt])
	expires, _ := time.Parse(time.RFC3339, s.Annotations[authv1alpha1.AnnotationExpiresAt])
	token := string(s.Data["token"])
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.ns(s.Namespace)
	st := n.secrets[s.Name]
	logged := t.tokenPrefix != "" && strings.HasPrefix(s.Namespace, t.tokenPrefix)
	if st == nil {
		// A Secret may first appear empty: the operator claims the target
		// name before the first token is written.
		st = &secretState{}
		n.secrets[s.Name] = st
	}
	if token != st.token && token != "" {
		if st.token != "" && !st.expiresAt.IsZero() {
			n.changes = append(n.changes, tokenChange{
				at: now, name: s.Name,
				remainObserved:  st.expiresAt.Sub(now),
				remainAnnotated: st.expiresAt.Sub(issued),
				oldExpires:      st.expiresAt,
			})
		}
		st.tokens++
		st.tokenAt = now
		if logged {
			t.tokenLog = append(t.tokenLog, tokenSeen{at: now, ns: s.Namespace, name: s.Name, hash: tokenHash(token)})
		}
	}
	st.token, st.issuedAt, st.expiresAt = token, issued, expires
}

func (t *tracker) secretGone(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	s, ok := o.(*corev1.Secret)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ns(s.Namespace).secrets, s.Name)
}

func (t *tracker) cred(o any) {
	c, ok := o.(*authv1alpha1.APICredential)
	if !ok {
		return
	}
	now := time.Now()
	ready := meta.IsStatusConditionTrue(c.Status.Conditions, authv1alpha1.ConditionReady)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.ns(c.Namespace)
	st := n.creds[c.Name]
	if st == nil {
		st = &credState{}
		n.creds[c.Name] = st
	}
	st.ready = ready
	if ready && st.readyAt.IsZero() {
		st.readyAt = now
	}
	if c.Status.TokenExpiresAt != nil {
		st.tokenExpiresAt = c.Status.TokenExpiresAt.Time
	}
}

func (t *tracker) credGone(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	c, ok := o.(*authv1alpha1.APICredential)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ns(c.Namespace).creds, c.Name)
}

// created records when the bench asked for an APICredential to be created.
func (t *tracker) created(ns, name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.ns(ns)
	st := n.creds[name]
	if st == nil {
		st = &credState{}
		n.creds[name] = st
	}
	st.created = at
}

func (t *tracker) setActive(ns string, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ns(ns).active = active
}

func (t *tracker) sample(ctx context.Context) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.mu.Lock()
			for _, n := range t.nss {
				if !n.active {
					continue
				}
				s := tick{at: now, samples: len(n.secrets)}
				for name, st := range n.secrets {
					if !st.expiresAt.IsZero() && !now.Before(st.expiresAt) {
						s.expired = append(s.expired, name)
						s.maxLate = max(s.maxLate, now.Sub(st.expiresAt))
					}
				}
				for name, c := range n.creds {
					if c.ready && !c.tokenExpiresAt.IsZero() && !now.Before(c.tokenExpiresAt) {
						s.readyExpired = append(s.readyExpired, name)
					}
				}
				n.ticks = append(n.ticks, s)
			}
			t.mu.Unlock()
		}
	}
}

// readyCount returns how many APICredentials of ns have been Ready at
// least once, and how many the tracker knows.
func (t *tracker) readyCount(ns string) (ready, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.ns(ns).creds {
		total++
		if !c.readyAt.IsZero() {
			ready++
		}
	}
	return ready, total
}

// counts returns the number of tracked Secrets and APICredentials in ns.
func (t *tracker) counts(ns string) (secrets, creds int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.ns(ns)
	return len(n.secrets), len(n.creds)
}

// timesToReady returns creation-to-Ready durations, sorted, and how many
// APICredentials never became Ready.
func (t *tracker) timesToReady(ns string) (ds []time.Duration, notReady int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.ns(ns).creds {
		if c.readyAt.IsZero() || c.created.IsZero() {
			notReady++
			continue
		}
		ds = append(ds, c.readyAt.Sub(c.created))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds, notReady
}

// tokensPerSecret returns the number of distinct tokens each target Secret
// of ns has held.
func (t *tracker) tokensPerSecret(ns string) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]int{}
	for name, st := range t.ns(ns).secrets {
		out[name] = st.tokens
	}
	return out
}

// exposure sums the samples of ns taken in [from, to).
type exposure struct {
	Samples         int     `json:"samples"`
	ExpiredSamples  int     `json:"expired_samples"`
	ExpiredSecrets  int     `json:"secrets_seen_expired"`
	MaxLateSeconds  float64 `json:"max_seconds_past_expiry"`
	ReadyExpired    int     `json:"credentials_ready_while_expired"`
	Ticks           int     `json:"ticks"`
	expiredNames    map[string]bool
	readyExpiredSet map[string]bool
}

func (t *tracker) exposure(ns string, from, to time.Time) exposure {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := exposure{expiredNames: map[string]bool{}, readyExpiredSet: map[string]bool{}}
	for _, s := range t.ns(ns).ticks {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		e.Ticks++
		e.Samples += s.samples
		e.ExpiredSamples += len(s.expired)
		for _, n := range s.expired {
			e.expiredNames[n] = true
		}
		for _, n := range s.readyExpired {
			e.readyExpiredSet[n] = true
		}
		e.MaxLateSeconds = max(e.MaxLateSeconds, round(s.maxLate.Seconds(), 1))
	}
	e.ExpiredSecrets = len(e.expiredNames)
	e.ReadyExpired = len(e.readyExpiredSet)
	return e
}

// changesIn returns the token changes of ns observed in [from, to).
// tokensSince counts the Secrets of ns whose current token was first seen
// at or after since.
func (t *tracker) tokensSince(ns string, since time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, st := range t.ns(ns).secrets {
		if !st.tokenAt.Before(since) {
			n++
		}
	}
	return n
}

func (t *tracker) changesIn(ns string, from, to time.Time) []tokenChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []tokenChange
	for _, c := range t.ns(ns).changes {
		if !c.at.Before(from) && c.at.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

func minRemaining(cs []tokenChange) (observed, annotated time.Duration, ok bool) {
	if len(cs) == 0 {
		return 0, 0, false
	}
	observed, annotated = cs[0].remainObserved, cs[0].remainAnnotated
	for _, c := range cs[1:] {
		observed = min(observed, c.remainObserved)
		annotated = min(annotated, c.remainAnnotated)
	}
	return observed, annotated, true
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	// Nearest rank.
	i := int(p*float64(len(ds))+0.999999) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i]
}
