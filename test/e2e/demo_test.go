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
)

var (
	statusLine = regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] (\d+)/(\d+) Ready, (\d+) refreshes$`)
	workDir    = regexp.MustCompile(`^tokenwarden demo \(working directory (\S+)\)$`)
	childPid   = regexp.MustCompile(`\(pid (\d+)\)`)
)

// TestDemo runs `make demo` the way a user does, in a process group of its
// own like a terminal's foreground job, waits until its table shows the four
// samples Ready and at least one refresh, presses Ctrl-C (SIGINT to the
// whole group), and checks that the demo stops cleanly and that no manager,
// sandbox, kube-apiserver or etcd is left: each of them carries the demo's
// working directory on its command line, so /proc is scanned for it.
func TestDemo(t *testing.T) {
	cmd := exec.Command("make", "--no-print-directory", "demo")
	cmd.Dir = root
	// A safety net only: the test stops the demo long before.
	cmd.Env = append(os.Environ(), "DEMO_DURATION=6m")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})

	var (
		mu       sync.Mutex
		output   []string
		dir      string
		pids     []int
		lastSeen string
	)
	reached := make(chan struct{})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(r)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			output = append(output, line)
			if m := workDir.FindStringSubmatch(line); m != nil {
				dir = m[1]
			}
			if m := childPid.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				pids = append(pids, n)
			}
			if m := statusLine.FindStringSubmatch(line); m != nil {
				lastSeen = line
				ready, total, refreshes := atoi(m[1]), atoi(m[2]), atoi(m[3])
				if ready == 4 && total == 4 && refreshes >= 1 {
					once.Do(func() { close(reached) })
				}
			}
			mu.Unlock()
		}
	}()
	dump := func() string {
		mu.Lock()
		defer mu.Unlock()
		start := max(0, len(output)-40)
		return strings.Join(output[start:], "\n")
	}

	// Building (warm cache), the control plane (~5 s), Ready (~1 s) and a
	// first refresh of a 60 s token (18-30 s).
	begin := time.Now()
	select {
	case <-reached:
	case err := <-exited:
		t.Fatalf("make demo exited before four credentials were Ready with a refresh: %v\n%s", err, dump())
	case <-time.After(4 * time.Minute):
		t.Fatalf("no four Ready credentials and a refresh after 4 minutes; last status %q\n%s", lastSeen, dump())
	}
	mu.Lock()
	t.Logf("after %s: %s", time.Since(begin).Round(time.Second), lastSeen)
	demoDir, children := dir, append([]int(nil), pids...)
	mu.Unlock()
	if demoDir == "" || len(children) != 2 {
		t.Fatalf("the demo did not print its working directory and the pids of the sandbox and the manager (%q, %v)", demoDir, children)
	}

	// Ctrl-C.
	stopAt := time.Now()
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("make demo did not exit within 90s of SIGINT\n%s", dump())
	}
	<-eof
	killed = true
	t.Logf("stopped %s after SIGINT", time.Since(stopAt).Round(100*time.Millisecond))
	// make, interrupted, reports the interrupt by dying of SIGINT itself,
	// after waiting for the demo; the demo's own verdict is its last line.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && signaled(ee, syscall.SIGINT)) {
		t.Errorf("make demo: %v", err)
	}
	out := dump()
	if !strings.Contains(out, "demo stopped cleanly: nothing left running") {
		t.Errorf("the demo did not report a clean stop:\n%s", out)
	}

	if left := processesMentioning(demoDir); len(left) > 0 {
		t.Errorf("processes left running after the demo stopped:\n%s", strings.Join(left, "\n"))
		for _, l := range left {
			var pid int
			if _, err := fmt.Sscanf(l, "%d", &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range children {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			t.Errorf("child pid %d is still there", pid)
		}
	}
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the demo's process group %d still has members (%v)", pgid, err)
	}
	if _, err := os.Stat(demoDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the working directory %s was not removed (%v)", demoDir, err)
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
