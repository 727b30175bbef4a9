package harness

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// Boards running at once are bounded by the host: each emulated board
// keeps about one host core busy while it boots or runs, and holds its
// guest RAM. Tests may call Boot from t.Parallel() subtests freely; Start
// waits for a slot. SOCBOX_MAX_BOARDS overrides the bound, and
// LimitBoards (socbox run --parallel) sets it.
var (
	slotsMu sync.Mutex
	slots   chan struct{} // nil until the first board or LimitBoards
)

// MaxBoards is how many boards may run at once on this host.
func MaxBoards() int {
	if v, err := strconv.Atoi(os.Getenv("SOCBOX_MAX_BOARDS")); err == nil && v > 0 {
		return v
	}
	n := runtime.NumCPU()
	// Leave room for the host: at most one board per 3 GiB of RAM.
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		if byMem := int(uint64(si.Totalram) * uint64(si.Unit) / (3 << 30)); byMem < n {
			n = byMem
		}
	}
	return max(n, 1)
}

// LimitBoards makes n the number of boards that may run at once in this
// process, in place of MaxBoards (socbox run --parallel). It must come
// while no board runs: their slots are counted against the bound they
// started under.
func LimitBoards(n int) error {
	if n < 1 {
		return fmt.Errorf("limit boards: %d boards at once: give at least 1", n)
	}
	slotsMu.Lock()
	defer slotsMu.Unlock()
	if slots != nil && cap(slots) != n && len(slots) > 0 {
		return fmt.Errorf("limit boards to %d: %d board(s) run already, with %d at once; set it before they start", n, len(slots), cap(slots))
	}
	if slots == nil || cap(slots) != n {
		slots = make(chan struct{}, n)
	}
	return nil
}

// boardSlots is the channel whose capacity bounds the boards.
func boardSlots() chan struct{} {
	slotsMu.Lock()
	defer slotsMu.Unlock()
	if slots == nil {
		slots = make(chan struct{}, MaxBoards())
	}
	return slots
}

func acquireSlot(ctx context.Context, logf func(string, ...any)) (func(), error) {
	slots := boardSlots()
	select {
	case slots <- struct{}{}:
	default:
		logf("waiting for a free board slot (%d boards at once on this host; SOCBOX_MAX_BOARDS changes it)", cap(slots))
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a board slot: %w", ctx.Err())
		}
	}
	var once sync.Once
	return func() { once.Do(func() { <-slots }) }, nil
}
