// Command kubectl-tokenwarden is the kubectl plugin of tokenwarden
// (`kubectl tokenwarden`): wiring only; the commands are in internal/plugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenwarden/tokenwarden/internal/plugin"
)

func main() {
	// The client libraries log through klog and controller-runtime's
	// logger; a CLI prints its own messages only.
	klog.SetLogger(logr.Discard())
	ctrllog.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, clock.RealClock{})
	err := cmd.ExecuteContext(ctx)
	switch {
	case errors.Is(err, plugin.ErrProblems):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
