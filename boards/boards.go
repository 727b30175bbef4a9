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

// SerialSSH is a serial port of the board that carries SSH.
type SerialSSH struct {
	// Port is the port's index among QEMU's -serial options.
	Port int
	// TTY is the guest's device for it, e.g. "ttyAMA0".
	TTY string
	// NICModules are the guest's drivers for the NIC, loaded before the
	// state is saved, so that the NIC plugged in after a restore is up
	// without a module load (over a second under TCG).
	NICModules []string
	// DTBDeleteNodes are taken out of the device tree, on top of the
	// kernel's, for the boot whose state is saved (and so for every
	// restore): what QEMU cannot restore.
	DTBDeleteNodes []string
}

// Enabled says whether the board has such a port.
func (s SerialSSH) Enabled() bool { return s.TTY != "" }

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
	// DTBDeleteNodes are device tree nodes removed from DTB before boot.
	DTBDeleteNodes []string
}

// Profile describes one emulated board.
type Profile struct {
	Slug       string // what users type: "raspi4b-fast"
	Name       string // what is printed on the board
	Tier       Tier
	QEMUBinary string // "qemu-system-aarch64"
	Machine    string // QEMU -M value
	// MinQEMU is the oldest QEMU release that has Machine ("9.0"); empty
	// for machines every QEMU socbox supports (7.2 on) has.
	MinQEMU     string
	CPU         string // QEMU -cpu value; empty for the machine's own
	MemoryMiB   int
	SMP         int // vCPUs; capped to the host's cores at run time on `virt`
	FixedMemory bool
	// SerialPorts is how many serial ports the machine has; each is logged
	// to its own file in the run directory.
	SerialPorts int
	NIC         string // QEMU -device for the NIC, e.g. "virtio-net-pci"
	// NICPort is the bus port a NIC plugged in after a restore goes on
	// ("" lets QEMU choose).
	NICPort string
	DiskBus DiskBus
	// OnboardNIC is set where the machine has its own NIC (connected to
	// QEMU's user network with -net nic) instead of a -device one.
	OnboardNIC bool
	// DiskSizePowerOfTwo is set where the SD controller needs a card whose
	// size is a power of two.
	DiskSizePowerOfTwo bool
	// NotMigratable says why QEMU cannot save this machine's state (a
	// device without migration support). Such boards save their state
	// without that device where they have a SerialSSH port, and otherwise
	// keep only their provisioned disk and boot it.
	NotMigratable string
	// ProvisionOn is the slug of the board's twin with a network, which
	// boots the same image and disk: containerd is installed there before
	// the board's own first boot, where the board has no network.
	ProvisionOn string
	// TimerLostOnRestore, when set, says why a restored guest may come
	// back with a CPU whose timer never fires: each CPU is checked after a
	// restore, and a state that comes back so is dropped (the board boots
	// its provisioned disk and saves a new one).
	TimerLostOnRestore string
	// SerialSSH is a serial port that can carry SSH where the NIC cannot be
	// saved with the machine state: the state is saved with no NIC, SSH
	// runs over this port after a restore, and the NIC is plugged back in.
	SerialSSH SerialSSH
	Kernel    KernelSource
	Platform  Platform
	// RootDevice is the guest's device for the root filesystem.
	RootDevice string
	// Divergences lists what differs from the real board, for `socbox boards`.
	Divergences []string
}

// virtioRootModules are what Debian's arm64/armmp kernels need to mount an
// ext4 root on a virtio-blk disk behind PCI (all are modules there).
var virtioRootModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4"}

// Boards without a real-time clock come up with a stale clock; socbox sets
// it from the host after login either way.

var catalog = map[string]Profile{
	"raspi4b-fast": {
		Slug:        "raspi4b-fast",
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
			"generic `virt` machine with the board's core (Cortex-A72) and RAM: raspi4b is the board's own machine (QEMU 9.0 on, no network)",
			"virtio disk and NIC instead of SD card and BCM54213 Ethernet",
			"SoC peripherals not emulated: GPIO, I2C, SPI, VideoCore",
		},
	},
	"raspi4b": {
		Slug:       "raspi4b",
		Name:       "Raspberry Pi 4 Model B",
		Tier:       Faithful,
		QEMUBinary: "qemu-system-aarch64",
		Machine:    "raspi4b",
		MinQEMU:    "9.0",
		MemoryMiB:  2048,
		SMP:        4,
		// QEMU's raspi4b is the 2 GiB board; its RAM size picks the
		// board revision.
		FixedMemory: true,
		// PL011 (ttyAMA0, SSH) and the mini-UART (ttyS1, the kernel
		// console in the device tree).
		SerialPorts:        2,
		DiskBus:            DiskSD,
		DiskSizePowerOfTwo: true,
		// No NIC: QEMU's BCM2711 has no PCIe (so no USB) and no GENET. SSH
		// runs over the PL011 from the first boot.
		SerialSSH: SerialSSH{Port: 0, TTY: "ttyAMA0"},
		// containerd's packages uploaded over the PL011 (~25 KiB/s into
		// the guest under QEMU 10) took a quarter of an hour; on the twin,
		// from Debian's archive, a minute.
		ProvisionOn: "raspi4b-fast",
		Kernel: KernelSource{
			DebianPackage: "linux-image-arm64",
			DTB:           "broadcom/bcm2711-rpi-4-b.dtb",
			// sdhci-iproc drives the Arasan SDHCI the card is on.
			InitrdModules: []string{"sdhci_iproc", "mmc_block", "ext4"},
			Console:       "ttyS1",
			// The serial sshd of the default image starts on this.
			ExtraCmdline: "socbox.serial_ssh=ttyAMA0",
			DTBDeleteNodes: []string{
				// As on raspi3b: the PL011 is a tty, not a serdev
				// controller for a Bluetooth chip QEMU does not have.
				"/soc/serial@7e201000/bluetooth",
				// HDMI's clock gates, interrupt controller, encoders and
				// DDC buses are not modelled: their drivers take an
				// external abort (brcmstb L2 intc, brcmstb i2c) or hang
				// clk_disable_unused on the DVP gate.
				"/soc/clock@7ef00000",
				"/soc/interrupt-controller@7ef00100",
				"/soc/hdmi@7ef00700",
				"/soc/i2c@7ef04500",
				"/soc/hdmi@7ef05700",
				"/soc/i2c@7ef09500",
				// QEMU 10 wires the SD card to the Arasan SDHCI (the real
				// board's Wi-Fi SDIO host), not to EMMC2: the card goes
				// there, without the Wi-Fi chip and its power sequence,
				// and EMMC2 (with its supplies, switched through the
				// firmware's GPIO expander QEMU does not answer) goes.
				"/soc/mmc@7e300000/wifi@1",
				"/wifi-pwrseq",
				"/emmc2bus/mmc@7e340000",
				"/regulator-sd-io-1v8",
				"/regulator-sd-vcc",
			},
		},
		Platform:   LinuxARM64,
		RootDevice: "/dev/mmcblk0",
		Divergences: []string{
			"no network: QEMU's BCM2711 has no PCIe (so no USB) and no GENET Ethernet; socbox reaches the board over its PL011 UART, and scenarios that need a network interface do not apply",
			"no Wi-Fi/Bluetooth, no GPU (VideoCore VI), no HDMI (their device tree nodes are removed)",
			"the SD card is on the Arasan SDHCI controller (the real board's Wi-Fi SDIO host), where QEMU puts it, not on EMMC2; PIO, no DMA",
			"SoC peripherals partly emulated: no I2C/SPI devices attached, GPIO without real pins, thermal sensor and RNG not modelled",
			"no RTC (like the real board): the clock is set from the host after login",
			"needs QEMU 9.0 or newer; with an older QEMU use raspi4b-fast",
		},
	},
	"raspi3b": {
		Slug:        "raspi3b",
		Name:        "Raspberry Pi 3 Model B",
		Tier:        Faithful,
		QEMUBinary:  "qemu-system-aarch64",
		Machine:     "raspi3b",
		MemoryMiB:   1024,
		SMP:         4,
		FixedMemory: true,
		// PL011 (ttyAMA0) and the mini-UART (ttyS1, the kernel console in
		// the device tree): both logged, except when the PL011 carries SSH.
		SerialPorts:        2,
		NIC:                "usb-net",
		DiskBus:            DiskSD,
		DiskSizePowerOfTwo: true,
		NotMigratable:      "QEMU 7.2 cannot migrate raspi3b's usb-net device, and unplugging it from a running guest crashes QEMU",
		// Seen in CI: every restore of one saved state had core 2 stalled
		// (RCU stalls, "timer wakeup didn't happen", the plugged NIC never
		// got its DHCP lease, SSH over the UART took two minutes).
		TimerLostOnRestore: "QEMU's BCM2836 local interrupt controller does not save the level of the cores' timer interrupts: a core whose timer had fired, unhandled, when the state was saved waits for an interrupt that never comes",
		SerialSSH: SerialSSH{Port: 0, TTY: "ttyAMA0", NICModules: []string{"cdc_ether"},
			// The SD card on SDHCI, not SDHOST: QEMU 7.2 puts the card back
			// on SDHCI when it loads a saved state (its GPIO block does not
			// redo the pin-mux choice), so a guest using SDHOST loses its
			// root disk on restore. SDHCI's power sequence is for the Wi-Fi
			// chip QEMU does not have; without the node the controller does
			// not wait for it. Only for this boot: SDHCI works in PIO mode,
			// and cold boots on it were slower (~98 s to SSH against
			// ~65 s) and lost the USB NIC's enumeration in two boots of six.
			DTBDeleteNodes: []string{"/soc/mmc@7e202000", "/wifi-pwrseq"}},
		// dwc2 has one port: without a port QEMU puts a hub in front of
		// the NIC, one more device for a restored guest to enumerate. (A
		// cold boot keeps the hub, as it always had.)
		NICPort: "1",
		Kernel: KernelSource{
			DebianPackage: "linux-image-arm64",
			DTB:           "broadcom/bcm2837-rpi-3-b.dtb",
			InitrdModules: []string{"bcm2835", "sdhci_iproc", "mmc_block", "ext4"},
			Console:       "ttyS1",
			// Without it the power-domain driver resets the emulated SoC.
			ExtraCmdline: "initcall_blacklist=bcm2835_pm_driver_init",
			// The Bluetooth node makes the PL011 a serdev controller with no
			// tty; without it the PL011 is /dev/ttyAMA0, free for SerialSSH
			// (QEMU emulates no Bluetooth chip behind it anyway).
			DTBDeleteNodes: []string{"/soc/serial@7e201000/bluetooth"},
		},
		Platform:   LinuxARM64,
		RootDevice: "/dev/mmcblk0",
		Divergences: []string{
			"no on-board Ethernet (LAN9514): networking is a QEMU usb-net device (usb0), slower than the real NIC",
			"no Wi-Fi/Bluetooth, no GPU (VideoCore), no HDMI; the PL011 UART (ttyAMA0), Bluetooth's on the real board, carries socbox's SSH on a restored board",
			"SoC peripherals partly emulated: no I2C/SPI devices attached, GPIO without real pins",
			"a restored board has its SD card on the SDHCI controller (the real board's is on SDHOST, which QEMU 7.2 cannot restore)",
			"no RTC (like the real board): the clock is set from the host after login",
		},
	},
	"raspi3b-fast": {
		Slug:        "raspi3b-fast",
		Name:        "Raspberry Pi 3 Model B",
		Tier:        Fast,
		QEMUBinary:  "qemu-system-aarch64",
		Machine:     "virt",
		CPU:         "cortex-a53",
		MemoryMiB:   1024,
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
			"generic `virt` machine with the board's core (Cortex-A53) and RAM",
			"virtio disk and NIC instead of SD card and USB Ethernet",
			"SoC peripherals not emulated: GPIO, I2C, SPI, VideoCore",
		},
	},
	"beaglebone-black": {
		Slug:       "beaglebone-black",
		Name:       "BeagleBone Black",
		Tier:       Faithful,
		QEMUBinary: "qemu-system-arm",
		// QEMU has no AM335x machine; the Allwinner A10 of the cubieboard
		// is a real Cortex-A8, the BeagleBone's core.
		Machine:            "cubieboard",
		MemoryMiB:          512,
		SMP:                1,
		SerialPorts:        1,
		OnboardNIC:         true,
		DiskBus:            DiskSD,
		DiskSizePowerOfTwo: true,
		Kernel: KernelSource{
			DebianPackage: "linux-image-armmp",
			DTB:           "sun4i-a10-cubieboard.dtb",
			// sun4i-emac needs its PHY stack loaded before it; udev does
			// not order them, so the initrd does.
			InitrdModules: []string{"sunxi_mmc", "mmc_block", "ext4", "libphy", "fixed_phy", "fwnode_mdio", "of_mdio", "mdio_sun4i", "sun4i_emac"},
			Console:       "ttyS0",
			// QEMU does not emulate the A10's Security System: its driver
			// (loaded by udev two minutes into boot) spins on the missing
			// hardware and the guest stops answering.
			ExtraCmdline: "modprobe.blacklist=sun4i_ss",
		},
		Platform:   LinuxARMv7,
		RootDevice: "/dev/mmcblk0",
		Divergences: []string{
			"Allwinner A10 (cubieboard) instead of TI AM335x: same Cortex-A8 core, NEON and VFPv3, different SoC",
			"SoC peripherals differ: no PRU, no eMMC, no AM335x GPIO/I2C/ADC; Ethernet is the A10's EMAC",
			"poweroff in the guest does not stop QEMU on this machine: socbox stops it through QMP",
			"no hardware crypto engine: the sun4i-ss driver is blacklisted (QEMU does not emulate it)",
		},
	},
	"beaglebone-black-fast": {
		Slug:       "beaglebone-black-fast",
		Name:       "BeagleBone Black",
		Tier:       Fast,
		QEMUBinary: "qemu-system-arm",
		// highmem=off: an armmp (non-LPAE) kernel cannot reach virt's PCI
		// window above 4 GiB.
		Machine:     "virt,highmem=off",
		CPU:         "cortex-a15",
		MemoryMiB:   512,
		SMP:         1,
		SerialPorts: 1,
		NIC:         "virtio-net-pci",
		DiskBus:     DiskVirtio,
		Kernel: KernelSource{
			DebianPackage: "linux-image-armmp",
			InitrdModules: virtioRootModules,
			Console:       "ttyAMA0",
		},
		Platform:   LinuxARMv7,
		RootDevice: "/dev/vda",
		Divergences: []string{
			"Cortex-A15 instead of A8 (QEMU 7.2 refuses `virt` with a Cortex-A8): NEON/VFP timing and errata differ",
			"generic `virt` machine: virtio disk and NIC, no AM335x peripherals (PRU, GPIO, I2C, ADC)",
		},
	},
}

// HasNetwork says whether the board has a NIC on QEMU's user network.
// One without (QEMU's raspi4b has no PCIe, USB or GENET) is reached over
// its SerialSSH port, and scenarios that need a network do not apply.
func (p Profile) HasNetwork() bool { return p.NIC != "" || p.OnboardNIC }

// IsVirt reports whether the profile runs on QEMU's generic virt machine.
func (p Profile) IsVirt() bool { return strings.HasPrefix(p.Machine, "virt") }

// FastSlug is the slug of this board's fast tier ("raspi4b-fast" for
// "raspi4b"), or "" when the board is fast itself or has none.
func (p Profile) FastSlug() string {
	if p.Tier == Fast {
		return ""
	}
	if _, ok := catalog[p.Slug+"-fast"]; ok {
		return p.Slug + "-fast"
	}
	return ""
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
