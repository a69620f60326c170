// Command demo runs tokenwarden locally with nothing but Go: a control plane
// built from source (hack/control-plane.sh), the sandbox token provider and
// the manager as child processes, and the four samples of config/samples
// pointed at the sandbox. It shows a table of the credentials that updates
// every second, with expiry countdowns and refresh counts, and stops
// everything it started on Ctrl-C or SIGTERM.
//
//	make demo                      # builds what it needs, then runs this
//	bin/demo --duration 3m         # or DEMO_DURATION=3m: stop by itself
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/demo"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	duration time.Duration
	lifetime time.Duration
	repo     string
	manager  string
	sandbox  string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := time.Duration(0)
	if v := os.Getenv("DEMO_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, fmt.Errorf("DEMO_DURATION=%q: %w", v, err)
		}
		def = d
	}
	fs.DurationVar(&o.duration, "duration", def, "stop by itself after this long (0: run until Ctrl-C); default $DEMO_DURATION")
	fs.DurationVar(&o.lifetime, "lifetime", 60*time.Second, "lifetime of the sandbox's tokens")
	fs.StringVar(&o.repo, "repo", "", "repository root holding config/ and bin/ (default: the current directory if it has config/samples)")
	fs.StringVar(&o.manager, "manager", "", "manager binary (default <repo>/bin/manager)")
	fs.StringVar(&o.sandbox, "sandbox", "", "sandbox binary (default <repo>/bin/sandbox)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.repo == "" {
		o.repo = testenv.Root()
		if wd, err := os.Getwd(); err == nil {
			if _, err := os.Stat(filepath.Join(wd, "config", "samples", "kustomization.yaml")); err == nil {
				o.repo = wd
			}
		}
	}
	if o.manager == "" {
		o.manager = filepath.Join(o.repo, "bin", "manager")
	}
	if o.sandbox == "" {
		o.sandbox = filepath.Join(o.repo, "bin", "sandbox")
	}
	return o, nil
}

// stack runs cleanups in reverse order of registration.
type stack []func() error

func (s *stack) push(f func() error) { *s = append(*s, f) }

func (s *stack) run() error {
	var errs []error
	for i := len(*s) - 1; i >= 0; i-- {
		if err := (*s)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*s = nil
	return errors.Join(errs...)
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 2
	}
	for _, b := range []string{o.manager, o.sandbox} {
		if _, err := os.Stat(b); err != nil {
			fmt.Fprintf(stderr, "demo: %v (run `make demo`, which builds it)\n", err)
			return 2
		}
	}
	// envtest logs through controller-runtime; the demo's output is the table.
	log.SetLogger(logr.Discard())

	// The first SIGINT, SIGTERM or SIGHUP (the terminal was closed) starts
	// an orderly stop; the handler stays installed until the end so that a
	// second Ctrl-C cannot cut the cleanup short and leave processes behind.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	// Output to a pipe whose reader is gone (`make demo | tee log`, then
	// Ctrl-C, which ends tee first) must not kill the demo with SIGPIPE in
	// the middle of its cleanup: with SIGPIPE handled, such a write just
	// fails, and the demo stops as if interrupted.
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-pipes:
			cancel()
		case <-ctx.Done():
		}
	}()

	var cleanup stack
	code := 0
	if err := demoRun(ctx, o, stdout, &cleanup); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		code = 1
	}
	fmt.Fprintln(stdout, "stopping: manager, sandbox, kube-apiserver and etcd ...")
	if err := cleanup.run(); err != nil {
		fmt.Fprintln(stderr, "demo: while stopping:", err)
		code = 1
	}
	if code == 0 {
		fmt.Fprintln(stdout, "demo stopped cleanly: nothing left running")
	}
	return code
}

func demoRun(ctx context.Context, o options, out io.Writer, cleanup *stack) error {
	dir, err := os.MkdirTemp("", "tokenwarden-demo-")
	if err != nil {
		return err
	}
	cleanup.push(func() error { return os.RemoveAll(dir) })
	fmt.Fprintf(out, "tokenwarden demo (working directory %s)\n", dir)

	fmt.Fprintln(out, "starting kube-apiserver and etcd ...")
	start := time.Now()
	cp, err := demo.StartControlPlane(demo.ControlPlaneOptions{
		Dir:          filepath.Join(dir, "control-plane"),
		CRDDirectory: filepath.Join(o.repo, "config", "crd", "bases"),
	})
	if err != nil {
		return err
	}
	cleanup.push(func() error {
		if err := cp.Stop(); err != nil {
			return fmt.Errorf("stopping kube-apiserver and etcd: %w", err)
		}
		return nil
	})
	fmt.Fprintf(out, "  control plane at %s, APICredential CRD installed (%s)\n", cp.Config.Host, time.Since(start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		return nil
	}

	samples, err := demo.LoadSamples(demo.SampleDirs(o.repo)...)
	if err != nil {
		return err
	}
	sb, err := demo.StartSandbox(demo.SandboxOptions{
		Binary:     o.sandbox,
		Dir:        filepath.Join(dir, "sandbox"),
		Clients:    samples.Clients,
		Passphrase: samples.Passphrase,
		Lifetime:   o.lifetime,
	})
	if err != nil {
		return err
	}
	cleanup.push(func() error { return sb.Stop(5 * time.Second) })
	fmt.Fprintf(out, "  sandbox token provider at %s (pid %d), tokens live %s\n", sb.URL, sb.Pid(), o.lifetime)
	if err := samples.PointAt(sb); err != nil {
		return err
	}

	probe, err := demo.FreeAddr()
	if err != nil {
		return err
	}
	mgrLog := filepath.Join(dir, "manager.log")
	mgr, err := demo.StartManager(demo.ManagerOptions{
		Binary:     o.manager,
		Kubeconfig: cp.AdminKubeconfig,
		LogPath:    mgrLog,
		Args: []string{
			"--leader-elect=false",
			"--allow-private-networks",
			"--metrics-bind-address=0",
			"--health-probe-bind-address=" + probe,
			"--cluster-resource-namespace=" + demo.ClusterResourceNamespace,
		},
	})
	if err != nil {
		return err
	}
	cleanup.push(func() error { return mgr.Stop(15 * time.Second) })
	fmt.Fprintf(out, "  operator: %s (pid %d), log %s\n", o.manager, mgr.Pid(), mgrLog)

	c, err := client.New(cp.Config, client.Options{Scheme: demo.Scheme()})
	if err != nil {
		return err
	}
	if err := samples.Apply(ctx, c); err != nil {
		return err
	}
	fmt.Fprintf(out, "  applied config/samples (4 flows) to namespace payments, pointed at the sandbox\n")
	if consumers := samples.Consumers(); len(consumers) > 0 {
		fmt.Fprintf(out, "  and config/samples/providers: %d APICredentials in %s take their token from a provider (SOURCE)\n",
			len(consumers), strings.Join(samples.ConsumerNamespaces(), ", "))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "In another terminal:\n")
	fmt.Fprintf(out, "  export KUBECONFIG=%s\n", cp.AdminKubeconfig)
	fmt.Fprintf(out, "  kubectl get apicredentials,tokenproviders -A; kubectl get clustertokenproviders\n")
	fmt.Fprintf(out, "  kubectl -n payments get secret psp-token -o jsonpath='{.data.authorization}' | base64 -d\n\n")
	fmt.Fprintf(out, "Ctrl-C stops everything.\n\n")

	var deadline <-chan time.Time
	if o.duration > 0 {
		deadline = time.After(o.duration)
	}
	flows, sources := map[string]string{}, map[string]string{}
	for _, cr := range samples.Credentials() {
		flows[cr.Namespace+"/"+cr.Name] = cr.Flow
		sources[cr.Namespace+"/"+cr.Name] = cr.Provider
	}
	t := newTable(out, flows, sources)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var list authv1alpha1.APICredentialList
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.List(lctx, &list)
		cancel()
		if err != nil && ctx.Err() == nil {
			t.message("listing APICredentials: " + err.Error())
		} else if err == nil {
			t.draw(time.Now(), list.Items)
		}
		select {
		case <-ctx.Done():
			t.done()
			fmt.Fprintln(out, "\ninterrupted")
			return nil
		case <-deadline:
			t.done()
			fmt.Fprintf(out, "\n--duration %s reached\n", o.duration)
			return nil
		case <-mgr.Done():
			t.done()
			_, err := mgr.Exited()
			return fmt.Errorf("the manager exited unexpectedly (%w); its log is %s:\n%s", err, mgrLog, demo.LastLines(mgrLog, 20))
		case <-sb.Done():
			t.done()
			return errors.New("the sandbox exited unexpectedly")
		case <-tick.C:
		}
	}
}

// table draws the credentials. On a terminal it redraws in place; otherwise
// (a pipe, a CI log) it prints a new table every second.
type table struct {
	out       io.Writer
	tty       bool
	drawn     int // lines of the previous drawing, for redrawing in place
	flows     map[string]string
	sources   map[string]string    // the provider of a consumer ("Kind/name")
	lastToken map[string]time.Time // lastRefreshTime seen per credential
	refreshes map[string]int
}

func newTable(out io.Writer, flows, sources map[string]string) *table {
	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &table{out: out, tty: tty, flows: flows, sources: sources, lastToken: map[string]time.Time{}, refreshes: map[string]int{}}
}

func (t *table) message(s string) {
	t.done()
	fmt.Fprintln(t.out, s)
}

// done ends in-place redrawing, so that what follows is printed below.
func (t *table) done() { t.drawn = 0 }

func (t *table) draw(now time.Time, items []authv1alpha1.APICredential) {
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tFLOW\tSOURCE\tREADY\tREASON\tEXPIRES IN\tNEXT REFRESH IN\tREFRESHES")
	ready, total := 0, 0
	for _, c := range items {
		key := c.Namespace + "/" + c.Name
		if last := c.Status.LastRefreshTime; last != nil {
			if prev, ok := t.lastToken[key]; ok && !prev.Equal(last.Time) {
				t.refreshes[key]++
			}
			t.lastToken[key] = last.Time
		}
		total += t.refreshes[key]
		flow := t.flows[key]
		if flow == "" {
			flow = "?"
		}
		readyStatus := "-"
		if r := meta.FindStatusCondition(c.Status.Conditions, authv1alpha1.ConditionReady); r != nil {
			readyStatus = string(r.Status)
			if r.Status == "True" {
				ready++
			}
		}
		reason := c.Status.Reason
		if reason == "" {
			reason = "-"
		}
		source := t.sources[key]
		switch {
		case source != "":
		case c.Spec.Static != nil:
			source = "static"
		default:
			source = "own request"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", c.Namespace, c.Name, flow, source, readyStatus, reason,
			until(now, c.Status.TokenExpiresAt, "expired"), until(now, c.Status.NextRefreshTime, "due"), t.refreshes[key])
	}
	_ = tw.Flush()
	status := fmt.Sprintf("[%s] %d/%d Ready, %d refreshes", now.Format("15:04:05"), ready, len(items), total)

	if t.tty && t.drawn > 0 {
		fmt.Fprintf(t.out, "\033[%dA", t.drawn) // back to the top of the previous drawing
	}
	lines := append([]string{status}, strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")...)
	for _, l := range lines {
		if t.tty {
			fmt.Fprint(t.out, "\r\033[K")
		}
		fmt.Fprintln(t.out, l)
	}
	if t.tty {
		fmt.Fprint(t.out, "\033[J") // clear what a longer previous drawing left
		t.drawn = len(lines)
	} else {
		fmt.Fprintln(t.out)
	}
}

// until formats the time left until at as a countdown.
func until(now time.Time, at *metav1.Time, past string) string {
	if at == nil || at.IsZero() {
		return "-"
	}
	d := at.Sub(now).Round(time.Second)
	switch {
	case d <= 0:
		return past
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
