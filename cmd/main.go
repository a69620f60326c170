// Command manager runs the tokenwarden operator: it keeps the tokens of
// APICredentials fresh in their target Secrets.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/auth"
	"github.com/tokenwarden/tokenwarden/internal/controller"
	"github.com/tokenwarden/tokenwarden/internal/leader"
	"github.com/tokenwarden/tokenwarden/internal/metrics"
)

var scheme = runtime.NewScheme()

// leaseName is the leader election Lease, in --leader-election-namespace.
const leaseName = "tokenwarden.auth.tokenwarden.io"

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(authv1alpha1.AddToScheme(scheme))
}

type options struct {
	metricsAddr           string
	metricsSecure         bool
	probeAddr             string
	leaderElect           bool
	leaderElectionNS      string
	leaseDuration         time.Duration
	renewDeadline         time.Duration
	retryPeriod           time.Duration
	watchNamespaces       string
	clusterResourceNS     string
	allowPrivateNetworks  bool
	allowedHosts          string
	hostRequestsPerMinute int
	hostMaxInFlight       int
	enableHTTP2           bool
	workers               int
	pprofAddr             string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443",
		"Address of the metrics endpoint (HTTPS with authentication and authorization by default); \"0\" disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS behind Kubernetes authentication and authorization. Set false only for local debugging.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true,
		"Elect a leader so that only one replica reconciles at a time.")
	flag.StringVar(&o.leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader election Lease; defaults to the Pod's namespace in a cluster.")
	flag.DurationVar(&o.leaseDuration, "leader-election-lease-duration", leader.DefaultLeaseDuration,
		"How long a lease lasts after the leader's last renewal (the Lease's renewTime): a standby takes over then, or a lease duration after it saw that renewal if sooner, and never earlier than the renew deadline plus the retry period plus 1 s after seeing it.")
	flag.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", leader.DefaultRenewDeadline,
		"How long the leader keeps trying to renew the Lease before it gives up leading.")
	flag.DurationVar(&o.retryPeriod, "leader-election-retry-period", leader.DefaultRetryPeriod,
		"How often the leader renews the Lease and a standby checks it (the standby with up to 120 % jitter, and it also watches the Lease).")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces to watch (a namespaced install); empty watches all namespaces.")
	flag.StringVar(&o.clusterResourceNS, "cluster-resource-namespace", "",
		"Namespace where the Secret and ConfigMap references of ClusterTokenProviders resolve and their token Secrets live; empty: the namespace the operator runs in (POD_NAMESPACE, or the ServiceAccount's), else "+defaultClusterResourceNamespace+".")
	flag.BoolVar(&o.allowPrivateNetworks, "allow-private-networks", false,
		"Allow token endpoints on loopback, link-local and private addresses (in-cluster providers, local tests).")
	flag.StringVar(&o.allowedHosts, "allowed-hosts", "",
		"Comma-separated token hosts allowed (a.example.com, *.example.org); empty allows any public host.")
	flag.IntVar(&o.hostRequestsPerMinute, "host-requests-per-minute", auth.DefaultHostRequestsPerMinute,
		"Token requests per minute allowed to one token host, shared by all APICredentials.")
	flag.IntVar(&o.hostMaxInFlight, "host-max-in-flight", auth.DefaultHostMaxInFlight,
		"Token requests to one host in flight at once: a host that hangs ties up this many workers, not all of them.")
	flag.IntVar(&o.workers, "max-concurrent-reconciles", 64,
		"APICredentials reconciled at once. Each pass of one APICredential runs alone; more workers keep large fleets fresh.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "",
		"Address of a Go pprof endpoint (/debug/pprof/) for profiling, plain HTTP without authentication; empty disables it. Bind it to localhost only.")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false,
		"Serve metrics over HTTP/2 as well (off because of the HTTP/2 rapid reset CVEs).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(o); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.metricsSecure,
		TLSOpts:       tlsOpts,
	}
	if o.metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	cfg := ctrl.GetConfigOrDie()
	mgrOpts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              leaseName,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		Cache:                         controller.CacheOptions(splitList(o.watchNamespaces)),
		PprofBindAddress:              o.pprofAddr,
	}
	var lock *leader.Lock
	if o.leaderElect {
		ns := o.leaderElectionNS
		if ns == "" {
			if ns = podNamespace(); ns == "" {
				return errors.New("--leader-election-namespace is needed outside a cluster (or --leader-elect=false)")
			}
		}
		var err error
		lock, err = leader.New(cfg, leader.Options{
			Namespace: ns,
			Name:      leaseName,
			Timing:    leader.Timing{LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		mgrOpts.LeaderElectionNamespace = ns
		mgrOpts.LeaderElectionResourceLockInterface = lock
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if lock != nil {
		lock.SetEventRecorder(mgr.GetEventRecorder("tokenwarden-leader-election"))
		if err := mgr.Add(lock); err != nil {
			return fmt.Errorf("watching the leader election Lease: %w", err)
		}
	}
	m := metrics.New(crmetrics.Registry)
	rec := &controller.APICredentialReconciler{
		Client:     mgr.GetClient(),
		APIReader:  mgr.GetAPIReader(),
		Scheme:     mgr.GetScheme(),
		Clock:      clock.RealClock{},
		Recorder:   mgr.GetEventRecorder("tokenwarden"),
		Rand:       rand.Float64,
		Namespaces: splitList(o.watchNamespaces),
		Metrics:    m,
		Workers:    o.workers,

		ClusterResourceNamespace: clusterResourceNamespace(o.clusterResourceNS),
		ClusterProviders:         len(splitList(o.watchNamespaces)) == 0,
	}
	rec.Tokens = auth.NewClient(auth.Options{
		Observe:               m.ObserveRequest,
		AllowPrivateNetworks:  o.allowPrivateNetworks,
		AllowedHosts:          splitList(o.allowedHosts),
		HostRequestsPerMinute: o.hostRequestsPerMinute,
		HostMaxInFlight:       o.hostMaxInFlight,
		OnHostRecovered:       rec.HostRecovered,
		OnHostSlotFree:        rec.HostSlotFree,
	})
	ctx := ctrl.SetupSignalHandler()
	if err := rec.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the APICredential controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	ctrl.Log.Info("Starting manager")
	return mgr.Start(ctx)
}

// defaultClusterResourceNamespace is the cluster resource namespace of an
// operator that runs outside a Pod and is given none.
const defaultClusterResourceNamespace = "tokenwarden-system"

// clusterResourceNamespace is the flag's value, or the namespace the
// operator runs in.
func clusterResourceNamespace(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if ns := podNamespace(); ns != "" {
		return ns
	}
	return defaultClusterResourceNamespace
}

// podNamespace is the namespace the operator's Pod runs in (POD_NAMESPACE,
// else the service account's namespace file), or "" outside a Pod.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
