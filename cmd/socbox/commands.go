package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/scenarios"
)

func cmdBoards(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("boards", "List the boards socbox emulates: tier, platform, CPU, RAM, and what differs from the real board.",
		"  socbox boards\n", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BOARD\tTIER\tPLATFORM\tMACHINE\tCPU\tRAM\tNAME")
	for _, b := range boards.All() {
		cpu := b.CPU
		if cpu == "" {
			cpu = "(machine's own)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d MiB\t%s\n", b.Slug, b.Tier, b.Platform, b.Machine, cpu, b.MemoryMiB, b.Name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range boards.All() {
		fmt.Fprintf(stdout, "\n%s differs from a real %s:\n", b.Slug, b.Name)
		for _, d := range b.Divergences {
			fmt.Fprintf(stdout, "  - %s\n", d)
		}
	}
	return nil
}

func cmdImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, "Usage: socbox image build|ls [flags]\n")
		return exitCode(2)
	}
	switch args[0] {
	case "build":
		fs := newFlags("image build", "Build the default Debian image for a board, or find it in the cache (a second build is a cache hit).",
			"  socbox image build --board raspi4b\n  socbox image build --board raspi4b --suite bookworm --rebuild\n", stderr)
		board := fs.String("board", "raspi4b", "board slug (see `socbox boards`)")
		suite := fs.String("suite", images.DefaultSuite, "Debian release: trixie or bookworm")
		rebuild := fs.Bool("rebuild", false, "ignore the cached image and build again")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		prof, err := boards.Lookup(*board)
		if err != nil {
			return err
		}
		cache, err := images.CacheDir()
		if err != nil {
			return err
		}
		signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, "ssh", "id_ed25519"))
		if err != nil {
			return err
		}
		logf := lineLogger(stderr)
		start := time.Now()
		im, err := images.BuildDefault(ctx, images.DefaultSpec{
			Board: prof, Suite: *suite, AuthorizedKey: sshx.AuthorizedKey(signer), Rebuild: *rebuild,
			Archive: &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: logf}, Logf: logf,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\t%s\t(%.1fs)\n", im.Name, im.Dir, time.Since(start).Seconds())
		return nil
	case "ls":
		list, err := images.ListImages()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IMAGE\tPLATFORM\tSUITE\tKERNEL\tBUILT\tDIR")
		for _, im := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", im.Name, im.Platform, im.Suite, im.KernelVersion, im.BuiltAt.Format(time.RFC3339), im.Dir)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown image command %q: use build or ls", args[0])
}

func lineLogger(w io.Writer) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

type bootFlags struct {
	board, suite, containerd string
}

func addBootFlags(fs interface {
	StringVar(*string, string, string, string)
}, f *bootFlags) {
	fs.StringVar(&f.board, "board", "raspi4b", "board slug (see `socbox boards`)")
	fs.StringVar(&f.suite, "suite", images.DefaultSuite, "Debian release of the default image: trixie or bookworm")
	fs.StringVar(&f.containerd, "containerd", "auto", "how containerd gets into the guest: bundle (pushed from the host; auto) or apt (guest downloads)")
}

func (f bootFlags) options(stderr io.Writer) []harness.Option {
	return []harness.Option{
		harness.WithBoard(f.board), harness.WithSuite(f.suite),
		harness.WithContainerd(harness.ContainerdStrategy(f.containerd)),
		harness.WithLogf(lineLogger(stderr)),
	}
}

func cmdBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("boot", "Boot a board to containerd-ready and keep it up until Ctrl-C; prints the ssh command.",
		"  socbox boot\n  socbox boot --board raspi4b --suite bookworm\n", stderr)
	var bf bootFlags
	addBootFlags(fs, &bf)
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := harness.Start(ctx, bf.options(stderr)...)
	defer b.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is ready. Log in with:\n  %s\nQEMU: %s\nCtrl-C stops the board and removes its run directory.\n",
		b.Profile.Slug, b.SSHCommand(), b.RunDir)
	select {
	case <-ctx.Done():
	case <-b.Machine.Done():
		return fmt.Errorf("qemu exited: %w", b.Machine.Alive())
	}
	fmt.Fprintln(stderr, "stopping", b.Profile.Slug)
	return nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "Boot a board, run the bundled scenarios in containers on it, print the results and write results.json.",
		"  socbox run\n  socbox run --board raspi4b --suite bookworm --out ./results\n", stderr)
	var bf bootFlags
	addBootFlags(fs, &bf)
	out := fs.String("out", "", "directory for results.json (default: a new directory under ./socbox-results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join("socbox-results", time.Now().Format("20060102-150405"))
	}
	run := &report.Run{StartedAt: time.Now().UTC(), Host: report.ThisHost()}
	opts := append(bf.options(stderr), harness.WithArtifactsDir(filepath.Join(*out, bf.board)))
	b, err := harness.Start(ctx, opts...)
	defer b.Close()
	var rb *report.Board
	if b != nil {
		rb = b.Report()
	} else {
		rb = &report.Board{Board: bf.board}
	}
	run.Boards = append(run.Boards, rb)
	if err == nil {
		list := scenarios.Bundled()
		for i, s := range list {
			fmt.Fprintf(stderr, "%s scenario %d of %d: %s\n", time.Now().Format("15:04:05"), i+1, len(list), s.Name)
			rb.Scenarios = append(rb.Scenarios, b.RunScenario(ctx, s))
		}
	} else {
		rb.Error = err.Error()
	}
	run.FinishedAt = time.Now().UTC()
	path, werr := run.WriteJSON(*out)
	printRun(stdout, run)
	if werr != nil {
		return fmt.Errorf("write results: %w", werr)
	}
	fmt.Fprintf(stdout, "results: %s\n", path)
	if !run.Passed() {
		return exitCode(1)
	}
	return nil
}

func printRun(w io.Writer, run *report.Run) {
	for _, b := range run.Boards {
		var st []string
		for _, s := range b.Stages {
			st = append(st, fmt.Sprintf("%s %.1fs", s.Name, s.Seconds))
		}
		fmt.Fprintf(w, "\n%s (%s, %s, %s): %s\n", b.Board, b.Tier, b.Platform, b.Image, strings.Join(st, ", "))
		if b.Error != "" {
			fmt.Fprintf(w, "  FAILED at %s: %s\n", b.FailedStage, b.Error)
		}
		for _, s := range b.Scenarios {
			mark := "PASS"
			if !s.Passed {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s  %-28s exit=%d  %.2fs\n", mark, s.Name, s.ExitCode, s.Seconds)
			for _, f := range s.Failures {
				fmt.Fprintf(w, "        %s\n", f)
			}
		}
	}
	passed, failed := 0, 0
	for _, b := range run.Boards {
		for _, s := range b.Scenarios {
			if s.Passed {
				passed++
			} else {
				failed++
			}
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed\n", passed, failed)
}
