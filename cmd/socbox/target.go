package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/report"
)

// targetFlags are run's flags for a real board reached over SSH.
type targetFlags struct {
	target, identity, knownHosts string
	acceptNewHostKey             bool
}

func addTargetFlags(fs *flag.FlagSet, f *targetFlags) {
	fs.StringVar(&f.target, "target", "", "run on a real board over SSH instead of booting one: `ssh://USER@HOST[:PORT]`; --board then names the profile "+
		"the results are compared against (default: detected from the board). USER must be root to install and reach containerd")
	identityHelp := "with --target: the private `KEY` to log in with (default: the ssh-agent's keys, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa)"
	fs.StringVar(&f.identity, "identity", "", identityHelp)
	fs.StringVar(&f.identity, "i", "", "short for --identity `KEY`")
	fs.StringVar(&f.knownHosts, "known-hosts", "", "with --target: the known_hosts `FILE` the board's host key must be in (default ~/.ssh/known_hosts)")
	fs.BoolVar(&f.acceptNewHostKey, "accept-new-host-key", false, "with --target: trust a board the known_hosts file does not list yet and pin its key there "+
		"(trust on first use); a changed key is refused all the same")
}

// setFlags are the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// checkWithoutTarget refuses the target's own flags on a run that boots.
func (f targetFlags) checkWithoutTarget(fs *flag.FlagSet) error {
	set := setFlags(fs)
	for _, name := range []string{"identity", "i", "known-hosts", "accept-new-host-key"} {
		if set[name] {
			return fmt.Errorf("--%s goes with --target", name)
		}
	}
	return nil
}

// options are the harness options for the target.
func (f targetFlags) options(board, containerd string, logf func(string, ...any)) []harness.Option {
	opts := []harness.Option{harness.WithContainerd(harness.ContainerdStrategy(containerd)), harness.WithLogf(logf)}
	if board != "" {
		opts = append(opts, harness.WithBoard(board))
	}
	if f.identity != "" {
		opts = append(opts, harness.WithIdentity(f.identity))
	}
	if f.knownHosts != "" {
		opts = append(opts, harness.WithKnownHosts(f.knownHosts))
	}
	if f.acceptNewHostKey {
		opts = append(opts, harness.WithAcceptNewHostKey())
	}
	return opts
}

// runTarget is `socbox run --target`: attach to the real board, run the
// scenarios that apply to its profile, and write the same reports as for
// emulated boards.
func runTarget(ctx context.Context, fs *flag.FlagSet, bf bootFlags, tf targetFlags, sf selectFlags, out string, stdout, stderr io.Writer) error {
	set := setFlags(fs)
	if set["shard"] {
		return usageError(fs, stderr, "--shard does not apply to --target: there is one real board, and one runner reaches it")
	}
	_, sel, err := sf.parse()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	for _, name := range []string{"image", "sha256", "password-hash", "suite", "no-snapshot"} {
		if set[name] {
			return usageError(fs, stderr, "--%s does not apply to --target: a real board runs the OS it has, and is never snapshotted", name)
		}
	}
	if _, err := harness.ParseTarget(tf.target); err != nil {
		return usageError(fs, stderr, "--target: %v", err)
	}
	board := ""
	if set["board"] {
		board = strings.TrimSpace(bf.board)
		if board == "all" || strings.Contains(board, ",") {
			return usageError(fs, stderr, "--board %q: with --target it names the one profile the board is compared against", bf.board)
		}
		if _, err := boards.Lookup(board); err != nil {
			return usageError(fs, stderr, "--board: %v", err)
		}
	}
	switch harness.ContainerdStrategy(bf.containerd) {
	case harness.ContainerdAuto, harness.ContainerdBundle, harness.ContainerdApt:
	default:
		return usageError(fs, stderr, "--containerd %q: use auto, bundle or apt", bf.containerd)
	}
	list, err := loadScenarios(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "socbox run: bad scenarios, nothing was run:\n%v\n", err)
		return exitCode(2)
	}
	if list, err = selectScenarios(list, sel); err != nil {
		fmt.Fprintf(stderr, "socbox run: %v\nnothing was run\n", err)
		return exitCode(2)
	}
	if out == "" {
		// A directory of its own, even for a run started in the same
		// second as another.
		if out, err = report.NewRunDir("socbox-results", time.Now()); err != nil {
			fmt.Fprintf(stderr, "socbox run: %v\n", err)
			return exitCode(1)
		}
	}
	dir, err := filepath.Abs(out)
	if err != nil {
		return err
	}

	prog := newProgress(stdout, isTerminal(stdout))
	defer prog.Close()
	run := &report.Run{StartedAt: time.Now().UTC(), Host: report.ThisHost()}
	ep, _ := harness.ParseTarget(tf.target)
	bprog := prog.Board(1, 1, ep.String())
	bprog.Status("attaching (containerd %s)", bf.containerd)
	// A failed scenario's guest logs go there.
	opts := append(tf.options(board, bf.containerd, bprog.Logf), harness.WithArtifactsDir(filepath.Join(dir, "target")))
	if bf.verbose {
		opts = append(opts, harness.WithOutputLines())
	}
	var kept *keptBoards
	if bf.keepFailed {
		opts, kept = append(opts, harness.WithKeepOnFailure()), &keptBoards{}
	}
	b, err := harness.Attach(ctx, tf.target, opts...)
	scenarios := list
	if err == nil {
		scenarios = nil
		for _, s := range list {
			if s.AppliesTo(b.Profile) {
				scenarios = append(scenarios, s)
			}
		}
		if len(scenarios) == 0 {
			prog.Close()
			_ = b.Close()
			fmt.Fprintf(stderr, "socbox run: no scenario applies to %s (compared against board profile %s): see each scenario's boards:, or pick another --board\n", tf.target, b.Profile.Slug)
			return exitCode(2)
		}
	}
	rb := runAndClose(ctx, bprog, "target "+tf.target, tf.target, b, err, scenarios, nil, kept)
	run.Boards = append(run.Boards, rb)
	run.FinishedAt = time.Now().UTC()
	werr := writeReports(run, dir)
	ferr := finishRun(ctx, stdout, prog, run, dir, werr)
	if serr := kept.serve(ctx, stdout, stderr); serr != nil {
		return errors.Join(ferr, serr)
	}
	return ferr
}
