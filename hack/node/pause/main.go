// Command pause is the Pod sandbox's process for the node test: it holds
// the Pod's namespaces open, reaps orphaned children (it is PID 1 of a
// shared PID namespace) and exits on SIGINT or SIGTERM, as the upstream
// pause image does. Built into a pinned image by hack/image, so containerd
// never pulls registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
