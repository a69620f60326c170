package plugin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// InspectOptions are the options of `inspect`.
type InspectOptions struct {
	*Env
	ClusterResourceNamespace string
}

// NewCmdInspect returns the inspect command.
func NewCmdInspect(env *Env) *cobra.Command {
	o := &InspectOptions{Env: env}
	cmd := &cobra.Command{
		Use:   "inspect (NAME | KIND/NAME) [-n NAMESPACE]",
		Short: "Decode the token in the target Secret: JWT header, claims, issued-at and expiry (never the token)",
		Long: `Read the Secret that holds an object's token (an APICredential's target
Secret, a provider's "<name>-token" Secret) and print what the token says
about itself: the JWT header and claims, issued-at, not-before and expiry,
next to the expiry the operator recorded.

The token itself and its signature are never printed, nor the secret part
of a static token ("{secret}.{jwt}"). A token that is not a JWT is reported
by its length and the expiry from status only. The JWT is decoded, not
verified: the provider is the one that checks the signature.

Reading the Secret needs "get" on Secrets in its namespace.`,
		Example: `  # The token of an APICredential
  kubectl tokenwarden inspect psp -n payments

  # The token a ClusterTokenProvider holds (in the operator's cluster resource namespace)
  kubectl tokenwarden inspect ctp/send-payments --cluster-resource-namespace tokenwarden-system`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := parseRef(args[0]); err != nil {
				return err
			}
			return o.Run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().StringVar(&o.ClusterResourceNamespace, "cluster-resource-namespace", DefaultClusterResourceNamespace,
		"Namespace of ClusterTokenProviders' token Secrets: the operator's --cluster-resource-namespace.")
	return cmd
}

// Run reads the Secret and prints the decoded token.
func (o *InspectOptions) Run(ctx context.Context, arg string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	k, name, err := parseRef(arg)
	if err != nil {
		return err
	}
	it, err := k.get(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
	if err != nil {
		return describeGetError(k, ns, name, err)
	}
	secretNS := it.meta.Namespace
	if it.secretInCluster {
		secretNS = o.ClusterResourceNamespace
	}
	var sec corev1.Secret
	err = c.Get(ctx, types.NamespacedName{Namespace: secretNS, Name: it.secretName}, &sec)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: Secret %s not found in namespace %s: no token has been written yet (reason %s)", where(it), it.secretName, secretNS, orDash(it.status.Reason))
	case err != nil:
		return fmt.Errorf("%s: reading Secret %s in %s: %w", where(it), it.secretName, secretNS, err)
	}
	raw, ok := sec.Data[it.tokenKey]
	if !ok {
		return fmt.Errorf("%s: Secret %s in %s has no key %q", where(it), it.secretName, secretNS, it.tokenKey)
	}
	now := o.now()
	fmt.Fprintf(o.Out, "Token of %s: Secret %s in %s, key %q, %d bytes\n", where(it), it.secretName, secretNS, it.tokenKey, len(raw))
	v := describeToken(string(raw), it.static)
	printToken(o.Out, v)
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	if v.jwt {
		fmt.Fprintf(tw, "Issued at (iat):\t%s\n", stamp(v.iat, now))
		fmt.Fprintf(tw, "Not before (nbf):\t%s\n", stamp(v.nbf, now))
		fmt.Fprintf(tw, "Expires (exp):\t%s\n", stamp(v.exp, now))
	}
	fmt.Fprintf(tw, "Expires (status.tokenExpiresAt):\t%s\n", stamp(timeOf(it.status.TokenExpiresAt), now))
	fmt.Fprintf(tw, "Expires (Secret annotation %s):\t%s\n", authv1alpha1.AnnotationExpiresAt, orDash(sec.Annotations[authv1alpha1.AnnotationExpiresAt]))
	fmt.Fprintf(tw, "Requested (Secret annotation %s):\t%s\n", authv1alpha1.AnnotationIssuedAt, orDash(sec.Annotations[authv1alpha1.AnnotationIssuedAt]))
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tokenView is what inspect may show of a token: never the token, its
// signature or a static token's secret.
type tokenView struct {
	// jwt is false for a token that is not a JWS compact JWT.
	jwt bool
	// problem says why the token is not read as a JWT.
	problem string
	// prefixBytes is the length of a static token's "{secret}." prefix.
	prefixBytes    int
	signatureBytes int
	header, claims map[string]any
	iat, nbf, exp  time.Time
}

// describeToken decodes a token's JWT header and claims without verifying
// anything. For a static token the value may be "{secret}.{jwt}": the JWT is
// its last three parts.
func describeToken(token string, static bool) tokenView {
	parts := strings.Split(token, ".")
	v := tokenView{}
	switch {
	case len(parts) == 5:
		return tokenView{problem: "it has five parts: an encrypted JWT (JWE), whose claims only the provider can read"}
	case len(parts) > 3 && static:
		v.prefixBytes = len(strings.Join(parts[:len(parts)-3], ".")) + 1
		parts = parts[len(parts)-3:]
	case len(parts) != 3:
		return tokenView{problem: "it does not have the three dot-separated parts of a JWT"}
	}
	header, err := decodeSegment(parts[0])
	if err != nil {
		return tokenView{problem: "its first part is not a base64url JSON header"}
	}
	claims, err := decodeSegment(parts[1])
	if err != nil {
		return tokenView{problem: "its second part is not a base64url JSON object of claims"}
	}
	v.jwt = true
	v.header, v.claims = header, claims
	v.signatureBytes = len(parts[2])
	v.iat = numericDate(claims["iat"])
	v.nbf = numericDate(claims["nbf"])
	v.exp = numericDate(claims["exp"])
	return v
}

func decodeSegment(s string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	return m, nil
}

// numericDate reads an RFC 7519 NumericDate, or the zero time.
func numericDate(v any) time.Time {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1e11 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func printToken(w io.Writer, v tokenView) {
	if !v.jwt {
		fmt.Fprintf(w, "Format: not a JWT (%s); only its length and the expiry the operator recorded are shown\n", v.problem)
		return
	}
	fmt.Fprintf(w, "Format: JWT (JWS compact); signature (%d bytes) not shown, not verified\n", v.signatureBytes)
	if v.prefixBytes > 0 {
		fmt.Fprintf(w, "Static token: \"{secret}.{jwt}\"; the secret (%d bytes with its dot) is not shown\n", v.prefixBytes)
	}
	fmt.Fprintf(w, "Header:\n%s\n", indentJSON(v.header))
	fmt.Fprintf(w, "Claims:\n%s\n", indentJSON(v.claims))
}

func indentJSON(m map[string]any) string {
	b, err := json.MarshalIndent(m, "  ", "  ")
	if err != nil {
		return "  (not printable)"
	}
	return "  " + string(b)
}
