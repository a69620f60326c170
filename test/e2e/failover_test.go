//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/demo"
)

const (
	// failoverCredentials valid flow-B credentials, fo-00 ... fo-09, get
	// 10 min tokens: no refresh is due while the test runs, so any call
	// after the takeover is a needless one.
	failoverCredentials = 10
	failoverLifetime    = 10 * time.Minute
	// failoverBad holds a password the sandbox refuses: Degraded
	// InvalidCredentials, next attempt at the 10 min slow retry.
	failoverBad = "fo-bad"

	// failoverRetryPeriod is cmd/main.go's --leader-election-retry-period
	// default, which the replicas run with: the leader renews the Lease this
	// often. The lease duration is read back from the Lease
	// (spec.leaseDurationSeconds); the retry period is recorded nowhere.
	failoverRetryPeriod = 2 * time.Second

	// failoverQuiet is how long after the takeover the new leader is
	// watched for provider calls it must not make.
	failoverQuiet = 20 * time.Second
	// failoverRefreshBar: a requested refresh lands within this.
	failoverRefreshBar = 20 * time.Second
)

// failoverReplica is one of the two manager processes of TestLeaderFailover.
type failoverReplica struct {
	name   string
	p      *demo.Process
	log    string
	probe  string
	killed bool
}

func (r *failoverReplica) logText() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// acquired reports whether the replica's log says it became the leader
// (client-go's leaderelection logs "Successfully acquired lease").
func (r *failoverReplica) acquired() bool {
	return strings.Contains(strings.ToLower(r.logText()), "successfully acquired lease")
}

// TestLeaderFailover runs two replicas of the built manager with leader
// election on (same Lease, same API server, same sandbox), lets the leader
// make every credential Ready, kills it with SIGKILL (no lease release) and
// checks behaviour.md §7 "Leader failover": the standby takes the Lease
// within the lease duration of the kill, and not before the dead leader's
// lease (last renewTime + lease duration) has expired, makes no provider call
// for the valid tokens nor for a credential in its 10 min failure retry
// (status.nextRefreshTime honoured), and keeps working: a requested refresh
// yields a new token with one provider call.
func TestLeaderFailover(t *testing.T) {
	log.SetLogger(logr.Discard())
	begin := time.Now()
	o := &operator{t: t, dir: t.TempDir(), mgrBin: binary(t, "TOKENWARDEN_MANAGER", "manager")}
	sandboxBin := binary(t, "TOKENWARDEN_SANDBOX", "sandbox")
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is needed on PATH: %v", err)
	}
	cp, err := demo.StartControlPlane(demo.ControlPlaneOptions{Dir: filepath.Join(o.dir, "control-plane")})
	if err != nil {
		t.Fatal(err)
	}
	o.cp = cp
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	o.k = kubectl{t: t, kubeconfig: cp.AdminKubeconfig}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	o.install()
	names, bad := o.failoverSandbox(sandboxBin)

	// Both replicas at once: whichever wins the Lease is the leader.
	replicas := []*failoverReplica{o.startFailoverReplica("replica-0"), o.startFailoverReplica("replica-1")}
	for _, r := range replicas {
		o.waitFailoverReady(r)
	}
	var leader, standby *failoverReplica
	var holder string
	eventually(t, 30*time.Second, 200*time.Millisecond, func() string {
		lease, err := cs.CoordinationV1().Leases(operatorNamespace).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		holder = deref(lease.Spec.HolderIdentity)
		var leaders []*failoverReplica
		for _, r := range replicas {
			if r.acquired() {
				leaders = append(leaders, r)
			}
		}
		if holder == "" || len(leaders) != 1 {
			return fmt.Sprintf("lease holder %q, %d replicas logged that they acquired the lease", holder, len(leaders))
		}
		leader = leaders[0]
		return ""
	})
	for _, r := range replicas {
		if r != leader {
			standby = r
		}
	}
	lease, err := cs.CoordinationV1().Leases(operatorNamespace).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.LeaseDurationSeconds == nil {
		t.Fatalf("Lease %s/%s has no leaseDurationSeconds", operatorNamespace, leaseName)
	}
	leaseDuration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	// behaviour.md §7: the standby takes over within the lease duration of
	// the kill. tokenwarden's lock (internal/leader) counts the lease from
	// the Lease's renewTime, which the standby watches, so the takeover
	// lands a lease duration after the dead leader's last renewal: never
	// earlier, and within the lease duration of a kill made after it.
	takeoverBar := leaseDuration
	t.Logf("leader %s (pid %d) holds Lease %s/%s as %q (leaseDurationSeconds %d); standby %s (pid %d)",
		leader.name, leader.p.Pid(), operatorNamespace, leaseName, holder, *lease.Spec.LeaseDurationSeconds, standby.name, standby.p.Pid())

	// The credentials, made Ready (and fo-bad Degraded) by the leader.
	var manifest []byte
	for _, n := range append(append([]string(nil), names...), bad) {
		manifest = append(manifest, o.pspCopy(n, n+"-token", o.sb)...)
	}
	o.k.apply(manifest)
	var refs []string
	for _, n := range names {
		refs = append(refs, "apicredential/"+n)
	}
	o.wait(t, 90*time.Second, append([]string{"--for=condition=Ready"}, refs...)...)
	o.wait(t, 60*time.Second, "--for=jsonpath={.status.reason}="+authv1alpha1.ReasonInvalidCredentials, "apicredential/"+bad)
	badBefore := o.credential(t, bad)
	if badBefore.Status.NextRefreshTime == nil || time.Until(badBefore.Status.NextRefreshTime.Time) < 5*time.Minute {
		t.Fatalf("%s: nextRefreshTime %v, want the slow retry minutes away", bad, badBefore.Status.NextRefreshTime)
	}
	versions := map[string]string{}
	tokens := map[string]string{}
	for _, n := range names {
		s, err := cs.CoreV1().Secrets(samplesNamespace).Get(ctx, n+"-token", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(expiresAt(t, s)); left < failoverLifetime-time.Minute {
			t.Fatalf("%s: token expires in %s, want about %s", n, left, failoverLifetime)
		}
		versions[n], tokens[n] = s.ResourceVersion, string(s.Data["token"])
	}
	// Nobody else may have led in the meantime.
	if l, err := cs.CoordinationV1().Leases(operatorNamespace).Get(ctx, leaseName, metav1.GetOptions{}); err != nil || deref(l.Spec.HolderIdentity) != holder {
		t.Fatalf("the lease holder changed before the kill: %v %v", l, err)
	}
	if standby.acquired() {
		t.Fatalf("the standby %s logged that it acquired the lease while %s leads", standby.name, leader.name)
	}
	calls0 := o.failoverCalls(t)
	t.Logf("%d credentials Ready, %s Degraded InvalidCredentials (next retry in %s); provider calls so far: %v",
		len(names), bad, time.Until(badBefore.Status.NextRefreshTime.Time).Round(time.Second), calls0)

	// kill -9 the leader (no lease release) half a retry period after one
	// of its renewals, so that no renewal is in flight.
	renewed := func() time.Time {
		l, err := cs.CoordinationV1().Leases(operatorNamespace).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			t.Fatalf("reading Lease %s/%s: %v", operatorNamespace, leaseName, err)
		}
		return l.Spec.RenewTime.Time
	}
	for before, deadline := renewed(), time.Now().Add(3*failoverRetryPeriod); renewed().Equal(before); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not renew the Lease within %s", leader.name, 3*failoverRetryPeriod)
		}
	}
	time.Sleep(failoverRetryPeriod / 2)
	killedAt := time.Now()
	if err := syscall.Kill(-leader.p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	leader.killed = true
	select {
	case <-leader.p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) still runs 10 s after SIGKILL", leader.name, leader.p.Pid())
	}

	// Takeover: the Lease names someone else. The first read after the
	// kill also shows the dead leader's last renewal, which splits the
	// takeover time into "since the last renewal" and the lease expiry.
	var newHolder string
	var takeover time.Duration
	var lastRenew, acquiredAt time.Time
	for {
		l, err := cs.CoordinationV1().Leases(operatorNamespace).Get(ctx, leaseName, metav1.GetOptions{})
		if err == nil {
			h := deref(l.Spec.HolderIdentity)
			if h == holder && l.Spec.RenewTime != nil {
				lastRenew = l.Spec.RenewTime.Time
			}
			if h != "" && h != holder {
				takeover, newHolder = time.Since(killedAt), h
				if l.Spec.AcquireTime != nil {
					acquiredAt = l.Spec.AcquireTime.Time
				}
				break
			}
		}
		if time.Since(killedAt) > 90*time.Second {
			t.Fatalf("no new lease holder 90 s after SIGKILL of the leader (holder %q, err %v)\n%s", holder, err, demo.LastLines(standby.log, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tookOver := time.Now()
	detail := fmt.Sprintf("the dead leader last renewed %s before the kill; the Lease's acquireTime is %s after the kill and %s after that renewal",
		killedAt.Sub(lastRenew).Round(10*time.Millisecond), acquiredAt.Sub(killedAt).Round(10*time.Millisecond), acquiredAt.Sub(lastRenew).Round(10*time.Millisecond))
	t.Logf("takeover: %s holds the lease as %q %s after SIGKILL of %s (bar: the lease duration %s); %s",
		standby.name, newHolder, takeover.Round(10*time.Millisecond), leader.name, leaseDuration, detail)
	if takeover > takeoverBar {
		t.Errorf("failover took %s after SIGKILL of the leader, want within the lease duration %s; %s",
			takeover.Round(10*time.Millisecond), leaseDuration, detail)
	}
	if early := lastRenew.Add(leaseDuration).Sub(acquiredAt); early > 0 {
		t.Errorf("%s acquired the Lease %s before the dead leader's lease expired (last renewal + %s); %s",
			standby.name, early.Round(time.Millisecond), leaseDuration, detail)
	}
	eventually(t, 5*time.Second, 200*time.Millisecond, func() string {
		if !standby.acquired() {
			return fmt.Sprintf("the Lease names %q but %s has not logged that it acquired it", newHolder, standby.name)
		}
		return ""
	})
	// The takeover is an event on the Lease (events.k8s.io, as the RBAC
	// of config/rbac/leader_election_role.yaml allows).
	eventually(t, 10*time.Second, 200*time.Millisecond, func() string {
		evs, err := cs.EventsV1().Events(operatorNamespace).List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=" + leaseName})
		if err != nil {
			return err.Error()
		}
		var notes []string
		for _, e := range evs.Items {
			if e.Reason == "LeaderElection" && e.Note == newHolder+" became leader" {
				return ""
			}
			notes = append(notes, e.Reason+": "+e.Note)
		}
		return fmt.Sprintf("no LeaderElection event %q on Lease %s; events: %q", newHolder+" became leader", leaseName, notes)
	})

	// The new leader makes no provider call for the valid tokens, nor for
	// fo-bad before its nextRefreshTime.
	var firstCall time.Duration
	var callsSeen map[string]int
	for time.Since(tookOver) < failoverQuiet {
		time.Sleep(500 * time.Millisecond)
		now := o.failoverCalls(t)
		if d := failoverDiff(calls0, now); len(d) > 0 && callsSeen == nil {
			firstCall, callsSeen = time.Since(tookOver), d
		}
	}
	calls1 := o.failoverCalls(t)
	extra := failoverDiff(calls0, calls1)
	t.Logf("provider calls by the new leader in the %s after the takeover: %d %v", failoverQuiet, failoverSum(extra), extra)
	if len(extra) > 0 {
		t.Errorf("the new leader made %d provider calls in the %s after the takeover (first seen %s after it: %v; all: %v); want 0: the %d tokens are valid for minutes and %s's retry is at %s",
			failoverSum(extra), failoverQuiet, firstCall.Round(100*time.Millisecond), callsSeen, extra, len(names), bad, badBefore.Status.NextRefreshTime.Format(time.RFC3339))
	}
	if n := extra[bad]; n > 0 {
		t.Errorf("%s: %d provider calls after the takeover, before its nextRefreshTime %s", bad, n, badBefore.Status.NextRefreshTime.Format(time.RFC3339))
	}
	badAfter := o.credential(t, bad)
	if badAfter.Status.Reason != authv1alpha1.ReasonInvalidCredentials || badAfter.Status.NextRefreshTime == nil ||
		badAfter.Status.NextRefreshTime.Before(badBefore.Status.NextRefreshTime) {
		t.Errorf("%s after the takeover: reason %q, nextRefreshTime %v; before: %q, %v",
			bad, badAfter.Status.Reason, badAfter.Status.NextRefreshTime, badBefore.Status.Reason, badBefore.Status.NextRefreshTime)
	}
	rewritten := 0
	for _, n := range names {
		s, err := cs.CoreV1().Secrets(samplesNamespace).Get(ctx, n+"-token", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.ResourceVersion != versions[n] {
			rewritten++
			t.Errorf("Secret %s was rewritten after the takeover (resourceVersion %s -> %s)", s.Name, versions[n], s.ResourceVersion)
		}
	}

	// The new leader works: a requested refresh gives a new token.
	target := names[len(names)/2]
	requested := time.Now().UTC().Format(time.RFC3339Nano)
	o.k.run("annotate", "apicredential", target, "-n", samplesNamespace, "--overwrite", authv1alpha1.AnnotationRefreshRequestedAt+"="+requested)
	askedAt := time.Now()
	var refreshed time.Duration
	for {
		s, err := cs.CoreV1().Secrets(samplesNamespace).Get(ctx, target+"-token", metav1.GetOptions{})
		if err == nil && len(s.Data["token"]) > 0 && string(s.Data["token"]) != tokens[target] {
			refreshed = time.Since(askedAt)
			break
		}
		if time.Since(askedAt) > failoverRefreshBar {
			t.Fatalf("%s: no new token %s after a refresh request to the new leader (err %v)\n%s",
				target, failoverRefreshBar, err, demo.LastLines(standby.log, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	eventually(t, 10*time.Second, 200*time.Millisecond, func() string {
		if got := o.credential(t, target).Status.LastHandledRefreshRequest; got != requested {
			return fmt.Sprintf("%s: lastHandledRefreshRequest %q, want %q", target, got, requested)
		}
		return ""
	})
	time.Sleep(time.Second) // a second, wasted call would show by now
	afterRefresh := failoverDiff(calls1, o.failoverCalls(t))
	t.Logf("refresh request on %s: new token %s after the annotation; provider calls since: %v", target, refreshed.Round(10*time.Millisecond), afterRefresh)
	if afterRefresh[target] != 1 || len(afterRefresh) != 1 {
		t.Errorf("a refresh request on %s cost %v provider calls, want exactly one, for %s", target, afterRefresh, target)
	}

	for _, r := range replicas {
		failoverNoDenials(t, r)
	}
	t.Logf("failover summary: takeover %s after SIGKILL (bar %s), %d provider calls in the %s after it (%s: %d), %d Secrets rewritten, requested refresh in %s with %d call(s); total %s",
		takeover.Round(10*time.Millisecond), takeoverBar, failoverSum(extra), failoverQuiet, bad, extra[bad], rewritten,
		refreshed.Round(10*time.Millisecond), failoverSum(afterRefresh), time.Since(begin).Round(time.Second))
}

// failoverSandbox starts one sandbox with 10 min tokens that knows the
// sample clients (PointAt fills the samples from it, pspCopy copies psp),
// fo-00 ... fo-09 with psp's secret, and fo-bad with a secret of its own,
// so that the psp secret pspCopy puts into fo-bad's Secret is refused.
func (o *operator) failoverSandbox(bin string) (names []string, bad string) {
	t := o.t
	samples, err := demo.LoadSamples(filepath.Join(root, "config", "samples"))
	if err != nil {
		t.Fatal(err)
	}
	o.samples = samples
	clients := map[string]string{}
	for id, secret := range samples.Clients {
		clients[id] = secret
	}
	for i := range failoverCredentials {
		n := fmt.Sprintf("fo-%02d", i)
		names = append(names, n)
		clients[n] = samples.Clients["psp"]
	}
	clients[failoverBad] = "not-" + samples.Clients["psp"]
	o.startSamplesSandbox(bin, clients, failoverLifetime)
	o.k.run("create", "namespace", samplesNamespace)
	t.Logf("sandbox %s (pid %d, %s tokens)", o.sb.URL, o.sb.Pid(), failoverLifetime)
	return names, failoverBad
}

// startFailoverReplica starts one manager process with leader election in the
// operator's namespace and ports of its own; t.Cleanup stops it and its
// process group.
func (o *operator) startFailoverReplica(name string) *failoverReplica {
	t := o.t
	metricsAddr, err := demo.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	probeAddr, err := demo.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r := &failoverReplica{name: name, log: filepath.Join(o.dir, name+".log"), probe: probeAddr}
	r.p, err = demo.StartManager(demo.ManagerOptions{
		Binary:     o.mgrBin,
		Kubeconfig: o.mgrConfig,
		LogPath:    r.log,
		Args: []string{
			"--leader-elect",
			"--leader-election-namespace=" + operatorNamespace,
			"--allow-private-networks",
			"--metrics-bind-address=" + metricsAddr,
			"--health-probe-bind-address=" + probeAddr,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", name, demo.LastLines(r.log, 40))
		}
		if !r.killed {
			if err := r.p.Stop(15 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", name, err, demo.LastLines(r.log, 30))
			}
		}
		// The whole group, in case anything of it is left; the group
		// leader has been reaped, so ESRCH is the normal answer.
		if err := syscall.Kill(-r.p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: killing process group %d: %v", name, r.p.Pid(), err)
		}
	})
	return r
}

// waitFailoverReady waits for the replica's /readyz, which a standby serves too.
func (o *operator) waitFailoverReady(r *failoverReplica) {
	t := o.t
	eventually(t, 30*time.Second, 200*time.Millisecond, func() string {
		if exited, err := r.p.Exited(); exited {
			t.Fatalf("%s exited: %v\n%s", r.name, err, demo.LastLines(r.log, 30))
		}
		resp, err := http.Get("http://" + r.probe + "/readyz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return r.name + " readyz: " + resp.Status
		}
		return ""
	})
}

// failoverCalls returns the sandbox's call counts of the fo-* clients.
func (o *operator) failoverCalls(t *testing.T) map[string]int {
	t.Helper()
	c, err := o.sb.Calls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for k, v := range c {
		if strings.HasPrefix(k, "fo-") {
			out[k] = v
		}
	}
	return out
}

// failoverDiff returns the clients whose count grew from a to b, and by how
// much.
func failoverDiff(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func failoverSum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// failoverNoDenials: neither replica was refused by the shipped RBAC (the
// Lease included).
func failoverNoDenials(t *testing.T, r *failoverReplica) {
	t.Helper()
	var denied []string
	for _, line := range strings.Split(r.logText(), "\n") {
		if strings.Contains(line, "is forbidden: User") {
			denied = append(denied, line)
		}
	}
	if len(denied) > 0 {
		sort.Strings(denied)
		t.Errorf("%s was denied by RBAC %d times, e.g.:\n%s", r.name, len(denied), denied[0])
	}
}
