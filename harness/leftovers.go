package harness

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/socbox/socbox/images/reclaim"
)

// runDirPrefix starts the name of every run directory socbox makes in the
// temporary directory.
const runDirPrefix = "socbox-"

// reclaimOnce runs reclaimLeftovers once per process, before the first
// board starts.
var reclaimOnce sync.Once

// reclaimLeftovers removes what killed socbox processes left (run
// directories with their overlays, half-saved snapshots, half-built
// images and sources), never what a live process is using: see reclaim.
func reclaimLeftovers(cache string, logf func(string, ...any)) {
	var removed []string
	var errs []error
	add := func(r []string, err error) {
		removed = append(removed, r...)
		errs = append(errs, err)
	}
	add(reclaim.Sweep(os.TempDir(), runDirPrefix+"*"))
	add(reclaim.Sweep(filepath.Join(cache, "snapshots"), "*.tmp-*"))
	add(reclaim.SweepUnlocked(filepath.Join(cache, "images")))
	add(reclaim.SweepUnlocked(filepath.Join(cache, "byo", "sources")))
	for _, p := range removed {
		logf("cleanup: removed %s, left by a socbox process that is gone", p)
	}
	for _, err := range errs {
		if err != nil {
			logf("cleanup: %v", err)
		}
	}
}
