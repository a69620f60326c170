package plugin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
)

// StatusOptions are the options of `status`.
type StatusOptions struct {
	*Env
	AllNamespaces bool
	Selector      string
}

// NewCmdStatus returns the status command.
func NewCmdStatus(env *Env) *cobra.Command {
	o := &StatusOptions{Env: env}
	cmd := &cobra.Command{
		Use:   "status [NAME | KIND/NAME] [-n NAMESPACE | -A] [-l SELECTOR]",
		Short: "Show whether tokens are fresh: Ready, reason, expiry, next refresh, host cool-down",
		Long: `Show the APICredentials, TokenProviders and ClusterTokenProviders of a
namespace (or of all namespaces with -A) in one table: whether the token in
the target Secret is valid (READY), why not or what last went wrong
(REASON), when the token expires, when the operator plans its next token
request, and whether the token host is cooling down after a 429.

The cool-down is read from status: an object whose Degraded condition is
RateLimited waits until its nextRefreshTime, and every object asking the
same host (host:port) waits with it. ClusterTokenProviders are listed with
-A, and otherwise when a listed APICredential names one.

With a NAME, show that object in detail: both conditions with their
messages, every status time, the pending refresh request, its provider or
its consumers.`,
		Example: `  # Everything in the current namespace
  kubectl tokenwarden status

  # One credential in detail
  kubectl tokenwarden status psp -n payments

  # A provider in detail
  kubectl tokenwarden status tp/bank -n payments
  kubectl tokenwarden status ctp/send-payments

  # Every namespace, only objects labelled team=checkout
  kubectl tokenwarden status -A -l team=checkout`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			return o.Run(cmd.Context(), args)
		},
	}
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "List the objects of every namespace, and every ClusterTokenProvider.")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "Label selector (e.g. -l team=checkout,env!=dev).")
	return cmd
}

// Validate checks the flags and arguments.
func (o *StatusOptions) Validate(args []string) error {
	if len(args) > 0 && (o.AllNamespaces || o.Selector != "") {
		return errors.New("a NAME cannot be combined with -A or -l")
	}
	if o.Selector != "" {
		if _, err := labels.Parse(o.Selector); err != nil {
			return fmt.Errorf("-l %q: %w", o.Selector, err)
		}
	}
	if len(args) > 0 {
		if _, _, err := parseRef(args[0]); err != nil {
			return err
		}
	}
	return nil
}

// Run prints the table, or the detail of one object.
func (o *StatusOptions) Run(ctx context.Context, args []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	if len(args) == 1 {
		return o.detail(ctx, c, ns, args[0])
	}
	items, err := o.collect(ctx, c, ns)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		if o.AllNamespaces {
			fmt.Fprintln(o.ErrOut, "No APICredentials, TokenProviders or ClusterTokenProviders found.")
		} else {
			fmt.Fprintf(o.ErrOut, "No APICredentials or TokenProviders found in namespace %s.\n", ns)
		}
		return nil
	}
	o.table(o.Out, items, coolDowns(items, o.now()))
	return nil
}

// collect lists every kind in scope. A kind the API server does not serve
// is skipped; one the user may not list is reported and skipped.
func (o *StatusOptions) collect(ctx context.Context, c client.Reader, ns string) ([]item, error) {
	var opts []client.ListOption
	if o.Selector != "" {
		sel, err := labels.Parse(o.Selector)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	var items []item
	for _, k := range kinds {
		kopts := opts
		if k.namespaced && !o.AllNamespaces {
			kopts = append(slices.Clone(opts), client.InNamespace(ns))
		}
		if !k.namespaced && !o.AllNamespaces {
			items = append(items, o.referencedClusterProviders(ctx, c, k, items)...)
			continue
		}
		got, err := k.list(ctx, c, kopts...)
		switch {
		case err != nil && !served(err):
			continue
		case apierrors.IsForbidden(err):
			fmt.Fprintf(o.ErrOut, "Skipping %ss: %v\n", k.name, err)
			continue
		case err != nil:
			return nil, fmt.Errorf("listing %ss: %w", k.name, err)
		}
		items = append(items, got...)
	}
	return items, nil
}

// referencedClusterProviders gets the ClusterTokenProviders the listed
// consumers name, so that a namespace's view shows where its tokens come
// from.
func (o *StatusOptions) referencedClusterProviders(ctx context.Context, c client.Reader, k kind, listed []item) []item {
	var out []item
	seen := map[string]bool{}
	for _, it := range listed {
		if it.provider == nil || it.provider.Kind != k.name || seen[it.provider.Name] {
			continue
		}
		seen[it.provider.Name] = true
		p, err := k.get(ctx, c, types.NamespacedName{Name: it.provider.Name})
		if err == nil {
			out = append(out, p)
		}
	}
	return out
}

// coolDown is a token host's 429 cool-down as status shows it.
type coolDown struct {
	until time.Time
	from  string // the object whose Degraded=RateLimited says so
}

// coolDowns finds, per token host, the latest end of a 429 cool-down among
// the items: an item whose Degraded condition is RateLimited plans its next
// request at the end of the host's cool-down (status.nextRefreshTime).
func coolDowns(items []item, now time.Time) map[string]coolDown {
	out := map[string]coolDown{}
	for _, it := range items {
		d := meta.FindStatusCondition(it.status.Conditions, authv1alpha1.ConditionDegraded)
		if d == nil || d.Status != metav1.ConditionTrue || d.Reason != authv1alpha1.ReasonRateLimited {
			continue
		}
		host := hostOf(it.url)
		until := timeOf(it.status.NextRefreshTime)
		if host == "" || !until.After(now) {
			continue
		}
		if cur, ok := out[host]; !ok || until.After(cur.until) {
			out[host] = coolDown{until: until, from: it.ref()}
		}
	}
	return out
}

// hostOf is the operator's own limiter key of a token URL, or "".
func hostOf(url string) string {
	if url == "" {
		return ""
	}
	h, err := auth.HostOf(url)
	if err != nil {
		return ""
	}
	return h
}

// providerURLs maps each listed provider (kind/namespace/name) to its URL,
// so that a consumer shows its provider's host cool-down.
func providerURLs(items []item) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		if it.consumers != nil {
			out[it.kind+"/"+it.meta.Namespace+"/"+it.meta.Name] = it.url
		}
	}
	return out
}

func (it item) hostURL(providers map[string]string) string {
	if it.provider == nil {
		return it.url
	}
	ns := it.meta.Namespace
	if it.provider.Kind == authv1alpha1.KindClusterTokenProvider {
		ns = ""
	}
	return providers[it.provider.Kind+"/"+ns+"/"+it.provider.Name]
}

func (o *StatusOptions) table(w io.Writer, items []item, cool map[string]coolDown) {
	now := o.now()
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(kindOrder(a.kind), kindOrder(b.kind)),
			cmp.Compare(a.meta.Namespace, b.meta.Namespace), cmp.Compare(a.meta.Name, b.meta.Name))
	})
	providers := providerURLs(items)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	header := []string{"NAME", "READY", "REASON", "EXPIRES", "NEXT REFRESH", "COOL-DOWN", "SOURCE"}
	if o.AllNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, it := range items {
		row := []string{
			it.ref(),
			readyOf(it.status),
			cmp.Or(it.status.Reason, "-"),
			expiresOf(it, now),
			nextOf(it, now),
			coolDownOf(cool, hostOf(it.hostURL(providers)), now),
			sourceOf(it),
		}
		if o.AllNamespaces {
			row = append([]string{cmp.Or(it.meta.Namespace, "-")}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

func kindOrder(k string) int {
	for i, kk := range kinds {
		if kk.name == k {
			return i
		}
	}
	return len(kinds)
}

func readyOf(st authv1alpha1.TokenStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, authv1alpha1.ConditionReady); c != nil {
		return string(c.Status)
	}
	return "-"
}

func expiresOf(it item, now time.Time) string {
	exp := timeOf(it.status.TokenExpiresAt)
	switch {
	case exp.IsZero() && it.static && it.status.LastRefreshTime != nil:
		return "never (no exp)"
	case exp.IsZero():
		return "-"
	case !exp.After(now):
		return "expired " + relative(exp, now)
	}
	return relative(exp, now)
}

func nextOf(it item, now time.Time) string {
	var s string
	switch {
	case it.suspended:
		s = "suspended"
	case it.static:
		s = "never (static)"
	default:
		s = relative(timeOf(it.status.NextRefreshTime), now)
	}
	if renewPending(it) {
		s += " (renew requested)"
	}
	return s
}

// renewPending says whether a refresh-requested-at value waits to be
// handled.
func renewPending(it item) bool {
	v := it.meta.Annotations[authv1alpha1.AnnotationRefreshRequestedAt]
	return v != "" && v != it.status.LastHandledRefreshRequest && !it.static && it.provider == nil
}

func coolDownOf(cool map[string]coolDown, host string, now time.Time) string {
	cd, ok := cool[host]
	if host == "" || !ok {
		return "-"
	}
	return "429, " + relative(cd.until, now)
}

func sourceOf(it item) string {
	switch {
	case it.static:
		return "static"
	case it.provider != nil:
		k, _ := kindNamed(it.provider.Kind)
		return strings.ToLower(k.name) + "/" + it.provider.Name
	}
	s := cmp.Or(hostOf(it.url), "-")
	if it.consumers != nil {
		s += fmt.Sprintf(", %d consumer(s)", *it.consumers)
	}
	return s
}

// detail prints one object and what it depends on.
func (o *StatusOptions) detail(ctx context.Context, c client.Reader, ns, arg string) error {
	k, name, err := parseRef(arg)
	if err != nil {
		return err
	}
	it, err := k.get(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
	if err != nil {
		return describeGetError(k, ns, name, err)
	}
	now := o.now()
	// The host's cool-down is shared: look at the other objects of the
	// namespace (best effort) as well as this one.
	peers, _ := (&StatusOptions{Env: o.Env}).collect(ctx, c, cmp.Or(it.meta.Namespace, ns))
	var provider *item
	if it.provider != nil {
		pk, _ := kindNamed(it.provider.Kind)
		if p, err := pk.get(ctx, c, types.NamespacedName{Namespace: it.meta.Namespace, Name: it.provider.Name}); err == nil {
			provider = &p
			peers = append(peers, p)
		}
	}
	peers = append(peers, it)
	cool := coolDowns(peers, now)

	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	where := it.meta.Name
	if it.meta.Namespace != "" {
		where = it.meta.Namespace + "/" + it.meta.Name
	}
	fmt.Fprintf(w, "%s %s\n", it.kind, where)
	for _, t := range []string{authv1alpha1.ConditionReady, authv1alpha1.ConditionDegraded} {
		cond := meta.FindStatusCondition(it.status.Conditions, t)
		if cond == nil {
			fmt.Fprintf(w, "  %s:\t-\n", t)
			continue
		}
		fmt.Fprintf(w, "  %s:\t%s, %s: %s\n", t, cond.Status, cond.Reason, cond.Message)
	}
	fmt.Fprintf(w, "  Reason:\t%s\n", cmp.Or(it.status.Reason, "-"))
	fmt.Fprintf(w, "  Token expires:\t%s\n", stamp(timeOf(it.status.TokenExpiresAt), now))
	fmt.Fprintf(w, "  Last refresh:\t%s\n", stamp(timeOf(it.status.LastRefreshTime), now))
	fmt.Fprintf(w, "  Next refresh:\t%s\n", nextDetail(it, now))
	if it.provider == nil && !it.static {
		fmt.Fprintf(w, "  Last attempt:\t%s\n", stamp(timeOf(it.status.LastAttemptTime), now))
		fmt.Fprintf(w, "  Consecutive failures:\t%d\n", it.status.ConsecutiveFailures)
	}
	if it.status.ClientCertificateExpiresAt != nil {
		fmt.Fprintf(w, "  Client certificate expires:\t%s\n", stamp(it.status.ClientCertificateExpiresAt.Time, now))
	}
	if v := it.meta.Annotations[authv1alpha1.AnnotationRefreshRequestedAt]; v != "" {
		state := "handled"
		if renewPending(it) {
			state = "not handled yet"
		}
		fmt.Fprintf(w, "  Refresh requested:\t%s (%s)\n", v, state)
	}
	if url := it.hostURL(providerURLs(peers)); url != "" {
		host := hostOf(url)
		fmt.Fprintf(w, "  Token host:\t%s\n", cmp.Or(host, "-"))
		if cd, ok := cool[host]; ok {
			fmt.Fprintf(w, "  Host cool-down:\t429 until %s, from %s's Degraded=RateLimited; every request to this host waits\n", stamp(cd.until, now), cd.from)
		} else {
			fmt.Fprintf(w, "  Host cool-down:\tnone known\n")
		}
	}
	secretNS := it.meta.Namespace
	if it.secretInCluster {
		secretNS = "the cluster resource namespace (" + DefaultClusterResourceNamespace + " by default)"
	}
	fmt.Fprintf(w, "  Token Secret:\t%s in %s, key %q\n", it.secretName, secretNS, it.tokenKey)
	switch {
	case it.provider != nil && provider != nil:
		fmt.Fprintf(w, "  Provider:\t%s: Ready %s, %s, token expires %s\n", provider.ref(), readyOf(provider.status),
			cmp.Or(provider.status.Reason, "-"), stamp(timeOf(provider.status.TokenExpiresAt), now))
	case it.provider != nil:
		pk, _ := kindNamed(it.provider.Kind)
		fmt.Fprintf(w, "  Provider:\t%s/%s (not readable)\n", strings.ToLower(pk.name), it.provider.Name)
	case it.consumers != nil:
		fmt.Fprintf(w, "  Consumers:\t%d\n", *it.consumers)
	}
	if it.suspended {
		fmt.Fprintf(w, "  Suspended:\tyes: no provider calls and no writes until spec.suspend is false\n")
	}
	return w.Flush()
}

func nextDetail(it item, now time.Time) string {
	switch {
	case it.suspended:
		return "none while suspended"
	case it.static:
		return "none: a static token is copied, never refreshed"
	}
	return stamp(timeOf(it.status.NextRefreshTime), now)
}

// describeGetError turns a failed Get into a message naming the object.
func describeGetError(k kind, ns, name string, err error) error {
	switch {
	case apierrors.IsNotFound(err) && k.namespaced:
		return fmt.Errorf("%s %q not found in namespace %s", k.name, name, ns)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s %q not found", k.name, name)
	case !served(err):
		return fmt.Errorf("this cluster does not serve %s (is tokenwarden installed, and is it a cluster-wide install?)", k.name)
	}
	return fmt.Errorf("reading %s %s: %w", k.name, name, err)
}
