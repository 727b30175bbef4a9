package scenarios

import (
	"cmp"
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
	"github.com/socbox/socbox/harness/plan"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/images"
)

var (
	boardFlag = flag.String("board", "", "comma-separated boards to run on (default: $SOCBOX_BOARDS, else every board in the catalog)")
	suiteFlag = flag.String("suite", "", "Debian suite of the default image (default: $SOCBOX_SUITE, else trixie)")
	outFlag   = flag.String("out", "", "directory for results.json and console logs (default: $SOCBOX_RESULTS, else a new temp dir)")
	shardFlag = flag.String("shard", "", "run only shard K/N of the bundled scenarios' board × image × scenario units (default: $SOCBOX_SHARD)")
)

// bootsVM marks a test that boots a board: go test -short (the unit step)
// skips it, and runs the rest of this package, which boots nothing.
func bootsVM(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; run without -short")
	}
}

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
	if err := qemuLacksMachine(t, slug); err != nil {
		t.Skip(err)
	}
}

// qemuLacksMachine says why this host's QEMU cannot run slug's machine.
func qemuLacksMachine(t *testing.T, slug string) error {
	prof, err := boards.Lookup(slug)
	require.NoError(t, err)
	v, err := qemu.ExeVersion(t.Context(), prof.QEMUBinary)
	require.NoError(t, err)
	return qemu.CheckVersion(prof, v)
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

// suite is the Debian suite the default image is built from.
func suite() string {
	for _, s := range []string{*suiteFlag, os.Getenv("SOCBOX_SUITE")} {
		if s != "" {
			return s
		}
	}
	return images.DefaultSuite
}

// bookwormSkipped is why TestBookworm does not run, if it does not.
func bookwormSkipped() string {
	if os.Getenv("SOCBOX_SUITES") == "trixie" || *suiteFlag != "" || os.Getenv("SOCBOX_SUITE") != "" {
		return "suite chosen explicitly (-suite / SOCBOX_SUITE / SOCBOX_SUITES)"
	}
	return ""
}

// oneBoard is the board of the tests that need only one: the one selected,
// else raspi4b-fast.
func oneBoard(t *testing.T) string {
	if sel := selectedBoards(t); len(sel) == 1 {
		return sel[0]
	}
	return "raspi4b-fast"
}

var (
	planOnce    sync.Once
	bundled     *plan.Plan
	selection   plan.Selection
	shardOwners map[plan.Unit]int
)

// bundledPlan is the plan of the tests that run the bundled scenarios —
// TestBundledScenarios on every selected board, TestBookworm and TestCrun
// on one — narrowed by SOCBOX_RUN and SOCBOX_SKIP (as socbox run's --run
// and --skip) and cut by -shard or SOCBOX_SHARD (as --shard): N runners of
// `go test ./scenarios/...` with the same settings run each unit once.
func bundledPlan(t *testing.T) (*plan.Plan, plan.Selection, map[plan.Unit]int) {
	planOnce.Do(func() {
		var err error
		selection, err = plan.ParseSelection(os.Getenv("SOCBOX_RUN"), os.Getenv("SOCBOX_SKIP"))
		require.NoError(t, err, "SOCBOX_RUN / SOCBOX_SKIP")
		var sh plan.Shard
		if s := cmp.Or(*shardFlag, os.Getenv("SOCBOX_SHARD")); s != "" {
			sh, err = plan.ParseShard(s)
			require.NoError(t, err, "-shard / SOCBOX_SHARD")
		}
		var units []plan.Unit
		add := func(slug, image string) {
			if qemuLacksMachine(t, slug) != nil {
				return // skipped by runBundled: not this host's to run
			}
			prof, err := boards.Lookup(slug)
			require.NoError(t, err)
			for _, s := range Bundled() {
				if s.AppliesTo(prof) && selection.Match(s.Name, s.Tags) {
					units = append(units, plan.Unit{Board: slug, Image: image, Scenario: s.Name})
				}
			}
		}
		for _, slug := range selectedBoards(t) {
			add(slug, plan.DefaultImage(suite()))
		}
		if bookwormSkipped() == "" {
			add(oneBoard(t), plan.DefaultImage("bookworm"))
		}
		add(oneBoard(t), plan.ImageID(plan.DefaultImage(suite()), true))
		bundled = &plan.Plan{Shard: sh, Run: os.Getenv("SOCBOX_RUN"), Skip: os.Getenv("SOCBOX_SKIP"), Units: plan.Sorted(units)}
		shardOwners = plan.Owners(bundled.Units, max(sh.N, 1))
	})
	return bundled, selection, shardOwners
}

// unitsHere are the units of the plan's own shard on slug with image.
func unitsHere(t *testing.T, slug, image string) []plan.Unit {
	p, _, _ := bundledPlan(t)
	var out []plan.Unit
	for _, u := range p.Mine() {
		if u.Board == slug && u.Image == image {
			out = append(out, u)
		}
	}
	return out
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
	run.Plan, _, _ = bundledPlan(t)
	p, err := run.WriteJSON(outputDir(t))
	require.NoError(t, err)
	_, err = run.WriteJUnit(outputDir(t))
	require.NoError(t, err)
	h, err := run.WriteHTML(outputDir(t))
	require.NoError(t, err)
	t.Logf("results: %s (report: %s)", p, h)
}

// TestBundledScenarios boots each selected board once and runs every
// bundled scenario on it as a subtest: board/scenario. The boards run at
// once, as many as the harness's board slots allow (harness.MaxBoards;
// SOCBOX_MAX_BOARDS raises it, with go test -parallel above the host's
// cores).
func TestBundledScenarios(t *testing.T) {
	bootsVM(t)
	eachBoard(t, func(t *testing.T, slug string) {
		runBundled(t, slug, filepath.Join(outputDir(t), slug), plan.DefaultImage(suite()), suiteOption()...)
	})
}

// eachBoard runs fn on every selected board, each in a parallel subtest
// named after it. harness.Start bounds how many boot at once: a board
// beyond its slots waits for one.
func eachBoard(t *testing.T, fn func(t *testing.T, slug string)) {
	for _, slug := range selectedBoards(t) {
		t.Run(slug, func(t *testing.T) {
			t.Parallel()
			fn(t, slug)
		})
	}
}

// TestBookworm runs the bundled scenarios on the previous Debian release
// (containerd 1.6), which many boards in the field still run. One board is
// enough: the suite is what differs, not the machine. SOCBOX_SUITES=trixie
// skips it.
func TestBookworm(t *testing.T) {
	bootsVM(t)
	if why := bookwormSkipped(); why != "" {
		t.Skip(why)
	}
	slug := oneBoard(t)
	runBundled(t, slug, filepath.Join(outputDir(t), slug+"-bookworm"), plan.DefaultImage("bookworm"), harness.WithSuite("bookworm"))
}

// TestCrun runs the bundled scenarios with crun as the OCI runtime
// (harness.WithCrun), the faster choice under emulation, so that it stays
// a drop-in for runc. One board, as for TestBookworm.
func TestCrun(t *testing.T) {
	bootsVM(t)
	slug := oneBoard(t)
	runBundled(t, slug, filepath.Join(outputDir(t), slug+"-crun"), plan.ImageID(plan.DefaultImage(suite()), true), append(suiteOption(), harness.WithCrun())...)
}

// runBundled boots one board and runs every bundled scenario that applies
// to it as a subtest; image is what the plan calls the image it boots. A
// board with no unit in the shard is not booted.
func runBundled(t *testing.T, slug, artifacts, image string, opts ...harness.Option) {
	if len(unitsHere(t, slug, image)) == 0 {
		p, _, _ := bundledPlan(t)
		t.Skipf("no bundled scenario of %s on %s in this run: shard %s of %d units (-shard / SOCBOX_SHARD), SOCBOX_RUN %q, SOCBOX_SKIP %q",
			image, slug, cmp.Or(p.Shard.String(), "1/1"), len(p.Units), p.Run, p.Skip)
	}
	skipUnlessQEMUHasMachine(t, slug)
	b := harness.Boot(t, slug, append([]harness.Option{harness.WithArtifactsDir(artifacts)}, opts...)...)
	rb := b.Report()
	rb.ImageID = image
	defer record(t, rb)
	t.Run("guest-clock", func(t *testing.T) {
		// Set from the host's after boot: apt needs it.
		out, err := b.SSH.Output(t.Context(), "date +%s")
		require.NoError(t, err)
		guest, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		require.NoError(t, err)
		require.InDelta(t, time.Now().Unix(), guest, 120, "guest clock is off by more than two minutes")
	})
	runUnits(t, b, rb, slug, image)
}

// runScenarios runs every bundled scenario that applies to b and that
// SOCBOX_RUN and SOCBOX_SKIP select as a subtest, adding each result to rb
// when it is given; where names the board in failure messages.
func runScenarios(t *testing.T, b *harness.Board, rb *report.Board, where string) {
	runUnits(t, b, rb, where, "")
}

// runUnits is runScenarios for a board and image of the plan (image is
// not ""): a scenario of another shard is a skipped subtest that says
// which shard runs it.
func runUnits(t *testing.T, b *harness.Board, rb *report.Board, where, image string) {
	p, sel, owners := bundledPlan(t)
	for _, s := range Bundled() {
		if !s.AppliesTo(b.Profile) || !sel.Match(s.Name, s.Tags) {
			continue
		}
		if owner := owners[plan.Unit{Board: b.Profile.Slug, Image: image, Scenario: s.Name}]; image != "" && !p.Shard.Whole() && owner != p.Shard.K {
			t.Run(s.Name, func(t *testing.T) {
				t.Skipf("in shard %d/%d, not this one (%s)", owner, p.Shard.N, p.Shard)
			})
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
