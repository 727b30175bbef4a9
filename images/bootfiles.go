package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/socbox/socbox/boards"
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
}

type bootInputs struct {
	Version       int      `json:"version"`
	KernelVersion string   `json:"kernel_version"`
	Modules       []string `json:"modules"`
	DTB           string   `json:"dtb"`
	Arch          string   `json:"arch"`
	Suite         string   `json:"suite"`
}

// EnsureBootFiles returns the kernel, initrd and device tree to boot im on
// board, making the initrd and dtb on the host from the image's kernel
// package on first use (about a second) and caching them in the image's
// directory, so boards sharing a root filesystem share one image.
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
		return bf, nil
	}
	arch := board.Platform.DebianArch()
	in := bootInputs{Version: initrdVersion, KernelVersion: im.KernelVersion, Modules: board.Kernel.InitrdModules,
		DTB: board.Kernel.DTB, Arch: arch, Suite: im.Suite}
	dir := filepath.Join(im.Dir, "boot-"+cacheKey(in)[:12])
	out := BootFiles{Kernel: bf.Kernel, Initrd: filepath.Join(dir, "initrd.img")}
	if board.Kernel.DTB != "" {
		out.DTB = filepath.Join(dir, "board.dtb")
	}
	if _, err := os.Stat(out.Initrd); err == nil {
		return out, nil
	}
	unlock, err := LockFile(dir+".lock", nil)
	if err != nil {
		return bf, err
	}
	defer unlock()
	if _, err := os.Stat(out.Initrd); err == nil {
		return out, nil
	}
	stage := fmt.Sprintf("boot files for %s from %s", board.Slug, im.Name)
	tmp, err := os.MkdirTemp(im.Dir, "boot.tmp-")
	if err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	defer os.RemoveAll(tmp)
	kroot := filepath.Join(tmp, "kernel")
	if err := debarchive.ExtractDeb(ctx, im.Path(im.KernelDeb), kroot); err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	modDir, base, err := findModuleDir(kroot, im.KernelVersion)
	if err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	if o, err := exec.CommandContext(ctx, "depmod", "-b", base, im.KernelVersion).CombinedOutput(); err != nil {
		return bf, fmt.Errorf("%s: depmod: %w: %s", stage, err, o)
	}
	bb, err := BusyboxBinary(ctx, archive, im.Suite, arch)
	if err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	var buf bytes.Buffer
	contents, err := initrd.Build(initrd.Spec{
		Busybox: bb, ModulesDir: modDir, Modules: board.Kernel.InitrdModules, Machine: ELFMachine(board.Platform),
	}, &buf)
	if err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	files := filepath.Join(tmp, "out")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return bf, err
	}
	if err := os.WriteFile(filepath.Join(files, "initrd.img"), buf.Bytes(), 0o444); err != nil {
		return bf, err
	}
	if board.Kernel.DTB != "" {
		src := filepath.Join(kroot, "usr/lib/linux-image-"+im.KernelVersion, board.Kernel.DTB)
		if err := CopyFile(src, filepath.Join(files, "board.dtb")); err != nil {
			return bf, fmt.Errorf("%s: device tree %s is not in the kernel package: %w", stage, board.Kernel.DTB, err)
		}
	}
	if err := os.Rename(files, dir); err != nil {
		return bf, fmt.Errorf("%s: %w", stage, err)
	}
	logf("image: initrd for %s with busybox and %d modules (%d KiB)", board.Slug, len(contents.LoadOrder), buf.Len()/1024)
	return out, nil
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
		tmp, err := os.CreateTemp(filepath.Dir(dst), "busybox.tmp-")
		if err != nil {
			return "", err
		}
		_, werr := tmp.Write(data)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o755)); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
		return dst, os.Rename(tmp.Name(), dst)
	}
	return "", fmt.Errorf("busybox-static for %s %s: package not among the fetched files", suite, arch)
}
