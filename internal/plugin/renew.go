package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
)

// RenewOptions are the options of `renew`.
type RenewOptions struct {
	*Env
	All           bool
	AllNamespaces bool
	Selector      string
}

// NewCmdRenew returns the renew command.
func NewCmdRenew(env *Env) *cobra.Command {
	o := &RenewOptions{Env: env}
	cmd := &cobra.Command{
		Use:   "renew (NAME | KIND/NAME ... | --all | -l SELECTOR) [-n NAMESPACE | -A]",
		Short: "Ask the operator for a new token now (sets " + authv1alpha1.AnnotationRefreshRequestedAt + ")",
		Long: `Ask the operator to request a new token now, whatever its schedule, for
example after the provider revoked tokens. renew sets the annotation
` + authv1alpha1.AnnotationRefreshRequestedAt + ` to the current time (RFC 3339, UTC,
with nanoseconds, so that every renew is a new value) with a merge patch;
the operator echoes the value in status.lastHandledRefreshRequest once it
has acted on it.

The usual limits still apply: the operator asks a provider at most once
every ` + refresh.Floor.String() + ` per credential, and not while the token host is cooling down
after a 429; the request is then made as soon as they allow. A suspended
object makes no request until spec.suspend is false.

A static token (spec.static) cannot be refreshed, and an APICredential with
spec.providerRef never asks a provider itself: renew skips both and names
the provider to renew instead. --all and -l renew the APICredentials and
TokenProviders of the namespace (with -A of every namespace, and every
ClusterTokenProvider).`,
		Example: `  # One credential
  kubectl tokenwarden renew psp -n payments

  # A provider: every consumer gets its new token
  kubectl tokenwarden renew tp/bank -n payments
  kubectl tokenwarden renew ctp/send-payments

  # Everything in a namespace, or everything labelled team=checkout anywhere
  kubectl tokenwarden renew --all -n payments
  kubectl tokenwarden renew -A -l team=checkout`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			return o.Run(cmd.Context(), args)
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "Renew every APICredential and TokenProvider of the namespace (with -A: of every namespace, and every ClusterTokenProvider).")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "With --all or -l: look in every namespace.")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "Renew the objects matching this label selector (e.g. -l team=checkout).")
	return cmd
}

// Validate checks that exactly one way of choosing objects is used.
func (o *RenewOptions) Validate(args []string) error {
	switch {
	case o.All && o.Selector != "":
		return errors.New("--all and -l cannot be combined")
	case len(args) > 0 && (o.All || o.Selector != ""):
		return errors.New("names cannot be combined with --all or -l")
	case len(args) > 0 && o.AllNamespaces:
		return errors.New("names cannot be combined with -A; use -n NAMESPACE")
	case len(args) == 0 && !o.All && o.Selector == "":
		return errors.New("name one or more objects, or use --all or -l SELECTOR")
	}
	if o.Selector != "" {
		if _, err := labels.Parse(o.Selector); err != nil {
			return fmt.Errorf("-l %q: %w", o.Selector, err)
		}
	}
	for _, a := range args {
		if _, _, err := parseRef(a); err != nil {
			return err
		}
	}
	return nil
}

// Run sets the annotation on every chosen object.
func (o *RenewOptions) Run(ctx context.Context, args []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	var items []item
	if len(args) > 0 {
		for _, a := range args {
			k, name, _ := parseRef(a)
			it, err := k.get(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
			if err != nil {
				return describeGetError(k, ns, name, err)
			}
			items = append(items, it)
		}
	} else {
		st := &StatusOptions{Env: o.Env, AllNamespaces: o.AllNamespaces, Selector: o.Selector}
		all, err := st.collect(ctx, c, ns)
		if err != nil {
			return err
		}
		for _, it := range all {
			// A namespace's view includes the ClusterTokenProviders its
			// consumers name; --all renews those only with -A.
			if it.secretInCluster && !o.AllNamespaces {
				continue
			}
			items = append(items, it)
		}
		if len(items) == 0 {
			fmt.Fprintln(o.ErrOut, "Nothing to renew: no APICredentials or TokenProviders found.")
			return nil
		}
	}
	value := o.now().UTC().Format(time.RFC3339Nano)
	renewed := 0
	var failed []error
	for _, it := range items {
		if skip := skipReason(it); skip != "" {
			fmt.Fprintf(o.Out, "%s skipped: %s\n", where(it), skip)
			continue
		}
		if err := requestRefresh(ctx, c, it, value); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", where(it), err))
			continue
		}
		renewed++
		fmt.Fprintf(o.Out, "%s: refresh requested (%s=%s)%s\n", where(it), authv1alpha1.AnnotationRefreshRequestedAt, value, renewCaveat(it, o.now()))
	}
	if renewed > 0 {
		fmt.Fprintf(o.Out, "The operator asks the provider as soon as its limits allow: at most one request per %s per object, and none while the token host is cooling down after a 429. `%s status` shows when; status.lastHandledRefreshRequest echoes the value once handled.\n", refresh.Floor, Name)
	}
	return errors.Join(failed...)
}

// where names an object with its namespace, for messages.
func where(it item) string {
	if it.meta.Namespace == "" {
		return it.ref()
	}
	return it.ref() + " in " + it.meta.Namespace
}

// skipReason says why the annotation would have no effect on it, or "".
func skipReason(it item) string {
	switch {
	case it.static:
		return "a static token (spec.static) cannot be refreshed; replace it in its source Secret"
	case it.provider != nil:
		k, _ := kindNamed(it.provider.Kind)
		return fmt.Sprintf("it takes its token from %s/%s and never asks a provider itself; renew that provider (every consumer gets its new token)",
			strings.ToLower(k.name), it.provider.Name)
	}
	return ""
}

// renewCaveat says what will hold this object's request back, from its
// status.
func renewCaveat(it item, now time.Time) string {
	if it.suspended {
		return "; it is suspended: no request until spec.suspend is false"
	}
	d := meta.FindStatusCondition(it.status.Conditions, authv1alpha1.ConditionDegraded)
	if d != nil && d.Status == metav1.ConditionTrue && d.Reason == authv1alpha1.ReasonRateLimited {
		if next := timeOf(it.status.NextRefreshTime); next.After(now) {
			return "; its token host is cooling down after a 429 until " + stamp(next, now)
		}
	}
	if last := timeOf(it.status.LastAttemptTime); !last.IsZero() {
		tok := refresh.Token{IssuedAt: timeOf(it.status.LastRefreshTime), ExpiresAt: timeOf(it.status.TokenExpiresAt)}
		if earliest := last.Add(refresh.MinInterval(tok, last)); earliest.After(now) {
			return "; its last request was " + relative(last, now) + ", so the minimum interval holds the next one until " + stamp(earliest, now)
		}
	}
	return ""
}

// requestRefresh sets the annotation with a merge patch, which touches no
// other field and needs only patch rights on the object.
func requestRefresh(ctx context.Context, c client.Client, it item, value string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"annotations": map[string]string{authv1alpha1.AnnotationRefreshRequestedAt: value},
		},
	})
	if err != nil {
		return err
	}
	return c.Patch(ctx, it.obj, client.RawPatch(types.MergePatchType, patch))
}
