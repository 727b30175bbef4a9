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
// waits for a slot. SOCBOX_MAX_BOARDS overrides the bound.
var (
	slotsOnce sync.Once
	slots     chan struct{}
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

func acquireSlot(ctx context.Context, logf func(string, ...any)) (func(), error) {
	slotsOnce.Do(func() { slots = make(chan struct{}, MaxBoards()) })
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
