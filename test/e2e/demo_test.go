//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/demo"
)

var (
	statusLine = regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] (\d+)/(\d+) Ready, (\d+) refreshes$`)
	workDir    = regexp.MustCompile(`^tokenwarden demo \(working directory (\S+)\)$`)
	childPid   = regexp.MustCompile(`\(pid (\d+)\)`)
	// makeReport is how GNU make reports, on its stderr, that the recipe's
	// process (the demo: the recipe execs it) failed: "make: *** [Makefile:
	// 118: demo] Broken pipe" for a death by SIGPIPE, "... Error 1" for an
	// exit status of 1. Make prints it even when it was interrupted itself
	// (and then dies of the signal, whatever the demo's fate), so this line,
	// not make's own wait status, is the demo's verdict.
	makeReport = regexp.MustCompile(`^make(\[\d+\])?: \*\*\* \[[^\]]*\bdemo\] (.+)$`)
)

const cleanStop = "demo stopped cleanly: nothing left running"

// TestDemo runs `make demo` the way a user does, in a process group of its
// own like a terminal's foreground job, waits until its table shows the four
// samples Ready and at least one refresh, presses Ctrl-C (SIGINT to the
// whole group), and checks that the demo stops cleanly and that no manager,
// sandbox, kube-apiserver or etcd is left: each of them carries the demo's
// working directory on its command line, so /proc is scanned for it.
func TestDemo(t *testing.T) {
	d := startDemo(t)
	// Building (warm cache), the control plane (~5 s), Ready (~1 s) and a
	// first refresh of a 60 s token (18-30 s).
	want := sampleCount(t)
	d.waitFor(fmt.Sprintf("all %d sample credentials Ready and a refresh", want), 4*time.Minute, func(s demoStatus) bool {
		return s.ready == want && s.total == want && s.refreshes >= 1
	})
	d.stop(syscall.SIGINT, func() { d.signalGroup(syscall.SIGINT) })
	d.expectCleanStopLine()
	d.expectNothingLeft()
}

// TestDemoStopsOnHangup closes the demo's terminal, in effect: once the four
// samples are Ready it sends SIGHUP to the whole process group (make and the
// demo), which is what the kernel (or the shell, forwarding its own SIGHUP to
// its jobs) does to the foreground job when the terminal goes away. The demo
// must stop in order as on Ctrl-C.
func TestDemoStopsOnHangup(t *testing.T) {
	d := startDemo(t)
	want := sampleCount(t)
	d.waitFor(fmt.Sprintf("all %d sample credentials Ready", want), 4*time.Minute, func(s demoStatus) bool {
		return s.ready == want && s.total == want
	})
	d.stop(syscall.SIGHUP, func() { d.signalGroup(syscall.SIGHUP) })
	d.expectCleanStopLine()
	d.expectNothingLeft()
}

// TestDemoStopsWhenOutputPipeCloses is `make demo | tee log` followed by
// Ctrl-C, where tee dies first: once the four samples are Ready the test
// closes the read end of the demo's stdout (it holds the only one), then
// sends SIGINT to the group. Everything the demo prints from then on (the
// table every second, "interrupted", "stopping: ...", the clean-stop line)
// is written to a pipe without a reader and fails with EPIPE; that the
// demo writes after the close is certain, since it prints "interrupted"
// and "stopping: ..." only once the SIGINT sent after the close has
// reached it. Without SIGPIPE handled, the first such write kills the demo
// with SIGPIPE halfway through its cleanup, leaving kube-apiserver, etcd
// and the working directory behind.
//
// The clean-stop line cannot be read, so the demo's verdict is make's:
// stderr is a second pipe, kept open (as it stays on the terminal behind a
// `|`), on which make reports a recipe that died of a signal or exited
// non-zero ("make: *** [...: demo] Broken pipe"). Make's own wait status
// cannot tell: interrupted, make waits for the demo and then dies of SIGINT
// however the demo ended.
func TestDemoStopsWhenOutputPipeCloses(t *testing.T) {
	d := startDemo(t)
	want := sampleCount(t)
	d.waitFor(fmt.Sprintf("all %d sample credentials Ready", want), 4*time.Minute, func(s demoStatus) bool {
		return s.ready == want && s.total == want
	})
	d.stop(syscall.SIGINT, func() {
		d.closeStdout()
		d.signalGroup(syscall.SIGINT)
	})
	d.expectNothingLeft()
}

type demoStatus struct{ ready, total, refreshes int }

// demoRun is a `make demo` started by startDemo.
type demoRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	pgid   int
	stdout *os.File // the read end of the demo's stdout; closeStdout closes it
	exited chan error
	outEOF chan struct{}
	errEOF chan struct{}

	mu      sync.Mutex
	output  []string // stdout and stderr lines as read, stderr's marked
	reports []string // make's reports of the demo's failure (makeReport)
	dir     string   // the demo's working directory
	pids    []int    // the sandbox's and the manager's
	status  *demoStatus
	last    string // the last status line
	waiters []demoWaiter

	// Set by waitFor.
	demoDir  string
	children []int // the sandbox, the manager and the demo itself

	// Set by stop.
	stopped bool
}

type demoWaiter struct {
	cond    func(demoStatus) bool
	reached chan struct{}
}

// startDemo starts `make demo` in a process group of its own, with stdout
// and stderr on two pipes the test reads line by line. Should the test end
// before the demo has stopped, the group is killed.
// sampleCount is how many APICredentials the demo applies: the four flows
// and the consumers of the provider samples.
func sampleCount(t *testing.T) int {
	t.Helper()
	s, err := demo.LoadSamples(demo.SampleDirs(root)...)
	if err != nil {
		t.Fatal(err)
	}
	return len(s.Credentials())
}

func startDemo(t *testing.T) *demoRun {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "demo")
	cmd.Dir = root
	// A safety net only: the test stops the demo long before.
	cmd.Env = append(os.Environ(), "DEMO_DURATION=6m")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The children hold the write ends now; the read ends (close-on-exec)
	// are the test's alone.
	outW.Close()
	errW.Close()
	d := &demoRun{
		t: t, cmd: cmd, pgid: cmd.Process.Pid, stdout: outR,
		exited: make(chan error, 1), outEOF: make(chan struct{}), errEOF: make(chan struct{}),
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			_ = syscall.Kill(-d.pgid, syscall.SIGKILL)
		}
		outR.Close()
		errR.Close()
	})
	go d.read(outR, "", d.outEOF)
	go d.read(errR, "stderr: ", d.errEOF)
	return d
}

func (d *demoRun) read(f *os.File, mark string, eof chan struct{}) {
	defer close(eof)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		d.mu.Lock()
		d.output = append(d.output, mark+line)
		if m := workDir.FindStringSubmatch(line); m != nil {
			d.dir = m[1]
		}
		if m := childPid.FindStringSubmatch(line); m != nil {
			d.pids = append(d.pids, atoi(m[1]))
		}
		if m := makeReport.FindStringSubmatch(line); m != nil {
			d.reports = append(d.reports, line)
		}
		if m := statusLine.FindStringSubmatch(line); m != nil {
			d.last = line
			s := demoStatus{ready: atoi(m[1]), total: atoi(m[2]), refreshes: atoi(m[3])}
			d.status = &s
			d.notify()
		}
		d.mu.Unlock()
	}
}

// notify wakes the waiters whose condition the last status meets; d.mu is
// held.
func (d *demoRun) notify() {
	if d.status == nil {
		return
	}
	kept := d.waiters[:0]
	for _, w := range d.waiters {
		if w.cond(*d.status) {
			close(w.reached)
		} else {
			kept = append(kept, w)
		}
	}
	d.waiters = kept
}

// dump returns the last 40 lines read.
func (d *demoRun) dump() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := max(0, len(d.output)-40)
	return strings.Join(d.output[start:], "\n")
}

// waitFor waits until a status line of the table meets cond, then checks
// that the demo has printed its working directory and the pids of its two
// children, and finds the demo's own pid.
func (d *demoRun) waitFor(what string, timeout time.Duration, cond func(demoStatus) bool) {
	d.t.Helper()
	w := demoWaiter{cond: cond, reached: make(chan struct{})}
	d.mu.Lock()
	d.waiters = append(d.waiters, w)
	d.notify()
	d.mu.Unlock()

	begin := time.Now()
	select {
	case <-w.reached:
	case err := <-d.exited:
		d.exited <- err // for stop
		d.t.Fatalf("make demo exited before %s: %v\n%s", what, err, d.dump())
	case <-time.After(timeout):
		d.mu.Lock()
		last := d.last
		d.mu.Unlock()
		d.t.Fatalf("not %s after %s; last status %q\n%s", what, timeout, last, d.dump())
	}
	d.mu.Lock()
	d.t.Logf("after %s: %s", time.Since(begin).Round(time.Second), d.last)
	d.demoDir, d.children = d.dir, append([]int(nil), d.pids...)
	d.mu.Unlock()
	if d.demoDir == "" || len(d.children) != 2 {
		d.t.Fatalf("the demo did not print its working directory and the pids of the sandbox and the manager (%q, %v)", d.demoDir, d.children)
	}
	demo, err := demoPid(d.pgid)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("make is pid %d, the demo pid %d, the sandbox and the manager %v", d.pgid, demo, d.children)
	d.children = append(d.children, demo)
}

// demoPid finds the demo among make's children: the recipe execs bin/demo.
func demoPid(makePid int) (int, error) {
	entries, _ := os.ReadDir("/proc")
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(makePid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); strings.HasSuffix(argv0, "/bin/demo") {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("make (pid %d) has %d bin/demo children %v, want 1", makePid, len(found), found)
	}
	return found[0], nil
}

// signalGroup sends sig to the demo's process group, as a terminal does to
// its foreground job.
func (d *demoRun) signalGroup(sig syscall.Signal) {
	d.t.Helper()
	if err := syscall.Kill(-d.pgid, sig); err != nil {
		// ESRCH: make and the demo are gone already, which they must
		// not be before they are told to stop; stop reports how make ended.
		d.t.Errorf("sending %v to the process group %d: %v", sig, d.pgid, err)
	}
}

// closeStdout closes the test's read end of the demo's stdout, the only
// one: from then on the demo's writes to stdout fail with EPIPE (and raise
// SIGPIPE). It returns once the descriptor is closed.
func (d *demoRun) closeStdout() {
	d.t.Helper()
	if err := d.stdout.Close(); err != nil {
		d.t.Fatal(err)
	}
	<-d.outEOF
	d.t.Logf("closed the read end of the demo's stdout")
}

// stop runs action (which sends sig, or causes the stop otherwise) and
// waits up to 90 s for make to exit and the output to end. Make must have
// exited 0 or died of sig (make, interrupted, waits for the demo, then dies
// of the signal itself), and must not have reported the demo's failure:
// neither a death by a signal (SIGPIPE: "Broken pipe") nor an exit status
// other than 0.
func (d *demoRun) stop(sig syscall.Signal, action func()) {
	d.t.Helper()
	stopAt := time.Now()
	action()
	var err error
	select {
	case err = <-d.exited:
	case <-time.After(90 * time.Second):
		d.t.Fatalf("make demo did not exit within 90s of %v\n%s", sig, d.dump())
	}
	<-d.outEOF
	<-d.errEOF
	d.stopped = true
	d.t.Logf("stopped %s after %v (make: %v)", time.Since(stopAt).Round(100*time.Millisecond), sig, err)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && signaled(ee, sig)) {
		d.t.Errorf("make demo: %v\n%s", err, d.dump())
	}
	d.mu.Lock()
	reports := append([]string(nil), d.reports...)
	d.mu.Unlock()
	if len(reports) > 0 {
		d.t.Errorf("make reports that the demo failed:\n%s\n%s", strings.Join(reports, "\n"), d.dump())
	}
}

// expectCleanStopLine checks the demo's own verdict, its last line.
func (d *demoRun) expectCleanStopLine() {
	d.t.Helper()
	if out := d.dump(); !strings.Contains(out, cleanStop) {
		d.t.Errorf("the demo did not report a clean stop:\n%s", out)
	}
}

// expectNothingLeft checks that no process mentions the demo's working
// directory, that the sandbox, the manager and the demo are gone, that the
// process group is empty and that the working directory was removed.
// Whatever is left is removed afterwards.
func (d *demoRun) expectNothingLeft() {
	d.t.Helper()
	if left := processesMentioning(d.demoDir); len(left) > 0 {
		d.t.Errorf("processes left running after the demo stopped:\n%s", strings.Join(left, "\n"))
		for _, l := range left {
			var pid int
			if _, err := fmt.Sscanf(l, "%d", &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range d.children {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			d.t.Errorf("child pid %d is still there", pid)
		}
	}
	if err := syscall.Kill(-d.pgid, 0); !errors.Is(err, syscall.ESRCH) {
		d.t.Errorf("the demo's process group %d still has members (%v)", d.pgid, err)
	}
	if _, err := os.Stat(d.demoDir); !errors.Is(err, os.ErrNotExist) {
		d.t.Errorf("the working directory %s was not removed (%v)", d.demoDir, err)
		if strings.Contains(filepath.Base(d.demoDir), "tokenwarden-demo-") {
			_ = os.RemoveAll(d.demoDir)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func signaled(ee *exec.ExitError, sig syscall.Signal) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// processesMentioning lists "pid cmdline" of every process whose command
// line contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, s) {
			out = append(out, fmt.Sprintf("%d %s", pid, cmdline))
		}
	}
	return out
}
