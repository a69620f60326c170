package demo

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func metaIn(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

// Process is a child process (the manager or the sandbox). It runs in a
// process group of its own, so that a Ctrl-C in the terminal reaches only
// the demo, which then stops its children in order.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

func startProcess(name string, cmd *exec.Cmd) (*Process, error) {
	// Pdeathsig: should the demo itself be killed outright, its children
	// go with it instead of running on without a parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how: Wait's error, or
// errCleanExit for a clean exit, so that callers (to which any exit is
// unexpected) always have an error to wrap.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, errCleanExit
		}
		return true, p.err
	default:
		return false, nil
	}
}

var errCleanExit = errors.New("exit status 0")

// Stop sends SIGTERM, waits up to grace for the process to exit and kills
// it (and its process group) after that. It returns an error when the
// process had to be killed or exited with a failure; a process that had
// already exited is not an error of Stop's.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil && !isSignal(p.err, syscall.SIGTERM) {
			return fmt.Errorf("%s (pid %d) exited: %w", p.Name, p.Pid(), p.err)
		}
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM and was killed", p.Name, p.Pid(), grace)
}

func isSignal(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// FreeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// openLog opens (appending) a log file for a child's output.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// LastLines returns the last n lines of a file (a child's log), for error
// messages.
func LastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
