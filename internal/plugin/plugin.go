// Package plugin is `kubectl tokenwarden`: status, renew, inspect and an
// offline check of tokenwarden's APICredentials, TokenProviders and
// ClusterTokenProviders. Each subcommand is an Options struct with Validate
// and Run, built into a cobra command by its NewCmd function; the kubeconfig
// flags are kubectl's own (k8s.io/cli-runtime).
//
// No command ever prints a token, a client secret, a key or a passphrase.
package plugin

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

// Name is how users call the plugin.
const Name = "kubectl tokenwarden"

// DefaultClusterResourceNamespace is where a ClusterTokenProvider's Secrets
// live in the shipped install (the operator's --cluster-resource-namespace
// defaults to its own namespace).
const DefaultClusterResourceNamespace = "tokenwarden-system"

// Env is what every subcommand shares: the kubeconfig flags, the streams
// and the clock.
type Env struct {
	Flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
	Clock clock.PassiveClock
}

// NewCommand returns the root command with every subcommand. clk is the
// time source for "in 5m" and for certificate validity; pass clock.RealClock.
func NewCommand(streams genericiooptions.IOStreams, clk clock.PassiveClock) *cobra.Command {
	env := &Env{
		Flags:     genericclioptions.NewConfigFlags(true),
		IOStreams: streams,
		Clock:     clk,
	}
	root := &cobra.Command{
		Use:   "kubectl-tokenwarden",
		Short: "Look at and steer tokenwarden's API credentials and token providers",
		Long: `kubectl tokenwarden shows what the tokenwarden operator is doing with your
APICredentials, TokenProviders and ClusterTokenProviders, asks it for a
refresh, decodes the token it wrote without showing it, and checks a
credential manifest offline before you apply it.

Objects are named NAME (an APICredential) or KIND/NAME, where KIND is
apicredential (apicred), tokenprovider (tp) or clustertokenprovider (ctp).`,
		Example: `  # What every credential and provider in the current namespace is doing
  kubectl tokenwarden status

  # Ask for a new token now
  kubectl tokenwarden renew psp -n payments

  # Which claims does the token in the target Secret carry, and when does it expire?
  kubectl tokenwarden inspect psp -n payments

  # Check a manifest and its certificate before applying it
  kubectl tokenwarden check -f bank.yaml --secret-file bank-m2m-cert.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// kubectl runs plugins as kubectl-tokenwarden; show the name users type.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: Name},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	env.Flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		NewCmdStatus(env),
		NewCmdRenew(env),
		NewCmdInspect(env),
		NewCmdCheck(env),
	)
	return root
}

// client returns an uncached client for the cluster the flags name.
func (e *Env) client() (client.Client, error) {
	cfg, err := e.Flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := authv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}

// namespace is -n, else the kubeconfig context's namespace, else default.
func (e *Env) namespace() (string, error) {
	ns, _, err := e.Flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

func (e *Env) now() time.Time { return e.Clock.Now() }
