package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/machine"
)

// keptBoards are the boards of a run --keep-failed left running.
type keptBoards struct {
	mu     sync.Mutex
	boards []*harness.Board
}

// add records b if Close kept it; nil-safe on both sides.
func (k *keptBoards) add(b *harness.Board) {
	if k == nil || !b.Kept() {
		return
	}
	k.mu.Lock()
	k.boards = append(k.boards, b)
	k.mu.Unlock()
}

// serve tells how to reach each kept board and keeps the emulated ones up
// until ctx ends (Ctrl-C) or their QEMUs have all ended; then it stops
// them. QEMU ends with socbox, so socbox stays while they are wanted, as
// socbox boot does; `socbox ssh --board SLUG` finds them meanwhile.
func (k *keptBoards) serve(ctx context.Context, stdout, stderr io.Writer) error {
	if k == nil || len(k.boards) == 0 {
		return nil
	}
	var waits []<-chan struct{}
	fmt.Fprintf(stdout, "\nkept %d failed board(s) as they were when their scenarios ended:\n", len(k.boards))
	for _, b := range k.boards {
		if _, ok := b.Machine.(machine.Emulated); !ok {
			// A real board stays up anyway.
			fmt.Fprintf(stdout, "  %s: %s\n", b.Profile.Slug, b.SSHCommand())
			continue
		}
		forget, err := writeBootState(b.Profile.Slug, b.Machine.Endpoint().SSH, b.KeyPath, b.RunDir())
		if err != nil {
			fmt.Fprintf(stderr, "socbox run: %v (socbox ssh will not find %s; use the ssh command)\n", err, b.Profile.Slug)
		} else {
			defer forget()
		}
		fmt.Fprintf(stdout, "  %s: socbox ssh --board %s\n    or %s\n    run dir %s\n", b.Profile.Slug, b.Profile.Slug, b.SSHCommand(), b.RunDir())
		waits = append(waits, b.KeptDone())
	}
	defer k.release(stderr)
	if len(waits) == 0 {
		return nil
	}
	fmt.Fprintln(stdout, "Ctrl-C stops them and removes their run directories.")
	for _, done := range waits {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
		}
	}
	return errors.New("socbox run: the kept boards' QEMU ended")
}

// release stops the kept boards.
func (k *keptBoards) release(stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range k.boards {
		if _, ok := b.Machine.(machine.Emulated); ok {
			fmt.Fprintln(stderr, "stopping", b.Profile.Slug)
		}
		if err := b.Release(ctx); err != nil {
			fmt.Fprintf(stderr, "socbox run: %v\n", err)
		}
	}
}
