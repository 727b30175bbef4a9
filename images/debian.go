package images

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/guestfiles"
)

// DefaultSuite is the Debian release the default image is built from:
// current stable, which today's Raspberry Pi OS is based on.
const DefaultSuite = "trixie"

// Suites socbox's default image builder is tested with.
var Suites = []string{"trixie", "bookworm"}

// defaultBuilderVersion changes whenever the builder makes a different image
// from the same inputs, so old cache entries are not reused.
const defaultBuilderVersion = 8

// guestPackages go into every default image on top of mmdebstrap's `apt`
// variant (essential packages + apt). The kernel is not among them: it is
// unpacked on the host, see buildKernel.
var guestPackages = []string{
	"systemd-sysv", "udev", "openssh-server", "kmod", "iproute2",
	"ca-certificates", "procps", "iputils-ping",
}

// maskedUnits are masked in the default image: timers that would wake up
// in the middle of a test, gettys on consoles nobody looks at, and units
// that cost an emulated board boot time for hardware or set-ups no
// emulated board has (measured with systemd-analyze and each unit's
// CPUUsageNSec in the guest; see BENCHMARKS.md):
//   - getty-static: gettys on tty2-6 when there is no D-Bus (getty@ is
//     masked anyway);
//   - systemd-pstore: crash records from firmware (none under QEMU), and
//     the efi_pstore module it loads;
//   - systemd-network-generator: networkd files from ip= on the kernel
//     command line, which socbox never sets;
//   - systemd-udev-load-credentials: udev rules passed as credentials
//     (none);
//   - modprobe@drm: the display module, for logind (no display, no
//     logind);
//   - systemd-networkd-persistent-storage: networkd state kept across
//     boots of a disk no board boots twice.
var maskedUnits = []string{
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer",
	"e2scrub_all.timer", "e2scrub_reap.service", "systemd-networkd-wait-online.service",
	"getty@.service", "autovt@.service",
	"getty-static.service", "systemd-pstore.service", "systemd-network-generator.service",
	"systemd-udev-load-credentials.service", "modprobe@drm.service",
	"systemd-networkd-persistent-storage.service",
}

// maskedGenerators are systemd generators that would run at every boot
// for nothing: no GPT auto-discovery (the root is named by label), no
// hibernation, TPM, offline updates, rc.local, systemd.run= or SSH over
// vsock. fstab, getty, sysv and debug (systemd.mask= and friends on the
// command line) generators stay.
var maskedGenerators = []string{
	"systemd-gpt-auto-generator", "systemd-hibernate-resume-generator", "systemd-run-generator",
	"systemd-ssh-generator", "systemd-system-update-generator", "systemd-tpm2-generator",
	"systemd-rc-local-generator",
}

// RootLabel is the filesystem label of the default image's root.
const RootLabel = "socbox-root"

// DefaultSpec asks for the default Debian image of a board.
type DefaultSpec struct {
	Board boards.Profile
	// Suite is the Debian release ("trixie", "bookworm"); DefaultSuite if empty.
	Suite string
	// Mirror is Debian's archive; deb.debian.org if empty.
	Mirror string
	// AuthorizedKey is the harness's public key, authorized for root.
	AuthorizedKey string
	// SizeMiB is the root filesystem's size (sparse); 4096 if 0.
	SizeMiB int
	// Archive fetches the kernel and busybox for the guest; required.
	Archive *debarchive.Client
	Logf    func(format string, args ...any)
	// Rebuild ignores a cached image.
	Rebuild bool
	// Offline fails instead of building on a cache miss.
	Offline bool
}

type defaultInputs struct {
	Builder       int      `json:"builder"`
	Suite         string   `json:"suite"`
	Arch          string   `json:"arch"`
	Mirror        string   `json:"mirror"`
	Packages      []string `json:"packages"`
	KernelPackage string   `json:"kernel_package"`
	AuthorizedKey string   `json:"authorized_key"`
	SizeMiB       int      `json:"size_mib"`
	// BaseBuilder is the base root's builder version: a new base makes a
	// new image.
	BaseBuilder int `json:"base_builder"`
}

// BuildDefault returns the default Debian image for spec.Board, building it
// on a cache miss in two layers. The first, Debian's root filesystem for
// the suite and architecture (mmdebstrap through qemu-user: minutes), is
// cached on its own (see ensureDebianBase). The image is that root plus,
// made on the host in seconds: Debian's kernel and its modules, socbox's
// customisation (the authorized key, units, network and sshd settings),
// and an ext4 disk made with mke2fs -d, so no root loop mounts are needed;
// the initrd is made on the host too, per board (EnsureBootFiles). A new
// key or setting therefore costs seconds, not a bootstrap.
func BuildDefault(ctx context.Context, spec DefaultSpec) (*Image, error) {
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if spec.Suite == "" {
		spec.Suite = DefaultSuite
	}
	if spec.Mirror == "" {
		spec.Mirror = "http://deb.debian.org/debian"
	}
	if spec.SizeMiB == 0 {
		spec.SizeMiB = 4096
	}
	if spec.Archive == nil {
		return nil, errors.New("build image: no Debian archive client")
	}
	if spec.AuthorizedKey == "" {
		return nil, errors.New("build image: no authorized key: the harness could not log in")
	}
	b := spec.Board
	arch := b.Platform.DebianArch()
	in := defaultInputs{
		Builder: defaultBuilderVersion, Suite: spec.Suite, Arch: arch, Mirror: spec.Mirror,
		Packages: guestPackages, KernelPackage: b.Kernel.DebianPackage,
		AuthorizedKey: strings.TrimSpace(spec.AuthorizedKey),
		SizeMiB:       spec.SizeMiB, BaseBuilder: baseBuilderVersion,
	}
	key := cacheKey(in)
	name := fmt.Sprintf("debian-%s-%s-%s", spec.Suite, arch, key[:12])
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "images", name)
	stage := fmt.Sprintf("build image %s for %s", name, b.Slug)

	if !spec.Rebuild {
		if im, err := LoadImage(dir); err == nil {
			return im, nil
		}
	}
	if spec.Offline {
		return nil, fmt.Errorf("%s: not in the cache and building is off", stage)
	}
	var im *Image
	ready := func(dir string) bool {
		loaded, err := LoadImage(dir)
		if err == nil {
			im = loaded
		}
		return err == nil
	}
	_, err = cachefs.Ensure(ctx, cachefs.Entry{Dir: dir, Ready: ready, Rebuild: spec.Rebuild, DirMode: imageDirMode,
		OnWait: func() { logf("image: waiting for another process building %s", name) }},
		func(ctx context.Context, tmp string) error {
			if err := checkBuildHost(arch); err != nil {
				return err
			}
			built, err := buildDefaultIn(ctx, spec, in, name, key, tmp, logf)
			if err != nil {
				return err
			}
			im = built
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	im.Dir = dir
	return im, nil
}

// buildDefaultIn makes the image's files in tmp: the base root unpacked,
// the kernel, the customisation, the disk.
func buildDefaultIn(ctx context.Context, spec DefaultSpec, in defaultInputs, name, key, tmp string, logf func(string, ...any)) (*Image, error) {
	start := time.Now()
	clock := newPhaseClock()
	base, built, err := ensureDebianBase(ctx, spec, in.Arch, spec.Rebuild, logf)
	if err != nil {
		return nil, err
	}
	if built {
		clock.add("base: ", base.Phases)
	} else {
		clock.done("base: from the cache (" + base.Name + ")")
	}
	logf("image: making %s from %s", name, base.Name)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	if out, err := proc.CombinedOutput(proc.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-xpf", base.tarball(), "-C", rootfs)); err != nil {
		return nil, fmt.Errorf("unpack %s: tar: %w: %s (delete it to have it made again)", base.tarball(), err, out)
	}
	clock.done("unpack base root")

	im := &Image{
		Name: name, Suite: spec.Suite, Platform: spec.Board.Platform,
		Disk: "rootfs.img", DiskFormat: "raw", Kernel: "vmlinuz", KernelDeb: "kernel.deb",
		User: "root", Key: key, Inputs: in,
		Append: "root=LABEL=" + RootLabel + " rootfstype=ext4 rw net.ifnames=0 fsck.mode=skip systemd.ssh_auto=no",
	}
	kver, err := installKernel(ctx, spec, in.Arch, rootfs, tmp, logf)
	if err != nil {
		return nil, err
	}
	im.KernelVersion = kver
	clock.done("kernel: fetch, unpack, depmod")
	if err := customizeRootfs(rootfs, spec.AuthorizedKey); err != nil {
		return nil, fmt.Errorf("customize: %w", err)
	}
	im.HostKeys, err = readHostKeys(rootfs)
	if err != nil {
		return nil, err
	}
	clock.done("customise")
	logf("image: writing %d MiB ext4 disk", spec.SizeMiB)
	disk := filepath.Join(tmp, im.Disk)
	if out, err := proc.CombinedOutput(proc.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", RootLabel,
		"-d", rootfs, disk, fmt.Sprintf("%dM", spec.SizeMiB))); err != nil {
		return nil, fmt.Errorf("mke2fs: %w: %s", err, out)
	}
	clock.done("mke2fs -d")
	if err := os.RemoveAll(rootfs); err != nil {
		return nil, err
	}
	// Base images are never written: make that a property of the file too.
	for _, f := range []string{im.Disk, im.Kernel, im.KernelDeb} {
		if f != "" {
			_ = os.Chmod(filepath.Join(tmp, f), imageFileMode)
		}
	}
	clock.done("clean up")
	im.BuiltAt = time.Now().UTC()
	im.BuildPhases = clock.phases
	for _, p := range clock.phases {
		im.BuildSec += p.Seconds
	}
	if err := im.save(tmp); err != nil {
		return nil, err
	}
	logf("image: %s built in %s", name, time.Since(start).Round(time.Second))
	return im, nil
}

// checkBuildHost checks the tools the build needs, with the fix for each.
func checkBuildHost(arch string) error {
	var errs []error
	for _, tool := range []string{"mmdebstrap", "mke2fs", "depmod", "dpkg-deb", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, fmt.Errorf("%s not found", tool))
		}
	}
	handler := map[string]string{"arm64": "qemu-aarch64", "armhf": "qemu-arm"}[arch]
	if handler != "" {
		if _, err := os.Stat("/proc/sys/fs/binfmt_misc/" + handler); err != nil {
			errs = append(errs, fmt.Errorf("binfmt_misc handler %s is not registered, so %s binaries cannot run on this host", handler, arch))
		}
	}
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("building the default image needs root (mmdebstrap --mode=root)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host not ready: %w; fix: run scripts/host-setup.sh (or `socbox doctor`)", err)
	}
	return nil
}

// installKernel unpacks Debian's kernel package for the guest into the root
// filesystem on the host (no maintainer scripts, so no mkinitramfs under
// emulation), runs depmod there, and copies the kernel image out.
func installKernel(ctx context.Context, spec DefaultSpec, arch, rootfs, out string, logf func(string, ...any)) (string, error) {
	idx, err := spec.Archive.Index(ctx, spec.Suite, arch)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	pkg, err := debarchive.KernelPackage(idx, spec.Board.Kernel.DebianPackage)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	logf("image: fetching %s %s", pkg.Name, pkg.Version)
	deb, err := spec.Archive.Download(ctx, pkg)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	// Unpacked aside, then merged: extracting straight into the root
	// would replace merged-/usr symlinks (/lib -> usr/lib) with real
	// directories when the package ships /lib/modules (bookworm's does),
	// and /sbin/init would then point nowhere.
	unpacked := filepath.Join(out, "kernel-unpacked")
	if err := debarchive.ExtractDeb(ctx, deb, unpacked); err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	if err := mergeTree(unpacked, rootfs); err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	if err := os.RemoveAll(unpacked); err != nil {
		return "", err
	}
	// Kept with the image: each board's initrd and device tree are made
	// from it (see BootFiles), without rebuilding the root filesystem.
	if err := CopyFile(deb, filepath.Join(out, "kernel.deb")); err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(rootfs, "lib/modules"))
	if err != nil {
		return "", fmt.Errorf("kernel: %s has no modules: %w", pkg.Name, err)
	}
	var versions []string
	for _, e := range entries {
		versions = append(versions, e.Name())
	}
	sort.Strings(versions)
	if len(versions) == 0 {
		return "", fmt.Errorf("kernel: %s has no modules", pkg.Name)
	}
	kver := versions[len(versions)-1]
	if out, err := proc.CombinedOutput(proc.CommandContext(ctx, "depmod", "-b", rootfs, kver)); err != nil {
		return "", fmt.Errorf("kernel: depmod %s: %w: %s", kver, err, out)
	}
	if err := copyKernelImage(filepath.Join(rootfs, "boot", "vmlinuz-"+kver), filepath.Join(out, "vmlinuz")); err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	return kver, nil
}

// mergeTree moves the files under src into root, following root's
// symlinked directories (merged /usr) instead of replacing them.
func mergeTree(src, root string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			// MkdirAll follows an existing symlink to a directory.
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				return nil
			}
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.Rename(p, dst)
	})
}

// copyKernelImage copies the kernel out of the root filesystem. arm64
// kernels are shipped gzip-compressed, which QEMU loads as is.
func copyKernelImage(src, dst string) error {
	return CopyFile(src, dst)
}

// ELFMachine is the ELF machine of binaries for a platform.
func ELFMachine(p boards.Platform) elf.Machine {
	switch p.Architecture {
	case "arm64":
		return elf.EM_AARCH64
	case "arm":
		return elf.EM_ARM
	case "amd64":
		return elf.EM_X86_64
	}
	return elf.EM_NONE
}

// customizeRootfs makes the image reachable the socbox way: key-only root
// login with the harness's key, DHCP on any wired NIC, a resolver that
// QEMU's user network answers, and no password anywhere.
func customizeRootfs(rootfs, authorizedKey string) error {
	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"root/.ssh/authorized_keys", 0o600, strings.TrimSpace(authorizedKey) + "\n"},
		{"etc/ssh/sshd_config.d/socbox.conf", 0o644, "# socbox: key-only login\n" +
			"PermitRootLogin prohibit-password\nPasswordAuthentication no\n" +
			"KbdInteractiveAuthentication no\nUseDNS no\n" +
			// Key-only logins need no PAM; without it a login in the
			// emulated guest is ~1.5 s faster and each session ~0.2 s.
			"UsePAM no\n"},
		{"etc/systemd/network/20-socbox-wired.network", 0o644,
			"[Match]\nName=eth* en* usb*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nUseDomains=yes\n"},
		{"etc/hostname", 0o644, "socbox\n"},
		{"etc/hosts", 0o644, "127.0.0.1 localhost\n127.0.1.1 socbox\n::1 localhost ip6-localhost ip6-loopback\n"},
		{"etc/fstab", 0o644, "LABEL=" + RootLabel + " / ext4 rw,noatime 0 1\n"},
		// QEMU user networking's DNS forwarder.
		{"etc/resolv.conf", 0o644, "nameserver 10.0.2.3\n"},
		// The serial sshd, started only on a board whose kernel command
		// line asks for it (a board with no network, such as raspi4b).
		// No emulated board has a wireless device, yet systemd-networkd's
		// query for the nl80211 family would load cfg80211 (and rfkill)
		// on its way up, on the path to SSH. A blacklist stops only that
		// alias: `modprobe cfg80211` still works.
		{"etc/modprobe.d/socbox.conf", 0o644, "# socbox: no wireless device on an emulated board\nblacklist cfg80211\n"},
		// The configuration is socbox's own and fixed when the image is
		// built; checking it with a second sshd before the real one
		// starts costs an emulated board about a second on the way to
		// SSH. sshd itself and its settings are Debian's.
		{"etc/systemd/system/ssh.service.d/socbox.conf", 0o644, "[Service]\nExecStartPre=\n"},
		{strings.TrimPrefix(guestfiles.SerialSSHDPath, "/"), 0o755, string(guestfiles.SerialSSHD)},
		{"etc/systemd/system/" + guestfiles.SerialSSHDTemplate, 0o644, guestfiles.SerialSSHDTemplateUnit()},
	}
	for _, tty := range guestfiles.SerialSSHDInstances {
		// What `systemctl enable socbox-serial-sshd@TTY` makes.
		unit := strings.Replace(guestfiles.SerialSSHDTemplate, "@", "@"+tty, 1)
		p := filepath.Join(rootfs, "etc/systemd/system/multi-user.target.wants", unit)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p)
		if err := os.Symlink("/etc/systemd/system/"+guestfiles.SerialSSHDTemplate, p); err != nil {
			return err
		}
	}
	// Units and generators a headless test board never needs; each costs
	// boot time on an emulated CPU.
	var masks []string
	for _, unit := range maskedUnits {
		masks = append(masks, filepath.Join("etc/systemd/system", unit))
	}
	for _, g := range maskedGenerators {
		masks = append(masks, filepath.Join("etc/systemd/system-generators", g))
	}
	for _, m := range masks {
		p := filepath.Join(rootfs, m)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		_ = os.Remove(p)
		if err := os.Symlink("/dev/null", p); err != nil {
			return err
		}
	}
	for _, f := range files {
		p := filepath.Join(rootfs, f.path)
		dirMode := os.FileMode(0o755)
		if strings.HasPrefix(f.path, "root/") {
			dirMode = 0o700
		}
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			return err
		}
		_ = os.Remove(p) // resolv.conf may be a dangling symlink
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	// Lock root's password: the only way in is the key.
	if err := lockRootPassword(filepath.Join(rootfs, "etc/shadow")); err != nil {
		return err
	}
	return markUpdatesDone(rootfs, time.Now())
}

// markUpdatesDone writes what systemd-update-done would at the end of the
// first boot, so no boot runs the units that wait for it
// (ConditionNeedsUpdate: ldconfig, systemd-sysusers, the hwdb and journal
// catalog updates): their work was done when the packages were installed,
// and every boot of a default image is a first boot on a fresh overlay.
// /usr and the stamps get the same whole-second time, which systemd reads
// as "updated" whether or not the file system keeps nanoseconds.
func markUpdatesDone(rootfs string, now time.Time) error {
	t := now.Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(rootfs, "usr"), t, t); err != nil {
		return err
	}
	stamp := fmt.Sprintf("# This file was created by systemd-update-done. Its only\n"+
		"# purpose is to hold a timestamp of the time this directory\n"+
		"# was updated. See man:systemd-update-done.service(8).\n"+
		"TIMESTAMP_NSEC=%d\n", t.UnixNano())
	for _, d := range []string{"etc", "var"} {
		p := filepath.Join(rootfs, d, ".updated")
		if err := os.WriteFile(p, []byte(stamp), 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(p, t, t); err != nil {
			return err
		}
	}
	return nil
}

func lockRootPassword(shadow string) error {
	b, err := os.ReadFile(shadow)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[0] == "root" {
			if !strings.HasPrefix(f[1], "!") && !strings.HasPrefix(f[1], "*") {
				lines[i] = "root:*:" + f[2]
			}
		}
	}
	return os.WriteFile(shadow, []byte(strings.Join(lines, "\n")), 0o640)
}

func readHostKeys(rootfs string) ([]string, error) {
	matches, _ := filepath.Glob(filepath.Join(rootfs, "etc/ssh/ssh_host_*_key.pub"))
	var keys []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		keys = append(keys, strings.TrimSpace(string(b)))
	}
	if len(keys) == 0 {
		return nil, errors.New("the image has no sshd host keys (openssh-server's postinst did not run?)")
	}
	return keys, nil
}

// CopyFile copies src to dst (created or truncated, mode 0644).
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
