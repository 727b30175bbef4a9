package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/scenarios"
)

var runCommand = command{name: "run", args: "[SCENARIOS.yaml|DIR ...]",
	synopsis: `Boot the boards, run the scenarios in containers on each, print the results and write
results.json (everything), junit.xml (for CI) and report.html (timelines, logs) into --out.

--parallel N runs up to N boards at once (default: one per core, at most one per 3 GiB of RAM;
SOCBOX_MAX_BOARDS overrides that). Each event is a line with the board's name; on a terminal the
bottom lines show what each running board waits for. The reports are rewritten as each board ends.

Scenarios come from the YAML files and directories given (every *.yaml/*.yml in a directory),
else the bundled ones; a scenario's boards: list limits where it runs. The files are checked
before anything boots.

--run and --skip pick scenarios as go test's -run and -skip pick tests: a regular expression, not
anchored, matched against each scenario's name and against tag:NAME for each of its tags (tags:
in the YAML). --shard K/N runs the K-th of N even, fixed parts of the board × image × scenario
units, so that N runners given the same arguments run each unit once between them; a board with
no unit in the shard is not booted. results.json records every unit planned and the shard;
socbox report merge puts the shards' results together and names the units none of them ran.

With --image, every board boots your own board image instead of the default Debian one: it is
verified, unpacked and prepared for each board (see socbox image prepare) before anything boots.
An image suits the boards whose CPU runs its userland (socbox image inspect lists them); with
--board all the others are left out.

With --target ssh://USER@HOST[:PORT], the same scenarios run on a real board (the flashed one)
instead: socbox logs in with your key only (--identity, else ssh-agent, else ~/.ssh/id_ed25519,
id_ecdsa or id_rsa), checks the board's host key against ~/.ssh/known_hosts (an unknown board is refused with
its fingerprint and the fix; --accept-new-host-key pins it; a changed key is always refused),
installs containerd and runc if missing (--containerd), imports the busybox image and runs the
scenarios. USER must be root: containerd's socket is root's. --board names the profile the results
are compared against (default: detected from the board's model and architecture); the reports say
which board, user, OS and kernel ran them.

-v prints each line a container writes while it runs, after the board's and the scenario's names.
A scenario that fails (or cannot run) leaves the guest's journal, kernel log and containerd's log
over its run in --out, under BOARD/SCENARIO/; junit.xml attaches them and report.html links them.

--keep-failed keeps each board a scenario failed on, or that did not get ready, running as it was
when the run ends: socbox prints the board's socbox ssh and ssh commands and stays until Ctrl-C,
which stops the boards (QEMU ends with socbox). socbox ssh --board BOARD logs in meanwhile.

Exit status: 0 all passed, 1 something failed, 2 bad arguments (scenarios, boards, image).`,
	examples: `  socbox run
  socbox run --board all --out ./results
  socbox run --board raspi4b-fast,raspi3b-fast --parallel 2
  socbox run --run '^(arch|env)$'                   # two bundled scenarios
  socbox run --run tag:network --skip bridge        # the network scenarios but bridge-network
  socbox run --skip '^tag:kernel$' checks.yaml
  socbox run --board all --shard 2/3 --out ./shard-2    # the second of three runners
  socbox report merge -o ./merged ./shard-1 ./shard-2 ./shard-3
  socbox run --board raspi4b-fast,raspi3b --suite bookworm checks.yaml more-checks/
  socbox run --run '^mounts$' -v --keep-failed    # watch one scenario; keep its board if it fails
  socbox run --containerd apt --no-snapshot
  socbox run --board raspi3b --image ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox run --board raspi4b-fast --image https://example.org/raspios-arm64-lite.img.xz --sha256 "$SHA256" checks.yaml
  socbox run --target ssh://root@raspberrypi.local
  socbox run --target ssh://root@192.168.1.50:2222 --board raspi3b -i ~/.ssh/pi_ed25519 checks.yaml
  socbox run --target ssh://root@raspberrypi.local --accept-new-host-key --containerd apt
`}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(runCommand, stderr)
	var bf bootFlags
	addBootFlags(fs, &bf, "`BOARDS` to run on: a slug, a comma-separated list, or all (see socbox boards)")
	parallel := fs.Int("parallel", harness.MaxBoards(), "run up to `N` boards at once (default: what this host's cores and memory allow, as SOCBOX_MAX_BOARDS "+
		"overrides; 1 runs them one after the other)")
	fs.BoolVar(&bf.keepFailed, "keep-failed", false, "keep each board a scenario failed on (or that did not get ready) running when the run ends, "+
		"for socbox ssh, until Ctrl-C")
	fs.BoolVar(&bf.verbose, "v", false, "print the lines a container writes as it writes them (its first 200), after the board's and the scenario's names")
	var sf selectFlags
	addSelectFlags(fs, &sf)
	out := fs.String("out", "", "`directory` for results.json, junit.xml, report.html and console logs (default: a new directory under ./socbox-results)")
	var tf targetFlags
	addTargetFlags(fs, &tf)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if tf.target != "" {
		return runTarget(ctx, fs, bf, tf, sf, *out, stdout, stderr)
	}
	if err := tf.checkWithoutTarget(fs); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	slugs, err := parseBoardList(bf.board)
	if err != nil {
		return usageError(fs, stderr, "--board: %v", err)
	}
	if slugs, err = boardsThisQEMURuns(ctx, slugs, strings.TrimSpace(bf.board) == "all", lineLogger(stderr)); err != nil {
		return usageError(fs, stderr, "--board: %v", err)
	}
	if err := bf.check(fs); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *parallel < 1 {
		return usageError(fs, stderr, "--parallel %d: give at least 1 (1 runs the boards one after the other)", *parallel)
	}
	sh, sel, err := sf.parse()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	list, err := loadScenarios(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "socbox run: bad scenarios, nothing was booted:\n%v\n", err)
		return exitCode(2)
	}
	if list, err = selectScenarios(list, sel); err != nil {
		fmt.Fprintf(stderr, "socbox run: %v\nnothing was booted\n", err)
		return exitCode(2)
	}
	boardPlans, err := planRun(slugs, list)
	if err != nil {
		fmt.Fprintf(stderr, "socbox run: %v\n", err)
		return exitCode(2)
	}
	imageFailed := func(err error) error {
		fmt.Fprintf(stderr, "socbox run: %v\nnothing was booted\n", err)
		if badImage(err) {
			return exitCode(2)
		}
		return exitCode(1)
	}
	var acq *images.Acquired
	if bf.image != "" && strings.TrimSpace(bf.board) == "all" {
		// Before the plan: the boards that cannot run the image are not
		// part of it, on any shard.
		if acq, boardPlans, err = fitUserImage(ctx, bf, boardPlans, lineLogger(stderr)); err != nil {
			return imageFailed(err)
		}
	}
	imageID := bf.imageID()
	runPlan, boardPlans := shardPlan(boardPlans, imageID, sh, sf.run, sf.skip)
	if bf.image != "" && len(boardPlans) > 0 {
		if acq == nil {
			if acq, err = bf.acquire(ctx, lineLogger(stderr)); err != nil {
				return imageFailed(err)
			}
		}
		if err = prepareUserImage(ctx, bf, acq, boardPlans, lineLogger(stderr)); err != nil {
			return imageFailed(err)
		}
	}
	if *out == "" {
		// A directory of its own, even for a run started in the same
		// second as another.
		if *out, err = report.NewRunDir("socbox-results", time.Now()); err != nil {
			fmt.Fprintf(stderr, "socbox run: %v\n", err)
			return exitCode(1)
		}
	}
	// Absolute, so the paths in results.json still work from elsewhere.
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}

	if err := harness.LimitBoards(*parallel); err != nil {
		return err
	}

	prog := newProgress(stdout, isTerminal(stdout))
	defer prog.Close()
	run := &report.Run{StartedAt: time.Now().UTC(), Host: report.ThisHost(), Plan: runPlan}
	// Before any board, so that a runner that dies still leaves its plan
	// for a merge to tell what is missing.
	werr := writeReports(run, dir)
	if !sh.Whole() {
		prog.Logf("shard %s: %d of the %d units planned, on %d board(s)", sh, len(runPlan.Mine()), len(runPlan.Units), len(boardPlans))
	}
	if n := min(*parallel, len(boardPlans)); n > 1 {
		prog.Logf("%d boards, %d at once", len(boardPlans), n)
	}
	res := &runResults{run: run, dir: dir, imageID: imageID, boards: make([]*report.Board, len(boardPlans)), err: werr}
	var kept *keptBoards
	if bf.keepFailed {
		kept = &keptBoards{}
	}
	notRun := runBoards(ctx, prog, boardPlans, *parallel,
		func(ctx context.Context, bprog *boardProgress, bp boardPlan) *report.Board {
			return runBoard(ctx, bprog, bf, bp, dir, kept)
		}, res.add)
	if notRun > 0 {
		prog.Logf("interrupted: %d board(s) not run", notRun)
	}
	ferr := finishRun(ctx, stdout, prog, run, dir, res.err)
	if serr := kept.serve(ctx, stdout, stderr); serr != nil {
		return errors.Join(ferr, serr)
	}
	return ferr
}

// runResults gathers the boards' results into run as they finish, in the
// plan's order whatever order they finish in, and writes the reports
// again after every board, so that the boards done survive a later crash.
type runResults struct {
	run     *report.Run
	dir     string
	imageID string
	boards  []*report.Board // by the board's place in the plan; nil: not done
	err     error           // of the last write
}

// add records the i-th board's results; runBoards calls it one board at a
// time.
func (r *runResults) add(i int, rb *report.Board) {
	rb.ImageID = r.imageID
	r.boards[i] = rb
	r.run.Boards = r.run.Boards[:0]
	for _, b := range r.boards {
		if b != nil {
			r.run.Boards = append(r.run.Boards, b)
		}
	}
	r.run.FinishedAt = time.Now().UTC()
	r.err = writeReports(r.run, r.dir)
}

// runBoards runs each board of plans through runOne, up to parallel at
// once, starting them in the plans' order; done gets each board's results
// as it finishes, one board at a time. Once ctx ends no board is started:
// it returns how many were not.
func runBoards(ctx context.Context, prog *progress, plans []boardPlan, parallel int,
	runOne func(ctx context.Context, bprog *boardProgress, bp boardPlan) *report.Board,
	done func(i int, rb *report.Board)) (notRun int) {
	next := make(chan int)
	var doneMu sync.Mutex
	var wg sync.WaitGroup
	for range min(max(parallel, 1), len(plans)) {
		wg.Go(func() {
			for i := range next {
				bprog := prog.Board(i+1, len(plans), plans[i].slug)
				rb := runOne(ctx, bprog, plans[i])
				bprog.Done()
				doneMu.Lock()
				done(i, rb)
				doneMu.Unlock()
			}
		})
	}
	defer wg.Wait()
	defer close(next)
	for i := range plans {
		if ctx.Err() != nil {
			return len(plans) - i
		}
		select {
		case next <- i:
		case <-ctx.Done():
			return len(plans) - i
		}
	}
	return 0
}

// finishRun prints the summary and where the reports are, and says how the
// run went: exit status 1 unless everything passed.
func finishRun(ctx context.Context, stdout io.Writer, prog *progress, run *report.Run, dir string, werr error) error {
	prog.Close()
	printRun(stdout, run)
	if werr != nil {
		return fmt.Errorf("write results: %w", werr)
	}
	fmt.Fprintf(stdout, "results: %s\nreport:  %s\njunit:   %s\n",
		filepath.Join(dir, "results.json"), filepath.Join(dir, "report.html"), filepath.Join(dir, "junit.xml"))
	if !run.Passed() || ctx.Err() != nil {
		return exitCode(1)
	}
	return nil
}

// boardsThisQEMURuns drops, from --board all, the boards whose machine this
// host's QEMU lacks (raspi4b before QEMU 9.0), saying so; a board named on
// purpose that it lacks is an error naming the QEMU it needs and the board
// to use instead. A QEMU that is not installed is left for the boot to
// report.
func boardsThisQEMURuns(ctx context.Context, slugs []string, all bool, logf func(string, ...any)) ([]string, error) {
	var out []string
	var errs []error
	for _, slug := range slugs {
		prof, err := boards.Lookup(slug)
		if err != nil {
			return nil, err
		}
		v, err := qemu.ExeVersion(ctx, prof.QEMUBinary)
		if err == nil {
			err = qemu.CheckVersion(prof, v)
		}
		switch {
		case !errors.Is(err, qemu.ErrQEMUTooOld):
			out = append(out, slug)
		case all:
			logf("leaving out %s: %v", slug, err)
		default:
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// parseBoardList reads --board: one slug, a comma-separated list, or all.
func parseBoardList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return boards.Slugs(), nil
	}
	var out []string
	seen := map[string]bool{}
	var errs []error
	for _, slug := range strings.Split(s, ",") {
		slug = strings.TrimSpace(slug)
		if slug == "" || seen[slug] {
			continue
		}
		seen[slug] = true
		if _, err := boards.Lookup(slug); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, slug)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no board given")
	}
	return out, nil
}

// loadScenarios reads the files and directories given, else the bundled
// scenarios.
func loadScenarios(paths []string) ([]scenario.Scenario, error) {
	if len(paths) == 0 {
		return scenarios.Bundled(), nil
	}
	return scenario.Load(paths...)
}

// boardPlan is one board and the scenarios that apply to it.
type boardPlan struct {
	slug      string
	scenarios []scenario.Scenario
	image     *images.Image // the user's image prepared for this board; nil: the default image
}

// planRun pairs each board with the scenarios that apply to it. A board
// with none is left out; no board with any is an error.
func planRun(slugs []string, list []scenario.Scenario) ([]boardPlan, error) {
	var plan []boardPlan
	for _, slug := range slugs {
		prof, err := boards.Lookup(slug)
		if err != nil {
			return nil, err
		}
		bp := boardPlan{slug: slug}
		for _, s := range list {
			if s.AppliesTo(prof) {
				bp.scenarios = append(bp.scenarios, s)
			}
		}
		if len(bp.scenarios) > 0 {
			plan = append(plan, bp)
		}
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("no scenario applies to %s (see each scenario's boards:)", strings.Join(slugs, ", "))
	}
	return plan, nil
}

// fitUserImage acquires --image for --board all and leaves out the boards
// whose CPU cannot run the image's userland. (A board named on purpose
// gets Prepare's error instead, which names the boards that fit.)
func fitUserImage(ctx context.Context, bf bootFlags, plan []boardPlan, logf func(string, ...any)) (*images.Acquired, []boardPlan, error) {
	acq, err := bf.acquire(ctx, logf)
	if err != nil {
		return nil, nil, err
	}
	info, err := images.Inspect(ctx, acq.Disk)
	if err != nil {
		return nil, nil, err
	}
	var fit []boardPlan
	var slugs []string
	for _, bp := range plan {
		slugs = append(slugs, bp.slug)
		prof, _ := boards.Lookup(bp.slug)
		if arch := prof.Platform.DebianArch(); arch != info.Arch {
			logf("image: leaving out %s: it runs %s, the image is %s", bp.slug, arch, info.Arch)
			continue
		}
		fit = append(fit, bp)
	}
	if len(fit) == 0 {
		return nil, nil, &images.ImageFormatError{File: bf.image, What: fmt.Sprintf("the image is %s and none of the boards to run (%s) runs %s", info.Arch, strings.Join(slugs, ", "), info.Arch),
			Fix: "see socbox image inspect for the boards that fit"}
	}
	return acq, fit, nil
}

// prepareUserImage prepares the acquired --image for each board of the
// plan (only the boards this shard boots).
func prepareUserImage(ctx context.Context, bf bootFlags, acq *images.Acquired, plan []boardPlan, logf func(string, ...any)) error {
	for i := range plan {
		prof, err := boards.Lookup(plan[i].slug)
		if err != nil {
			return err
		}
		if plan[i].image, err = bf.prepare(ctx, acq, prof, logf); err != nil {
			return err
		}
	}
	return nil
}

// runBoard boots one board, runs its scenarios and stops it. A board that
// does not get ready has each of its scenarios reported as not run.
func runBoard(ctx context.Context, prog *boardProgress, bf bootFlags, bp boardPlan, dir string, kept *keptBoards) *report.Board {
	if bp.image != nil {
		prog.Status("booting %s (containerd %s)", bp.image.Name, bf.containerd)
	} else {
		prog.Status("booting (Debian %s, containerd %s)", bf.suite, bf.containerd)
	}
	opts := append(bf.options(bp.slug, bp.image, prog.Logf), harness.WithArtifactsDir(filepath.Join(dir, bp.slug)))
	b, err := harness.Start(ctx, opts...)
	if b != nil {
		markUsed(b.Image)
	}
	replace := func(ctx context.Context) (*harness.Board, error) {
		prog.Status("booting a new %s", bp.slug)
		nb, err := harness.Start(ctx, opts...)
		if nb != nil {
			markUsed(nb.Image)
		}
		return nb, err
	}
	return runAndClose(ctx, prog, "board "+bp.slug, bp.slug, b, err, bp.scenarios, replace, kept)
}

// runAndClose runs scenarios on the board Start or Attach returned (b may
// be nil; err is their error) and closes it. If the board did not get
// ready, each scenario that applies to it is reported as not run. After a
// scenario that timed out or errored, a board that no longer answers (or
// that the harness found lost: QEMU gone, a kernel panic) is closed and
// replaced by a new one from replace (nil for a board socbox cannot boot
// again: its remaining scenarios are then reported as not run). A board
// closed with a failed scenario is kept running when kept asks for it.
func runAndClose(ctx context.Context, prog *boardProgress, what, name string, b *harness.Board, err error, scenarios []scenario.Scenario,
	replace func(context.Context) (*harness.Board, error), kept *keptBoards) *report.Board {
	defer func() {
		if cerr := b.Close(); cerr != nil {
			prog.Logf("%v", cerr)
		}
		kept.add(b)
	}()
	rb := &report.Board{Board: name}
	if b != nil {
		rb = b.Report()
	}
	if err != nil {
		if rb.Error == "" {
			rb.Error = err.Error()
		}
		prog.Logf("did not get ready: %s", firstLine(err.Error()))
		for _, s := range scenarios {
			if b == nil || b.Profile.Slug == "" || s.AppliesTo(b.Profile) {
				rb.Scenarios = append(rb.Scenarios, &report.Scenario{
					Name: s.Name, Description: s.Description, Source: s.Where(), Command: s.Container.Cmd,
					Error: fmt.Sprintf("not run: %s did not get ready", what),
				})
			}
		}
		return rb
	}
	var gone error // why the board is lost, once it is
	for i, s := range scenarios {
		if gone != nil {
			rb.Scenarios = append(rb.Scenarios, &report.Scenario{
				Name: s.Name, Description: s.Description, Source: s.Where(), Command: s.Container.Cmd,
				Error: fmt.Sprintf("not run: %s was lost: %v", what, gone),
			})
			continue
		}
		prog.Status("scenario %d of %d: %s", i+1, len(scenarios), s.Name)
		res := b.RunScenario(ctx, s)
		prog.Logf("%s %s in %.2fs", strings.ToUpper(res.Status()), s.Name, res.Seconds)
		rb.Scenarios = append(rb.Scenarios, res)
		if (!res.TimedOut && res.Error == "") || i == len(scenarios)-1 || ctx.Err() != nil {
			continue
		}
		if aerr := b.Answers(ctx); aerr != nil {
			gone = aerr
			prog.Logf("after %s: %v", s.Name, aerr)
			if replace == nil {
				continue
			}
			if cerr := b.Close(); cerr != nil {
				prog.Logf("%v", cerr)
			}
			kept.add(b)
			b, err = replace(ctx)
			if err != nil {
				gone = fmt.Errorf("%w; a new board did not get ready: %w", aerr, err)
				prog.Logf("a new board did not get ready: %s", firstLine(err.Error()))
				continue
			}
			gone = nil
		}
	}
	return rb
}

func writeReports(run *report.Run, dir string) error {
	_, err1 := run.WriteJSON(dir)
	_, err2 := run.WriteJUnit(dir)
	_, err3 := run.WriteHTML(dir)
	return errors.Join(err1, err2, err3)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func printRun(w io.Writer, run *report.Run) {
	for _, b := range run.Boards {
		var about, st []string
		for _, a := range []string{b.Tier, b.Platform, b.Accelerator, b.Image} {
			if a != "" {
				about = append(about, a)
			}
		}
		for _, s := range b.Stages {
			st = append(st, fmt.Sprintf("%s %.1fs", s.Name, s.Seconds))
		}
		fmt.Fprintf(w, "\n%s (%s): %s\n", b.Board, strings.Join(about, ", "), strings.Join(st, ", "))
		if t := b.Target; t != nil && t.Kernel != "" { // what a board said after login
			against := "no board profile picked"
			if t.ProfileFrom != "" {
				against = "compared against " + b.Board + ", " + t.ProfileFrom
			}
			fmt.Fprintf(w, "  on %s (%s): %s, kernel %s %s; %s\n", t.Address, t.Hostname, t.OS, t.Kernel, t.Machine, against)
		}
		if b.Error != "" {
			fmt.Fprintf(w, "  FAILED at %s: %s\n", b.FailedStage, strings.ReplaceAll(b.Error, "\n", "\n    "))
		}
		for _, s := range b.Scenarios {
			switch s.Status() {
			case "error":
				fmt.Fprintf(w, "  ERROR %-28s %s\n", s.Name, firstLine(s.Error))
				continue
			case "n/a":
				fmt.Fprintf(w, "  N/A   %-28s %s\n", s.Name, s.NotApplicable)
				continue
			case "pass":
				fmt.Fprintf(w, "  PASS  %-28s exit=%d  %.2fs\n", s.Name, s.ExitCode, s.Seconds)
			default:
				fmt.Fprintf(w, "  FAIL  %-28s exit=%d  %.2fs\n", s.Name, s.ExitCode, s.Seconds)
			}
			for _, f := range s.Failures {
				fmt.Fprintf(w, "        %s\n", f)
			}
		}
	}
	c := run.Counts()
	fmt.Fprintf(w, "\n%d passed, %d failed, %d errors", c.Passed, c.Failed, c.Errors)
	if c.NotApplicable > 0 {
		fmt.Fprintf(w, ", %d not applicable", c.NotApplicable)
	}
	fmt.Fprintln(w)
}
