// Package boards holds the board profiles socbox can emulate, as data.
//
// A profile says which QEMU machine stands in for a board, how faithful it is
// and what a user must know before trusting a result from it. Behaviour (how
// to build a command line, how to boot) lives in harness/ and images/.
package boards

import (
	"fmt"
	"sort"
	"strings"
)

// Tier says how close an emulated board is to the real one.
type Tier string

const (
	// Faithful boards run on the board's own QEMU machine (or the closest
	// real SoC QEMU has): same CPU core, RAM and peripherals where emulated.
	Faithful Tier = "faithful"
	// Fast boards run on QEMU's generic `virt` machine with the board's CPU
	// family and virtio devices: quicker to boot, less like the board.
	Fast Tier = "fast"
)

// Platform is an OCI platform: the guest's OS, architecture and variant.
type Platform struct {
	OS           string // "linux"
	Architecture string // OCI name: "arm64", "arm"
	Variant      string // "v7" for armhf, "" or "v8" for arm64
}

// String renders the platform as "linux/arm64" or "linux/arm/v7".
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// DebianArch is the Debian architecture name for the platform.
func (p Platform) DebianArch() string {
	switch p.Architecture {
	case "arm64":
		return "arm64"
	case "arm":
		return "armhf"
	case "amd64":
		return "amd64"
	}
	return p.Architecture
}

// UnameMachine is what `uname -m` prints in a guest of this platform.
func (p Platform) UnameMachine() string {
	switch p.Architecture {
	case "arm64":
		return "aarch64"
	case "arm":
		return "armv7l"
	case "amd64":
		return "x86_64"
	}
	return p.Architecture
}

var (
	// LinuxARM64 is a 64-bit ARM guest (Raspberry Pi 3/4 running arm64).
	LinuxARM64 = Platform{OS: "linux", Architecture: "arm64"}
	// LinuxARMv7 is a 32-bit ARMv7 hard-float guest (BeagleBone).
	LinuxARMv7 = Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

// DiskBus is how the board's boot disk is attached.
type DiskBus string

const (
	DiskVirtio DiskBus = "virtio" // virtio-blk-pci on `virt`; guest sees /dev/vda
	DiskSD     DiskBus = "sd"     // the SoC's SD controller; guest sees /dev/mmcblk0
)

// KernelSource says where the board's kernel, initrd modules and dtb come from.
type KernelSource struct {
	// DebianPackage is the Debian kernel metapackage for the guest arch,
	// e.g. "linux-image-arm64".
	DebianPackage string
	// DTB is the device tree file inside the kernel package's
	// /usr/lib/linux-image-*/ tree, relative to it; empty on `virt`, where
	// QEMU generates the device tree.
	DTB string
	// InitrdModules are loaded, with their dependencies, by the host-built
	// initrd before it mounts the root filesystem, in this order.
	InitrdModules []string
	// Console is the kernel console device, e.g. "ttyAMA0".
	Console string
	// ExtraCmdline is appended to the kernel command line.
	ExtraCmdline string
}

// Profile describes one emulated board.
type Profile struct {
	Slug        string // what users type: "raspi4b"
	Name        string // what is printed on the board
	Tier        Tier
	QEMUBinary  string // "qemu-system-aarch64"
	Machine     string // QEMU -M value
	CPU         string // QEMU -cpu value; empty for the machine's own
	MemoryMiB   int
	SMP         int // vCPUs; capped to the host's cores at run time on `virt`
	FixedMemory bool
	// SerialPorts is how many serial ports the machine has; each is logged
	// to its own file in the run directory.
	SerialPorts int
	NIC         string // QEMU -device for the NIC, e.g. "virtio-net-pci"
	DiskBus     DiskBus
	// DiskSizePowerOfTwo is set where the SD controller needs a card whose
	// size is a power of two.
	DiskSizePowerOfTwo bool
	Kernel             KernelSource
	Platform           Platform
	// RootDevice is the guest's device for the root filesystem.
	RootDevice string
	// Divergences lists what differs from the real board, for `socbox boards`.
	Divergences []string
}

// virtioRootModules are what Debian's arm64/armmp kernels need to mount an
// ext4 root on a virtio-blk disk behind PCI (all are modules there).
var virtioRootModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4"}

var catalog = map[string]Profile{
	"raspi4b": {
		Slug:        "raspi4b",
		Name:        "Raspberry Pi 4 Model B",
		Tier:        Fast,
		QEMUBinary:  "qemu-system-aarch64",
		Machine:     "virt",
		CPU:         "cortex-a72",
		MemoryMiB:   2048,
		SMP:         4,
		SerialPorts: 1,
		NIC:         "virtio-net-pci",
		DiskBus:     DiskVirtio,
		Kernel: KernelSource{
			DebianPackage: "linux-image-arm64",
			InitrdModules: virtioRootModules,
			Console:       "ttyAMA0",
		},
		Platform:   LinuxARM64,
		RootDevice: "/dev/vda",
		Divergences: []string{
			"generic `virt` machine: QEMU 7.2 has no raspi4b machine (9.0's has no NIC)",
			"virtio disk and NIC instead of SD card and BCM54213 Ethernet",
			"SoC peripherals not emulated: GPIO, I2C, SPI, VideoCore",
		},
	},
}

// Lookup returns the profile for a slug, or an error listing the known ones.
func Lookup(slug string) (Profile, error) {
	p, ok := catalog[slug]
	if !ok {
		return Profile{}, fmt.Errorf("unknown board %q: known boards are %s (see `socbox boards`)",
			slug, strings.Join(Slugs(), ", "))
	}
	return p, nil
}

// Slugs returns every board slug, sorted.
func Slugs() []string {
	out := make([]string, 0, len(catalog))
	for s := range catalog {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// All returns every profile, sorted by slug.
func All() []Profile {
	out := make([]Profile, 0, len(catalog))
	for _, s := range Slugs() {
		out = append(out, catalog[s])
	}
	return out
}
