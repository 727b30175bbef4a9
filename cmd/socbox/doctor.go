package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/images"
)

// check is one host prerequisite: what it is, how to test it, and the
// exact command that fixes it.
type check struct {
	name string
	// run returns what was found ("QEMU emulator version 7.2.22") or why
	// the check fails.
	run func(ctx context.Context) (string, error)
	fix string
}

const (
	setupFix = "sudo scripts/host-setup.sh"
	keyring  = "/usr/share/keyrings/debian-archive-keyring.gpg"
	binfmt   = "/proc/sys/fs/binfmt_misc"
	// minFreeGiB covers one default image being built (a sparse 4 GiB disk
	// and the root filesystem beside it) and a provisioned snapshot.
	minFreeGiB = 6
)

func apt(pkgs ...string) string {
	return "sudo apt-get install -y " + strings.Join(pkgs, " ") + "   (or: " + setupFix + ")"
}

// errNotApplicable marks a check that does not apply to this host (a board
// its QEMU is too old for): reported, not counted as a failure.
var errNotApplicable = errors.New("not applicable")

// doctorChecks are the host prerequisites, in the order a reader fixes
// them. Each exercises the thing where that is cheap — QEMU starts every
// board's machine, mmdebstrap's own arch-test runs an arm64 and an armhf
// binary — because a tool that is installed can still fail the real run.
func doctorChecks() []check {
	checks := []check{
		{"qemu-system-aarch64", toolVersion("qemu-system-aarch64", "--version"), apt("qemu-system-arm")},
		{"qemu-system-arm", toolVersion("qemu-system-arm", "--version"), apt("qemu-system-arm")},
		{"qemu-img", toolVersion("qemu-img", "--version"), apt("qemu-utils")},
	}
	for _, b := range boards.All() {
		checks = append(checks, check{"board " + b.Slug, boardStarts(b),
			"reinstall QEMU: " + apt("qemu-system-arm") + "; see the message for the device QEMU refused"})
	}
	checks = append(checks, check{"accelerator", func(context.Context) (string, error) { return accelSummary(qemu.ThisHost(), boards.All()), nil },
		"nothing to fix: TCG runs every board; KVM, on an arm64 host, needs the kvm module loaded and /dev/kvm writable by this user (group kvm)"})
	return append(checks,
		check{"mmdebstrap", toolVersion("mmdebstrap", "--version"), apt("mmdebstrap")},
		check{"arch-test", toolPresent("arch-test"), apt("arch-test") + "; mmdebstrap needs it to build a root for another architecture"},
		check{"binfmt_misc", binfmtMounted, "sudo mount -t binfmt_misc binfmt_misc " + binfmt + "   (or: " + setupFix + ")"},
		check{"binfmt qemu-aarch64", binfmtHandler("qemu-aarch64"), "sudo apt-get install -y qemu-user-static && " + setupFix},
		check{"binfmt qemu-arm", binfmtHandler("qemu-arm"), "sudo apt-get install -y qemu-user-static && " + setupFix},
		check{"arm64 binaries run", archRuns("arm64"), "sudo apt-get install -y qemu-user-static arch-test && " + setupFix},
		check{"armhf binaries run", archRuns("armhf"), "sudo apt-get install -y qemu-user-static arch-test && " + setupFix},
		check{"mke2fs", toolVersion("mke2fs", "-V"), apt("e2fsprogs")},
		check{"debugfs", toolVersion("debugfs", "-V"), apt("e2fsprogs")},
		check{"e2fsck", toolVersion("e2fsck", "-V"), apt("e2fsprogs")},
		check{"resize2fs", toolPresent("resize2fs"), apt("e2fsprogs")},
		check{"depmod", toolVersion("depmod", "-V"), apt("kmod")},
		check{"dpkg-deb", toolVersion("dpkg-deb", "--version"), apt("dpkg")},
		check{"gpgv", toolVersion("gpgv", "--version"), apt("gpgv")},
		check{"debian archive keyring", fileExists(keyring), apt("debian-archive-keyring")},
		check{"root (for image builds)", isRoot, "run image builds as root: sudo socbox image build --board BOARD (booting a cached image needs no root)"},
		check{"free disk in the cache", cacheSpace, fmt.Sprintf("free at least %d GiB there, or point SOCBOX_CACHE at a bigger disk", minFreeGiB)},
	)
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer, checks []check) error {
	fs := newFlags(command{name: "doctor",
		synopsis: "Check that this host has what socbox needs, by trying each thing where that is cheap:\n" +
			"QEMU starts every board's machine, CPU and devices (paused, no kernel); an arm64 and an\n" +
			"armhf binary run through binfmt_misc (mmdebstrap's own arch-test); the image-building\n" +
			"tools are there; root for image builds; free disk in the cache.\n" +
			"Prints OK, FAIL or N/A (a board this QEMU is too old for) per check, with the command that\n" +
			"fixes each FAIL; exits 1 if any fails.",
		examples: "  socbox doctor\n  socbox doctor || sudo scripts/host-setup.sh\n"}, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", fs.Args())
	}
	if failed := runChecks(ctx, stdout, checks); failed > 0 {
		return exitCode(1)
	}
	return nil
}

// runChecks prints one line per check (OK or FAIL, name, what was found)
// and the fix under each failure; it returns how many failed.
func runChecks(ctx context.Context, w io.Writer, checks []check) int {
	width := 0
	for _, c := range checks {
		width = max(width, len(c.name))
	}
	failed, ran := 0, 0
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		detail, err := c.run(cctx)
		cancel()
		if err == nil {
			ran++
			fmt.Fprintf(w, "OK    %-*s  %s\n", width, c.name, detail)
			continue
		}
		if errors.Is(err, errNotApplicable) {
			fmt.Fprintf(w, "N/A   %-*s  %v\n", width, c.name, err)
			continue
		}
		ran++
		failed++
		fmt.Fprintf(w, "FAIL  %-*s  %v\n", width, c.name, err)
		if c.fix != "" {
			fmt.Fprintf(w, "      %-*s  fix: %s\n", width, "", c.fix)
		}
	}
	if failed == 0 {
		fmt.Fprintf(w, "\nall %d checks passed\n", ran)
	} else {
		fmt.Fprintf(w, "\n%d of %d checks failed; %s sets up everything socbox needs\n", failed, ran, setupFix)
	}
	return failed
}

// toolVersion finds a tool on PATH (where socbox looks for it) and returns
// the first line of its version output.
func toolVersion(tool string, flag string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		path, err := exec.LookPath(tool)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, tool)); serr == nil {
					return "", fmt.Errorf("in %s, which is not on PATH: add it (export PATH=$PATH:%s)", dir, dir)
				}
			}
			return "", errors.New("not found on PATH")
		}
		out, err := exec.CommandContext(ctx, path, flag).CombinedOutput()
		line := strings.TrimSpace(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
		if err != nil {
			return "", fmt.Errorf("%s %s: %v %s", path, flag, err, line)
		}
		return line + " at " + path, nil
	}
}

// toolPresent finds a tool that has no version flag.
func toolPresent(tool string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		path, err := exec.LookPath(tool)
		if err != nil {
			return "", errors.New("not found on PATH")
		}
		return path, nil
	}
}

// boardStarts starts QEMU with the board's machine, CPU and devices,
// paused, and quits it: a missing machine, CPU, device or option ROM fails
// here as it would at boot. A board this QEMU is too old for is not a
// failure of the host: its other tier runs.
func boardStarts(b boards.Profile) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if _, err := exec.LookPath(b.QEMUBinary); err != nil {
			return "", fmt.Errorf("%s not found on PATH", b.QEMUBinary)
		}
		start := time.Now()
		v, err := qemu.Probe(ctx, b)
		if errors.Is(err, qemu.ErrQEMUTooOld) {
			return "", fmt.Errorf("%w: %w", errNotApplicable, err)
		}
		if err != nil {
			return "", err
		}
		what := "-M " + b.Machine
		if b.CPU != "" {
			what += " -cpu " + b.CPU
		}
		if b.NIC != "" {
			what += " with " + b.NIC
		}
		return fmt.Sprintf("QEMU %s starts %s (%.1fs)", v, what, time.Since(start).Seconds()), nil
	}
}

// archRuns runs mmdebstrap's own check: arch-test runs a tiny static binary
// of the architecture, through the binfmt_misc handler, as mmdebstrap does
// before it builds a root for that architecture.
func archRuns(arch string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		path, err := exec.LookPath("arch-test")
		if err != nil {
			return "", errors.New("arch-test not found on PATH: mmdebstrap cannot check (nor build) a foreign root without it")
		}
		out, err := exec.CommandContext(ctx, path, arch).CombinedOutput()
		line := strings.TrimSpace(string(out))
		if err != nil || line != arch+": ok" {
			return "", fmt.Errorf("an %s binary does not run on this host (arch-test %s: %s)", arch, arch, line)
		}
		return "arch-test " + arch + ": ok", nil
	}
}

func fileExists(path string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%s missing", path)
		}
		return path, nil
	}
}

func binfmtMounted(context.Context) (string, error) {
	if _, err := os.Stat(filepath.Join(binfmt, "register")); err != nil {
		return "", fmt.Errorf("not mounted on %s", binfmt)
	}
	if st, err := os.ReadFile(filepath.Join(binfmt, "status")); err == nil && strings.TrimSpace(string(st)) != "enabled" {
		return "", fmt.Errorf("mounted on %s but %s", binfmt, strings.TrimSpace(string(st)))
	}
	return "mounted on " + binfmt, nil
}

// binfmtHandler checks that the kernel runs foreign binaries through
// qemu-user: mmdebstrap runs the guest's package scripts that way.
func binfmtHandler(name string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		data, err := os.ReadFile(filepath.Join(binfmt, name))
		if err != nil {
			return "", errors.New("handler not registered")
		}
		state, interp, flags := parseBinfmt(string(data))
		if state != "enabled" {
			return "", fmt.Errorf("handler registered but %s", state)
		}
		// mmdebstrap runs the guest's binaries in a chroot, where the
		// host's interpreter path does not exist: the kernel must have
		// opened it at registration (the F flag).
		if !strings.Contains(flags, "F") {
			return "", fmt.Errorf("handler registered without the F (fix binary) flag (flags %q), so it cannot run binaries in a chroot", flags)
		}
		return "enabled, flags " + flags + ", " + interp, nil
	}
}

// parseBinfmt reads /proc/sys/fs/binfmt_misc/<handler>.
func parseBinfmt(data string) (state, interp, flags string) {
	for _, l := range strings.Split(data, "\n") {
		switch {
		case l == "enabled" || l == "disabled":
			state = l
		case strings.HasPrefix(l, "interpreter "):
			interp = strings.TrimPrefix(l, "interpreter ")
		case strings.HasPrefix(l, "flags:"):
			flags = strings.TrimSpace(strings.TrimPrefix(l, "flags:"))
		}
	}
	return state, interp, flags
}

func isRoot(context.Context) (string, error) {
	if uid := os.Geteuid(); uid != 0 {
		return "", fmt.Errorf("running as uid %d; building the default image runs mmdebstrap --mode=root", uid)
	}
	return "running as root", nil
}

func cacheSpace(context.Context) (string, error) {
	dir, err := images.CacheDir()
	if err != nil {
		return "", err
	}
	// The cache may not exist yet: measure the disk it will be on.
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(probe, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", probe, err)
	}
	free := float64(st.Bavail) * float64(st.Bsize) / (1 << 30)
	if free < minFreeGiB {
		return "", fmt.Errorf("%.1f GiB free for %s, want at least %d GiB", free, dir, minFreeGiB)
	}
	return fmt.Sprintf("%.1f GiB free for %s", free, dir), nil
}

// accelSummary says which boards run under which accelerator on host h,
// and why a fast board that could have KVM does not.
func accelSummary(h qemu.Host, profiles []boards.Profile) string {
	var kvm, tcg []string
	whys := map[string]bool{}
	var why []string
	for _, b := range profiles {
		a, reason := qemu.ChooseAccel(h, b)
		if a == qemu.KVM {
			kvm = append(kvm, b.Slug)
			continue
		}
		tcg = append(tcg, b.Slug)
		if b.IsVirt() && !whys[reason] {
			whys[reason] = true
			why = append(why, reason)
		}
	}
	if len(kvm) == 0 {
		return "tcg for every board: " + strings.Join(why, "; ")
	}
	out := "kvm for " + strings.Join(kvm, ", ")
	if len(tcg) > 0 {
		out += "; tcg for " + strings.Join(tcg, ", ")
		if len(why) > 0 {
			out += " (" + strings.Join(why, "; ") + ")"
		}
	}
	return out
}
