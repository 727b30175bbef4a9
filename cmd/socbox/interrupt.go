package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/socbox/socbox/harness/proc"
)

// onInterrupt returns a context that the first SIGINT or SIGTERM cancels:
// socbox then stops what it runs and cleans up. A teardown can hang on a
// guest that stopped answering, so a second signal does not wait for it:
// it kills the process groups of socbox's children (QEMU and the tools
// images are built with), says so, and calls exit(130). What is left
// behind (run directories) the next run reclaims.
func onInterrupt(stderr io.Writer, exit func(code int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			n := proc.KillAll()
			fmt.Fprintf(stderr, "socbox: interrupted again: killed %d child process group(s) and exiting without cleaning up; the next run reclaims what is left\n", n)
			exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
