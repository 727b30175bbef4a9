package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/initrd"
)

// initrdVersion changes whenever the initrd builder changes what it makes.
const initrdVersion = 2

// BootFiles are what QEMU loads besides the disk, for one board.
type BootFiles struct {
	Kernel string
	Initrd string
	DTB    string // empty where QEMU makes the device tree
	// SerialDTB is DTB less the board's SerialSSH.DTBDeleteNodes, for the
	// boot whose state is saved; empty where there are none.
	SerialDTB string
}

type bootInputs struct {
	Version       int      `json:"version"`
	KernelVersion string   `json:"kernel_version"`
	Modules       []string `json:"modules"`
	DTB           string   `json:"dtb"`
	// DTBDelete are the nodes taken out of DTB; SerialDTBDelete those
	// taken out of it as well for the serial-SSH boot.
	DTBDelete       []string `json:"dtb_delete,omitempty"`
	SerialDTBDelete []string `json:"serial_dtb_delete,omitempty"`
	Arch            string   `json:"arch"`
	Suite           string   `json:"suite"`
	// From is "root" when the modules come from the image's own root
	// filesystem rather than a kernel package.
	From string `json:"from,omitempty"`
}

// EnsureBootFiles returns the kernel, initrd and device tree to boot im on
// board, making the initrd and dtb on the host from the image's kernel
// package on first use (about a second) and caching them in the image's
// directory, so boards sharing a root filesystem share one image. A user
// image booting its own kernel brings its device tree and, if any, its
// initramfs; when its kernel needs modules to mount the root and it has no
// initramfs (im.RootModules), the initrd is made from the modules in the
// image's root filesystem, cached the same way.
func EnsureBootFiles(ctx context.Context, im *Image, board boards.Profile, archive *debarchive.Client, logf func(string, ...any)) (BootFiles, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bf := BootFiles{Kernel: im.Path(im.Kernel)}
	if im.Board != "" && im.Board != board.Slug {
		return bf, fmt.Errorf("image %s was prepared for %s, not %s: prepare it for %s (its kernel and first-boot setup depend on the board)",
			im.Name, im.Board, board.Slug, board.Slug)
	}
	if im.KernelDeb == "" {
		// A user image booting its own kernel: the initramfs (optional) and
		// device tree came from its boot partition.
		if im.Kernel == "" {
			return bf, fmt.Errorf("image %s has no kernel package to build an initrd from", im.Name)
		}
		if board.Kernel.DTB != "" && im.DTB == "" {
			return bf, fmt.Errorf("image %s boots its own kernel but has no device tree for %s", im.Name, board.Slug)
		}
		if board.Kernel.DTB != "" {
			bf.DTB = im.Path(im.DTB)
		}
		bf.Initrd = im.Path(im.Initrd)
		if len(im.RootModules) == 0 {
			return bf, nil
		}
	}
	arch := board.Platform.DebianArch()
	in := bootInputs{Version: initrdVersion, KernelVersion: im.KernelVersion, Modules: board.Kernel.InitrdModules,
		DTB: board.Kernel.DTB, DTBDelete: board.Kernel.DTBDeleteNodes, SerialDTBDelete: board.SerialSSH.DTBDeleteNodes, Arch: arch, Suite: im.Suite}
	fromRoot := im.KernelDeb == ""
	if fromRoot {
		in.Modules, in.DTB, in.DTBDelete, in.SerialDTBDelete, in.From = im.RootModules, "", nil, nil, "root"
	}
	dir := filepath.Join(im.Dir, "boot-"+cacheKey(in)[:12])
	out := BootFiles{Kernel: bf.Kernel, Initrd: filepath.Join(dir, "initrd.img"), DTB: bf.DTB}
	if board.Kernel.DTB != "" && !fromRoot {
		out.DTB = filepath.Join(dir, "board.dtb")
		if len(board.SerialSSH.DTBDeleteNodes) > 0 {
			out.SerialDTB = filepath.Join(dir, "board-serial.dtb")
		}
	}
	stage := fmt.Sprintf("boot files for %s from %s", board.Slug, im.Name)
	if fromRoot {
		stage = fmt.Sprintf("initrd for %s's own kernel %s on %s", im.Name, im.KernelVersion, board.Slug)
	}
	if archive == nil {
		if _, err := os.Stat(out.Initrd); err == nil {
			return out, nil
		}
		return bf, fmt.Errorf("%s: no Debian archive client to fetch busybox-static for %s", stage, im.Suite)
	}
	var contents initrd.Contents
	var size int
	ready := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "initrd.img"))
		return err == nil
	}
	built, err := cachefs.Ensure(ctx, cachefs.Entry{Dir: dir, Ready: ready, DirMode: 0o755, FileMode: 0o444, Frozen: []string{"initrd.img"}},
		func(ctx context.Context, files string) error {
			// Scratch space for unpacking, apart from what is published.
			work, err := os.MkdirTemp(im.Dir, "boot-work.tmp-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			bb, err := BusyboxBinary(ctx, archive, im.Suite, arch)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if fromRoot {
				contents, err = buildRootModulesInitrd(ctx, im, bb, work, ELFMachine(board.Platform), &buf)
			} else {
				contents, err = buildKernelDebBootFiles(ctx, im, board, bb, work, files, &buf)
			}
			if err != nil {
				return err
			}
			size = buf.Len()
			return os.WriteFile(filepath.Join(files, "initrd.img"), buf.Bytes(), 0o444)
		})
	if err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	if !built {
		return out, nil
	}
	from := "the kernel package"
	if fromRoot {
		from = "the image's root filesystem"
	}
	logf("image: initrd for %s with busybox and %d modules from %s (%d KiB)", board.Slug, len(contents.LoadOrder), from, size/1024)
	return out, nil
}

// buildKernelDebBootFiles writes the initrd for im's Debian kernel package
// to w, with the modules from the package, and the board's device tree
// from it into files.
func buildKernelDebBootFiles(ctx context.Context, im *Image, board boards.Profile, busybox, tmp, files string, w io.Writer) (initrd.Contents, error) {
	var c initrd.Contents
	kroot := filepath.Join(tmp, "kernel")
	if err := debarchive.ExtractDeb(ctx, im.Path(im.KernelDeb), kroot); err != nil {
		return c, err
	}
	modDir, base, err := findModuleDir(kroot, im.KernelVersion)
	if err != nil {
		return c, err
	}
	if o, err := proc.CombinedOutput(proc.CommandContext(ctx, "depmod", "-b", base, im.KernelVersion)); err != nil {
		return c, fmt.Errorf("depmod: %w: %s", err, o)
	}
	c, err = initrd.Build(initrd.Spec{
		Busybox: busybox, ModulesDir: modDir, Modules: board.Kernel.InitrdModules, Machine: ELFMachine(board.Platform),
	}, w)
	if err != nil {
		return c, err
	}
	if board.Kernel.DTB != "" {
		src := filepath.Join(kroot, "usr/lib/linux-image-"+im.KernelVersion, board.Kernel.DTB)
		blob, err := os.ReadFile(src)
		if err != nil {
			return c, fmt.Errorf("device tree %s is not in the kernel package: %w", board.Kernel.DTB, err)
		}
		if len(board.Kernel.DTBDeleteNodes) > 0 {
			if blob, err = DeleteDTBNodes(blob, board.Kernel.DTBDeleteNodes...); err != nil {
				return c, fmt.Errorf("device tree %s: %w", board.Kernel.DTB, err)
			}
		}
		if err := os.WriteFile(filepath.Join(files, "board.dtb"), blob, 0o644); err != nil {
			return c, err
		}
		if len(board.SerialSSH.DTBDeleteNodes) > 0 {
			serial, err := DeleteDTBNodes(blob, board.SerialSSH.DTBDeleteNodes...)
			if err != nil {
				return c, fmt.Errorf("device tree %s for the serial-SSH boot: %w", board.Kernel.DTB, err)
			}
			if err := os.WriteFile(filepath.Join(files, "board-serial.dtb"), serial, 0o644); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// findModuleDir finds lib/modules/<version> in an unpacked kernel package:
// under usr/ on merged-/usr suites (trixie), at the top on older ones. It
// returns the module dir and the base depmod -b needs.
func findModuleDir(root, version string) (string, string, error) {
	for _, base := range []string{filepath.Join(root, "usr"), root} {
		d := filepath.Join(base, "lib/modules", version)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, base, nil
		}
	}
	return "", "", fmt.Errorf("kernel package has no lib/modules/%s", version)
}

// BusyboxBinary returns a static busybox for a Debian suite and
// architecture, taken from that suite's busybox-static and cached.
func BusyboxBinary(ctx context.Context, archive *debarchive.Client, suite, arch string) (string, error) {
	dst := filepath.Join(archive.CacheDir, "busybox", suite+"-"+arch, "busybox")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	debs, err := archive.FetchDebs(ctx, suite, arch, []string{"busybox-static"}, map[string]bool{"libc6": true})
	if err != nil {
		return "", fmt.Errorf("busybox-static for %s %s: %w", suite, arch, err)
	}
	for _, d := range debs {
		if !strings.Contains(filepath.Base(d), "busybox-static_") {
			continue
		}
		data, err := debarchive.ReadFileFromDeb(ctx, d, "bin/busybox")
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		return dst, cachefs.WriteFile(dst, data, 0o755)
	}
	return "", fmt.Errorf("busybox-static for %s %s: package not among the fetched files", suite, arch)
}
