package images

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/imagetest"
)

func TestKernelRelease(t *testing.T) {
	rel, err := kernelRelease([]byte(imagetest.ARM64Kernel(t, "6.6.51+rpt-rpi-v8")))
	require.NoError(t, err)
	require.Equal(t, "6.6.51+rpt-rpi-v8", rel, "read through gzip, as kernel8.img ships")

	// Debian's arm64 Image is uncompressed; printk formats that also say
	// "Linux version" come before the banner in some builds.
	raw := append(make([]byte, 64), "Linux version %s (%s)\x00Linux version 6.12.117+deb13-arm64 (debian-kernel@lists.debian.org) (aarch64-linux-gnu-gcc-14)"...)
	rel, err = kernelRelease(raw)
	require.NoError(t, err)
	require.Equal(t, "6.12.117+deb13-arm64", rel)

	_, err = kernelRelease([]byte(imagetest.ARM64Kernel(t, "")))
	require.ErrorContains(t, err, `no "Linux version" banner`)
}

// TestKernelReleaseBoundsDecompression is a gzip bomb for kernel8.img:
// 640 MiB of zeros in 650 KiB (concatenated gzip members, which Go's
// reader reads on). Read whole into memory, it took a GiB and more.
func TestKernelReleaseBoundsDecompression(t *testing.T) {
	member := []byte(imagetest.GzipBytes(t, make([]byte, 16<<20)))
	bomb := bytes.Repeat(member, 40)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := kernelRelease(bomb)
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated reading the kernel's release")
	require.ErrorContains(t, err, `no "Linux version" banner in the first 128 MiB`)

	// A banner split across two chunks of the stream is found all the same.
	img := make([]byte, 3<<20)
	at := 1<<20 - 5
	copy(img[at:], "Linux version 6.12.1-arm64 (builder) #1 SMP\n")
	rel, err := kernelRelease([]byte(imagetest.GzipBytes(t, img)))
	require.NoError(t, err)
	require.Equal(t, "6.12.1-arm64", rel)

	// A release that is a path is no release.
	_, err = kernelRelease([]byte("Linux version 6/../../etc (builder) #1"))
	require.ErrorContains(t, err, "no \"Linux version\" banner")
}

func TestInitramfsFormat(t *testing.T) {
	for _, tc := range []struct {
		data, format string
	}{
		{imagetest.Initramfs(t, map[string]string{"init": "#!/bin/sh\n"}), "gzip"},
		{"070701000000", "cpio"},
		{"\x28\xb5\x2f\xfdzstd", "zstd"},
		{"\xfd7zXZ\x00xz", "xz"},
		{"\x27\x05\x19\x56uImage", "U-Boot ramdisk"},
	} {
		f, ok := initramfsFormat([]byte(tc.data))
		require.True(t, ok, tc.format)
		require.Equal(t, tc.format, f)
	}
	for _, bad := range []string{"", "initramfs", "#!/bin/sh\n"} {
		_, ok := initramfsFormat([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

// TestOwnKernelInitrdChoice checks, on Raspberry-Pi-OS-shaped images for
// raspi3b (which boots the image's own kernel), how that kernel is given
// what it needs to mount the root filesystem, and the command line that
// goes with it. It reads the images the way Prepare does, without the
// copy; TestInitrdFromImageModules and TestPrepareRaspberryPiOSBookworm
// go through Prepare.
func TestOwnKernelInitrdChoice(t *testing.T) {
	const rel = imagetest.RaspiRelease
	modular := imagetest.ModularRootDrivers(rel)
	b := board(t, "raspi3b")
	for _, tc := range []struct {
		name        string
		image       imagetest.RaspiOS
		initrd      string   // the boot partition's initramfs booted
		rootModules []string // socbox's initrd's modules
		release     string
	}{
		{name: "the image's initramfs8, loaded by auto_initramfs=1", image: imagetest.RaspiOS{Modules: modular},
			initrd: "initramfs8", release: rel},
		{name: "the image's initramfs, kernel release unreadable",
			image:  imagetest.RaspiOS{Kernels: map[string]string{"kernel8.img": imagetest.ARM64Kernel(t, "")}},
			initrd: "initramfs8"},
		{name: "config.txt initramfs line", image: imagetest.RaspiOS{NoInitramfs: true, Modules: modular,
			Config:    "arm_64bit=1\ninitramfs initrd.img followkernel\n",
			BootFiles: map[string]string{"initrd.img": imagetest.Initramfs(t, map[string]string{"init": ""})}},
			initrd: "initrd.img", release: rel},
		{name: "root drivers built in, no initramfs (Raspberry Pi OS kernel)", image: imagetest.RaspiOS{NoInitramfs: true},
			release: rel},
		{name: "root drivers as modules, no initramfs (Debian or own-built kernel)", image: imagetest.RaspiOS{NoInitramfs: true, Modules: modular},
			rootModules: []string{"bcm2835", "sdhci_iproc", "mmc_block", "ext4"}, release: rel},
		{name: "initramfs8 present but config.txt does not load it", image: imagetest.RaspiOS{Config: "arm_64bit=1\n", Modules: modular},
			rootModules: []string{"bcm2835", "sdhci_iproc", "mmc_block", "ext4"}, release: rel},
		{name: "initramfs8 that is not an initramfs", image: imagetest.RaspiOS{Initramfs: "initramfs", Modules: modular},
			rootModules: []string{"bcm2835", "sdhci_iproc", "mmc_block", "ext4"}, release: rel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := tc.image.Image(t)
			before := imagetest.SHA256File(t, img)
			info, err := Inspect(t.Context(), img)
			require.NoError(t, err)
			plan, err := planKernel(info, b)
			require.NoError(t, err)
			require.NoError(t, plan.chooseInitrd(t.Context(), info, b, t.TempDir(), t.Logf))
			require.Equal(t, before, imagetest.SHA256File(t, img), "the image is only read")
			require.Equal(t, tc.initrd, plan.initrd)
			require.Equal(t, tc.rootModules, plan.rootModules)
			require.Equal(t, tc.release, plan.release)
			if tc.rootModules != nil {
				require.Equal(t, "root=UUID="+info.Root.FSUUID+" rootfstype=ext4 rootwait rw fsck.repair=yes 8250.nr_uarts=1 console=ttyS0,115200", buildAppend(info, b, plan, info.Root),
					"socbox's initrd finds the root by filesystem UUID")
			} else {
				require.Equal(t, "root=PARTUUID="+imagetest.DiskID+"-02 rootfstype=ext4 fsck.repair=yes rootwait 8250.nr_uarts=1 console=ttyS0,115200", buildAppend(info, b, plan, info.Root),
					"the kernel, or the image's initramfs, finds the root as on the board")
			}
		})
	}
}

func TestOwnKernelInitrdErrors(t *testing.T) {
	testCache(t)
	for _, tc := range []struct {
		name  string
		image imagetest.RaspiOS
		want  []string
	}{
		{name: "no modules for the kernel's release",
			image: imagetest.RaspiOS{NoInitramfs: true, Kernels: map[string]string{"kernel8.img": imagetest.ARM64Kernel(t, "6.6.62+rpt-rpi-v8")},
				Modules: imagetest.ModularRootDrivers(imagetest.RaspiRelease)},
			want: []string{"prepare for raspi3b: the image's own kernel8.img has no initramfs",
				"it is Linux 6.6.62+rpt-rpi-v8 but the root filesystem has no /lib/modules/6.6.62+rpt-rpi-v8 (it has: 6.6.51+rpt-rpi-v8)",
				"; install the modules of the kernel on the boot partition into the image's /lib/modules/6.6.62+rpt-rpi-v8",
				"or ship an initramfs for it (Raspberry Pi OS: auto_initramfs=1 in config.txt and initramfs8 on the boot partition)"}},
		{name: "kernel release unreadable",
			image: imagetest.RaspiOS{NoInitramfs: true, Kernels: map[string]string{"kernel8.img": imagetest.ARM64Kernel(t, "")}},
			want:  []string{"kernel8.img has no initramfs: cannot tell which kernel release it is", "or ship an initramfs for it"}},
		{name: "modules never depmod'ed",
			image: imagetest.RaspiOS{NoInitramfs: true, Modules: imagetest.Modules{Release: imagetest.RaspiRelease, NoIndex: true}},
			want:  []string{"/lib/modules/" + imagetest.RaspiRelease + " has no readable modules.dep", "; run depmod " + imagetest.RaspiRelease + " in the image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := tc.image.Image(t)
			before := imagetest.SHA256File(t, img)
			acq, err := Acquire(t.Context(), Source{Location: img})
			require.NoError(t, err)
			_, err = Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 16})
			var fe *ImageFormatError
			require.True(t, errors.As(err, &fe), "%v", err)
			require.True(t, strings.HasPrefix(err.Error(), img+": "), "names the image: %v", err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.Equal(t, before, imagetest.SHA256File(t, img))
		})
	}
}

// TestInitrdFromImageModules boots nothing: it checks the initrd
// EnsureBootFiles makes for an image whose own kernel has its root drivers
// as modules, read out of the prepared copy without writing it.
func TestInitrdFromImageModules(t *testing.T) {
	cache := testCache(t)
	acq, err := Acquire(t.Context(), Source{Location: imagetest.RaspiOS{NoInitramfs: true, Modules: imagetest.ModularRootDrivers(imagetest.RaspiRelease)}.Image(t)})
	require.NoError(t, err)
	b := board(t, "raspi3b")
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: b, AuthorizedKey: testKey, HeadroomMiB: 16})
	require.NoError(t, err)
	require.Equal(t, imagetest.RaspiRelease, im.KernelVersion)
	require.Equal(t, []string{"bcm2835", "sdhci_iproc", "mmc_block", "ext4"}, im.RootModules)
	require.Empty(t, im.Initrd)
	require.True(t, strings.HasPrefix(im.Append, "root=UUID="), im.Append)

	// The guest's busybox, as BusyboxBinary caches it: only its ELF header
	// is checked here.
	archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs")}
	bb := filepath.Join(archive.CacheDir, "busybox", "bookworm-arm64", "busybox")
	imagetest.WriteTree(t, filepath.Dir(bb), map[string]string{"busybox": imagetest.ELFHeader(true)})

	disk := imagetest.SHA256File(t, im.Path(im.Disk))
	bf, err := EnsureBootFiles(t.Context(), im, b, archive, t.Logf)
	require.NoError(t, err)
	require.Equal(t, disk, imagetest.SHA256File(t, im.Path(im.Disk)), "the prepared copy is only read")
	require.Equal(t, im.Path("kernel.img"), bf.Kernel)
	require.Equal(t, im.Path("board.dtb"), bf.DTB, "the image's own device tree")
	require.Equal(t, im.Dir, filepath.Dir(filepath.Dir(bf.Initrd)), "cached with the prepared image")

	data, err := os.ReadFile(bf.Initrd)
	require.NoError(t, err)
	files := imagetest.ReadInitramfs(t, data)
	require.Equal(t, "bcm2835.ko\nsdhci.ko\nsdhci_pltfm.ko\nsdhci_iproc.ko\ncrc32c_generic.ko\ncrc16.ko\nmbcache.ko\njbd2.ko\next4.ko\n", files["modules.order"],
		"dependencies and ext4's soft dependency first; mmc_block is built in")
	require.Equal(t, imagetest.ModuleContent("kernel/fs/ext4/ext4.ko.xz"), files["lib/modules/ext4.ko"], "decompressed from the image's module")
	require.Equal(t, imagetest.ELFHeader(true), files["bin/busybox"])
	require.Contains(t, files["init"], "switch_root")

	// Cached: the same inputs give the same file, without an archive.
	st, err := os.Stat(bf.Initrd)
	require.NoError(t, err)
	again, err := EnsureBootFiles(t.Context(), im, b, nil, nil)
	require.NoError(t, err)
	require.Equal(t, bf, again)
	st2, err := os.Stat(again.Initrd)
	require.NoError(t, err)
	require.Equal(t, st.ModTime(), st2.ModTime())

	// Other modules are another initrd.
	other := *im
	other.RootModules = []string{"sdhci_iproc", "ext4"}
	bf2, err := EnsureBootFiles(t.Context(), &other, b, archive, nil)
	require.NoError(t, err)
	require.NotEqual(t, bf.Initrd, bf2.Initrd)
	data, err = os.ReadFile(bf2.Initrd)
	require.NoError(t, err)
	require.NotContains(t, imagetest.ReadInitramfs(t, data)["modules.order"], "bcm2835.ko")

	// A module modules.dep names but the root filesystem lacks.
	broken := *im
	broken.RootModules = []string{"sdhci_iproc", "ext4", "nosuchmod"}
	_, err = EnsureBootFiles(t.Context(), &broken, b, archive, nil)
	require.ErrorContains(t, err, "initrd for "+im.Name+"'s own kernel "+imagetest.RaspiRelease+" on raspi3b: ")
	require.ErrorContains(t, err, `kernel has no module "nosuchmod"`)
}

// FuzzKernelHeaders reads arbitrary bytes as a kernel image the way
// Prepare does (architecture, gzip, banner, initramfs magic): it never
// panics, and a release it reads is a directory name, never a path.
func FuzzKernelHeaders(f *testing.F) {
	f.Add([]byte(imagetest.ARM64Kernel(f, imagetest.RaspiRelease)))
	f.Add([]byte(imagetest.ZImage()))
	f.Add(append(make([]byte, 64), "Linux version %s (%s)\x00Linux version 6.12.117+deb13-arm64 (debian-kernel@lists.debian.org)"...))
	f.Add([]byte(imagetest.Initramfs(f, map[string]string{"init": "#!/bin/sh\n"})))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = KernelArch(data)
		_, _ = initramfsFormat(data)
		rel, err := kernelRelease(data)
		if err == nil && (!releaseRe.MatchString(rel) || strings.ContainsAny(rel, "/\x00\n ")) {
			t.Fatalf("release %q", rel)
		}
	})
}
