package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/controller"
	"github.com/tokenwarden/tokenwarden/internal/demo"
)

// loadGen is the ceiling's plain load generator: for one credential at a
// time it does exactly the API writes of one refresh, one update of the
// target Secret and one merge patch of the APICredential's status, on the
// objects the operator wrote (so of the same sizes), and nothing else: no
// reads, no provider call, no cache. It runs with the operator stopped, as
// its own user, with controller-runtime's client as the operator uses it,
// and the operator's own status write (controller.PatchStatus).
type loadGen struct {
	c     client.Client
	slots []genSlot
	next  atomic.Int64
}

type genSlot struct {
	mu     sync.Mutex
	secret *corev1.Secret
	cred   *authv1alpha1.APICredential
}

// newLoadGen reads the current target Secrets and APICredentials of ns
// (as the bench, before the generator's own user sends anything).
func newLoadGen(ctx context.Context, cfg *rest.Config, reader client.Reader, ns string) (*loadGen, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0 // as fast as the API server takes it
	c, err := client.New(cfg, client.Options{Scheme: demo.Scheme()})
	if err != nil {
		return nil, err
	}
	var creds authv1alpha1.APICredentialList
	if err := reader.List(ctx, &creds, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var secrets corev1.SecretList
	if err := reader.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	byName := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		byName[secrets.Items[i].Name] = &secrets.Items[i]
	}
	g := &loadGen{c: c}
	for i := range creds.Items {
		cr := &creds.Items[i]
		s := byName[string(cr.Spec.Target.SecretName)]
		if s == nil || len(s.Data["token"]) == 0 || cr.Status.TokenExpiresAt == nil {
			continue // never got a token: no refresh to imitate
		}
		g.slots = append(g.slots, genSlot{secret: s, cred: cr})
	}
	if len(g.slots) == 0 {
		return nil, fmt.Errorf("no credential of %s holds a token to imitate", ns)
	}
	return g, nil
}

// run keeps workers busy for d and returns the refreshes' worth of writes
// completed (both writes succeeded) and the first error.
func (g *loadGen) run(ctx context.Context, workers int, d time.Duration) (done int, failed int, firstErr error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, bad atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(g.next.Add(1)-1) % len(g.slots)
				err := g.one(ctx, &g.slots[i])
				switch {
				case err == nil:
					ok.Add(1)
				case ctx.Err() != nil:
					return // cut off by the end of the window: not counted
				default:
					bad.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	return int(ok.Load()), int(bad.Load()), firstErr
}

// one is one refresh's writes for a slot: a new token value of the same
// length, new issued-at and expires-at annotations, and the status moved on
// by the same fields the operator changes (times, and the Ready message
// that names the expiry).
func (g *loadGen) one(ctx context.Context, s *genSlot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	oldExp := s.cred.Status.TokenExpiresAt.Time
	lifetime := time.Minute
	if lr := s.cred.Status.LastRefreshTime; lr != nil && oldExp.After(lr.Time) {
		lifetime = oldExp.Sub(lr.Time)
	}
	newExp := now.Add(lifetime)

	sec := s.secret.DeepCopy()
	for _, k := range []string{"token", "authorization"} {
		if v, ok := sec.Data[k]; ok {
			sec.Data[k] = []byte(randomLike(string(v)))
		}
	}
	for k, v := range sec.Annotations {
		if _, err := time.Parse(time.RFC3339, v); err == nil {
			if strings.Contains(k, "expires") {
				sec.Annotations[k] = newExp.Format(time.RFC3339)
			} else {
				sec.Annotations[k] = now.Format(time.RFC3339)
			}
		}
	}
	if err := g.c.Update(ctx, sec); err != nil {
		return fmt.Errorf("update Secret %s: %w", sec.Name, err)
	}
	s.secret = sec

	cred := s.cred.DeepCopy()
	raw, err := json.Marshal(cred.Status)
	if err != nil {
		return err
	}
	text := string(raw)
	for _, r := range []struct {
		old *metav1.Time
		new time.Time
	}{
		{cred.Status.TokenExpiresAt, newExp},
		{cred.Status.LastRefreshTime, now},
		{cred.Status.LastAttemptTime, now},
		{cred.Status.NextRefreshTime, now.Add(lifetime / 2)},
	} {
		if r.old != nil {
			text = strings.ReplaceAll(text, r.old.UTC().Format(time.RFC3339), r.new.Format(time.RFC3339))
		}
	}
	var status authv1alpha1.APICredentialStatus
	if err := json.Unmarshal([]byte(text), &status); err != nil {
		return err
	}
	// The operator's own status write: the same patch, metadata back.
	if err := controller.PatchStatus(ctx, g.c, cred, status); err != nil {
		return fmt.Errorf("patch status of %s: %w", cred.Name, err)
	}
	s.cred = cred
	return nil
}

// randomLike returns a random string as long as s, of hex digits.
func randomLike(s string) string { return randomString(len(s)) }
