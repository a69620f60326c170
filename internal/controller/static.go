package controller

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// DefaultWarnBefore is how long before a static token's exp tokenwarden warns
// when spec.static.warnBefore is unset.
const DefaultWarnBefore = 168 * time.Hour

// syncStatic keeps the target Secret in step with a static token (flow D):
// it writes the composed header when the source Secret or the spec changed,
// and otherwise only watches the JWT's exp.
func (r *APICredentialReconciler) syncStatic(ctx context.Context, p *pass, t target, inputs string) error {
	cred := p.cred
	st := cred.Spec.Static
	if t.secret == nil || t.inputs != inputs || t.drifted {
		m, err := r.readStatic(ctx, p, inputs)
		if err != nil {
			err = r.attemptFailed(p, err, inputs)
			// No provider call to plan: the watch on the source Secret
			// brings the fix, and the slow retry wakes the pass meanwhile.
			p.status.NextRefreshTime = nil
			return err
		}
		r.attemptDone(p, inputs)
		if err := r.writeTarget(ctx, p, t.secret, m); err != nil {
			return r.writeFailed(p, err)
		}
		p.token = m.state()
		p.status.LastRefreshTime = metaTime(m.issuedAt)
		p.status.ConsecutiveFailures = 0
		r.event(p.owner, corev1.EventTypeNormal, EventTokenRefreshed, "Sync", "Static token written to Secret %s", cred.Spec.Target.SecretName)
	}
	p.status.NextRefreshTime = nil
	warnBefore := DefaultWarnBefore
	if st.WarnBefore != nil {
		warnBefore = st.WarnBefore.Duration
	}
	exp := p.token.ExpiresAt
	if exp.IsZero() || p.now.Before(exp.Add(-warnBefore)) {
		setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionFalse, authv1alpha1.ReasonRefreshSucceeded,
			"The target Secret is in step with the static token")
		p.wakeAt(exp.Add(-warnBefore))
		return nil
	}
	prev := meta.FindStatusCondition(p.status.Conditions, authv1alpha1.ConditionDegraded)
	msg := "The static token expires at " + exp.UTC().Format(time.RFC3339) + "; create a new one in the provider's console and update Secret " + string(st.SecretName)
	if prev == nil || prev.Reason != authv1alpha1.ReasonTokenExpiringSoon {
		r.event(p.owner, corev1.EventTypeWarning, EventTokenExpiringSoon, "Sync", "%s", msg)
	}
	setCondition(p, authv1alpha1.ConditionDegraded, metav1.ConditionTrue, authv1alpha1.ReasonTokenExpiringSoon, msg)
	return nil
}

// readStatic reads the static token and composes what goes into the target
// Secret.
func (r *APICredentialReconciler) readStatic(ctx context.Context, p *pass, inputs string) (minted, error) {
	st := p.cred.Spec.Static
	if err := CheckTemplates(&p.cred.Spec.Target); err != nil {
		return minted{}, err
	}
	src := r.sourceReader(ctx, p.cred.Namespace)
	jwt, err := src.value(st.SecretName, st.TokenKey, "spec.static.tokenKey")
	if err != nil {
		return minted{}, err
	}
	var secret []byte
	if st.SecretKey != nil {
		if secret, err = src.value(st.SecretName, *st.SecretKey, "spec.static.secretKey"); err != nil {
			return minted{}, err
		}
	}
	authorization, exp, _, err := auth.ComposeStatic(string(jwt), string(secret))
	if err != nil {
		return minted{}, problemf(failure.InvalidCredentials, "spec.static (Secret %q): %v", st.SecretName, err)
	}
	return minted{
		token:         strings.TrimPrefix(authorization, "Bearer "),
		authorization: authorization,
		issuedAt:      p.now.Truncate(time.Second),
		expiresAt:     exp.Truncate(time.Second),
		inputs:        inputs,
	}, nil
}
