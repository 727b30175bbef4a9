package scenarios

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/report"
)

var (
	boardFlag = flag.String("board", "", "comma-separated boards to run on (default: $SOCBOX_BOARDS, else every board in the catalog)")
	suiteFlag = flag.String("suite", "", "Debian suite of the default image (default: $SOCBOX_SUITE, else trixie)")
	outFlag   = flag.String("out", "", "directory for results.json and console logs (default: $SOCBOX_RESULTS, else a new temp dir)")
)

// selectedBoards is what -board or $SOCBOX_BOARDS asks for, or every board.
func selectedBoards(t *testing.T) []string {
	sel := *boardFlag
	if sel == "" {
		sel = os.Getenv("SOCBOX_BOARDS")
	}
	if sel == "" || sel == "all" {
		return boards.Slugs()
	}
	var out []string
	for _, s := range strings.Split(sel, ",") {
		s = strings.TrimSpace(s)
		_, err := boards.Lookup(s)
		require.NoError(t, err, "-board / SOCBOX_BOARDS")
		out = append(out, s)
	}
	return out
}

// skipUnlessQEMUHasMachine skips a board whose machine this host's QEMU
// lacks (raspi4b before QEMU 9.0), saying which QEMU it needs: every
// board is selected by default, and Debian 12's QEMU is 7.2.
func skipUnlessQEMUHasMachine(t *testing.T, slug string) {
	prof, err := boards.Lookup(slug)
	require.NoError(t, err)
	v, err := qemu.ExeVersion(t.Context(), prof.QEMUBinary)
	require.NoError(t, err)
	if err := qemu.CheckVersion(prof, v); err != nil {
		t.Skip(err)
	}
}

func suiteOption() []harness.Option {
	s := *suiteFlag
	if s == "" {
		s = os.Getenv("SOCBOX_SUITE")
	}
	if s == "" {
		return nil
	}
	return []harness.Option{harness.WithSuite(s)}
}

var (
	resultsOnce sync.Once
	resultsDir  string
	run         = &report.Run{StartedAt: time.Now().UTC(), Host: report.ThisHost()}
	runMu       sync.Mutex
)

func outputDir(t *testing.T) string {
	resultsOnce.Do(func() {
		resultsDir = *outFlag
		if resultsDir == "" {
			resultsDir = os.Getenv("SOCBOX_RESULTS")
		}
		if resultsDir == "" {
			d, err := os.MkdirTemp("", "socbox-results-")
			require.NoError(t, err)
			resultsDir = d
		}
	})
	return resultsDir
}

// record adds a board's results to results.json and rewrites it, so the
// results of finished boards survive a later failure or timeout.
func record(t *testing.T, rb *report.Board) {
	runMu.Lock()
	defer runMu.Unlock()
	run.Boards = append(run.Boards, rb)
	run.FinishedAt = time.Now().UTC()
	p, err := run.WriteJSON(outputDir(t))
	require.NoError(t, err)
	_, err = run.WriteJUnit(outputDir(t))
	require.NoError(t, err)
	h, err := run.WriteHTML(outputDir(t))
	require.NoError(t, err)
	t.Logf("results: %s (report: %s)", p, h)
}

// TestBundledScenarios boots each selected board once and runs every
// bundled scenario on it as a subtest: board/scenario.
func TestBundledScenarios(t *testing.T) {
	for _, slug := range selectedBoards(t) {
		t.Run(slug, func(t *testing.T) {
			runBundled(t, slug, filepath.Join(outputDir(t), slug), suiteOption()...)
		})
	}
}

// TestBookworm runs the bundled scenarios on the previous Debian release
// (containerd 1.6), which many boards in the field still run. One board is
// enough: the suite is what differs, not the machine. SOCBOX_SUITES=trixie
// skips it.
func TestBookworm(t *testing.T) {
	if os.Getenv("SOCBOX_SUITES") == "trixie" || *suiteFlag != "" || os.Getenv("SOCBOX_SUITE") != "" {
		t.Skip("suite chosen explicitly (-suite / SOCBOX_SUITE / SOCBOX_SUITES)")
	}
	slug := "raspi4b-fast"
	if sel := selectedBoards(t); len(sel) == 1 {
		slug = sel[0]
	}
	runBundled(t, slug, filepath.Join(outputDir(t), slug+"-bookworm"), harness.WithSuite("bookworm"))
}

// TestCrun runs the bundled scenarios with crun as the OCI runtime
// (harness.WithCrun), the faster choice under emulation, so that it stays
// a drop-in for runc. One board, as for TestBookworm.
func TestCrun(t *testing.T) {
	slug := "raspi4b-fast"
	if sel := selectedBoards(t); len(sel) == 1 {
		slug = sel[0]
	}
	runBundled(t, slug, filepath.Join(outputDir(t), slug+"-crun"), append(suiteOption(), harness.WithCrun())...)
}

// runBundled boots one board and runs every bundled scenario that applies
// to it as a subtest.
func runBundled(t *testing.T, slug, artifacts string, opts ...harness.Option) {
	skipUnlessQEMUHasMachine(t, slug)
	b := harness.Boot(t, slug, append([]harness.Option{harness.WithArtifactsDir(artifacts)}, opts...)...)
	rb := b.Report()
	defer record(t, rb)
	t.Run("guest-clock", func(t *testing.T) {
		// Set from the host's after boot: apt needs it.
		out, err := b.SSH.Output(t.Context(), "date +%s")
		require.NoError(t, err)
		guest, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		require.NoError(t, err)
		require.InDelta(t, time.Now().Unix(), guest, 120, "guest clock is off by more than two minutes")
	})
	runScenarios(t, b, rb, slug)
}

// runScenarios runs every bundled scenario that applies to b as a subtest,
// adding each result to rb when it is given; where names the board in
// failure messages.
func runScenarios(t *testing.T, b *harness.Board, rb *report.Board, where string) {
	for _, s := range Bundled() {
		if !s.AppliesTo(b.Profile) {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			res := b.RunScenario(t.Context(), s)
			if rb != nil {
				rb.Scenarios = append(rb.Scenarios, res)
			}
			if res.NotApplicable != "" {
				t.Skipf("not applicable: %s", res.NotApplicable)
			}
			t.Logf("%s: exit %d in %.2fs", s.Name, res.ExitCode, res.Seconds)
			require.Empty(t, res.Failures, "scenario %s on %s (stdout %q, stderr %q)", s.Name, where, clip(res.Stdout), clip(res.Stderr))
		})
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
