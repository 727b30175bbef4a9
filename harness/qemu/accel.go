package qemu

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/socbox/socbox/boards"
)

// Accel is how QEMU runs the guest's instructions.
type Accel string

const (
	// TCG translates every guest instruction: it runs any board on any
	// host, slowly. The zero Accel is TCG.
	TCG Accel = "tcg"
	// KVM runs the guest on the host's own cores: only an arm64 host with
	// a usable /dev/kvm, and only a board on QEMU's virt machine.
	KVM Accel = "kvm"
)

// Host is what the choice of accelerator needs to know about the machine
// socbox runs on.
type Host struct {
	Arch string // runtime.GOARCH
	// KVM: /dev/kvm opens read-write and speaks the stable KVM API.
	KVM bool
	// KVMAArch32: KVM can run a guest whose EL1 is AArch32
	// (KVM_CAP_ARM_EL1_32BIT). Cortex-A53/A57/A72 hosts can; many newer
	// cores (Neoverse N1/V1/N2, Cortex-A76 on, Apple's) run AArch32 at EL0
	// at most, or not at all.
	KVMAArch32 bool
	// Why says what kept KVM unusable, when it is ("no /dev/kvm").
	Why string
}

// ChooseAccel picks the accelerator for board b on host h, and says why.
// KVM only for the fast tier (QEMU's virt machine) on an arm64 host with a
// usable /dev/kvm; a 32-bit board (linux/arm/v7) only where KVM runs an
// AArch32 EL1. The faithful machines (raspi3b, raspi4b, cubieboard) model
// a particular SoC whose CPU QEMU emulates, and KVM cannot stand in for it:
// they always get TCG.
func ChooseAccel(h Host, b boards.Profile) (Accel, string) {
	switch {
	case !b.IsVirt():
		return TCG, fmt.Sprintf("%s is QEMU's model of the board's own SoC, which only TCG runs", b.Machine)
	case h.Arch != "arm64":
		return TCG, fmt.Sprintf("an %s host cannot run an ARM guest with KVM", h.Arch)
	case !h.KVM:
		return TCG, h.Why
	case b.Platform.Architecture == "arm" && !h.KVMAArch32:
		return TCG, "this host's KVM cannot run a 32-bit (AArch32) guest kernel"
	}
	return KVM, "arm64 host with a usable /dev/kvm"
}

// accelArgs are the -accel and -cpu values for the board with accelerator
// a (and the QEMU binary that runs it). Under TCG: the board's own CPU,
// multi-threaded, as it always was. Under KVM the guest runs on the host's
// cores, so the CPU is the host's; a 32-bit board runs it with AArch64 off
// in qemu-system-aarch64 (qemu-system-arm has no KVM on an arm64 host).
func accelArgs(b boards.Profile, a Accel) (exe, accel, cpu string) {
	if a == KVM {
		cpu = "host"
		if b.Platform.Architecture == "arm" {
			cpu = "host,aarch64=off"
		}
		return "qemu-system-aarch64", "kvm", cpu
	}
	return b.QEMUBinary, "tcg,thread=multi", b.CPU
}

// KVMDevice is where the kernel offers KVM.
const KVMDevice = "/dev/kvm"

// ioctl requests of the stable KVM API (linux/kvm.h).
const (
	kvmGetAPIVersion  = 0xAE00 // _IO(KVMIO, 0x00)
	kvmCheckExtension = 0xAE03 // _IO(KVMIO, 0x03)
	kvmAPIVersion     = 12
	kvmCapARMEL132Bit = 93 // KVM_CAP_ARM_EL1_32BIT
)

// ProbeKVM opens dev (KVMDevice) as QEMU would, read-write, and asks the
// kernel which KVM it has. A device that is missing, that this user may
// not open, or that does not answer is not usable.
func ProbeKVM(dev string) Host {
	h := Host{Arch: runtime.GOARCH}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		h.Why = fmt.Sprintf("%s is not usable: %v", dev, err)
		return h
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil || v != kvmAPIVersion {
		h.Why = fmt.Sprintf("%s does not answer as KVM (API version %d, %v)", dev, v, err)
		return h
	}
	h.KVM = true
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCheckExtension, kvmCapARMEL132Bit)
	h.KVMAArch32 = errno == 0 && r > 0
	return h
}

// ThisHost is ProbeKVM of this machine's KVMDevice, probed once.
var ThisHost = sync.OnceValue(func() Host { return ProbeKVM(KVMDevice) })

// HostAccel is the accelerator board b gets on this machine, and why.
func HostAccel(b boards.Profile) (Accel, string) { return ChooseAccel(ThisHost(), b) }
