package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Small board images shaped like the real ones, built the way the images
// package's tests build them (see images/byo_helpers_test.go for the
// layouts they reproduce): a Raspberry Pi OS SD card (MBR, FAT32 bootfs
// with kernel8.img, device trees, cmdline.txt and config.txt, then an ext4
// rootfs with /etc/rpi-issue and a first user "pi"), and a BeagleBone
// Debian card (one ext4 partition, armhf, /boot/uEnv.txt).

const testDiskID = "1234abcd"

// needTools fails with the fix when a host tool the test images need is
// missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/host-setup.sh (it installs fdisk, dosfstools, mtools, e2fsprogs)", tool)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			require.NoError(t, os.MkdirAll(full, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(data), 0o644))
	}
}

// elfHeader is the smallest ELF header debug/elf reads: enough for socbox
// to tell an image's userland architecture.
func elfHeader(arm64 bool) string {
	if arm64 {
		h := make([]byte, 64)
		copy(h, "\x7fELF\x02\x01\x01")
		binary.LittleEndian.PutUint16(h[16:], 2)   // ET_EXEC
		binary.LittleEndian.PutUint16(h[18:], 183) // EM_AARCH64
		binary.LittleEndian.PutUint32(h[20:], 1)
		binary.LittleEndian.PutUint16(h[52:], 64)
		binary.LittleEndian.PutUint16(h[54:], 56)
		binary.LittleEndian.PutUint16(h[58:], 64)
		return string(h)
	}
	h := make([]byte, 52)
	copy(h, "\x7fELF\x01\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], 2)
	binary.LittleEndian.PutUint16(h[18:], 40) // EM_ARM
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[40:], 52)
	binary.LittleEndian.PutUint16(h[42:], 32)
	binary.LittleEndian.PutUint16(h[46:], 40)
	return string(h)
}

// arm64Kernel is an arm64 Image header, gzip-compressed as Raspberry Pi OS
// ships kernel8.img.
func arm64Kernel(t *testing.T) string {
	h := make([]byte, 4096)
	binary.LittleEndian.PutUint32(h[0:], 0xfa405a4d)
	copy(h[56:], "ARM\x64")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(h)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.String()
}

// zImage is a 32-bit ARM zImage header.
func zImage() string {
	h := make([]byte, 4096)
	binary.LittleEndian.PutUint32(h[36:], 0x016f2818)
	return string(h)
}

// raspiImage builds a Raspberry-Pi-OS-bookworm-shaped arm64 SD card image
// and returns its path.
func raspiImage(t *testing.T) string {
	t.Helper()
	needTools(t, "sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4")
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "root")
	writeTree(t, rootDir, map[string]string{
		"etc/os-release":                     "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=bookworm\nID=debian\n",
		"etc/rpi-issue":                      "Raspberry Pi reference 2024-11-19\n",
		"etc/passwd":                         "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/ssh/sshd_config.d/":             "",
		"usr/sbin/sshd":                      elfHeader(true),
		"usr/bin/dash":                       elfHeader(true),
		"usr/lib/systemd/system/ssh.service": "[Unit]\nDescription=OpenBSD Secure Shell server\n",
		"etc/systemd/system/multi-user.target.wants/": "",
		"home/pi/.bashrc": "# bash\n",
		"root/":           "",
		"boot/firmware/":  "",
		"usr/lib/modules/6.6.51+rpt-rpi-v8/modules.dep": "",
	})
	// Merged /usr, as on bookworm.
	for _, l := range []string{"bin", "sbin", "lib"} {
		require.NoError(t, os.Symlink("usr/"+l, filepath.Join(rootDir, l)))
	}
	require.NoError(t, os.Chmod(filepath.Join(rootDir, "root"), 0o700))

	img := filepath.Join(dir, "raspios-bookworm-arm64-lite.img")
	const bootStart, bootSectors = 8192, 81920 // 40 MiB bootfs: FAT32 needs 65525 clusters
	const rootStart, rootSectors = bootStart + bootSectors, 32768
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, (rootStart+rootSectors)*512))
	sfdisk(t, img, fmt.Sprintf("label: dos\nlabel-id: 0x%s\nstart=%d, size=%d, type=c\nstart=%d, size=%d, type=83\n",
		testDiskID, bootStart, bootSectors, rootStart, rootSectors))

	bootDir := filepath.Join(dir, "boot")
	writeTree(t, bootDir, map[string]string{
		"bootcode.bin":             "firmware",
		"start.elf":                "firmware",
		"kernel8.img":              arm64Kernel(t),
		"bcm2710-rpi-3-b.dtb":      "\xd0\x0d\xfe\xedrpi3b",
		"bcm2711-rpi-4-b.dtb":      "\xd0\x0d\xfe\xedrpi4b",
		"cmdline.txt":              "console=serial0,115200 console=tty1 root=PARTUUID=" + testDiskID + "-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
		"config.txt":               "auto_initramfs=1\narm_64bit=1\n\n[all]\n",
		"initramfs8":               "initramfs",
		"overlays/disable-bt.dtbo": "\xd0\x0d\xfe\xed",
	})
	boot := filepath.Join(dir, "bootfs.img")
	runTool(t, "mkfs.vfat", "-C", "-F", "32", "-s", "1", "-n", "bootfs", boot, fmt.Sprint(bootSectors/2))
	ents, err := os.ReadDir(bootDir)
	require.NoError(t, err)
	args := []string{"-i", boot, "-s"}
	for _, e := range ents {
		args = append(args, filepath.Join(bootDir, e.Name()))
	}
	runTool(t, "mcopy", append(args, "::")...)
	placeFile(t, img, boot, bootStart*512)

	rootfs := filepath.Join(dir, "rootfs.img")
	runTool(t, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootDir, rootfs, fmt.Sprintf("%dK", rootSectors/2))
	placeFile(t, img, rootfs, rootStart*512)
	return img
}

// beagleImage builds a BeagleBone-Black-Debian-shaped image: one ext4
// partition, armhf userland, /boot/uEnv.txt and the image's own kernel.
func beagleImage(t *testing.T) string {
	t.Helper()
	needTools(t, "sfdisk", "mkfs.ext4")
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "root")
	writeTree(t, rootDir, map[string]string{
		"etc/os-release":               "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=bookworm\nID=debian\n",
		"etc/passwd":                   "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000:Demo User,,,:/home/debian:/bin/bash\n",
		"usr/sbin/sshd":                elfHeader(false),
		"usr/bin/dash":                 elfHeader(false),
		"home/debian/":                 "",
		"boot/uEnv.txt":                "uname_r=5.10.168-ti-r72\ncmdline=coherent_pool=1M net.ifnames=0 quiet\n",
		"boot/vmlinuz-5.10.168-ti-r72": zImage(),
		"lib/modules/5.10.168-ti-r72/modules.dep": "",
	})
	img := filepath.Join(dir, "bone-debian-12.7-iot-armhf.img")
	const start, sectors = 8192, 32768
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, (start+sectors)*512))
	sfdisk(t, img, fmt.Sprintf("label: dos\nlabel-id: 0x5eb0b0e0\nstart=%d, size=%d, type=83, bootable\n", start, sectors))
	rootfs := filepath.Join(dir, "rootfs.img")
	runTool(t, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootDir, rootfs, fmt.Sprintf("%dK", sectors/2))
	placeFile(t, img, rootfs, start*512)
	return img
}

func sfdisk(t *testing.T, img, table string) {
	t.Helper()
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(table)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
}

// placeFile writes src into dst at offset, as dd conv=notrunc would.
func placeFile(t *testing.T, dst, src string, offset int64) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer out.Close()
	_, err = out.Seek(offset, io.SeekStart)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
}

// gzipFile writes src.gz, the way images are often published.
func gzipFile(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(src + ".gz")
	require.NoError(t, err)
	defer out.Close()
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return out.Name()
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// readExt4 reads a file from the ext4 filesystem at offset in a disk image.
func readExt4(t *testing.T, disk string, offset int64, p string) string {
	t.Helper()
	needTools(t, "debugfs")
	out, err := exec.Command("debugfs", "-R", "cat "+p, fmt.Sprintf("%s?offset=%d", disk, offset)).Output()
	require.NoError(t, err)
	return string(out)
}
