package images

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/debarchive"
)

// prepareRulesVersion changes whenever Prepare makes a different copy from
// the same inputs (first-boot rules, kernel choice), so old cache entries
// are not reused.
const prepareRulesVersion = 3

// MaxSDCardBytes is the largest SD card socbox offers an SD-card board: the
// SDHC limit, the card class the Raspberry Pi 3 and BeagleBone Black boot
// from. The card is the image rounded up to a power of two.
const MaxSDCardBytes int64 = 32 << 30

// PrepareSpec asks for a bootable copy of a user's board image.
type PrepareSpec struct {
	// Image is the acquired (verified, unpacked) image; see Acquire.
	Image *Acquired
	Board boards.Profile
	// AuthorizedKey is the harness's public key, authorized for root (and
	// the image's first user).
	AuthorizedKey string
	// User is the first user Raspberry Pi OS creates from userconf.txt or
	// cloud-init; the image's first user, else "pi", if empty.
	User string
	// PasswordHash is a crypt(3) hash (e.g. from `openssl passwd -6`) for
	// User. Empty: no password is set anywhere.
	PasswordHash string
	// HeadroomMiB is how much the root partition and filesystem grow in the
	// prepared copy (room for containerd and test images); 2048 if 0.
	HeadroomMiB int
	// Archive fetches the board's Debian kernel where the image's own
	// kernel cannot boot; required then.
	Archive *debarchive.Client
	Logf    func(format string, args ...any)
	// KernelDeb is a Debian kernel package to boot instead of fetching the
	// board's (offline use, tests); only where the image's own kernel
	// cannot boot.
	KernelDeb string
	// Rebuild ignores a cached prepared copy.
	Rebuild bool
}

type prepareInputs struct {
	Rules         int    `json:"rules"`
	Source        string `json:"source_sha256"`
	Board         string `json:"board"`
	AuthorizedKey string `json:"authorized_key"`
	User          string `json:"user"`
	PasswordHash  string `json:"password_hash,omitempty"`
	HeadroomMiB   int    `json:"headroom_mib"`
	KernelFrom    string `json:"kernel_from"`
	KernelDeb     string `json:"kernel_deb,omitempty"`
}

// Prepare makes the copy of a user image socbox boots: a sparse raw file in
// the cache with the harness key authorized and sshd enabled the way the
// image's family expects, the root filesystem grown, and a kernel QEMU can
// run on the board. Neither the source nor the unpacked copy is written;
// no root, loop device or mount is needed.
func Prepare(ctx context.Context, spec PrepareSpec) (*Image, error) {
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if spec.Image == nil {
		return nil, errors.New("prepare image: no image (call Acquire first)")
	}
	if strings.TrimSpace(spec.AuthorizedKey) == "" {
		return nil, errors.New("prepare image: no authorized key: the harness could not log in")
	}
	if spec.HeadroomMiB == 0 {
		spec.HeadroomMiB = 2048
	}
	b := spec.Board
	file := spec.Image.Disk
	info, err := Inspect(ctx, file)
	if err != nil {
		return nil, err
	}
	logf("image: %s: %s", filepath.Base(file), info.Describe())
	if err := checkBoardFits(info, b); err != nil {
		return nil, err
	}
	plan, err := planKernel(info, b)
	if err != nil {
		return nil, err
	}
	user := spec.User
	if user == "" {
		user = info.FirstUser
	}
	if user == "" {
		user = "pi"
	}
	in := prepareInputs{
		Rules: prepareRulesVersion, Source: spec.Image.SHA256, Board: b.Slug,
		AuthorizedKey: strings.TrimSpace(spec.AuthorizedKey), User: user, PasswordHash: spec.PasswordHash,
		HeadroomMiB: spec.HeadroomMiB, KernelFrom: plan.from,
	}
	if spec.KernelDeb != "" && plan.from == kernelFromBoard {
		sum, err := fileSHA256(spec.KernelDeb)
		if err != nil {
			return nil, fmt.Errorf("prepare image: kernel package: %w", err)
		}
		in.KernelDeb = sum
	}
	key := cacheKey(in)
	short := spec.Image.SHA256
	if len(short) > 12 {
		short = short[:12]
	}
	name := fmt.Sprintf("byo-%s-%s-%s-%s", info.Family, b.Slug, short, key[:12])
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "images", name)
	stage := fmt.Sprintf("prepare %s for %s", file, b.Slug)
	if !spec.Rebuild {
		if im, err := LoadImage(dir); err == nil {
			return im, nil
		}
	}
	newSize := info.Layout.Size + int64(spec.HeadroomMiB)<<20
	if b.DiskBus == boards.DiskSD && NextPowerOfTwo(newSize) > MaxSDCardBytes {
		return nil, fmt.Errorf("%s: image too large for the board: %d MiB with %d MiB of headroom needs a %d GiB SD card, more than the %d GiB (SDHC) socbox gives %s; use a smaller image, less headroom, or a -fast board (virtio disk)",
			stage, info.Layout.Size>>20, spec.HeadroomMiB, NextPowerOfTwo(newSize)>>30, MaxSDCardBytes>>30, b.Slug)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	var im *Image
	ready := func(d string) bool { _, err := LoadImage(d); return err == nil }
	built, err := cachefs.Ensure(ctx, cachefs.Entry{Dir: dir, Ready: ready, Rebuild: spec.Rebuild, DirMode: imageDirMode,
		OnWait: func() { logf("image: waiting for another process preparing %s", name) }},
		func(ctx context.Context, tmp string) error {
			work := filepath.Join(tmp, "work")
			if err := os.Mkdir(work, 0o700); err != nil {
				return err
			}
			if plan.from == kernelFromImage {
				// Decided before the copy: a kernel that cannot reach its root
				// fails here, in a second, whatever the image's size.
				if err := plan.chooseInitrd(ctx, info, b, work, logf); err != nil {
					return err
				}
			}

			im = &Image{
				Name: name, Suite: info.Suite, Platform: b.Platform, Disk: "disk.img", DiskFormat: "raw",
				User: "root", Key: key, Inputs: in, Board: b.Slug, Family: string(info.Family),
			}
			disk := filepath.Join(tmp, im.Disk)
			rootPart, err := copyPrepared(ctx, file, disk, info, int64(spec.HeadroomMiB)<<20, logf)
			if err != nil {
				return fmt.Errorf("copy: %w", err)
			}
			ext := ext4Part{file: disk, offset: rootPart.Start, size: rootPart.Size, image: info.File}
			fb := firstBoot{info: info, user: user, passwordHash: spec.PasswordHash, key: strings.TrimSpace(spec.AuthorizedKey), instance: key[:12]}
			w := ext.writer(work)
			im.HostKeys, err = fb.rootFS(ctx, ext, w)
			if err != nil {
				return fmt.Errorf("first-boot setup: %w", err)
			}
			if fb.pinnedHostKeys = len(im.HostKeys) > 0; fb.pinnedHostKeys {
				logf("image: the image has no sshd host keys: socbox made %d, pinned for %s", len(im.HostKeys), name)
			}
			if info.Boot != nil {
				if err := (bootFS{file: disk, part: *info.Boot}).writeFiles(fb.bootFiles()); err != nil {
					return fmt.Errorf("first-boot setup: %w", err)
				}
			}
			switch plan.from {
			case kernelFromImage:
				if err := plan.copyOwnKernel(info, tmp, im); err != nil {
					return err
				}
			case kernelFromBoard:
				if spec.Archive == nil && spec.KernelDeb == "" {
					return fmt.Errorf("no Debian archive client to fetch %s's kernel", b.Slug)
				}
				if err := installBoardKernel(ctx, spec.Archive, spec.KernelDeb, b, info, ext, w, work, tmp, im, logf); err != nil {
					return err
				}
			}
			if err := w.commit(ctx); err != nil {
				return fmt.Errorf("write root filesystem: %w", err)
			}
			if err := ext.fsck(ctx); err != nil {
				return fmt.Errorf("check root filesystem after writing: %w", err)
			}
			im.Append = buildAppend(info, b, plan, rootPart)
			if err := os.RemoveAll(work); err != nil {
				return err
			}
			for _, f := range []string{im.Disk, im.Kernel, im.KernelDeb, im.DTB, im.Initrd} {
				if f != "" {
					_ = os.Chmod(filepath.Join(tmp, f), imageFileMode)
				}
			}
			im.BuiltAt = time.Now().UTC()
			im.BuildSec = time.Since(start).Seconds()
			return im.save(tmp)
		})
	var fe *ImageFormatError
	switch {
	case errors.As(err, &fe):
		return nil, err // names the file, the stage and the fix already
	case err != nil:
		return nil, fmt.Errorf("%s: %w", stage, err)
	case !built:
		// Another process prepared it while this one waited.
		return LoadImage(dir)
	}
	im.Dir = dir
	logf("image: prepared %s in %s (kernel: %s)", name, time.Since(start).Round(100*time.Millisecond), plan.describe())
	return im, nil
}

// checkBoardFits refuses an image whose userland the board's CPU cannot
// run, naming the boards that can.
func checkBoardFits(info *ImageInfo, b boards.Profile) error {
	want := b.Platform.DebianArch()
	if info.Arch != "" && info.Arch != want {
		var fit []string
		for _, p := range boards.All() {
			if p.Platform.DebianArch() == info.Arch {
				fit = append(fit, p.Slug)
			}
		}
		fix := "no socbox board runs " + info.Arch
		if len(fit) > 0 {
			fix = "use " + strings.Join(fit, " or ")
		}
		return &ImageFormatError{File: info.File, What: fmt.Sprintf("the image is %s but board %s runs %s", info.Arch, b.Slug, want), Fix: fix}
	}
	if info.Suite == "" {
		return &ImageFormatError{File: info.File, What: "cannot tell which Debian release the image is based on (no VERSION_CODENAME in os-release, no /etc/debian_version)",
			Fix: "socbox boots Debian-based images"}
	}
	return nil
}

const (
	kernelFromImage = "image" // the image's own kernel, device tree and initramfs
	kernelFromBoard = "board" // the board's Debian kernel for the image's suite
)

// kernelPlan is which kernel boots the image on a board.
type kernelPlan struct {
	from   string
	kernel string // on the boot partition, kernelFromImage
	dtb    string // on the boot partition
	initrd string // on the boot partition, optional
	data   []byte
	arch   string
	// release is the kernel's release read from its banner ("" if
	// unreadable); rootModules, when set, are the modules socbox's initrd
	// loads from the image's /lib/modules/<release> (see chooseInitrd).
	release     string
	rootModules []string
}

func (p kernelPlan) describe() string {
	if p.from == kernelFromImage {
		s := "the image's own " + p.kernel
		if p.release != "" {
			s += " (Linux " + p.release + ")"
		}
		s += " with " + p.dtb
		switch {
		case p.initrd != "":
			s += " and " + p.initrd
		case len(p.rootModules) > 0:
			s += " and socbox's initrd with " + strings.Join(p.rootModules, ", ") + " from the image's /lib/modules"
		default:
			s += ", no initrd"
		}
		return s
	}
	return "the board's Debian kernel"
}

// boardDTBs are the device trees, by the names Raspberry Pi OS and Debian
// give them, that match a board QEMU emulates with its own machine.
var boardDTBs = map[string][]string{
	"raspi3b": {"bcm2710-rpi-3-b.dtb", "bcm2837-rpi-3-b.dtb"},
}

// planKernel picks the image's own kernel where QEMU emulates the board the
// image was made for (a Raspberry Pi OS image on raspi3b), else the board's
// Debian kernel: QEMU has no AM335x machine for BeagleBone kernels, and a
// `virt` board needs a kernel with virtio drivers.
func planKernel(info *ImageInfo, b boards.Profile) (kernelPlan, error) {
	dtbs, emulated := boardDTBs[b.Machine]
	if !emulated || info.Boot == nil || info.Family == FamilyDebian {
		return kernelPlan{from: kernelFromBoard}, nil
	}
	fsys := bootFS{file: info.File, part: *info.Boot}
	list, err := fsys.list()
	if err != nil {
		return kernelPlan{}, err
	}
	plan := kernelPlan{from: kernelFromImage}
	want := "kernel8.img" // what the firmware loads with arm_64bit=1
	if k := configValue(info.Config, "kernel"); k != "" {
		want = k
	}
	name, ok := list.has(want)
	if !ok {
		if len(info.Kernels) == 0 {
			return kernelPlan{}, &ImageFormatError{File: info.File, What: fmt.Sprintf("no kernel: boot partition %d has no %s (nor any kernel*.img)", info.Boot.Index, want),
				Fix: "pass a complete Raspberry Pi OS image"}
		}
		// Name the kernels it has, with their architecture: the usual
		// mistake is a 32-bit image (kernel7.img) on an arm64 board.
		var have []string
		for _, k := range info.Kernels {
			data, err := fsys.readFile(k)
			arch := "unreadable"
			if err == nil {
				if a, err := KernelArch(data); err == nil {
					arch = a
				}
			}
			have = append(have, k+" ("+arch+")")
		}
		return kernelPlan{}, &ImageFormatError{File: info.File,
			What: fmt.Sprintf("wrong-arch kernel: board %s needs an arm64 %s, the boot partition has %s", b.Slug, want, strings.Join(have, ", ")),
			Fix:  "use the 64-bit (arm64) Raspberry Pi OS image on " + b.Slug}
	}
	data, err := fsys.readFile(name)
	if err != nil {
		return kernelPlan{}, err
	}
	arch, err := KernelArch(data)
	if err != nil {
		return kernelPlan{}, &ImageFormatError{File: info.File, What: fmt.Sprintf("%s on the boot partition is not a kernel: %v", name, err),
			Fix: "the image is damaged: fetch it again"}
	}
	if arch != b.Platform.Architecture {
		return kernelPlan{}, &ImageFormatError{File: info.File,
			What: fmt.Sprintf("wrong-arch kernel: %s is a %s kernel but board %s is %s", name, arch, b.Slug, b.Platform.Architecture),
			Fix:  "use the 64-bit (arm64) Raspberry Pi OS image on " + b.Slug}
	}
	plan.kernel, plan.data, plan.arch = name, data, arch
	for _, d := range dtbs {
		if n, ok := list.has(d); ok {
			plan.dtb = n
			break
		}
	}
	if plan.dtb == "" {
		return kernelPlan{}, &ImageFormatError{File: info.File, What: fmt.Sprintf("no device tree for %s on the boot partition (looked for %s)", b.Slug, strings.Join(dtbs, ", ")),
			Fix: "pass a Raspberry Pi OS image that supports the Raspberry Pi 3"}
	}
	initrd := configValue(info.Config, "initramfs")
	if f := strings.Fields(initrd); len(f) > 0 {
		initrd = f[0]
	}
	if initrd == "" && configValue(info.Config, "auto_initramfs") == "1" {
		initrd = strings.Replace(strings.Replace(name, "kernel", "initramfs", 1), ".img", "", 1)
	}
	if n, ok := list.has(initrd); ok && initrd != "" {
		plan.initrd = n
	}
	return plan, nil
}

// configValue is the last unconditional "key=value" (or "key value") of a
// config.txt: what the firmware would use on any model.
func configValue(config, key string) string {
	val := ""
	section := "all"
	for _, l := range strings.Split(config, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(l, "[]")
			continue
		}
		if section != "all" && section != "pi3" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			k, v, ok = strings.Cut(l, " ")
		}
		if ok && strings.TrimSpace(k) == key {
			val = strings.TrimSpace(v)
		}
	}
	return val
}

func (p kernelPlan) copyOwnKernel(info *ImageInfo, out string, im *Image) error {
	fsys := bootFS{file: info.File, part: *info.Boot}
	im.Kernel = "kernel.img"
	if err := os.WriteFile(filepath.Join(out, im.Kernel), p.data, 0o444); err != nil {
		return err
	}
	for _, f := range []struct{ src, dst string }{{p.dtb, "board.dtb"}, {p.initrd, "initrd.img"}} {
		if f.src == "" {
			continue
		}
		data, err := fsys.readFile(f.src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, f.dst), data, 0o444); err != nil {
			return err
		}
		if f.dst == "board.dtb" {
			im.DTB = f.dst
		} else {
			im.Initrd = f.dst
		}
	}
	im.KernelVersion = "image's own " + p.kernel
	if p.release != "" {
		im.KernelVersion = p.release
	}
	im.RootModules = p.rootModules
	return nil
}

// installBoardKernel fetches the board's Debian kernel for the image's own
// suite and architecture, writes its modules into the prepared copy's root
// filesystem (unless that exact version is there) and keeps the package
// with the image, so EnsureBootFiles builds the initrd and dtb from it.
func installBoardKernel(ctx context.Context, archive *debarchive.Client, deb string, b boards.Profile, info *ImageInfo,
	ext ext4Part, w *ext4Writer, work, out string, im *Image, logf func(string, ...any)) error {
	arch := b.Platform.DebianArch()
	if deb == "" {
		idx, err := archive.Index(ctx, info.Suite, arch)
		if err != nil {
			return fmt.Errorf("kernel for Debian %s %s: %w", info.Suite, arch, err)
		}
		pkg, err := debarchive.KernelPackage(idx, b.Kernel.DebianPackage)
		if err != nil {
			return fmt.Errorf("kernel for Debian %s %s: %w", info.Suite, arch, err)
		}
		logf("image: fetching %s %s (Debian %s) for %s", pkg.Name, pkg.Version, info.Suite, b.Slug)
		if deb, err = archive.Download(ctx, pkg); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
	}
	kroot := filepath.Join(work, "kernel")
	if err := debarchive.ExtractDeb(ctx, deb, kroot); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	kver, modDir, base, err := kernelModuleTree(kroot)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", filepath.Base(deb), err)
	}
	if o, err := proc.CombinedOutput(proc.CommandContext(ctx, "depmod", "-b", base, kver)); err != nil {
		return fmt.Errorf("kernel: depmod %s: %w: %s", kver, err, o)
	}
	if err := CopyFile(deb, filepath.Join(out, "kernel.deb")); err != nil {
		return err
	}
	if err := CopyFile(filepath.Join(kroot, "boot", "vmlinuz-"+kver), filepath.Join(out, "vmlinuz")); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	im.Kernel, im.KernelDeb, im.KernelVersion = "vmlinuz", "kernel.deb", kver
	if contains(info.ModuleVersions, kver) {
		logf("image: the image already has modules for %s", kver)
		return nil
	}
	// /lib is a symlink to usr/lib on merged-/usr images: write where it
	// really points.
	dst, err := ext.resolve(ctx, "/lib/modules")
	if err != nil {
		return err
	}
	n, err := w.copyTree(ctx, modDir, path.Join(dst, kver))
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	logf("image: writing %d kernel modules for %s into the root filesystem", n, kver)
	return nil
}

// kernelModuleTree finds the one lib/modules/<version> of an unpacked
// kernel package.
func kernelModuleTree(root string) (kver, modDir, base string, err error) {
	for _, base := range []string{filepath.Join(root, "usr"), root} {
		ents, err := os.ReadDir(filepath.Join(base, "lib/modules"))
		if err != nil {
			continue
		}
		var vs []string
		for _, e := range ents {
			if e.IsDir() {
				vs = append(vs, e.Name())
			}
		}
		if len(vs) > 0 {
			sort.Strings(vs)
			v := vs[len(vs)-1]
			return v, filepath.Join(base, "lib/modules", v), base, nil
		}
	}
	return "", "", "", errors.New("the package has no lib/modules")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// droppedCmdline are kernel arguments that make sense only on the real
// board's first boot, or that hide what socbox waits for on the console.
func droppedCmdline(arg string) bool {
	k, v, _ := strings.Cut(arg, "=")
	switch k {
	case "console", "quiet", "splash", "loglevel", "resize":
		return true
	case "init":
		// Raspberry Pi OS's firstboot resizes the root partition, changes
		// the disk ID (and so every PARTUUID) and reboots: socbox has
		// grown the partition already and boots with a fixed command line.
		return strings.Contains(v, "firstboot") || strings.Contains(v, "init_resize")
	}
	return strings.HasPrefix(k, "plymouth.") || strings.HasPrefix(k, "systemd.run")
}

// buildAppend is the kernel command line for the prepared image, without
// the console (the harness adds the board's).
func buildAppend(info *ImageInfo, b boards.Profile, plan kernelPlan, root Partition) string {
	src := info.Cmdline
	if info.Family == FamilyDebian {
		src = uEnvValue(info.UEnv, "cmdline")
	}
	// socbox's initrd finds the root by filesystem UUID, whatever the
	// board calls the disk (mmcblk0p2, vda2); busybox cannot read the
	// partition table's PARTUUIDs.
	socboxInitrd := plan.from == kernelFromBoard || len(plan.rootModules) > 0
	var args []string
	for _, a := range strings.Fields(src) {
		if droppedCmdline(a) {
			continue
		}
		if socboxInitrd {
			k, _, _ := strings.Cut(a, "=")
			if k == "root" || k == "rootfstype" || k == "rootwait" || k == "ro" || k == "rw" {
				continue
			}
		}
		args = append(args, a)
	}
	if socboxInitrd {
		args = append([]string{"root=UUID=" + root.FSUUID, "rootfstype=ext4", "rootwait", "rw"}, args...)
	} else if !strings.Contains(" "+strings.Join(args, " ")+" ", " root=") {
		args = append([]string{"root=PARTUUID=" + root.PartUUID, "rootfstype=ext4"}, args...)
	}
	if plan.from == kernelFromImage {
		if !contains(args, "rootwait") {
			args = append(args, "rootwait")
		}
		if strings.HasPrefix(plan.dtb, "bcm2710") {
			// Raspberry Pi kernels with Raspberry Pi device trees name the
			// mini-UART ttyS0, and the firmware (absent under QEMU)
			// normally enables it with 8250.nr_uarts=1.
			args = append(args, "8250.nr_uarts=1", "console=ttyS0,115200")
		}
	}
	return strings.Join(args, " ")
}

// uEnvValue reads "key=value" from a U-Boot uEnv.txt.
func uEnvValue(uenv, key string) string {
	for _, l := range strings.Split(uenv, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if ok && k == key {
			return v
		}
	}
	return ""
}

// copyPrepared makes the prepared copy of src at dst, growing the root
// partition (when it is the last one, on an MBR or GPT disk) and its
// filesystem by extra bytes. resize2fs cuts a regular file to the
// filesystem's size whatever its "?offset=", so the root filesystem is
// grown in a file of its own and then placed into the copy.
func copyPrepared(ctx context.Context, src, dst string, info *ImageInfo, extra int64, logf func(string, ...any)) (Partition, error) {
	root := info.Root
	last := true
	for _, p := range info.Layout.Partitions {
		if p.Index != root.Index && p.Start > root.Start {
			last = false
		}
	}
	gpt := info.Layout.Table == "gpt"
	if (info.Layout.Table != "mbr" && !gpt) || !last || extra <= 0 {
		logf("image: copying %s (%d MiB, sparse); not growing the root filesystem (%s table, root is partition %d of %d)",
			filepath.Base(src), info.Layout.Size>>20, info.Layout.Table, root.Index, len(info.Layout.Partitions))
		if err := copyRange(ctx, src, dst, 0, 0, info.Layout.Size); err != nil {
			return root, err
		}
		return root, ext4Part{file: dst, offset: root.Start, size: root.Size}.fsck(ctx)
	}
	const align = 4 << 20
	newEnd := (root.End() + extra + align - 1) / align * align
	sectors := (newEnd - root.Start) / 512
	if sectors > 0xFFFFFFFF && !gpt {
		return root, fmt.Errorf("the root partition would exceed MBR's 2 TiB")
	}
	logf("image: copying %s (%d MiB, sparse) and growing its root filesystem by %d MiB", filepath.Base(src), info.Layout.Size>>20, (newEnd-root.End())>>20)
	if err := copyRange(ctx, src, dst, 0, 0, root.Start); err != nil {
		return root, err
	}
	rootImg := dst + ".root"
	defer os.Remove(rootImg)
	if err := copyRange(ctx, src, rootImg, root.Start, 0, root.Size); err != nil {
		return root, err
	}
	ext := ext4Part{file: rootImg}
	if err := ext.fsck(ctx); err != nil {
		return root, err
	}
	newSize := sectors * 512
	if err := os.Truncate(rootImg, newSize); err != nil {
		return root, err
	}
	if err := ext.resize(ctx, newSize); err != nil {
		return root, err
	}
	if err := copyRange(ctx, rootImg, dst, 0, root.Start, newSize); err != nil {
		return root, err
	}
	if gpt {
		// The backup table (33 sectors) goes at the very end; a MiB keeps
		// the disk size aligned.
		if err := os.Truncate(dst, newEnd+1<<20); err != nil {
			return root, err
		}
		if err := growGPTPartition(dst, root.Index, newEnd); err != nil {
			return root, err
		}
		root.Size = newSize
		return root, nil
	}
	if err := os.Truncate(dst, newEnd); err != nil {
		return root, err
	}
	// MBR entry i: 16 bytes at 446+16*(i-1); its size in sectors (LE
	// uint32) at +12.
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return root, err
	}
	entry := make([]byte, 4)
	binary.LittleEndian.PutUint32(entry, uint32(sectors))
	_, werr := f.WriteAt(entry, int64(446+16*(root.Index-1)+12))
	if err := errors.Join(werr, f.Close()); err != nil {
		return root, err
	}
	root.Size = newSize
	return root, nil
}

// copyRange copies n bytes of src from srcOff to dst at dstOff, creating
// dst if needed and skipping all-zero blocks: dst's range must be new
// (a hole), so the skipped blocks read as zeros.
func copyRange(ctx context.Context, src, dst string, srcOff, dstOff, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			out.Close()
			return err
		}
		// Skip the source's holes without reading them: a decompressed
		// SD card image is mostly holes.
		if data, err := seekData(in, srcOff+done); err == nil {
			if data >= srcOff+n {
				break
			}
			if data > srcOff+done {
				done = data - srcOff
				continue
			}
		}
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := in.ReadAt(chunk, srcOff+done); err != nil {
			out.Close()
			return fmt.Errorf("read %s at %d: %w", src, srcOff+done, err)
		}
		if !isZero(chunk) {
			if _, err := out.WriteAt(chunk, dstOff+done); err != nil {
				out.Close()
				return err
			}
		}
		done += int64(len(chunk))
	}
	if st, err := out.Stat(); err == nil && st.Size() < dstOff+n {
		if err := out.Truncate(dstOff + n); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// seekData is where the next data at or after off starts (SEEK_DATA); the
// file's size when only a hole follows. An error means the filesystem
// cannot tell, and the caller reads everything.
func seekData(f *os.File, off int64) (int64, error) {
	const seekData = 3 // SEEK_DATA (Linux, the BSDs, macOS)
	pos, err := f.Seek(off, seekData)
	if errors.Is(err, syscall.ENXIO) {
		st, serr := f.Stat()
		if serr != nil {
			return 0, serr
		}
		return st.Size(), nil
	}
	return pos, err
}
