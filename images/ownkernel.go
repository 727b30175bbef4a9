package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/images/initrd"
)

// An image booting its own kernel on a board QEMU emulates (a Raspberry Pi
// OS image on raspi3b) needs that kernel to reach the root filesystem:
// the SD host, block and ext4 drivers. Raspberry Pi OS's kernels have them
// built in; Debian's arm64 kernel, and many kernels people build for
// their own images, have them as modules and rely on an initramfs. The
// choice, in order:
//
//  1. the image's own initramfs, when config.txt makes the firmware load
//     one (initramfs <file>, or auto_initramfs=1 with initramfs8) and it
//     is a format the kernel unpacks: QEMU's -initrd hands it over as is,
//     so it boots as on the board;
//  2. none, when the kernel has every root driver it has at all built in
//     (modules.builtin of its /lib/modules/<release>);
//  3. else socbox's own initrd (busybox and those modules, read out of the
//     image's root filesystem), built by EnsureBootFiles on first boot
//     and cached with the prepared image.

// chooseInitrd fills in how the image's own kernel reaches its root
// filesystem (see above), reading the image's boot partition and root
// filesystem without writing them; tmp is scratch space.
func (p *kernelPlan) chooseInitrd(ctx context.Context, info *ImageInfo, b boards.Profile, tmp string, logf func(string, ...any)) error {
	release, relErr := kernelRelease(p.data)
	p.release = release
	if p.initrd != "" {
		data, err := bootFS{file: info.File, part: *info.Boot}.readFile(p.initrd)
		if err != nil {
			return err
		}
		if format, ok := initramfsFormat(data); ok {
			logf("image: %s boots with the image's own initramfs %s (%s)", p.kernel, p.initrd, format)
			return nil
		}
		logf("image: %s on the boot partition is not an initramfs the kernel can unpack (empty, or no cpio or compressed-cpio header); socbox makes its own initrd instead", p.initrd)
		p.initrd = ""
	}
	stage := fmt.Sprintf("prepare for %s: the image's own %s has no initramfs", b.Slug, p.kernel)
	shipInitramfs := "or ship an initramfs for it (Raspberry Pi OS: auto_initramfs=1 in config.txt and initramfs8 on the boot partition)"
	if relErr != nil {
		return &ImageFormatError{File: info.File,
			What: fmt.Sprintf("%s: cannot tell which kernel release it is (%v), so socbox cannot find the modules it needs to mount the root filesystem", stage, relErr),
			Fix:  "use an uncompressed or gzip-compressed arm64 kernel Image, " + shipInitramfs}
	}
	if !contains(info.ModuleVersions, release) {
		have := "none"
		if len(info.ModuleVersions) > 0 {
			have = strings.Join(info.ModuleVersions, ", ")
		}
		return &ImageFormatError{File: info.File,
			What: fmt.Sprintf("%s: it is Linux %s but the root filesystem has no /lib/modules/%s (it has: %s), so socbox cannot tell whether it mounts the root filesystem by itself, nor give it the modules", stage, release, release, have),
			Fix:  fmt.Sprintf("install the modules of the kernel on the boot partition into the image's /lib/modules/%s (its kernel package, or make modules_install), %s", release, shipInitramfs)}
	}
	root := ext4Part{file: info.File, offset: info.Root.Start, size: info.Root.Size}
	local, err := dumpModuleIndex(ctx, root, release, tmp)
	if err != nil {
		return fmt.Errorf("%s: %w", stage, err)
	}
	wanted := rootModules(b)
	kinds, err := initrd.Classify(local, wanted)
	if errors.Is(err, initrd.ErrUnsafeModulePath) {
		return &ImageFormatError{File: info.File, What: fmt.Sprintf("%s: /lib/modules/%s: %v", stage, release, err),
			Fix: "socbox refuses module paths that could reach outside the image; the image is damaged or made to attack the host that reads it: do not use it"}
	}
	if err != nil {
		return &ImageFormatError{File: info.File, What: fmt.Sprintf("%s: /lib/modules/%s has no readable modules.dep: %v", stage, release, err),
			Fix: fmt.Sprintf("run depmod %s in the image, %s", release, shipInitramfs)}
	}
	var load, builtin, modular []string
	for i, k := range kinds {
		switch k {
		case initrd.Loadable:
			modular = append(modular, wanted[i])
			load = append(load, wanted[i])
		case initrd.Builtin:
			builtin = append(builtin, wanted[i])
			load = append(load, wanted[i])
		}
	}
	if len(modular) == 0 {
		logf("image: %s (Linux %s) has its root drivers built in (%s): booting it without an initrd", p.kernel, release, strings.Join(builtin, ", "))
		return nil
	}
	logf("image: %s (Linux %s) has %s as modules and no initramfs: socbox builds an initrd with them from the image's /lib/modules/%s", p.kernel, release, strings.Join(modular, ", "), release)
	p.rootModules = load
	return nil
}

// rootModules are the modules a board's kernel needs to mount an ext4 root
// from the board's disk: the profile's list, plus ext4 (the only root
// filesystem socbox prepares).
func rootModules(b boards.Profile) []string {
	out := append([]string(nil), b.Kernel.InitrdModules...)
	if !contains(out, "ext4") {
		out = append(out, "ext4")
	}
	return out
}

// moduleIndexFiles are what initrd.Resolve reads from a module tree.
var moduleIndexFiles = []string{"modules.dep", "modules.builtin", "modules.softdep", "modules.alias"}

// dumpModuleIndex copies /lib/modules/<release>'s index files out of a root
// filesystem into tmp and returns the local tree. /lib is a symlink to
// usr/lib on merged-/usr images: resolved as the guest would.
func dumpModuleIndex(ctx context.Context, root ext4Part, release, tmp string) (string, error) {
	dir, err := root.resolve(ctx, "/lib/modules/"+release)
	if err != nil {
		return "", err
	}
	local := filepath.Join(tmp, "modules", release)
	if err := os.MkdirAll(local, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{}
	for _, f := range moduleIndexFiles {
		files[path.Join(dir, f)] = f
	}
	return local, root.dumpFiles(ctx, local, files, initrd.MaxIndexFile)
}

// buildRootModulesInitrd builds socbox's initrd for an image booting its
// own modular kernel, with modules read out of the prepared copy's root
// filesystem (never written here).
func buildRootModulesInitrd(ctx context.Context, im *Image, busybox, tmp string, machine elf.Machine, w io.Writer) (initrd.Contents, error) {
	var c initrd.Contents
	if im.DiskFormat != "raw" {
		return c, fmt.Errorf("disk %s is %s, socbox reads modules from raw prepared copies only: prepare the image again", im.Disk, im.DiskFormat)
	}
	disk := im.Path(im.Disk)
	lay, err := ReadLayout(disk)
	if err != nil {
		return c, err
	}
	rp, ok := lay.RootPartition()
	if !ok {
		return c, fmt.Errorf("%s: no ext4 root partition: prepare the image again", disk)
	}
	root := ext4Part{file: disk, offset: rp.Start, size: rp.Size}
	release := im.KernelVersion
	local, err := dumpModuleIndex(ctx, root, release, tmp)
	if err != nil {
		return c, err
	}
	c, err = initrd.Resolve(local, im.RootModules)
	if err != nil {
		return c, err
	}
	dir, err := root.resolve(ctx, "/lib/modules/"+release)
	if err != nil {
		return c, err
	}
	// initrd.Resolve checked that every path in LoadOrder stays inside
	// the module tree; dumpFiles checks it again for the host side.
	files := map[string]string{}
	for _, rel := range c.LoadOrder {
		files[path.Join(dir, rel)] = rel
	}
	if err := root.dumpFiles(ctx, local, files, initrd.MaxModuleFile); err != nil {
		return c, err
	}
	for _, rel := range c.LoadOrder {
		if _, err := os.Stat(filepath.Join(local, rel)); err != nil {
			return c, fmt.Errorf("modules.dep of %s lists %s but the root filesystem has no %s: run depmod %s in the image", release, rel, path.Join(dir, rel), release)
		}
	}
	return initrd.Build(initrd.Spec{Busybox: busybox, ModulesDir: local, Modules: im.RootModules, Machine: machine}, w)
}

// maxKernelImage bounds how much of a kernel image kernelRelease reads,
// decompressed: Debian's arm64 Image is about 36 MiB and Raspberry Pi OS's
// kernel8.img about 24 MiB once unpacked, and a gzip stream can expand a
// thousandfold, so a crafted one could fill memory.
const maxKernelImage = 128 << 20

// kernelBanner is what Linux prints first: "Linux version <release>
// (<builder>) ...".
const kernelBanner = "Linux version "

// releaseRe is what uname -r can print: the name of a /lib/modules
// directory, never a path.
var releaseRe = regexp.MustCompile(`^[0-9][A-Za-z0-9._+~-]{0,63}$`)

// kernelRelease reads a kernel image's release (what uname -r prints, the
// name of its /lib/modules directory) from its banner. Raspberry Pi OS's
// kernel8.img is gzip-compressed; Debian's arm64 Image is not. The image
// is read as a stream, at most maxKernelImage bytes of it.
func kernelRelease(data []byte) (string, error) {
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(data, magicGzip) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("decompress: %w", err)
		}
		r = zr
	}
	lr := &io.LimitedReader{R: r, N: maxKernelImage + 1}
	rel, err := findKernelRelease(lr)
	if err == nil {
		return rel, nil
	}
	if lr.N <= 0 {
		return "", fmt.Errorf("no %q banner in the first %d MiB of the kernel image", strings.TrimSpace(kernelBanner), maxKernelImage>>20)
	}
	return "", err
}

// findKernelRelease scans r for the banner, a chunk at a time: a banner
// that straddles two chunks is found in the tail carried over.
func findKernelRelease(r io.Reader) (string, error) {
	const tail = len(kernelBanner) + 130 // banner, release, " ("
	buf := make([]byte, 0, 1<<20+tail)
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		last := err != nil
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return "", fmt.Errorf("decompress: %w", err)
		}
		// Banners starting in the tail are looked at with the next chunk,
		// when all of them is there.
		scan := len(buf) - tail
		if last {
			scan = len(buf)
		}
		if rel, ok := scanKernelRelease(buf, max(scan, 0)); ok {
			return rel, nil
		}
		if last {
			return "", fmt.Errorf("no %q banner in the kernel image", strings.TrimSpace(kernelBanner))
		}
		keep := max(scan, 0)
		buf = buf[:copy(buf, buf[keep:])]
	}
}

// scanKernelRelease looks for a banner starting before limit in buf.
// printk formats that also say "Linux version" come before the banner in
// some builds; what follows them is no release.
func scanKernelRelease(buf []byte, limit int) (string, bool) {
	for off := 0; off < limit; {
		i := bytes.Index(buf[off:], []byte(kernelBanner))
		if i < 0 || off+i >= limit {
			return "", false
		}
		rest := buf[off+i+len(kernelBanner):]
		off += i + 1
		end := bytes.IndexAny(rest, " \x00\n")
		if end > 0 && end < 128 && bytes.HasPrefix(rest[end:], []byte(" (")) && releaseRe.Match(rest[:end]) {
			return string(rest[:end]), true
		}
	}
	return "", false
}

// initramfsFormat says whether data is an initramfs the kernel unpacks: a
// newc cpio or one compressed with a method Linux knows, or a U-Boot
// ramdisk, whose header QEMU strips. QEMU's -initrd loads any file;
// the kernel is what refuses a bad one, late and tersely.
func initramfsFormat(data []byte) (string, bool) {
	for _, m := range []struct {
		magic, name string
	}{
		{"070701", "cpio"}, {"070702", "cpio"}, {"070707", "cpio"},
		{"\x1f\x8b", "gzip"}, {"\x28\xb5\x2f\xfd", "zstd"}, {"\xfd7zXZ\x00", "xz"},
		{"\x5d\x00\x00", "lzma"}, {"BZh", "bzip2"}, {"\x89LZO", "lzo"}, {"\x02\x21\x4c\x18", "lz4"},
		{"\x27\x05\x19\x56", "U-Boot ramdisk"},
	} {
		if bytes.HasPrefix(data, []byte(m.magic)) {
			return m.name, true
		}
	}
	return "", false
}
