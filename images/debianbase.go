package images

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/images/cachefs"
)

// baseBuilderVersion changes whenever the base root filesystem is made
// differently from the same inputs, so old bases are not reused.
const baseBuilderVersion = 1

// debianBase is Debian's bootstrapped root filesystem for one suite and
// architecture, as mmdebstrap makes it under qemu-user: the slow part of
// an image build, and the same for every board, key and setting. It is
// kept in the cache as a tarball; each default image is this root plus
// socbox's customisation, made on the host in seconds.
type debianBase struct {
	Name     string       `json:"name"`
	Inputs   baseInputs   `json:"inputs"`
	Phases   []BuildPhase `json:"build_phases"`
	BuiltAt  time.Time    `json:"built_at"`
	BuildSec float64      `json:"build_seconds"`
	// MmdebstrapCPUSec is the CPU time mmdebstrap and everything it ran
	// used: on a quiet host about its wall time (it is mostly one emulated
	// process at a time), on a loaded one less.
	MmdebstrapCPUSec float64 `json:"mmdebstrap_cpu_seconds"`
	Dir              string  `json:"-"`
}

type baseInputs struct {
	Builder  int      `json:"builder"`
	Suite    string   `json:"suite"`
	Arch     string   `json:"arch"`
	Mirror   string   `json:"mirror"`
	Packages []string `json:"packages"`
}

const (
	baseManifest = "base.json"
	baseTarball  = "root.tar"
)

// tarball is the root filesystem, with numeric owners and extended
// attributes (file capabilities).
func (b *debianBase) tarball() string { return filepath.Join(b.Dir, baseTarball) }

func loadDebianBase(dir string) (*debianBase, error) {
	data, err := os.ReadFile(filepath.Join(dir, baseManifest))
	if err != nil {
		return nil, err
	}
	var b debianBase
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("read base manifest in %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, baseTarball)); err != nil {
		return nil, err
	}
	b.Dir = dir
	return &b, nil
}

// ensureDebianBase returns the base root for spec's suite and arch,
// bootstrapping it on a cache miss (or when rebuild is set). built says
// whether it was made now.
func ensureDebianBase(ctx context.Context, spec DefaultSpec, arch string, rebuild bool, logf func(string, ...any)) (base *debianBase, built bool, err error) {
	in := baseInputs{Builder: baseBuilderVersion, Suite: spec.Suite, Arch: arch, Mirror: spec.Mirror, Packages: guestPackages}
	name := fmt.Sprintf("debian-%s-%s-%s", spec.Suite, arch, cacheKey(in)[:12])
	root, err := CacheDir()
	if err != nil {
		return nil, false, err
	}
	dir := filepath.Join(root, "bases", name)
	stage := fmt.Sprintf("bootstrap Debian %s %s (%s)", spec.Suite, arch, name)
	ready := func(dir string) bool {
		b, err := loadDebianBase(dir)
		if err == nil {
			base = b
		}
		return err == nil
	}
	built, err = cachefs.Ensure(ctx, cachefs.Entry{Dir: dir, Ready: ready, Rebuild: rebuild, DirMode: imageDirMode,
		OnWait: func() { logf("image: waiting for another process bootstrapping %s", name) }},
		func(ctx context.Context, tmp string) error {
			b, err := bootstrapDebian(ctx, spec, in, name, tmp, logf)
			if err != nil {
				return err
			}
			base = b
			return nil
		})
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", stage, err)
	}
	base.Dir = dir
	return base, built, nil
}

// bootstrapDebian runs mmdebstrap into tmp/rootfs, then packs the root
// into tmp/root.tar.
func bootstrapDebian(ctx context.Context, spec DefaultSpec, in baseInputs, name, tmp string, logf func(string, ...any)) (*debianBase, error) {
	start := time.Now()
	clock := newPhaseClock()
	rootfs := filepath.Join(tmp, "rootfs")
	keys := filepath.Join(tmp, "hostkeys")
	if err := writeHostKeys(keys); err != nil {
		return nil, fmt.Errorf("sshd host keys: %w", err)
	}
	dpkgCfg := filepath.Join(tmp, "dpkg.cfg")
	if err := os.WriteFile(dpkgCfg, []byte(guestDpkgConfig), 0o644); err != nil {
		return nil, err
	}
	clock.done("host keys")
	logf("image: bootstrapping Debian %s %s with mmdebstrap — first time only, a few minutes", in.Suite, in.Arch)
	cpu, err := runMmdebstrap(ctx, in, rootfs, keys, dpkgCfg, clock, logf)
	if err != nil {
		return nil, err
	}
	if err := pruneExcludedPaths(rootfs); err != nil {
		return nil, fmt.Errorf("prune docs: %w", err)
	}
	clock.done("prune docs")
	if out, err := proc.CombinedOutput(proc.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-cf", filepath.Join(tmp, baseTarball), "-C", rootfs, ".")); err != nil {
		return nil, fmt.Errorf("pack root: tar: %w: %s", err, out)
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return nil, err
	}
	for _, f := range []string{keys, dpkgCfg} {
		if err := os.RemoveAll(f); err != nil {
			return nil, err
		}
	}
	clock.done("pack root")
	b := &debianBase{Name: name, Inputs: in, Phases: clock.phases, BuiltAt: time.Now().UTC(), BuildSec: time.Since(start).Seconds(),
		MmdebstrapCPUSec: cpu.Seconds()}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, baseManifest), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	_ = os.Chmod(filepath.Join(tmp, baseTarball), imageFileMode)
	logf("image: Debian %s %s bootstrapped in %s", in.Suite, in.Arch, time.Since(start).Round(time.Second))
	return b, nil
}

// guestDpkgConfig is dpkg's configuration in the guest, in place before
// dpkg first runs there (the essential packages) and kept in the image:
// no manuals, docs or translations in a test image (less to unpack under
// emulation); no vendor, model and MAC-prefix names in udev's hardware
// database (95% of it: udev's postinst compiles it under emulation, ~60 s,
// and nothing a test needs reads names; keyboard, sensor and input
// entries stay); and no fsync for each unpacked file (the root is packed
// afterwards; a board's disk is a throwaway overlay). Giving these to
// mmdebstrap as --dpkgopt instead would have it filter every essential
// package through mmtarfilter, a Python program: ~50 s here.
const guestDpkgConfig = `# socbox: a test image
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/locale/*
path-exclude=/usr/lib/udev/hwdb.d/20-*vendor*.hwdb
path-exclude=/usr/lib/udev/hwdb.d/20-OUI.hwdb
path-exclude=/lib/udev/hwdb.d/20-*vendor*.hwdb
path-exclude=/lib/udev/hwdb.d/20-OUI.hwdb
force-unsafe-io
`

// eatmydataHooks is mmdebstrap's hook directory (1.1 on, in Debian 12's
// 1.3.5 and 13's 1.5.x) that runs dpkg under eatmydata while the root is
// built, and takes it out again at the end.
const eatmydataHooks = "/usr/share/mmdebstrap/hooks/eatmydata"

// eatmydataUsable says whether mmdebstrap's eatmydata hooks can run here:
// they are there, and so is dpkg-architecture (dpkg-dev, only a
// recommendation of mmdebstrap), which they call. Without them the build
// is slower, not broken.
func eatmydataUsable() bool {
	if _, err := os.Stat(eatmydataHooks); err != nil {
		return false
	}
	_, err := exec.LookPath("dpkg-architecture")
	return err == nil
}

// mmdebstrapArgs are the arguments for bootstrapping in's root into
// rootfs. Hooks run on this host (only `chroot` runs guest code); keys and
// dpkgCfg are passed to them through the environment, not spliced into
// the shell text.
func mmdebstrapArgs(in baseInputs, rootfs string, eatmydata bool) []string {
	args := []string{
		"--mode=root", "--variant=apt", "--architectures=" + in.Arch,
		"--include=" + strings.Join(in.Packages, ","),
		"--aptopt=Acquire::Languages \"none\"",
		// debconf's dpkg-preconfigure has apt load its package cache under
		// emulation before every install: ~50 s. Packages are configured
		// non-interactively anyway.
		"--aptopt=#clear DPkg::Pre-Install-Pkgs",
		`--extract-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d" && cp "$SOCBOX_DPKG_CFG" "$1/etc/dpkg/dpkg.cfg.d/socbox"`,
		// Host keys made natively: openssh-server's postinst makes only
		// missing ones, and RSA key generation under qemu-user takes
		// tens of seconds.
		`--essential-hook=mkdir -p "$1/etc/ssh" && cp -p "$SOCBOX_HOST_KEYS"/ssh_host_* "$1/etc/ssh/"`,
		// Enabled from inside the chroot (under qemu-user): a few seconds.
		`--customize-hook=chroot "$1" systemctl enable systemd-networkd`,
	}
	if eatmydata {
		args = append(args, "--hook-dir="+eatmydataHooks)
	}
	return append(args, in.Suite, rootfs, in.Mirror)
}

func runMmdebstrap(ctx context.Context, in baseInputs, rootfs, keys, dpkgCfg string, clock *phaseClock, logf func(string, ...any)) (time.Duration, error) {
	args := mmdebstrapArgs(in, rootfs, eatmydataUsable())
	var err error
	var cmd *exec.Cmd
	var out io.Reader
	for _, private := range []bool{true, false} {
		if private {
			cmd = privateMountCommand(ctx, "mmdebstrap", args...)
		} else {
			cmd = groupCommand(ctx, "mmdebstrap", args...)
		}
		cmd.Env = append(os.Environ(), "SOCBOX_HOST_KEYS="+keys, "SOCBOX_DPKG_CFG="+dpkgCfg)
		if out, err = cmd.StderrPipe(); err != nil {
			return 0, err
		}
		cmd.Stdout = cmd.Stderr
		err = proc.Start(cmd)
		if err == nil {
			break
		}
		if !private || !noPrivateMounts(err) {
			return 0, fmt.Errorf("mmdebstrap: %w", err)
		}
		// Its mounts are then this namespace's: mmdebstrap unmounts them
		// when it ends, but a build killed half way leaves them mounted.
		logf("mmdebstrap: no mount namespace of its own here (%v: / is not a mount point, as in a chroot); it mounts in this one", err)
	}
	var tail []string
	sc := bufio.NewScanner(out)
	phase := "mmdebstrap: start"
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
		if strings.HasPrefix(line, "I: ") {
			clock.done(phase)
			phase = "mmdebstrap: " + mmdebstrapPhase(line)
		}
		if strings.HasPrefix(line, "I: ") || strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			logf("mmdebstrap: %s", line)
		}
	}
	err = cmd.Wait()
	clock.done(phase)
	if err != nil {
		return 0, fmt.Errorf("mmdebstrap %s %s: %w; last output:\n%s\n(a transient 'Mirror sync in progress?' error goes away on retry)",
			in.Suite, in.Arch, err, strings.Join(tail, "\n"))
	}
	// wait4's usage of a child includes the children it waited for.
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	logf("image: mmdebstrap used %s of CPU", cpu.Round(time.Second))
	return cpu, nil
}

// mmdebstrapPhase names the phase an "I: " line of mmdebstrap starts:
// its text up to the first colon or ellipsis ("installing essential
// packages", "running --customize-hook in shell").
func mmdebstrapPhase(line string) string {
	s := strings.TrimPrefix(line, "I: ")
	if i := strings.IndexAny(s, ":."); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// pruneExcludedPaths takes out of rootfs what guestDpkgConfig keeps dpkg
// from installing but mmdebstrap's own extraction of the essential
// packages put there: everything under /usr/share/{man,info,locale}, and
// under /usr/share/doc all but each package's copyright file.
func pruneExcludedPaths(rootfs string) error {
	share := filepath.Join(rootfs, "usr/share")
	for _, d := range []string{"man", "info", "locale"} {
		entries, err := os.ReadDir(filepath.Join(share, d))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(share, d, e.Name())); err != nil {
				return err
			}
		}
	}
	docs := filepath.Join(share, "doc")
	entries, err := os.ReadDir(docs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(docs, e.Name())
		if !e.IsDir() { // a symlink to another package's docs, or a file
			if err := os.Remove(p); err != nil {
				return err
			}
			continue
		}
		inner, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, f := range inner {
			if f.Name() == "copyright" && f.Type().IsRegular() {
				continue
			}
			if err := os.RemoveAll(filepath.Join(p, f.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeHostKeys makes the sshd host keys openssh-server's postinst would
// (RSA 3072, ECDSA P-256, Ed25519) in OpenSSH's formats, named as in
// /etc/ssh.
func writeHostKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, kind := range []string{"rsa", "ecdsa", "ed25519"} {
		priv, pub, err := newHostKey(kind)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		path := filepath.Join(dir, "ssh_host_"+kind+"_key")
		if err := os.WriteFile(path, priv, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(path+".pub", []byte(pub+" root@socbox\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
