// Package imagetest builds small board images shaped like the real ones,
// for tests of socbox's bring-your-own-image support: a Raspberry Pi OS SD
// card and a BeagleBone Black Debian card, made with mkfs tools, no root
// and no loop devices. It is imported by tests only.
//
// The layouts reproduced:
//
// Raspberry Pi OS (pi-gen's export-image stage; checked against a
// 2024-11-19 bookworm arm64 Lite image's `sfdisk -d`): an MBR ("dos")
// table with a random 32-bit disk ID, partition 1 FAT32 (type 0x0c, label
// "bootfs", from sector 8192) holding the firmware files, kernel8.img,
// bcm27*.dtb, cmdline.txt, config.txt (auto_initramfs=1), initramfs8 and
// overlays/; partition 2 ext4 (type 0x83, label "rootfs") right after it.
// cmdline.txt names the root as root=PARTUUID=<disk id>-02. The root
// filesystem has /etc/rpi-issue, a first user "pi" (uid 1000), on trixie
// cloud-init, and /lib/modules/<release> of kernel8.img, whose SD card,
// MMC block and ext4 drivers are built in (bcm2711_defconfig).
//
// BeagleBone Black Debian (beagleboard/image-builder's single-partition
// "bone" layout): an MBR table with one ext4 partition (type 0x83, label
// "rootfs", from sector 8192) whose /boot/uEnv.txt carries the U-Boot
// settings and cmdline=; the userland is armhf with a first user "debian".
//
// The boot partition is made reproducibly (mkfs.vfat --invariant, fixed
// file times), so the same inputs give the same image, digest and all.
package imagetest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// DiskID is the MBR disk identifier of RaspiOS images: cmdline.txt says
// root=PARTUUID=<DiskID>-02.
const DiskID = "1234abcd"

// GPT cards (SDCard.GPT) have fixed GUIDs, so the same inputs give the
// same bytes: cmdline.txt then says root=PARTUUID=<GPTRootPartUUID>.
const (
	GPTDiskGUID     = "5eb0c0de-0000-4000-8000-000000000000"
	GPTBootPartUUID = "5eb0c0de-0000-4000-8000-000000000001"
	GPTRootPartUUID = "5eb0c0de-0000-4000-8000-000000000002"
)

// RaspiRelease is the release of RaspiOS images' kernel8.img and the name
// of its /lib/modules directory.
const RaspiRelease = "6.6.51+rpt-rpi-v8"

// RaspiConfig is Raspberry Pi OS bookworm's config.txt, abridged.
const RaspiConfig = "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\nauto_initramfs=1\ndtoverlay=vc4-kms-v3d\nmax_framebuffers=2\ndisable_fw_kms_setup=1\narm_64bit=1\ndisable_overscan=1\narm_boost=1\n\n[cm4]\notg_mode=1\n\n[all]\n"

// NeedTools fails with the fix when a host tool the images need is
// missing.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/host-setup.sh (it installs fdisk, dosfstools, mtools, e2fsprogs, qemu-utils)", tool)
		}
	}
}

// Run runs a host tool and returns its output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// WriteTree writes files (relative path → content; a path ending in "/" is
// a directory) under root.
func WriteTree(t testing.TB, root string, files map[string]string) {
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

// ELFHeader is the smallest ELF header debug/elf reads: enough for socbox
// to tell an image's userland architecture, or a busybox's.
func ELFHeader(arm64 bool) string {
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

// ARM64Kernel is an arm64 Image, gzip-compressed as Raspberry Pi OS ships
// kernel8.img: the header socbox checks the architecture by, and the
// banner Linux prints first, which names its release ("" leaves it out).
func ARM64Kernel(t testing.TB, release string) string {
	t.Helper()
	h := make([]byte, 4096)
	binary.LittleEndian.PutUint32(h[0:], 0xfa405a4d) // "MZ" + branch, as in real Images
	copy(h[56:], "ARM\x64")
	if release != "" {
		copy(h[1024:], "Linux version "+release+" (builder@raspberrypi) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT Debian\n\x00")
	}
	return GzipBytes(t, h)
}

// ZImage is a 32-bit ARM zImage header (kernel7.img, kernel7l.img,
// BeagleBone's vmlinuz).
func ZImage() string {
	h := make([]byte, 4096)
	binary.LittleEndian.PutUint32(h[36:], 0x016f2818)
	return string(h)
}

// GzipBytes compresses data with gzip.
func GzipBytes(t testing.TB, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.String()
}

// Initramfs is a gzip-compressed newc cpio with files in it, the shape of
// the initramfs8 initramfs-tools writes.
func Initramfs(t testing.TB, files map[string]string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	entry := func(ino int, name string, mode uint32, data string) {
		fmt.Fprintf(&buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		buf.WriteString(name + "\x00")
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
		buf.WriteString(data)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	for i, n := range names {
		entry(i+1, n, 0o100755, files[n])
	}
	entry(0, "TRAILER!!!", 0, "")
	return GzipBytes(t, buf.Bytes())
}

// Modules is a kernel's /lib/modules/<Release> in a test image's root
// filesystem.
type Modules struct {
	Release string
	// Builtin are modules.builtin's lines ("kernel/fs/ext4/ext4.ko").
	Builtin []string
	// Loadable maps module files ("kernel/fs/ext4/ext4.ko.xz", written
	// xz-compressed) to the files modules.dep says they need.
	Loadable map[string][]string
	// Softdep is modules.softdep; Alias is modules.alias.
	Softdep, Alias string
	// NoIndex leaves out modules.dep and modules.builtin: a tree depmod
	// never ran on.
	NoIndex bool
}

// BuiltinRootDrivers is how Raspberry Pi OS's kernel8.img has the drivers
// it mounts its root with (bcm2711_defconfig): the SD host (sdhci-iproc
// for the Pi 4's EMMC2; bcm2835-mmc and -sdhost for the Pi 3), MMC block
// and ext4 built in; the mainline bcm2835 SD host driver not at all. Other
// drivers are modules.
func BuiltinRootDrivers(release string) Modules {
	return Modules{
		Release: release,
		Builtin: []string{"kernel/drivers/mmc/core/mmc_block.ko", "kernel/drivers/mmc/host/sdhci-iproc.ko",
			"kernel/drivers/mmc/host/bcm2835-mmc.ko", "kernel/drivers/mmc/host/bcm2835-sdhost.ko",
			"kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko"},
		Loadable: map[string][]string{
			"kernel/drivers/net/usb/cdc_ether.ko.xz": {"kernel/drivers/net/usb/usbnet.ko.xz"},
			"kernel/drivers/net/usb/usbnet.ko.xz":    nil,
		},
	}
}

// ModularRootDrivers is how Debian's arm64 kernel has them (checked
// against linux-image-6.12-arm64's modules.dep, modules.builtin and
// modules.softdep): MMC block built in; the SD host drivers (sdhci-iproc,
// bcm2835) and ext4 as modules, with their dependencies and ext4's soft
// dependency on crc32c.
func ModularRootDrivers(release string) Modules {
	return Modules{
		Release: release,
		Builtin: []string{"kernel/drivers/mmc/core/mmc_core.ko", "kernel/drivers/mmc/core/mmc_block.ko"},
		Loadable: map[string][]string{
			"kernel/fs/ext4/ext4.ko.xz":                 {"kernel/lib/crc16.ko.xz", "kernel/fs/mbcache.ko.xz", "kernel/fs/jbd2/jbd2.ko.xz"},
			"kernel/lib/crc16.ko.xz":                    nil,
			"kernel/fs/mbcache.ko.xz":                   nil,
			"kernel/fs/jbd2/jbd2.ko.xz":                 nil,
			"kernel/crypto/crc32c_generic.ko.xz":        nil,
			"kernel/drivers/mmc/host/bcm2835.ko.xz":     nil,
			"kernel/drivers/mmc/host/sdhci-iproc.ko.xz": {"kernel/drivers/mmc/host/sdhci-pltfm.ko.xz", "kernel/drivers/mmc/host/sdhci.ko.xz"},
			"kernel/drivers/mmc/host/sdhci-pltfm.ko.xz": {"kernel/drivers/mmc/host/sdhci.ko.xz"},
			"kernel/drivers/mmc/host/sdhci.ko.xz":       nil,
			"kernel/drivers/net/usb/cdc_ether.ko.xz":    {"kernel/drivers/net/usb/usbnet.ko.xz"},
			"kernel/drivers/net/usb/usbnet.ko.xz":       nil,
		},
		Softdep: "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n",
		Alias:   "alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n",
	}
}

// ModuleContent is what a test module file holds, decompressed: its path,
// so a test can tell which file ended up where.
func ModuleContent(path string) string { return "module " + path }

// write lays the tree out under root (usr/lib/modules/<release>: /lib is a
// symlink to usr/lib on merged-/usr images).
func (m Modules) write(t testing.TB, root string) {
	t.Helper()
	dir := filepath.Join(root, "usr/lib/modules", m.Release)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var dep strings.Builder
	paths := make([]string, 0, len(m.Loadable))
	for p := range m.Loadable {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&dep, "%s:", p)
		for _, d := range m.Loadable[p] {
			dep.WriteString(" " + d)
		}
		dep.WriteString("\n")
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		var buf bytes.Buffer
		w, err := xz.NewWriter(&buf)
		require.NoError(t, err)
		_, err = w.Write([]byte(ModuleContent(p)))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), buf.Bytes(), 0o644))
	}
	files := map[string]string{"modules.softdep": m.Softdep, "modules.alias": m.Alias}
	if !m.NoIndex {
		files["modules.dep"] = dep.String()
		files["modules.builtin"] = strings.Join(m.Builtin, "\n") + "\n"
	}
	for n, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644))
	}
}

// RaspiOS describes a Raspberry-Pi-OS-shaped SD card image; the zero value
// is bookworm arm64 Lite.
type RaspiOS struct {
	Suite     string // VERSION_CODENAME; bookworm if empty
	CloudInit bool   // trixie's cloud-init first boot
	Armhf     bool   // 32-bit userland
	// Kernels are the boot partition's kernel files; if nil, kernel8.img
	// of release Modules.Release.
	Kernels map[string]string
	// Config is config.txt; RaspiConfig if empty.
	Config string
	// BootFiles are more boot partition files (name → content).
	BootFiles map[string]string
	// Initramfs is initramfs8; a gzip-compressed cpio if empty.
	Initramfs   string
	NoInitramfs bool
	// Modules is the root filesystem's module tree;
	// BuiltinRootDrivers(RaspiRelease) if its Release is empty.
	Modules  Modules
	NoBoot   bool   // leave out the FAT partition
	GPT      bool   // a GPT instead of Raspberry Pi OS's MBR
	FileName string // raspios.img if empty
	// RootFiles are more root filesystem files (path → content; a path
	// ending in "/" is a directory). Links are symbolic links (path →
	// target), made last and replacing whatever the path held: hostile
	// images for tests of what socbox refuses.
	RootFiles map[string]string
	Links     map[string]string
}

// Image builds the image in a new temp dir and returns its path.
func (o RaspiOS) Image(t testing.TB) string {
	t.Helper()
	NeedTools(t, "sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4")
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.Modules.Release == "" {
		o.Modules = BuiltinRootDrivers(RaspiRelease)
	}
	if o.Config == "" {
		o.Config = RaspiConfig
	}
	if o.FileName == "" {
		o.FileName = "raspios.img"
	}
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "root")
	files := map[string]string{
		"etc/os-release":                     fmt.Sprintf("PRETTY_NAME=\"Debian GNU/Linux (%s)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=%s\nID=debian\n", o.Suite, o.Suite),
		"etc/rpi-issue":                      "Raspberry Pi reference 2024-11-19\n",
		"etc/passwd":                         "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/fstab":                          "proc /proc proc defaults 0 0\nPARTUUID=" + DiskID + "-01 /boot/firmware vfat defaults 0 2\nPARTUUID=" + DiskID + "-02 / ext4 defaults,noatime 0 1\n",
		"etc/ssh/sshd_config.d/":             "",
		"usr/sbin/sshd":                      ELFHeader(!o.Armhf),
		"usr/bin/dash":                       ELFHeader(!o.Armhf),
		"usr/lib/systemd/system/ssh.service": "[Unit]\nDescription=OpenBSD Secure Shell server\n",
		"etc/systemd/system/multi-user.target.wants/": "",
		"home/pi/.bashrc": "# bash\n",
		"root/":           "",
		"boot/firmware/":  "",
	}
	if o.CloudInit {
		files["etc/cloud/cloud.cfg"] = "datasource_list: [ NoCloud, None ]\n"
	}
	WriteTree(t, rootDir, files)
	WriteTree(t, rootDir, o.RootFiles)
	o.Modules.write(t, rootDir)
	// Merged /usr, as on bookworm and trixie.
	for _, l := range []string{"bin", "sbin", "lib"} {
		require.NoError(t, os.Symlink("usr/"+l, filepath.Join(rootDir, l)))
	}
	for p, target := range o.Links {
		full := filepath.Join(rootDir, p)
		require.NoError(t, os.RemoveAll(full))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.Symlink(target, full))
	}
	if _, ok := o.Links["root"]; !ok {
		require.NoError(t, os.Chmod(filepath.Join(rootDir, "root"), 0o700))
	}
	rootfs := filepath.Join(dir, "rootfs.img")
	const rootMiB = 16
	Run(t, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootDir, rootfs, fmt.Sprintf("%dM", rootMiB))

	card := SDCard{DiskID: DiskID, RootFS: rootfs, FileName: o.FileName, GPT: o.GPT}
	rootPartUUID := DiskID + "-02"
	if o.GPT {
		rootPartUUID = GPTRootPartUUID
	}
	if !o.NoBoot {
		kernels := o.Kernels
		if kernels == nil {
			kernels = map[string]string{"kernel8.img": ARM64Kernel(t, o.Modules.Release)}
		}
		card.Boot = map[string]string{
			"bootcode.bin":             "firmware",
			"start.elf":                "firmware",
			"fixup.dat":                "firmware",
			"bcm2710-rpi-3-b.dtb":      "\xd0\x0d\xfe\xedrpi3b",
			"bcm2710-rpi-3-b-plus.dtb": "\xd0\x0d\xfe\xedrpi3bplus",
			"bcm2711-rpi-4-b.dtb":      "\xd0\x0d\xfe\xedrpi4b",
			"cmdline.txt":              "console=serial0,115200 console=tty1 root=PARTUUID=" + rootPartUUID + " rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
			"config.txt":               o.Config,
			"overlays/README":          "overlays",
			"overlays/disable-bt.dtbo": "\xd0\x0d\xfe\xed",
			"issue.txt":                "Raspberry Pi reference 2024-11-19\n",
		}
		if !o.NoInitramfs {
			initramfs := o.Initramfs
			if initramfs == "" {
				initramfs = Initramfs(t, map[string]string{"init": "#!/bin/sh\n"})
			}
			card.Boot["initramfs8"] = initramfs
		}
		for _, extra := range []map[string]string{kernels, o.BootFiles} {
			for k, v := range extra {
				card.Boot[k] = v
			}
		}
	}
	return card.Image(t)
}

// BeagleBone builds a BeagleBone-Black-Debian-shaped image: one ext4
// partition, armhf userland, /boot/uEnv.txt and the image's own kernel.
func BeagleBone(t testing.TB) string {
	t.Helper()
	NeedTools(t, "sfdisk", "mkfs.ext4")
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "root")
	WriteTree(t, rootDir, map[string]string{
		"etc/os-release":                          "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
		"etc/debian_version":                      "12.7\n",
		"etc/passwd":                              "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000:Demo User,,,:/home/debian:/bin/bash\n",
		"etc/ssh/sshd_config.d/":                  "",
		"usr/sbin/sshd":                           ELFHeader(false),
		"usr/bin/dash":                            ELFHeader(false),
		"lib/systemd/system/ssh.service":          "[Unit]\n",
		"home/debian/":                            "",
		"root/":                                   "",
		"boot/uEnv.txt":                           "#Docs: http://elinux.org/Beagleboard:U-boot_partitioning_layout_2.0\n\nuname_r=5.10.168-ti-r72\n#uuid=\nenable_uboot_overlays=1\n\ncmdline=coherent_pool=1M net.ifnames=0 lpj=1990656 rng_core.default_quality=100 quiet\n",
		"boot/vmlinuz-5.10.168-ti-r72":            ZImage(),
		"lib/modules/5.10.168-ti-r72/modules.dep": "",
	})
	rootfs := filepath.Join(dir, "rootfs.img")
	Run(t, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootDir, rootfs, "16M")
	return SDCard{DiskID: "5eb0b0e0", RootFS: rootfs, FileName: "bone-debian-12.7-iot-armhf.img"}.Image(t)
}

// SDCard is an MBR SD card image: a FAT32 boot partition (label
// "bootfs", type 0x0c) from sector 8192 when Boot is set, then the ext4
// filesystem image RootFS as the last partition (type 0x83; bootable when
// it is the only one, as on BeagleBone cards). With GPT set it is a GPT
// disk instead (basic data and Linux filesystem types, the GPT* GUIDs),
// with room for the backup table at the end.
type SDCard struct {
	DiskID string // MBR disk identifier, 8 hex digits
	GPT    bool
	// Boot are the boot partition's files (relative path → content).
	Boot map[string]string
	// BootMiB is the boot partition's size; 40 if 0 (FAT32 needs 65525
	// clusters: 40 MiB with one sector per cluster).
	BootMiB int
	// RootFS is an ext4 filesystem image; it is copied sparsely.
	RootFS   string
	FileName string
}

// Image builds the card in a new temp dir and returns its path. The same
// inputs give the same bytes.
func (c SDCard) Image(t testing.TB) string {
	t.Helper()
	NeedTools(t, "sfdisk")
	dir := t.TempDir()
	st, err := os.Stat(c.RootFS)
	require.NoError(t, err)
	const start = 8192
	if c.BootMiB == 0 {
		c.BootMiB = 40
	}
	bootSectors := int64(c.BootMiB) << 11
	rootStart, rootSectors := int64(start), (st.Size()+511)/512
	if c.Boot != nil {
		rootStart += bootSectors
	}
	img := filepath.Join(dir, c.FileName)
	size := (rootStart + rootSectors) * 512
	table := fmt.Sprintf("label: dos\nlabel-id: 0x%s\n", c.DiskID)
	bootType, rootType, rootFlags := "c", "83", ""
	if c.Boot == nil {
		rootFlags = ", bootable"
	}
	if c.GPT {
		size += 1 << 20
		table = fmt.Sprintf("label: gpt\nlabel-id: %s\n", GPTDiskGUID)
		bootType = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=" + GPTBootPartUUID
		rootType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=" + GPTRootPartUUID
		rootFlags = ""
	}
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, size))
	if c.Boot != nil {
		table += fmt.Sprintf("start=%d, size=%d, type=%s\n", start, bootSectors, bootType)
	}
	table += fmt.Sprintf("start=%d, size=%d, type=%s%s\n", rootStart, rootSectors, rootType, rootFlags)
	SFDisk(t, img, table)
	if c.Boot != nil {
		PlaceFile(t, img, bootFS(t, dir, c.Boot, bootSectors), start*512)
	}
	PlaceFile(t, img, c.RootFS, rootStart*512)
	return img
}

// bootFS makes a FAT32 filesystem image with files in it, reproducibly.
func bootFS(t testing.TB, dir string, files map[string]string, sectors int64) string {
	t.Helper()
	NeedTools(t, "mkfs.vfat", "mcopy")
	tree := filepath.Join(dir, "boot")
	WriteTree(t, tree, files)
	stamp := time.Unix(1700000000, 0)
	require.NoError(t, filepath.Walk(tree, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, stamp, stamp)
	}))
	fsImg := filepath.Join(dir, "bootfs.img")
	Run(t, "mkfs.vfat", "--invariant", "-C", "-F", "32", "-s", "1", "-n", "bootfs", fsImg, fmt.Sprint(sectors/2))
	ents, err := os.ReadDir(tree)
	require.NoError(t, err)
	args := []string{"-i", fsImg, "-s", "-m"}
	for _, e := range ents {
		args = append(args, filepath.Join(tree, e.Name()))
	}
	Run(t, "mcopy", append(args, "::")...)
	return fsImg
}

// SFDisk writes a partition table described in sfdisk's script format.
func SFDisk(t testing.TB, img, table string) {
	t.Helper()
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(table)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
}

// PlaceFile writes src into dst at offset, as dd conv=notrunc would, but
// skipping src's holes and all-zero blocks: dst's range must be a fresh
// (sparse) one. A 4 GiB root filesystem image with 400 MiB in it is
// placed by reading the 400 MiB.
func PlaceFile(t testing.TB, dst, src string, offset int64) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	st, err := in.Stat()
	require.NoError(t, err)
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer out.Close()
	const seekData = 3 // SEEK_DATA (Linux, the BSDs, macOS)
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < st.Size(); {
		if data, err := in.Seek(off, seekData); err == nil {
			if data >= st.Size() {
				break
			}
			off = data
		} else if errors.Is(err, syscall.ENXIO) {
			break // only a hole follows
		}
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			_, werr := out.WriteAt(buf[:n], offset+off)
			require.NoError(t, werr)
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
}

// GzipFile writes src.gz, the way images are often published.
func GzipFile(t testing.TB, src string) string {
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

// SHA256File is a file's sha256, hex.
func SHA256File(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// ReadExt4 reads a file from the ext4 filesystem at offset in a disk
// image, with debugfs.
func ReadExt4(t testing.TB, disk string, offset int64, p string) string {
	t.Helper()
	NeedTools(t, "debugfs")
	out, err := exec.Command("debugfs", "-R", "cat "+p, fmt.Sprintf("%s?offset=%d", disk, offset)).Output()
	require.NoError(t, err)
	return string(out)
}

// ReadInitramfs unpacks a gzip-compressed newc cpio: path → content.
func ReadInitramfs(t testing.TB, data []byte) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	out := map[string]string{}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		require.GreaterOrEqual(t, len(b)-off, 110, "truncated cpio header")
		hdr := b[off : off+110]
		require.Equal(t, "070701", string(hdr[:6]))
		var size, nameLen int
		_, err := fmt.Sscanf(string(hdr[54:62])+" "+string(hdr[94:102]), "%x %x", &size, &nameLen)
		require.NoError(t, err)
		name := string(b[off+110 : off+110+nameLen-1])
		off = align(off + 110 + nameLen)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = string(b[off : off+size])
		off = align(off + size)
	}
}
