// Command bench measures what it costs tokenwarden to keep every token
// fresh (docs/performance.md): it starts a real kube-apiserver and etcd (with
// the audit log on), the sandbox token provider on loopback and the built
// manager (bin/manager) as a child process, runs its phases, prints one
// table and writes one JSON file under bench/results/.
//
//	make bench                     # the full run (about 50 minutes on 2 cores)
//	BENCH_SCALE=quick make bench   # a short run to check the bench itself
//
// BENCH_PHASES=cycle,restart,scale,ceiling,hosts,providers,memory,throttle
// limits the phases (for work on the bench; a run with fewer phases says so
// in its JSON), and BENCH_KEEP=1 keeps the work folder (audit log, manager
// log) after a run that succeeded. A phase that does not complete, a
// counter that stopped among the causes, fails the run (exit status 1)
// after the JSON has recorded it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/demo"
	"github.com/tokenwarden/tokenwarden/internal/sandbox"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// benchUserAgent marks the bench's own API requests, so that the audit log
// tells them apart from the operator's.
const benchUserAgent = "tokenwarden-bench"

// config is what BENCH_SCALE selects.
type config struct {
	Scale string `json:"scale"`

	CycleN        int           `json:"cycle_credentials"`
	CycleLifetime time.Duration `json:"cycle_token_lifetime"`
	CycleWindow   time.Duration `json:"cycle_window"`

	RestartN        int           `json:"restart_credentials"`
	RestartLifetime time.Duration `json:"restart_token_lifetime"`
	NoopWindow      time.Duration `json:"noop_window"`
	RestartWindow   time.Duration `json:"restart_window"`

	ScaleNs       []int         `json:"scale_series"`
	ScaleLifetime time.Duration `json:"scale_token_lifetime"`
	ScaleWindow   time.Duration `json:"scale_window"`
	ReadyTimeout  time.Duration `json:"ready_timeout"`

	MemSeries     []int         `json:"memory_series"`
	MemSecrets    int           `json:"memory_unrelated_secrets"`
	MemSecretSize int           `json:"memory_unrelated_secret_bytes"`
	MemLifetime   time.Duration `json:"memory_token_lifetime"`

	CeilN        int           `json:"ceiling_credentials"`
	CeilLifetime time.Duration `json:"ceiling_token_lifetime"`
	CeilWarmup   time.Duration `json:"ceiling_warmup"`
	CeilSettle   time.Duration `json:"ceiling_settle_limit"`
	CeilWindow   time.Duration `json:"ceiling_window"`
	CeilRounds   int           `json:"ceiling_rounds"`
	CeilWorkers  int           `json:"ceiling_load_workers"`

	HostsN        int           `json:"hosts"`
	HostsPerHost  int           `json:"hosts_credentials_per_host"`
	HostsLifetime time.Duration `json:"hosts_token_lifetime"`
	HostsRun      time.Duration `json:"hosts_run"`

	ProvNamespaces int           `json:"provider_namespaces"`
	ProvPerNS      int           `json:"provider_consumers_per_namespace"`
	ProvLifetime   time.Duration `json:"provider_token_lifetime"`
	ProvRun        time.Duration `json:"provider_run"`

	ThrottleN          int           `json:"throttle_credentials"`
	ThrottleK          int           `json:"throttle_per_minute"`
	ThrottleRetryAfter string        `json:"throttle_retry_after"`
	ThrottleLifetime   time.Duration `json:"throttle_token_lifetime"`
	ThrottleRun        time.Duration `json:"throttle_run"`
	ThrottleHostLimit  int           `json:"throttle_host_requests_per_minute"`
}

func configFor(scale string) (config, error) {
	c := config{
		Scale:         scale,
		CycleN:        20,
		CycleLifetime: 30 * time.Second,
		CycleWindow:   150 * time.Second,

		RestartN:        200,
		RestartLifetime: 10 * time.Minute,
		NoopWindow:      15 * time.Second,
		RestartWindow:   30 * time.Second,

		ScaleNs:       []int{1000, 5000},
		ScaleLifetime: 60 * time.Second,
		ScaleWindow:   150 * time.Second,
		ReadyTimeout:  150 * time.Second,

		MemSeries:     []int{1000, 5000, 10000},
		MemSecrets:    2000,
		MemSecretSize: 512 << 10,
		MemLifetime:   10 * time.Minute,

		CeilN:        5000,
		CeilLifetime: 20 * time.Second,
		CeilWarmup:   20 * time.Second,
		CeilSettle:   3 * time.Minute,
		CeilWindow:   60 * time.Second,
		CeilRounds:   2,
		CeilWorkers:  64, // the operator's --max-concurrent-reconciles

		HostsN:        3,
		HostsPerHost:  240,
		HostsLifetime: 4 * time.Minute,
		HostsRun:      4 * time.Minute,

		ProvNamespaces: 50,
		ProvPerNS:      10,
		ProvLifetime:   60 * time.Second,
		ProvRun:        150 * time.Second,

		ThrottleN:          500,
		ThrottleK:          300,
		ThrottleRetryAfter: "30",
		ThrottleLifetime:   300 * time.Second,
		// Past one token lifetime, so that a credential starved by the
		// throttle would be seen expiring.
		ThrottleRun:       330 * time.Second,
		ThrottleHostLimit: 1000,
	}
	switch scale {
	case "full":
	case "quick":
		c.ScaleNs = []int{100, 1000}
		c.ScaleWindow = 45 * time.Second
		c.MemSeries, c.MemSecrets = []int{200, 1000}, 200
		c.ThrottleN, c.ThrottleK = 100, 60
		c.CeilN, c.CeilWindow = 1000, 30*time.Second
		c.HostsN, c.HostsPerHost, c.HostsRun = 2, 150, 2*time.Minute
		c.ProvNamespaces, c.ProvRun = 10, 70*time.Second
		c.ThrottleRun = 110 * time.Second
	default:
		return c, fmt.Errorf("BENCH_SCALE=%q: want full or quick", scale)
	}
	// BENCH_SCALE_NS=1000,5000 runs only these N in the scale phase (with
	// BENCH_PHASES=scale, for a before/after comparison of one change).
	if v := os.Getenv("BENCH_SCALE_NS"); v != "" {
		c.ScaleNs = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return c, fmt.Errorf("BENCH_SCALE_NS=%q: want a comma-separated list of positive numbers", v)
			}
			c.ScaleNs = append(c.ScaleNs, n)
		}
	}
	return c, nil
}

var allPhases = []string{"cycle", "restart", "scale", "ceiling", "hosts", "providers", "memory", "throttle"}

type bench struct {
	cfg     config
	root    string
	work    string
	outDir  string
	stamp   string // UTC start time for file names
	started time.Time

	cp    *controlPlane
	rest  *rest.Config // the bench's own client config (user agent set)
	k8s   client.Client
	cs    *kubernetes.Clientset // protobuf, for bulk Secrets
	sb    *sandbox.Server
	op    *operator
	audit *auditLog
	track *tracker

	mu      sync.Mutex
	figures []figure
	details map[string]any
	notes   []string
	files   []string
}

// figure is one line of the table.
type figure struct {
	Phase string   `json:"phase"`
	Name  string   `json:"figure"`
	Value *float64 `json:"value"` // nil when not measured
	Text  string   `json:"value_text"`
	Unit  string   `json:"unit,omitempty"`
	Bar   string   `json:"bar"`
	Met   *bool    `json:"met"` // nil: reported without a bar
}

func (b *bench) add(f figure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.figures = append(b.figures, f)
}

// fig adds a measured value; met nil means no bar.
func (b *bench) fig(phase, name string, v float64, text, unit, bar string, met *bool) {
	if text == "" {
		text = strconv.FormatFloat(v, 'f', -1, 64)
	}
	b.add(figure{Phase: phase, Name: name, Value: ptr.To(v), Text: text, Unit: unit, Bar: bar, Met: met})
}

func (b *bench) note(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func (b *bench) detail(phase string, v any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.details[phase] = v
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	ctrllog.SetLogger(logr.Discard())
	// client-go's own complaints (a request cut off by the end of a load
	// window) are not the bench's output.
	klog.SetLogger(logr.Discard())
	manager := flag.String("manager", "", "built manager binary (default <repo>/bin/manager)")
	flag.Parse()
	if err := run(*manager); err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
}

func run(managerBin string) error {
	scale := os.Getenv("BENCH_SCALE")
	if scale == "" {
		scale = "full"
	}
	cfg, err := configFor(scale)
	if err != nil {
		return err
	}
	phases := allPhases
	if p := os.Getenv("BENCH_PHASES"); p != "" {
		phases = nil
		for _, s := range strings.Split(p, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allPhases, s) {
				return fmt.Errorf("BENCH_PHASES: unknown phase %q (known: %s)", s, strings.Join(allPhases, ","))
			}
			phases = append(phases, s)
		}
	}
	root := testenv.Root()
	if managerBin == "" {
		managerBin = filepath.Join(root, "bin", "manager")
	}
	if _, err := os.Stat(managerBin); err != nil {
		return fmt.Errorf("manager binary: %w (build it with go build -o bin/manager ./cmd, or make bench)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "tokenwarden-bench-")
	if err != nil {
		return err
	}
	b := &bench{
		cfg: cfg, root: root, work: work, started: time.Now().UTC(),
		outDir:  filepath.Join(root, "bench", "results"),
		details: map[string]any{},
	}
	// The start time in the names: no run overwrites another's files.
	b.stamp = b.started.Format("2006-01-02-1504")
	machine := readMachine()
	logf("scale %s, phases %s, work folder %s (kept on failure)", scale, strings.Join(phases, ","), work)

	logf("starting kube-apiserver and etcd (audit log on)")
	b.cp, err = startControlPlane(filepath.Join(work, "control-plane"))
	if err != nil {
		return err
	}
	defer func() {
		if err := b.cp.stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()
	// Background work (informers, the audit follower) ends before the
	// control plane stops, so the API server is not held by open watches.
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	b.rest = rest.CopyConfig(b.cp.cfg)
	b.rest.UserAgent = benchUserAgent
	b.rest.QPS, b.rest.Burst = -1, 0 // no client-side rate limit
	if b.k8s, err = client.New(b.rest, client.Options{Scheme: demo.Scheme()}); err != nil {
		return err
	}
	pb := rest.CopyConfig(b.rest)
	pb.ContentType = "application/vnd.kubernetes.protobuf"
	pb.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	if b.cs, err = kubernetes.NewForConfig(pb); err != nil {
		return err
	}

	if err := b.cp.protectLeases(ctx); err != nil {
		return fmt.Errorf("the FlowSchema for the operator's Leases: %w", err)
	}
	b.audit = &auditLog{path: b.cp.auditPath}
	go b.audit.follow(bgCtx)
	b.track = newTracker()
	if err := b.track.start(bgCtx, b.rest); err != nil {
		return err
	}

	if b.sb, err = sandbox.Start(sandbox.Options{}); err != nil {
		return err
	}
	defer b.sb.Close()

	b.op = &operator{binary: managerBin, kubeconfig: b.cp.kubeconfig, logPath: filepath.Join(work, "manager.log")}
	if err := b.op.start(ctx, "--host-requests-per-minute=-1"); err != nil {
		return err
	}
	defer func() {
		if err := b.op.stop(); err != nil {
			logf("stopping the manager: %v", err)
		}
	}()

	kubeVersion, etcdVersion := b.cp.versions()
	b.note("API requests counted from the kube-apiserver audit log: Metadata level (no bodies), one event per request at ResponseComplete, every request of the operator's own user %q (reads, lists, watches, writes, events, leases, discovery) and of the load generator's user %q, nothing else; --audit-log-maxsize=%s MB so the log never rotates, and the run fails if the follower stops or a phase with refreshes counts no request.", operatorUser, loadUser, auditMaxSizeMB)
	b.note("The manager is bin/manager run as a child process with --leader-elect=true (Lease in kube-system, the shipped default timings; a FlowSchema puts its Lease requests in the leader-election priority level, as a platform does for its controllers) --allow-private-networks --metrics-secure=false --host-requests-per-minute=-1 (other values where a phase says so), authenticated as user %q in group system:masters, not through the shipped RBAC.", operatorUser)
	b.note("Provider calls are counted by the in-process sandbox (every request on the token path, 429s included); all credentials use flow B (OAuth2 client credentials) over TLS with a caBundle ConfigMap.")
	b.note("Target Secrets and APICredentials are watched by the bench through informers; every second each target Secret in the active phase is sampled, and a sample whose auth.tokenwarden.io/expires-at is not in the future counts as exposure. A token change records the previous token's remaining validity when the new one was observed (and, from the annotations, at the new token's issued-at).")
	b.note("Control plane: envtest's kube-apiserver and etcd on the same machine (etcd runs with --unsafe-no-fsync as envtest sets it, and --quota-backend-bytes=%s). The sandbox, the informers and the samplers run inside the bench process, on the same cores; its CPU is reported as 'bench'.", etcdQuotaBytes)
	b.note("Absolute times on a shared 2-core machine are noisy; load average at start %s.", machine.LoadAvg)

	var failed []string
	for _, p := range phases {
		if err := ctx.Err(); err != nil {
			return err
		}
		logf("=== phase %s", p)
		var err error
		switch p {
		case "cycle":
			err = b.phaseCycle(ctx)
		case "restart":
			err = b.phaseRestart(ctx)
		case "scale":
			err = b.phaseScale(ctx)
		case "ceiling":
			err = b.phaseCeiling(ctx)
		case "hosts":
			err = b.phaseHosts(ctx)
		case "providers":
			err = b.phaseProviders(ctx)
		case "memory":
			err = b.phaseMemory(ctx)
		case "throttle":
			err = b.phaseThrottle(ctx)
		}
		if err != nil {
			b.note("phase %s did not complete: %v", p, err)
			logf("phase %s: %v", p, err)
			failed = append(failed, fmt.Sprintf("%s: %v", p, err))
			if ctx.Err() != nil {
				break
			}
		}
		if err := b.op.alive(); err != nil {
			return err
		}
	}
	machine.LoadAvgEnd = loadAvg()

	commit, modified := gitCommit(root)
	dirty := len(modified) > 0
	report := map[string]any{
		"date":             b.started.Format(time.RFC3339),
		"scale":            scale,
		"phases":           phases,
		"duration_seconds": round(time.Since(b.started).Seconds(), 0),
		"machine":          machine,
		"versions": map[string]string{
			"go":         runtime.Version(),
			"kubernetes": kubeVersion,
			"etcd":       etcdVersion,
		},
		"git":     map[string]any{"commit": commit, "dirty": dirty, "modified_tracked_files": modified},
		"config":  durationsAsStrings(cfg),
		"figures": b.figures,
		"details": b.details,
		"notes":   b.notes,
		"files":   b.files,
		"audit":   b.audit.stats(),
	}
	if len(phases) != len(allPhases) {
		report["partial"] = "only the phases listed were run (BENCH_PHASES)"
	}
	if len(failed) > 0 {
		report["failed_phases"] = failed
	}
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%s.json", b.stamp, scale)
	if len(phases) != len(allPhases) {
		name = fmt.Sprintf("%s-%s-partial.json", b.stamp, scale)
	}
	out := filepath.Join(b.outDir, name)
	raw, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	b.printTable(os.Stdout)
	fmt.Printf("\n%s\n", b.notes[0])
	for _, n := range b.notes {
		if strings.HasPrefix(n, "scale, what saturates first") || strings.Contains(n, "did not complete") {
			fmt.Println(n)
		}
	}
	fmt.Printf("machine: %d cores, %.1f GiB, %s; Go %s, Kubernetes %s, etcd %s; commit %s%s; %s scale, %s\n",
		machine.Cores, float64(machine.MemoryBytes)/(1<<30), machine.CPUModel, runtime.Version(), kubeVersion, etcdVersion,
		commit, map[bool]string{true: " (dirty)", false: ""}[dirty], scale, time.Since(b.started).Round(time.Second))
	fmt.Printf("results: %s\n", rel(root, out))
	for _, f := range b.files {
		fmt.Printf("         %s\n", f)
	}
	if len(failed) > 0 {
		// Loudly: a phase that did not complete (a counter that stopped
		// among the causes) fails the run, after the JSON says which.
		return fmt.Errorf("%d phase(s) did not complete (work folder kept: %s): %s", len(failed), work, strings.Join(failed, "; "))
	}
	// The audit follower stops before its file goes.
	stopBackground()
	if os.Getenv("BENCH_KEEP") == "" {
		_ = os.RemoveAll(work)
	}
	return nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

func (b *bench) printTable(w *os.File) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tFIGURE\tVALUE\tBAR\tMET")
	for _, f := range b.figures {
		met := "-"
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		v := f.Text
		if f.Unit != "" {
			v += " " + f.Unit
		}
		bar := f.Bar
		if bar == "" {
			bar = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Phase, f.Name, v, bar, met)
	}
	_ = tw.Flush()
}

// gitCommit returns HEAD and the tracked files that differ from it: the
// manager is built from the working tree, so those are part of what ran.
func gitCommit(root string) (string, []string) {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", nil
	}
	st, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	var modified []string
	for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		if len(l) > 3 {
			modified = append(modified, strings.TrimSpace(l[3:]))
		}
	}
	return strings.TrimSpace(string(out)), modified
}

// durationsAsStrings renders the config with durations as "30s" rather than
// nanoseconds.
func durationsAsStrings(c config) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if d, ok := v.Field(i).Interface().(time.Duration); ok {
			out[key] = d.String()
			continue
		}
		out[key] = v.Field(i).Interface()
	}
	return out
}

// ---- cluster helpers shared by the phases ----

const (
	caBundle   = "sandbox-ca"
	caKey      = "ca.crt"
	benchLabel = "bench.tokenwarden.io/phase"
)

// setupNamespace creates ns with the CA bundle ConfigMap (a CA is public:
// tokenwarden reads it once per version) and one basic-auth Secret per
// sandbox client (named after the client), registering each client with the
// sandbox.
func (b *bench) setupNamespace(ctx context.Context, ns string, clients []string) error {
	return b.setupNamespaceOn(ctx, b.sb, ns, clients)
}

// setupNamespaceOn is setupNamespace for the clients of sandbox server sb
// (which shares the bench sandbox's CA).
func (b *bench) setupNamespaceOn(ctx context.Context, sb *sandbox.Server, ns string, clients []string) error {
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := b.k8s.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: caBundle},
		Data:       map[string]string{caKey: string(b.sb.CA.CertPEM)},
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, id := range clients {
		secret := randomString(24)
		sb.AddClient(id, secret)
		if err := b.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
			Data:       map[string][]byte{"id": []byte(id), "secret": []byte(secret)},
		}); err != nil {
			return err
		}
	}
	return nil
}

func credName(i int) string   { return fmt.Sprintf("c-%05d", i) }
func targetName(i int) string { return fmt.Sprintf("t-%05d", i) }

// credential is a flow-B APICredential for sandbox client id.
func (b *bench) credential(ns string, i int, clientID string) *authv1alpha1.APICredential {
	return &authv1alpha1.APICredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credName(i)},
		Spec: authv1alpha1.APICredentialSpec{
			TokenRequest: flowB(b.sb.FlowURL("B"), clientID, credName(i)),
			Target:       authv1alpha1.TargetSecret{SecretName: authv1alpha1.SecretName(targetName(i))},
		},
	}
}

// flowB is the token request of sandbox client id at url, with the CA
// bundle ConfigMap of its namespace. The scope makes each credential's request its
// own (the sandbox ignores it): identical requests would share one token
// and one call, and the bench measures refreshes, not copies.
func flowB(url, clientID, scope string) *authv1alpha1.TokenRequest {
	ca := caBundle
	return &authv1alpha1.TokenRequest{
		URL:       url,
		Method:    authv1alpha1.MethodPOST,
		BasicAuth: &authv1alpha1.BasicAuth{SecretName: authv1alpha1.SecretName(clientID), UsernameKey: "id", PasswordKey: "secret"},
		Form: []authv1alpha1.Parameter{
			{Name: "grant_type", Value: ptr.To("client_credentials")},
			{Name: "scope", Value: ptr.To("bench:" + scope)},
		},
		CABundle: &authv1alpha1.CABundle{ConfigMapName: &ca, Key: caKey},
	}
}

// createCredentials creates n APICredentials at once (parallel requests),
// recording the moment each create request was sent.
func (b *bench) createCredentials(ctx context.Context, ns string, n int, clientFor func(i int) string) error {
	return b.createEach(ctx, ns, n, func(i int) *authv1alpha1.APICredential { return b.credential(ns, i, clientFor(i)) })
}

// createEach creates n APICredentials made by mk at once.
func (b *bench) createEach(ctx context.Context, ns string, n int, mk func(i int) *authv1alpha1.APICredential) error {
	return parallel(ctx, n, 16, func(i int) error {
		c := mk(i)
		b.track.created(ns, c.Name, time.Now())
		return b.k8s.Create(ctx, c)
	})
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  = make(chan int)
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// waitReady waits until n APICredentials of ns have been Ready once, or
// timeout; it returns how many were.
func (b *bench) waitReady(ctx context.Context, ns string, n int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		ready, _ := b.track.readyCount(ns)
		if ready >= n {
			return ready, nil
		}
		if time.Now().After(deadline) {
			return ready, nil
		}
		if err := b.op.alive(); err != nil {
			return ready, err
		}
		select {
		case <-ctx.Done():
			return ready, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleanup deletes the phase's APICredentials and Secrets explicitly: envtest
// runs no garbage collector and no namespace controller.
func (b *bench) cleanup(ctx context.Context, ns string) error {
	b.track.setActive(ns, false)
	// A delete-collection of thousands of objects can be cut off by the API
	// server under load (seen at N=5000); it is retried, as kubectl would.
	for _, obj := range []client.Object{&authv1alpha1.APICredential{}, &corev1.Secret{}} {
		var err error
		for attempt := range 5 {
			if err = b.k8s.DeleteAllOf(ctx, obj, client.InNamespace(ns)); err == nil {
				break
			}
			b.note("cleanup of %s (attempt %d): %v", ns, attempt+1, err)
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			return err
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i := 1; time.Now().Before(deadline); i++ {
		s, c := b.track.counts(ns)
		if s == 0 && c == 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
		if i%25 == 0 {
			// A pass that was under way when its APICredential went may
			// still write its target Secret; with no garbage collector
			// that Secret would stay. Delete again.
			_ = b.k8s.DeleteAllOf(ctx, &authv1alpha1.APICredential{}, client.InNamespace(ns))
			_ = b.k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))
		}
	}
	return fmt.Errorf("namespace %s not empty 2 minutes after the deletes", ns)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func boolp(v bool) *bool { return &v }

func seconds(d time.Duration) float64 { return round(d.Seconds(), 2) }

// saveFile writes a file next to the JSON and lists it in the report.
func (b *bench) saveFile(name, content string) {
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		b.note("could not save %s: %v", name, err)
		return
	}
	p := filepath.Join(b.outDir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		b.note("could not save %s: %v", name, err)
		return
	}
	b.mu.Lock()
	b.files = append(b.files, rel(b.root, p))
	b.mu.Unlock()
}
