package images

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Family is a kind of board image: it decides how socbox sets up a first
// boot it can log in to.
type Family string

const (
	// FamilyRaspiOS is Raspberry Pi OS up to bookworm: an empty `ssh` file
	// on the boot partition enables sshd (sshswitch.service), and
	// userconf.txt ("user:crypted-password") names the first user.
	FamilyRaspiOS Family = "raspios"
	// FamilyRaspiOSCloudInit is Raspberry Pi OS from trixie on: cloud-init
	// reads user-data, meta-data and network-config from the boot
	// partition (NoCloud), the way Raspberry Pi Imager 2.x writes them.
	FamilyRaspiOSCloudInit Family = "raspios-cloudinit"
	// FamilyDebian is a Debian image without a Raspberry Pi boot partition,
	// e.g. BeagleBone's (one ext4 partition, /boot/uEnv.txt): the key goes
	// straight into the root filesystem.
	FamilyDebian Family = "debian"
)

// ImageInfo is what Inspect found in a board image.
type ImageInfo struct {
	File   string      `json:"file"`
	Layout *DiskLayout `json:"layout"`
	// Boot is the FAT boot partition; nil when the image has none
	// (BeagleBone images boot from /boot on the root filesystem).
	Boot *Partition `json:"boot,omitempty"`
	Root Partition  `json:"root"`
	// BootFiles are the boot partition's top-level names ("overlays/" for
	// a directory).
	BootFiles []string `json:"boot_files,omitempty"`
	Kernels   []string `json:"kernels,omitempty"` // kernel*.img on the boot partition
	DTBs      []string `json:"dtbs,omitempty"`    // bcm27*.dtb on the boot partition
	Cmdline   string   `json:"cmdline,omitempty"` // cmdline.txt
	Config    string   `json:"config,omitempty"`  // config.txt
	Overlays  bool     `json:"overlays,omitempty"`
	// UEnv is /boot/uEnv.txt (BeagleBone).
	UEnv      string            `json:"uenv,omitempty"`
	OSRelease map[string]string `json:"os_release"`
	Family    Family            `json:"family"`
	// Suite is the Debian release the image is based on (VERSION_CODENAME).
	Suite string `json:"suite"`
	// Arch is the Debian architecture of the userland ("arm64", "armhf").
	Arch string `json:"arch"`
	// FirstUser is the first login user (uid 1000..59999), if any.
	FirstUser     string `json:"first_user,omitempty"`
	FirstUserUID  int    `json:"first_user_uid,omitempty"`
	FirstUserGID  int    `json:"first_user_gid,omitempty"`
	FirstUserHome string `json:"first_user_home,omitempty"`
	// ModuleVersions are the kernel versions in /lib/modules.
	ModuleVersions []string `json:"module_versions,omitempty"`
	// RaspberryPi is set when the root filesystem is Raspberry Pi OS
	// (/etc/rpi-issue).
	RaspberryPi bool `json:"raspberry_pi"`
	CloudInit   bool `json:"cloud_init"`

	hasBootDir bool // /boot in the root filesystem has a kernel or uEnv.txt
}

// Describe is a one-line summary for logs.
func (i *ImageInfo) Describe() string {
	name := i.OSRelease["PRETTY_NAME"]
	if name == "" {
		name = i.OSRelease["ID"] + " " + i.Suite
	}
	s := fmt.Sprintf("%s (%s, %s, family %s, %s, root partition %d", name, i.Arch, i.Suite, i.Family, strings.ToUpper(i.Layout.Table), i.Root.Index)
	if i.Boot != nil {
		s += fmt.Sprintf(", boot partition %d", i.Boot.Index)
	}
	return s + ")"
}

// Inspect reads a raw board image without writing it: partition table,
// boot partition, root filesystem, OS family.
func Inspect(ctx context.Context, file string) (*ImageInfo, error) {
	lay, err := ReadLayout(file)
	if err != nil {
		return nil, err
	}
	info := &ImageInfo{File: file, Layout: lay}
	root, ok := lay.RootPartition()
	if !ok {
		return nil, &ImageFormatError{File: file, What: fmt.Sprintf("no ext4 root filesystem in any of its %d partitions (%s)", len(lay.Partitions), describeParts(lay)),
			Fix: "socbox boots Linux board images whose root filesystem is ext4 (Raspberry Pi OS, BeagleBone Debian)"}
	}
	info.Root = root
	if b, ok := lay.BootPartition(); ok {
		info.Boot = &b
		if err := inspectBootPartition(file, info); err != nil {
			return nil, fmt.Errorf("inspect %s: boot partition %d: %w", file, b.Index, err)
		}
	}
	if err := inspectRootFS(ctx, file, info); err != nil {
		return nil, fmt.Errorf("inspect %s: root filesystem (partition %d): %w", file, root.Index, err)
	}
	switch {
	case info.RaspberryPi && info.Boot == nil:
		return nil, &ImageFormatError{File: file, What: "no boot partition: the root filesystem is Raspberry Pi OS but no partition is FAT",
			Fix: "pass the whole SD card image, with its bootfs partition"}
	case info.Boot == nil && info.UEnv == "" && !info.hasBootDir:
		return nil, &ImageFormatError{File: file, What: "no boot partition (no FAT partition) and no /boot/uEnv.txt or kernel in the root filesystem",
			Fix: "pass a bootable board image: Raspberry Pi OS, or a BeagleBone/Debian image"}
	case info.Boot != nil && (info.RaspberryPi || len(info.Kernels) > 0 || info.Config != ""):
		if info.CloudInit {
			info.Family = FamilyRaspiOSCloudInit
		} else {
			info.Family = FamilyRaspiOS
		}
	default:
		info.Family = FamilyDebian
	}
	return info, nil
}

func describeParts(lay *DiskLayout) string {
	var s []string
	for _, p := range lay.Partitions {
		fsName := p.FS
		if fsName == "" {
			fsName = "unknown filesystem"
		}
		s = append(s, fmt.Sprintf("%d: type %s, %s", p.Index, p.TableType, fsName))
	}
	return strings.Join(s, "; ")
}

func inspectBootPartition(file string, info *ImageInfo) error {
	b := bootFS{file: file, part: *info.Boot}
	list, err := b.list()
	if err != nil {
		return err
	}
	for _, n := range list {
		info.BootFiles = append(info.BootFiles, n)
	}
	sort.Strings(info.BootFiles)
	info.Kernels = list.names("kernel*.img")
	info.DTBs = list.names("bcm27*.dtb")
	_, info.Overlays = list.has("overlays/")
	for _, f := range []struct {
		name string
		dst  *string
	}{{"cmdline.txt", &info.Cmdline}, {"config.txt", &info.Config}} {
		if n, ok := list.has(f.name); ok {
			data, err := b.readFile(n)
			if err != nil {
				return err
			}
			*f.dst = strings.TrimSpace(string(data))
		}
	}
	return nil
}

func inspectRootFS(ctx context.Context, file string, info *ImageInfo) error {
	e := ext4Part{file: file, offset: info.Root.Start, size: info.Root.Size}
	osr, err := e.readFile(ctx, "/etc/os-release", maxTextFile)
	if errors.Is(err, fs.ErrNotExist) {
		osr, err = e.readFile(ctx, "/usr/lib/os-release", maxTextFile)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &ImageFormatError{File: file, What: "the root filesystem has no /etc/os-release", Fix: "socbox boots Debian-based images (Raspberry Pi OS, BeagleBone Debian)"}
		}
		return err
	}
	info.OSRelease = parseOSRelease(osr)
	info.Suite = info.OSRelease["VERSION_CODENAME"]
	if info.Suite == "" {
		info.Suite = suiteFromDebianVersion(e, ctx)
	}
	if n, err := e.lstat(ctx, "/etc/rpi-issue"); err == nil && n.exists {
		info.RaspberryPi = true
	}
	if n, err := e.lstat(ctx, "/etc/cloud/cloud.cfg"); err == nil && n.exists {
		info.CloudInit = true
	}
	if uenv, err := e.readFile(ctx, "/boot/uEnv.txt", maxTextFile); err == nil {
		info.UEnv = strings.TrimSpace(string(uenv))
	}
	if names, err := e.listDir(ctx, "/boot"); err == nil {
		for _, n := range names {
			if strings.HasPrefix(n, "vmlinuz-") || n == "uEnv.txt" {
				info.hasBootDir = true
			}
		}
	}
	if names, err := e.listDir(ctx, "/lib/modules"); err == nil {
		sort.Strings(names)
		info.ModuleVersions = names
	}
	info.Arch = userlandArch(ctx, e)
	if pw, err := e.readFile(ctx, "/etc/passwd", maxTextFile); err == nil {
		info.FirstUser, info.FirstUserUID, info.FirstUserGID, info.FirstUserHome = firstUser(pw)
	}
	return nil
}

// suiteFromDebianVersion maps /etc/debian_version ("12.5") to a codename
// for images whose os-release lacks VERSION_CODENAME.
func suiteFromDebianVersion(e ext4Part, ctx context.Context) string {
	b, err := e.readFile(ctx, "/etc/debian_version", maxTextFile)
	if err != nil {
		return ""
	}
	v := strings.TrimSpace(string(b))
	major, _, _ := strings.Cut(v, ".")
	switch major {
	case "11":
		return "bullseye"
	case "12":
		return "bookworm"
	case "13":
		return "trixie"
	}
	if i := strings.Index(v, "/"); i > 0 {
		return v[:i] // "trixie/sid"
	}
	return ""
}

func parseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		out[k] = v
	}
	return out
}

// userlandArch reads the ELF header of the image's shell.
func userlandArch(ctx context.Context, e ext4Part) string {
	for _, p := range []string{"/usr/bin/dash", "/bin/dash", "/usr/bin/bash", "/bin/sh"} {
		data, err := e.readFile(ctx, p, maxBinaryFile)
		if err != nil {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			continue
		}
		switch f.Machine {
		case elf.EM_AARCH64:
			return "arm64"
		case elf.EM_ARM:
			return "armhf"
		case elf.EM_X86_64:
			return "amd64"
		}
		return strings.ToLower(strings.TrimPrefix(f.Machine.String(), "EM_"))
	}
	return ""
}

// firstUser is the first /etc/passwd entry with a login uid, the user
// Raspberry Pi OS and BeagleBone images make ("pi", "debian").
func firstUser(passwd []byte) (name string, uid, gid int, home string) {
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 7 {
			continue
		}
		u, err1 := strconv.Atoi(f[2])
		g, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || u < 1000 || u >= 60000 {
			continue
		}
		return f[0], u, g, f[5]
	}
	return "", 0, 0, ""
}
