package harness

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/socbox/socbox/harness/machine"
)

// Failed reports whether the board failed: a stage did (Err), a scenario
// run with RunScenario did, or the test holding it did (Boot). With
// WithKeepOnFailure, Close keeps a failed board.
func (b *Board) Failed() bool {
	return b.life.Err() != nil || b.scenarioFailed.Load()
}

// markFailed records that something run on the board failed.
func (b *Board) markFailed() { b.scenarioFailed.Store(true) }

// Kept reports whether Close left the board running for a person to look
// into (WithKeepOnFailure, and it failed). Reach it with SSHCommand;
// Release stops it.
func (b *Board) Kept() bool { return b != nil && b.kept }

// Release stops a board Close kept and removes its run directory (unless
// WithKeepRunDir or WithRunDir); nothing for a board not kept. A real
// board stays up, as on Close.
func (b *Board) Release(ctx context.Context) error {
	if !b.Kept() {
		return nil
	}
	fns := b.release
	b.release, b.kept = nil, false
	var errs []error
	for _, fn := range fns {
		errs = append(errs, fn(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release %s: %w", b.life.name, err)
	}
	return nil
}

// KeptDone is closed when a kept emulated board's QEMU ends (nil for any
// other board: it never ends on its own).
func (b *Board) KeptDone() <-chan struct{} {
	if m, ok := b.Machine.(machine.Emulated); ok && b.Kept() {
		return m.Done()
	}
	return nil
}

// sayKept tells, once Close has kept the board, how to reach it.
func (b *Board) sayKept() {
	if !b.kept {
		return
	}
	what := "kept the failed board running"
	if _, ok := b.Machine.(machine.Emulated); ok {
		what += " until this process ends"
	}
	b.life.logf("%s: log in with %s (run dir %s)", what, b.SSHCommand(), b.RunDir())
}

// stopMachine stops the machine the board has at the time of Close, or,
// for a kept board, leaves that to Release.
func (b *Board) stopMachine(ctx context.Context) error {
	m := b.Machine
	if b.kept {
		b.release = append(b.release, m.Stop)
		return nil
	}
	return m.Stop(ctx)
}

// removeRunDir removes the run directory socbox made, on Close, or, for a
// kept board, on Release; never WithKeepRunDir.
func (b *Board) removeRunDir(dir string) func(context.Context) error {
	return func(context.Context) error {
		switch {
		case b.opts.keepRunDir:
			return nil
		case b.kept:
			b.release = append(b.release, func(context.Context) error { return os.RemoveAll(dir) })
			return nil
		}
		return os.RemoveAll(dir)
	}
}
