package demo

import (
	"fmt"
	"os/exec"
)

// ManagerOptions configure StartManager.
type ManagerOptions struct {
	// Binary is the built manager (bin/manager).
	Binary string
	// Kubeconfig is passed as --kubeconfig.
	Kubeconfig string
	// Args are the other flags, e.g. --leader-elect=false.
	Args []string
	// LogPath receives stdout and stderr, appended (a restarted manager
	// logs after the first one).
	LogPath string
}

// StartManager runs the manager binary as a child process.
func StartManager(o ManagerOptions) (*Process, error) {
	logFile, err := openLog(o.LogPath)
	if err != nil {
		return nil, err
	}
	// The child has its own copy of the descriptor.
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== %s --kubeconfig=%s %v\n", o.Binary, o.Kubeconfig, o.Args)
	cmd := exec.Command(o.Binary, append([]string{"--kubeconfig=" + o.Kubeconfig}, o.Args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	return startProcess("manager", cmd)
}
