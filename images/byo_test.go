package images

import (
	"archive/zip"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/images/imagetest"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcOV4Jc1pSVXz0hZtQ0S+6I9rlDe1Kq5eBqU0zVwFfH socbox-test"

func board(t *testing.T, slug string) boards.Profile {
	p, err := boards.Lookup(slug)
	require.NoError(t, err)
	return p
}

func compress(t *testing.T, src, format string) string {
	t.Helper()
	dst := src + "." + format
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(dst)
	require.NoError(t, err)
	defer out.Close()
	switch format {
	case "xz":
		w, err := xz.NewWriter(out)
		require.NoError(t, err)
		_, err = io.Copy(w, in)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case "gz":
		w := gzip.NewWriter(out)
		_, err = io.Copy(w, in)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case "zip":
		dst = strings.TrimSuffix(src, ".img") + ".zip"
		out2, err := os.Create(dst)
		require.NoError(t, err)
		defer out2.Close()
		zw := zip.NewWriter(out2)
		_, err = zw.Create("README.txt")
		require.NoError(t, err)
		w, err := zw.Create(filepath.Base(src))
		require.NoError(t, err)
		_, err = io.Copy(w, in)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
	case "qcow2":
		imagetest.NeedTools(t, "qemu-img")
		out.Close()
		imagetest.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, dst)
	}
	return dst
}

func TestAcquireFormats(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{}.Image(t)
	want := imagetest.SHA256File(t, img)
	for _, format := range []string{"img", "xz", "gz", "zip", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			src := img
			if format != "img" {
				src = compress(t, img, format)
			}
			before := imagetest.SHA256File(t, src)
			var lines []string
			acq, err := Acquire(t.Context(), Source{Location: src, SHA256: before, Logf: func(f string, a ...any) { lines = append(lines, f) }})
			require.NoError(t, err)
			require.Equal(t, format, acq.Format)
			require.Equal(t, before, acq.SHA256)
			require.Equal(t, want, imagetest.SHA256File(t, acq.Disk), "the unpacked image is the original")
			require.Equal(t, before, imagetest.SHA256File(t, src), "the source is never written")
			// A second acquire hits the cache.
			again, err := Acquire(t.Context(), Source{Location: src})
			require.NoError(t, err)
			require.Equal(t, acq.Disk, again.Disk)
		})
	}
}

func TestAcquireHTTPS(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{}.Image(t)
	xzFile := compress(t, img, "xz")
	data, err := os.ReadFile(xzFile)
	require.NoError(t, err)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) }))
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's own server
	sum := imagetest.SHA256File(t, xzFile)

	acq, err := Acquire(t.Context(), Source{Location: srv.URL + "/raspios.img.xz", SHA256: sum, HTTPClient: client})
	require.NoError(t, err)
	require.Equal(t, "xz", acq.Format)
	require.Equal(t, imagetest.SHA256File(t, img), imagetest.SHA256File(t, acq.Disk))

	_, err = Acquire(t.Context(), Source{Location: srv.URL + "/other.img.xz", SHA256: strings.Repeat("0", 64), HTTPClient: client})
	require.ErrorIs(t, err, ErrChecksumMismatch)
	require.Contains(t, err.Error(), "other.img.xz")

	_, err = Acquire(t.Context(), Source{Location: srv.URL + "/raspios.img.xz", HTTPClient: client})
	require.ErrorContains(t, err, "needs the expected sha256")
	_, err = Acquire(t.Context(), Source{Location: "http://example.invalid/x.img", SHA256: sum})
	require.ErrorContains(t, err, "use https://")
}

func TestAcquireBadInput(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{}.Image(t)
	dir := t.TempDir()

	t.Run("checksum mismatch", func(t *testing.T) {
		_, err := Acquire(t.Context(), Source{Location: img, SHA256: strings.Repeat("ab", 32)})
		require.ErrorIs(t, err, ErrChecksumMismatch)
		require.ErrorContains(t, err, img)
		require.ErrorContains(t, err, "download it again")
	})
	t.Run("truncated xz", func(t *testing.T) {
		full, err := os.ReadFile(compress(t, img, "xz"))
		require.NoError(t, err)
		p := filepath.Join(dir, "cut.img.xz")
		require.NoError(t, os.WriteFile(p, full[:len(full)/2], 0o644))
		_, err = Acquire(t.Context(), Source{Location: p})
		var fe *ImageFormatError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, p, fe.File)
		require.ErrorContains(t, err, "truncated or corrupt")
	})
	t.Run("corrupt gzip", func(t *testing.T) {
		full, err := os.ReadFile(compress(t, img, "gz"))
		require.NoError(t, err)
		for i := 100; i < 200; i++ {
			full[len(full)/2+i] ^= 0xff
		}
		p := filepath.Join(dir, "bad.img.gz")
		require.NoError(t, os.WriteFile(p, full, 0o644))
		_, err = Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "truncated or corrupt")
		require.ErrorContains(t, err, p)
	})
	t.Run("truncated zip", func(t *testing.T) {
		full, err := os.ReadFile(compress(t, img, "zip"))
		require.NoError(t, err)
		p := filepath.Join(dir, "cut.zip")
		require.NoError(t, os.WriteFile(p, full[:len(full)-100], 0o644))
		_, err = Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "zip archive is truncated or corrupt")
	})
	t.Run("zip without image", func(t *testing.T) {
		p := filepath.Join(dir, "docs.zip")
		f, err := os.Create(p)
		require.NoError(t, err)
		zw := zip.NewWriter(f)
		_, err = zw.Create("README.txt")
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, f.Close())
		_, err = Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "holds no .img file (it has: README.txt)")
	})
	t.Run("unsupported format", func(t *testing.T) {
		p := filepath.Join(dir, "raspios.img.7z")
		require.NoError(t, os.WriteFile(p, []byte("7z\xbc\xaf\x27\x1c rest"), 0o644))
		_, err := Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "unsupported format .7z")
		require.ErrorContains(t, err, ".img.xz")
	})
	t.Run("named xz but is not", func(t *testing.T) {
		p := filepath.Join(dir, "fake.img.xz")
		require.NoError(t, os.WriteFile(p, []byte("<html>404</html>"), 0o644))
		_, err := Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "named .xz but its content is not xz")
	})
	t.Run("corrupt qcow2", func(t *testing.T) {
		full, err := os.ReadFile(compress(t, img, "qcow2"))
		require.NoError(t, err)
		p := filepath.Join(dir, "cut.qcow2")
		require.NoError(t, os.WriteFile(p, full[:600], 0o644))
		_, err = Acquire(t.Context(), Source{Location: p})
		require.ErrorContains(t, err, "qemu-img cannot read it as qcow2")
	})
}

func TestInspectRaspberryPiOS(t *testing.T) {
	img := imagetest.RaspiOS{}.Image(t)
	before := imagetest.SHA256File(t, img)
	info, err := Inspect(t.Context(), img)
	require.NoError(t, err)
	require.Equal(t, "mbr", info.Layout.Table)
	require.Equal(t, imagetest.DiskID, info.Layout.DiskID)
	require.Len(t, info.Layout.Partitions, 2)
	require.NotNil(t, info.Boot)
	require.Equal(t, 1, info.Boot.Index)
	require.Equal(t, "vfat", info.Boot.FS)
	require.Equal(t, "bootfs", info.Boot.FSLabel)
	require.Equal(t, 2, info.Root.Index)
	require.Equal(t, "ext4", info.Root.FS)
	require.Equal(t, "rootfs", info.Root.FSLabel)
	require.Equal(t, imagetest.DiskID+"-02", info.Root.PartUUID)
	require.Equal(t, []string{"kernel8.img"}, info.Kernels)
	require.Equal(t, []string{"bcm2710-rpi-3-b-plus.dtb", "bcm2710-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb"}, info.DTBs)
	require.True(t, info.Overlays)
	require.Contains(t, info.Cmdline, "root=PARTUUID="+imagetest.DiskID+"-02")
	require.Contains(t, info.Config, "arm_64bit=1")
	require.Equal(t, FamilyRaspiOS, info.Family)
	require.Equal(t, "bookworm", info.Suite)
	require.Equal(t, "arm64", info.Arch)
	require.Equal(t, "pi", info.FirstUser)
	require.Equal(t, 1000, info.FirstUserUID)
	require.True(t, info.RaspberryPi)
	require.Equal(t, []string{"6.6.51+rpt-rpi-v8"}, info.ModuleVersions)
	require.Equal(t, before, imagetest.SHA256File(t, img))

	trixie, err := Inspect(t.Context(), imagetest.RaspiOS{Suite: "trixie", CloudInit: true}.Image(t))
	require.NoError(t, err)
	require.Equal(t, FamilyRaspiOSCloudInit, trixie.Family)
	require.Equal(t, "trixie", trixie.Suite)
}

func TestInspectBeagleBone(t *testing.T) {
	info, err := Inspect(t.Context(), imagetest.BeagleBone(t))
	require.NoError(t, err)
	require.Nil(t, info.Boot)
	require.Equal(t, 1, info.Root.Index)
	require.Equal(t, FamilyDebian, info.Family)
	require.Equal(t, "bookworm", info.Suite)
	require.Equal(t, "armhf", info.Arch)
	require.Equal(t, "debian", info.FirstUser)
	require.Contains(t, info.UEnv, "cmdline=coherent_pool=1M")
}

func TestKernelArch(t *testing.T) {
	a, err := KernelArch([]byte(imagetest.ARM64Kernel(t, "")))
	require.NoError(t, err)
	require.Equal(t, "arm64", a)
	a, err = KernelArch([]byte(imagetest.ZImage()))
	require.NoError(t, err)
	require.Equal(t, "arm", a)
	_, err = KernelArch([]byte("not a kernel at all, just some text that is long enough"))
	require.Error(t, err)
}

// fsckVfat checks the boot partition of a prepared disk with fsck.vfat.
func fsckVfat(t *testing.T, disk string, p Partition) {
	t.Helper()
	imagetest.NeedTools(t, "fsck.vfat")
	part := filepath.Join(t.TempDir(), "boot.img")
	in, err := os.Open(disk)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(part)
	require.NoError(t, err)
	_, err = io.Copy(out, io.NewSectionReader(in, p.Start, p.Size))
	require.NoError(t, err)
	require.NoError(t, out.Close())
	b, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput()
	require.NoError(t, err, "fsck.vfat: %s", b)
	require.NotContains(t, string(b), "Fixing")
	require.NotContains(t, string(b), "wrong")
}

func TestPrepareRaspberryPiOSBookworm(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{}.Image(t)
	before := imagetest.SHA256File(t, img)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	b := board(t, "raspi3b")
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: b, AuthorizedKey: testKey, HeadroomMiB: 64, Logf: t.Logf})
	require.NoError(t, err)
	require.Equal(t, before, imagetest.SHA256File(t, img), "the source is never written")

	require.Equal(t, "root", im.User)
	require.Len(t, im.HostKeys, 2, "the image has no host keys: socbox made them")
	require.Equal(t, "raspi3b", im.Board)
	require.Equal(t, "bookworm", im.Suite)
	require.Equal(t, "raw", im.DiskFormat)
	// The image's own kernel, device tree and initramfs, straight from its
	// boot partition.
	require.Empty(t, im.KernelDeb)
	kernel, err := os.ReadFile(im.Path(im.Kernel))
	require.NoError(t, err)
	arch, err := KernelArch(kernel)
	require.NoError(t, err)
	require.Equal(t, "arm64", arch)
	dtb, err := os.ReadFile(im.Path(im.DTB))
	require.NoError(t, err)
	require.Equal(t, "\xd0\x0d\xfe\xedrpi3b", string(dtb))
	require.Equal(t, "initrd.img", im.Initrd)
	bf, err := EnsureBootFiles(t.Context(), im, b, nil, t.Logf)
	require.NoError(t, err)
	require.Equal(t, im.Path("board.dtb"), bf.DTB)
	require.Equal(t, im.Path("initrd.img"), bf.Initrd)
	_, err = EnsureBootFiles(t.Context(), im, board(t, "raspi3b-fast"), nil, nil)
	require.ErrorContains(t, err, "prepared for raspi3b, not raspi3b-fast")

	// The command line: cmdline.txt's root= and the rest, without the
	// firmware's console names, quiet, or the first-boot resizer.
	require.Equal(t, "root=PARTUUID="+imagetest.DiskID+"-02 rootfstype=ext4 fsck.repair=yes rootwait 8250.nr_uarts=1 console=ttyS0,115200", im.Append)

	disk := im.Path(im.Disk)
	info, err := Inspect(t.Context(), disk)
	require.NoError(t, err)
	require.Greater(t, info.Root.Size, int64(16<<20)+int64(60<<20), "the root partition grew")
	boot := bootFS{file: disk, part: *info.Boot}
	list, err := boot.list()
	require.NoError(t, err)
	_, ok := list.has("ssh")
	require.True(t, ok, "the ssh file enables sshd on first boot")
	_, ok = list.has("userconf.txt")
	require.False(t, ok, "no password unless asked")
	fsckVfat(t, disk, *info.Boot)

	require.Equal(t, testKey+"\n", readExt4(t, disk, info.Root, "/root/.ssh/authorized_keys"))
	require.Equal(t, testKey+"\n", readExt4(t, disk, info.Root, "/home/pi/.ssh/authorized_keys"))
	require.Contains(t, readExt4(t, disk, info.Root, "/etc/ssh/sshd_config.d/10-socbox.conf"), "PermitRootLogin prohibit-password")
	e := ext4Part{file: disk, offset: info.Root.Start}
	n, err := e.lstat(t.Context(), "/etc/systemd/system/multi-user.target.wants/ssh.service")
	require.NoError(t, err)
	require.True(t, n.exists)
	require.Equal(t, "/lib/systemd/system/ssh.service", n.target)
	st, _, err := e.debugfs(t.Context(), maxDebugfsOut, "-R", "stat /home/pi/.ssh/authorized_keys")
	require.NoError(t, err)
	require.Contains(t, string(st), "User:  1000")
	require.Contains(t, string(st), "Mode:  0600")
	st, _, err = e.debugfs(t.Context(), maxDebugfsOut, "-R", "stat /root")
	require.NoError(t, err)
	require.Contains(t, string(st), "Mode:  0700", "existing directories keep their mode")
	out, err := exec.Command("e2fsck", "-fn", e.spec()).CombinedOutput()
	require.NoError(t, err, "e2fsck: %s", out)

	// Cached: the same inputs give the same prepared copy.
	again, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: b, AuthorizedKey: testKey, HeadroomMiB: 64})
	require.NoError(t, err)
	require.Equal(t, im.Dir, again.Dir)
	require.Equal(t, before, imagetest.SHA256File(t, img))
}

func TestPrepareRaspberryPiOSTrixieCloudInit(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{Suite: "trixie", CloudInit: true}.Image(t)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	hash := "$6$saltsalt$Sx3rp9Ld9Z7R2Qw1i2Jx7b6kFQbY9i8Zc1a0pUo4Q1d7m6W5h0v1YV4bPq0cXe3nA2s1t0u9v8w7x6y5z4A3B."
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey,
		User: "tester", PasswordHash: hash, HeadroomMiB: 16})
	require.NoError(t, err)
	info, err := Inspect(t.Context(), im.Path(im.Disk))
	require.NoError(t, err)
	boot := bootFS{file: im.Path(im.Disk), part: *info.Boot}
	ud, err := boot.readFile("user-data")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(ud), "#cloud-config\n"))
	require.Contains(t, string(ud), "enable_ssh: true\n")
	require.Contains(t, string(ud), "- name: tester\n")
	require.Contains(t, string(ud), "  ssh_authorized_keys:\n    - "+testKey+"\n")
	require.Contains(t, string(ud), "  lock_passwd: false\n  passwd: "+hash+"\n")
	md, err := boot.readFile("meta-data")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(md), "instance-id: socbox-"))
	nc, err := boot.readFile("network-config")
	require.NoError(t, err)
	require.Contains(t, string(nc), "version: 2")
	_, ok := mustList(t, boot).has("ssh")
	require.False(t, ok, "cloud-init images are set up through cloud-init")
	fsckVfat(t, im.Path(im.Disk), *info.Boot)
	require.Equal(t, testKey+"\n", readExt4(t, im.Path(im.Disk), info.Root, "/root/.ssh/authorized_keys"))
}

func mustList(t *testing.T, b bootFS) bootListing {
	l, err := b.list()
	require.NoError(t, err)
	return l
}

func TestPrepareBookwormPassword(t *testing.T) {
	testCache(t)
	acq, err := Acquire(t.Context(), Source{Location: imagetest.RaspiOS{}.Image(t)})
	require.NoError(t, err)
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey,
		PasswordHash: "$6$x$y", HeadroomMiB: 16})
	require.NoError(t, err)
	info, err := Inspect(t.Context(), im.Path(im.Disk))
	require.NoError(t, err)
	uc, err := bootFS{file: im.Path(im.Disk), part: *info.Boot}.readFile("userconf.txt")
	require.NoError(t, err)
	require.Equal(t, "pi:$6$x$y\n", string(uc))

	// The password hash is in image.json, and host keys are in the disk:
	// nobody else reads either.
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{im.Dir, 0o700}, {filepath.Join(im.Dir, "image.json"), 0o600}, {im.Path(im.Disk), 0o400}} {
		st, err := os.Stat(f.path)
		require.NoError(t, err)
		require.Equal(t, f.mode, st.Mode().Perm(), f.path)
	}
	raw, err := os.ReadFile(filepath.Join(im.Dir, "image.json"))
	require.NoError(t, err)
	require.Contains(t, string(raw), "$6$x$y", "the file this checks is the one with the hash")
}

// fakeKernelDeb builds a Debian kernel package shaped like
// linux-image-*-armmp: /boot/vmlinuz-<v> and /usr/lib/modules/<v>.
func fakeKernelDeb(t *testing.T, version string) string {
	t.Helper()
	imagetest.NeedTools(t, "dpkg-deb", "depmod")
	dir := filepath.Join(t.TempDir(), "pkg")
	imagetest.WriteTree(t, dir, map[string]string{
		"DEBIAN/control":                                               "Package: linux-image-" + version + "\nVersion: 1\nArchitecture: armhf\nMaintainer: t <t@example.org>\nDescription: test kernel\n",
		"boot/vmlinuz-" + version:                                      imagetest.ZImage(),
		"usr/lib/modules/" + version + "/modules.builtin":              "kernel/fs/ext4/ext4.ko\n",
		"usr/lib/modules/" + version + "/modules.order":                "",
		"usr/lib/linux-image-" + version + "/sun4i-a10-cubieboard.dtb": "\xd0\x0d\xfe\xed",
	})
	deb := filepath.Join(t.TempDir(), "linux-image.deb")
	imagetest.Run(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", dir, deb)
	return deb
}

func TestPrepareBeagleBoneWithBoardKernel(t *testing.T) {
	testCache(t)
	img := imagetest.BeagleBone(t)
	before := imagetest.SHA256File(t, img)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	const kver = "6.1.0-99-armmp"
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "beaglebone-black"), AuthorizedKey: testKey,
		HeadroomMiB: 32, KernelDeb: fakeKernelDeb(t, kver), Logf: t.Logf})
	require.NoError(t, err)
	require.Equal(t, before, imagetest.SHA256File(t, img))
	require.Equal(t, "kernel.deb", im.KernelDeb)
	require.Equal(t, kver, im.KernelVersion)
	require.Equal(t, "vmlinuz", im.Kernel)
	require.Equal(t, string(FamilyDebian), im.Family)
	info, err := Inspect(t.Context(), im.Path(im.Disk))
	require.NoError(t, err)
	require.Equal(t, "root=UUID="+info.Root.FSUUID+" rootfstype=ext4 rootwait rw coherent_pool=1M net.ifnames=0 lpj=1990656 rng_core.default_quality=100", im.Append)
	require.Equal(t, testKey+"\n", readExt4(t, im.Path(im.Disk), info.Root, "/root/.ssh/authorized_keys"))
	require.Equal(t, testKey+"\n", readExt4(t, im.Path(im.Disk), info.Root, "/home/debian/.ssh/authorized_keys"))
	// The board kernel's modules are in the root filesystem, depmod'ed.
	require.Contains(t, readExt4(t, im.Path(im.Disk), info.Root, "/lib/modules/"+kver+"/modules.builtin"), "ext4.ko")
	_, err = ext4Part{file: im.Path(im.Disk), offset: info.Root.Start}.readFile(t.Context(), "/lib/modules/"+kver+"/modules.dep", maxTextFile)
	require.NoError(t, err)
	require.Contains(t, info.ModuleVersions, "5.10.168-ti-r72", "the image's own modules stay")
}

func TestPrepareBadInput(t *testing.T) {
	testCache(t)
	acquire := func(t *testing.T, p string) *Acquired {
		acq, err := Acquire(t.Context(), Source{Location: p})
		require.NoError(t, err)
		return acq
	}
	prepare := func(t *testing.T, p, slug string, headroom int) error {
		before := imagetest.SHA256File(t, p)
		_, err := Prepare(t.Context(), PrepareSpec{Image: acquire(t, p), Board: board(t, slug), AuthorizedKey: testKey, HeadroomMiB: headroom})
		require.Equal(t, before, imagetest.SHA256File(t, p), "a refused image is not written either")
		return err
	}

	t.Run("no partition table", func(t *testing.T) {
		imagetest.NeedTools(t, "mkfs.ext4")
		p := filepath.Join(t.TempDir(), "rootfs.img")
		imagetest.Run(t, "mkfs.ext4", "-q", "-F", p, "8M")
		err := prepare(t, p, "raspi3b", 16)
		require.ErrorIs(t, err, ErrNoPartitionTable)
		require.ErrorContains(t, err, p)
		require.ErrorContains(t, err, "whole-disk image")
	})
	t.Run("no boot partition", func(t *testing.T) {
		p := imagetest.RaspiOS{NoBoot: true}.Image(t)
		err := prepare(t, p, "raspi3b", 16)
		require.ErrorContains(t, err, "no boot partition")
		require.ErrorContains(t, err, p)
	})
	t.Run("no kernel", func(t *testing.T) {
		p := imagetest.RaspiOS{Kernels: map[string]string{}}.Image(t)
		err := prepare(t, p, "raspi3b", 16)
		require.ErrorContains(t, err, "no kernel: boot partition 1 has no kernel8.img")
	})
	t.Run("wrong-arch kernel", func(t *testing.T) {
		p := imagetest.RaspiOS{Kernels: map[string]string{"kernel7.img": imagetest.ZImage(), "kernel7l.img": imagetest.ZImage()}}.Image(t)
		err := prepare(t, p, "raspi3b", 16)
		require.ErrorContains(t, err, "wrong-arch kernel: board raspi3b needs an arm64 kernel8.img, the boot partition has kernel7.img (arm), kernel7l.img (arm)")
	})
	t.Run("32-bit kernel named kernel8.img", func(t *testing.T) {
		p := imagetest.RaspiOS{Kernels: map[string]string{"kernel8.img": imagetest.ZImage()}}.Image(t)
		err := prepare(t, p, "raspi3b", 16)
		require.ErrorContains(t, err, "wrong-arch kernel: kernel8.img is a arm kernel but board raspi3b is arm64")
	})
	t.Run("armhf image on an arm64 board", func(t *testing.T) {
		err := prepare(t, imagetest.BeagleBone(t), "raspi3b-fast", 16)
		require.ErrorContains(t, err, "the image is armhf but board raspi3b-fast runs arm64; use beaglebone-black or beaglebone-black-fast")
	})
	t.Run("too large for the board", func(t *testing.T) {
		err := prepare(t, imagetest.RaspiOS{}.Image(t), "raspi3b", 40<<10)
		require.ErrorContains(t, err, "image too large for the board")
	})
	t.Run("truncated image", func(t *testing.T) {
		src := imagetest.RaspiOS{}.Image(t)
		p := filepath.Join(t.TempDir(), "cut.img")
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, data[:len(data)/2], 0o644))
		err = prepare(t, p, "raspi3b", 16)
		require.ErrorContains(t, err, "ends at byte")
		require.ErrorContains(t, err, "truncated")
	})
	t.Run("not a disk image", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "notes.txt")
		require.NoError(t, os.WriteFile(p, []byte("hello"), 0o644))
		_, err := Acquire(t.Context(), Source{Location: p})
		var fe *ImageFormatError
		require.True(t, errors.As(err, &fe))
		require.ErrorContains(t, err, "not a disk image socbox recognises")
	})
}

func TestPrepareGrowsGPTRoot(t *testing.T) {
	testCache(t)
	img := imagetest.RaspiOS{GPT: true}.Image(t)
	before := imagetest.SHA256File(t, img)
	src, err := Inspect(t.Context(), img)
	require.NoError(t, err)
	require.Equal(t, "gpt", src.Layout.Table)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 64, Logf: t.Logf})
	require.NoError(t, err)
	require.Equal(t, before, imagetest.SHA256File(t, img), "the source is never written")

	disk := im.Path(im.Disk)
	info, err := Inspect(t.Context(), disk)
	require.NoError(t, err)
	require.Equal(t, "gpt", info.Layout.Table)
	require.Equal(t, imagetest.GPTRootPartUUID, info.Root.PartUUID, "partition GUIDs are kept")
	require.Equal(t, src.Root.Start, info.Root.Start)
	require.GreaterOrEqual(t, info.Root.Size, src.Root.Size+64<<20, "the root partition grew")
	require.Contains(t, im.Append, "root=PARTUUID="+imagetest.GPTRootPartUUID)
	// Both tables consistent, the backup at the new end of the disk.
	out := imagetest.Run(t, "sfdisk", "--verify", disk)
	require.Contains(t, out, "No errors detected.")
	for _, bad := range []string{"not on the end", "mismatch", "corrupt"} {
		require.NotContains(t, out, bad)
	}
	e := ext4Part{file: disk, offset: info.Root.Start}
	o, err := exec.Command("e2fsck", "-fn", e.spec()).CombinedOutput()
	require.NoError(t, err, "e2fsck: %s", o)
	o, err = exec.Command("dumpe2fs", "-h", e.spec()).CombinedOutput()
	require.NoError(t, err, "%s", o)
	var blocks, blockSize int64
	for _, l := range strings.Split(string(o), "\n") {
		fmt.Sscanf(l, "Block count: %d", &blocks)
		fmt.Sscanf(l, "Block size: %d", &blockSize)
	}
	require.Equal(t, info.Root.Size, blocks*blockSize, "the filesystem fills the grown partition")
	fsckVfat(t, disk, *info.Boot)
	require.Equal(t, testKey+"\n", readExt4(t, disk, info.Root, "/root/.ssh/authorized_keys"))
}

// A prepared image whose disk was cut short in the cache (a full file
// system, a cache copy that stopped half way) is never handed out to boot:
// it is found damaged and prepared again.
func TestTruncatedCachedImageIsMadeAgain(t *testing.T) {
	testCache(t)
	acq, err := Acquire(t.Context(), Source{Location: imagetest.RaspiOS{}.Image(t)})
	require.NoError(t, err)
	spec := PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 16}
	im, err := Prepare(t.Context(), spec)
	require.NoError(t, err)
	disk := im.Path(im.Disk)
	st, err := os.Stat(disk)
	require.NoError(t, err)
	require.Equal(t, st.Size(), im.DiskBytes)

	require.NoError(t, os.Truncate(disk, st.Size()/2))
	_, err = LoadImage(im.Dir)
	require.ErrorIs(t, err, ErrDamaged)
	require.ErrorContains(t, err, fmt.Sprintf("is %d bytes, %d when it was made", st.Size()/2, st.Size()))

	again, err := Prepare(t.Context(), spec)
	require.NoError(t, err)
	require.Equal(t, im.Dir, again.Dir)
	st2, err := os.Stat(again.Path(again.Disk))
	require.NoError(t, err)
	require.Equal(t, st.Size(), st2.Size(), "prepared again, whole")
}
