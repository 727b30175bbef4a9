package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

func cmdBoards(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "boards",
		synopsis: "List the boards socbox emulates: tier, platform, QEMU machine, CPU, RAM, and what differs from the real board.\n" +
			"Faithful boards run on the board's own QEMU machine; fast boards on `virt` with the board's CPU family and virtio devices.",
		examples: "  socbox boards\n"}, stderr)
	if err := parseFlags(fs, args); err != nil {
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

const imageUsage = `Usage: socbox image <build|ls|rm|prepare|inspect> [flags]

Manage the board images socbox boots (read-only bases in the cache; every run
boots a copy-on-write overlay).

Commands:
  build    build the default Debian image for a board, or find it in the cache
  ls       list cached images
  rm       delete cached images: by name, or --all
  prepare  make the bootable copy of your own board image (Raspberry Pi OS, BeagleBone Debian)
  inspect  show the partitions, boot files, family, release and architecture of a board image

Examples:
  socbox image build --board raspi4b-fast
  socbox image ls
  socbox image rm --all
  socbox image inspect ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox image prepare --board raspi3b ./2025-05-13-raspios-bookworm-arm64-lite.img.xz

Run 'socbox image <command> --help' for its flags.
`

func cmdImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return exitCode(2)
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stderr, imageUsage)
		return nil
	case "build":
		return cmdImageBuild(ctx, args[1:], stdout, stderr)
	case "ls":
		return cmdImageLs(args[1:], stdout, stderr)
	case "rm":
		return cmdImageRm(args[1:], stdout, stderr)
	case "prepare":
		return cmdImagePrepare(ctx, args[1:], stdout, stderr)
	case "inspect":
		return cmdImageInspect(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown image command %q\n\n%s", args[0], imageUsage)
	return exitCode(2)
}

func cmdImageBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "image build",
		synopsis: "Build the default Debian image for a board, or find it in the cache (a second build is a cache hit).\n" +
			"Building runs mmdebstrap through qemu-user and needs root; `socbox doctor` checks the host first.",
		examples: "  socbox image build --board raspi4b-fast\n  sudo socbox image build --board raspi3b --suite bookworm --rebuild\n"}, stderr)
	board := fs.String("board", "raspi4b-fast", "the `BOARD` to build for (see socbox boards)")
	suite := fs.String("suite", images.DefaultSuite, "Debian `release`: trixie or bookworm")
	rebuild := fs.Bool("rebuild", false, "ignore the cached image and build again")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", fs.Args())
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
}

func cmdImageLs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "image ls", synopsis: "List the images in the cache: name, platform, Debian suite, kernel, when built, where.",
		examples: "  socbox image ls\n  SOCBOX_CACHE=/srv/socbox socbox image ls\n"}, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
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

func lineLogger(w io.Writer) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// bootFlags are the flags boot and run share.
type bootFlags struct {
	board, suite, containerd string
	noSnapshot, crun         bool
	// verbose passes containers' output lines on as they come (run -v).
	verbose bool
	// keepFailed keeps the boards that failed running (run --keep-failed).
	keepFailed bool
	imageFlags
}

func addBootFlags(fs *flag.FlagSet, f *bootFlags, boardHelp string) {
	fs.StringVar(&f.board, "board", "raspi4b-fast", boardHelp)
	fs.StringVar(&f.suite, "suite", images.DefaultSuite, "Debian `release` of the default image: trixie or bookworm (a user's --image keeps its own)")
	fs.StringVar(&f.containerd, "containerd", "auto", "`strategy` for getting containerd into the guest: bundle (pushed from the host; what auto picks) or apt (the guest downloads it)")
	fs.BoolVar(&f.noSnapshot, "no-snapshot", false, "boot cold: neither restore nor save a provisioned snapshot")
	fs.BoolVar(&f.crun, "crun", false, "run containers with crun instead of runc (installed beside containerd): a third less time per container under emulation (see BENCHMARKS.md); boards in the field usually run runc")
	fs.StringVar(&f.image, "image", "", "your own board `IMAGE` to boot instead of the default one: a file ("+strings.Join(images.Formats, ", ")+") or an https:// URL; never written")
	fs.StringVar(&f.sha256, "sha256", "", "with --image: "+sha256Help)
	fs.StringVar(&f.passwordHash, "password-hash", "", "with --image: "+passwordHashHelp)
}

// check rejects flags that contradict each other, before anything runs.
func (f bootFlags) check(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if f.image == "" {
		for _, name := range []string{"sha256", "password-hash"} {
			if set[name] {
				return fmt.Errorf("--%s goes with --image", name)
			}
		}
		return nil
	}
	if set["suite"] {
		return errors.New("--suite picks the default image's Debian release; an --image keeps its own")
	}
	return f.imageFlags.check()
}

// options are the harness options for one board; im is the prepared user
// image, or nil for the default image.
func (f bootFlags) options(slug string, im *images.Image, logf func(string, ...any)) []harness.Option {
	opts := []harness.Option{
		harness.WithBoard(slug), harness.WithSuite(f.suite),
		harness.WithContainerd(harness.ContainerdStrategy(f.containerd)),
		harness.WithLogf(logf),
	}
	if im != nil {
		opts = append(opts, harness.WithImage(im))
	}
	if f.noSnapshot {
		opts = append(opts, harness.WithoutSnapshot())
	}
	if f.crun {
		opts = append(opts, harness.WithCrun())
	}
	if f.verbose {
		opts = append(opts, harness.WithOutputLines())
	}
	if f.keepFailed {
		opts = append(opts, harness.WithKeepOnFailure())
	}
	return opts
}

func cmdBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "boot",
		synopsis: "Boot a board to containerd-ready and keep it up until Ctrl-C; prints the ssh command to log in.\n" +
			"While it is up, `socbox ssh` (in another terminal) logs in to it or runs a command on it.\n" +
			"With --image, your own board image is acquired and prepared for the board first (see socbox image prepare).",
		examples: `  socbox boot
  socbox boot --board raspi4b-fast --suite bookworm
  socbox boot --board raspi3b --containerd apt
  socbox boot --board raspi3b --image ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
`}, stderr)
	var bf bootFlags
	addBootFlags(fs, &bf, "the `BOARD` to boot (see socbox boards)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", fs.Args())
	}
	if err := bf.check(fs); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	prof, err := boards.Lookup(bf.board)
	if err != nil {
		return usageError(fs, stderr, "--board: %v", err)
	}
	logf := lineLogger(stderr)
	var im *images.Image
	if bf.image != "" {
		acq, err := bf.acquire(ctx, logf)
		if err != nil {
			return err
		}
		if im, err = bf.prepare(ctx, acq, prof, logf); err != nil {
			return err
		}
	}
	b, err := harness.Start(ctx, bf.options(prof.Slug, im, logf)...)
	defer b.Close()
	if b != nil {
		markUsed(b.Image)
	}
	if err != nil {
		return err
	}
	// Recorded for `socbox ssh`, and forgotten when the board stops.
	forget, err := writeBootState(b.Profile.Slug, b.Machine.Endpoint().SSH, b.KeyPath, b.RunDir())
	if err != nil {
		fmt.Fprintf(stderr, "socbox boot: %v (socbox ssh will not find this board; use the ssh command below)\n", err)
	} else {
		defer forget()
	}
	fmt.Fprintf(stdout, "%s is ready. Log in with:\n  socbox ssh --board %s\nor:\n  %s\nQEMU: %s\nCtrl-C stops the board and removes its run directory.\n",
		b.Profile.Slug, b.Profile.Slug, b.SSHCommand(), b.RunDir())
	m, ok := b.Machine.(machine.Emulated)
	if !ok {
		return fmt.Errorf("socbox boot: %s is not an emulated board", b.Profile.Slug)
	}
	select {
	case <-ctx.Done():
	case <-m.Done():
		return fmt.Errorf("qemu exited: %w", m.Alive())
	}
	fmt.Fprintln(stderr, "stopping", b.Profile.Slug)
	return nil
}
