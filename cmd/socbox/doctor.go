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

// doctorChecks are the host prerequisites, in the order a reader fixes
// them.
func doctorChecks() []check {
	return []check{
		{"qemu-system-aarch64", toolVersion("qemu-system-aarch64", "--version"), apt("qemu-system-arm")},
		{"qemu-system-arm", toolVersion("qemu-system-arm", "--version"), apt("qemu-system-arm")},
		{"qemu-img", toolVersion("qemu-img", "--version"), apt("qemu-utils")},
		{"mmdebstrap", toolVersion("mmdebstrap", "--version"), apt("mmdebstrap")},
		{"mke2fs", toolVersion("mke2fs", "-V"), apt("e2fsprogs")},
		{"depmod", toolVersion("depmod", "-V"), apt("kmod")},
		{"dpkg-deb", toolVersion("dpkg-deb", "--version"), apt("dpkg")},
		{"gpgv", toolVersion("gpgv", "--version"), apt("gpgv")},
		{"debian archive keyring", fileExists(keyring), apt("debian-archive-keyring")},
		{"binfmt_misc", binfmtMounted, "sudo mount -t binfmt_misc binfmt_misc " + binfmt + "   (or: " + setupFix + ")"},
		{"binfmt qemu-aarch64", binfmtHandler("qemu-aarch64"), "sudo apt-get install -y qemu-user-static && " + setupFix},
		{"binfmt qemu-arm", binfmtHandler("qemu-arm"), "sudo apt-get install -y qemu-user-static && " + setupFix},
		{"root (for image builds)", isRoot, "run image builds as root: sudo socbox image build --board BOARD (booting a cached image needs no root)"},
		{"free disk in the cache", cacheSpace, fmt.Sprintf("free at least %d GiB there, or point SOCBOX_CACHE at a bigger disk", minFreeGiB)},
	}
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer, checks []check) error {
	fs := newFlags(command{name: "doctor",
		synopsis: "Check that this host has what socbox needs: QEMU for ARM, the image-building tools, the\n" +
			"binfmt_misc handlers for arm64/armhf, root for image builds and free disk in the cache.\n" +
			"Prints OK or FAIL per check, with the command that fixes each FAIL; exits 1 if any fails.",
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
	failed := 0
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		detail, err := c.run(cctx)
		cancel()
		if err == nil {
			fmt.Fprintf(w, "OK    %-*s  %s\n", width, c.name, detail)
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %-*s  %v\n", width, c.name, err)
		if c.fix != "" {
			fmt.Fprintf(w, "      %-*s  fix: %s\n", width, "", c.fix)
		}
	}
	if failed == 0 {
		fmt.Fprintf(w, "\nall %d checks passed\n", len(checks))
	} else {
		fmt.Fprintf(w, "\n%d of %d checks failed; %s sets up everything socbox needs\n", failed, len(checks), setupFix)
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
		var state, interp string
		for _, l := range strings.Split(string(data), "\n") {
			switch {
			case l == "enabled" || l == "disabled":
				state = l
			case strings.HasPrefix(l, "interpreter "):
				interp = strings.TrimPrefix(l, "interpreter ")
			}
		}
		if state != "enabled" {
			return "", fmt.Errorf("handler registered but %s", state)
		}
		return "enabled, " + interp, nil
	}
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
