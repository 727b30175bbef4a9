// Package boot decides how a board is brought up (Decide, a pure function
// of the board, what the saved-state store holds and the options) and
// carries that plan out (Run) through the steps a session gives it, with
// ordered cleanup. The paths, each measured:
//
//   - cold: boot the base image, install containerd, save the board for
//     the next ones (its whole state, or its disk where QEMU cannot save
//     the state with the NIC);
//   - restore: start from a saved state, in about a second; if it does not
//     load (QEMU upgraded in place, a truncated file), drop it and boot
//     cold instead;
//   - provisioned disk: boot the disk saved with containerd installed;
//     where the board has a UART for SSH, boot it without its NIC, save
//     its state, and plug the NIC in (raspi3b: QEMU cannot migrate its
//     usb-net, and unplugging it from a running guest crashes QEMU 7.2);
//   - no NIC at all (raspi4b under QEMU ≥ 9): every path over the UART,
//     and containerd installed first on the board's twin with a network
//     (the same image and disk on `virt`), since its upload over the UART
//     alone takes a quarter of an hour;
//   - a boot whose USB NIC the guest failed to enumerate (about one cold
//     raspi3b boot in six under TCG) boots again, once.
package boot

import (
	"errors"
	"strings"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/state"
)

// Board is what the plan needs to know of the board.
type Board struct {
	// NIC: the board has a NIC on QEMU's user network.
	NIC bool
	// NICMigrates: QEMU can save the machine's state with its NIC.
	NICMigrates bool
	// UARTCapable: the board can be reached, and saved, over a serial
	// port (it has one for SSH and boots socbox's device tree).
	UARTCapable bool
	// USBNIC: the NIC is a USB device, which the guest may fail to
	// enumerate.
	USBNIC bool
	// Twin: the board has a twin with a network that boots the same disk,
	// where containerd is installed before the board's own first boot.
	Twin bool
}

// Options are the session's choices that shape the plan.
type Options struct {
	// Snapshots: restore and save boards through the store.
	Snapshots bool
	// Containerd: bring the board to containerd-ready, not just SSH.
	Containerd bool
}

// UsesStore says whether a session with these options looks in the store
// (under its lock) before deciding.
func (o Options) UsesStore() bool { return o.Snapshots && o.Containerd }

// Path is how the machine is started.
type Path string

const (
	Cold            Path = "cold"             // the base image
	Restore         Path = "restore"          // a saved state
	ProvisionedDisk Path = "provisioned-disk" // the disk saved with containerd
)

// Lock is how long the runner holds the store's lock of the board's key.
type Lock string

const (
	// LockNone: the store is not used.
	LockNone Lock = ""
	// LockUntilDisk: until the run's overlay is made on the saved disk;
	// nothing is saved.
	LockUntilDisk Lock = "until-disk"
	// LockUntilLoaded: until the saved state has loaded, so that a second
	// process waits and then restores too rather than booting.
	LockUntilLoaded Lock = "until-loaded"
	// LockUntilSaved: until the board is saved (or failed to be), so that
	// a second process waits and then restores instead of booting too.
	LockUntilSaved Lock = "until-saved"
)

// Plan is how one board comes up.
type Plan struct {
	Path Path
	// From is the store's slot the machine starts from: the state loaded
	// (Restore) or the disk booted (ProvisionedDisk).
	From state.Slot
	// UART: SSH rides the board's serial port, with no NIC at start.
	UART bool
	// Containerd: bring the board to containerd-ready.
	Containerd bool
	// Save is the slot the ready board is saved into, or state.None.
	Save state.Slot
	// InstallSerialSSHD: the saved disk gets the serial sshd, so that a
	// later board can be reached, and saved, over the UART.
	InstallSerialSSHD bool
	// PlugNIC: the NIC is plugged in once the state has loaded or been
	// saved, and its address awaited.
	PlugNIC bool
	// RetryLostNIC: boot once more when the guest gives up on its USB NIC.
	RetryLostNIC bool
	// OnTwin: a cold boot first boots the run's disk on the board's twin,
	// installs containerd there and stops it; the board then boots that
	// disk with containerd ready to start.
	OnTwin bool
	Lock   Lock
	// OnRestoreFailure is the plan once a Restore did not load, or came
	// back unusable (ErrRestoredUnusable): its state is dropped first.
	OnRestoreFailure *Plan
}

// ErrRestoredUnusable is a restored board that loaded but cannot be used
// (a CPU whose timer never fires): its state is dropped and the board
// comes up the way it would without it.
var ErrRestoredUnusable = errors.New("the restored board is unusable")

// Decide is the plan for board b, given what the store has for its key
// (found under the key's lock when opts.UsesStore) and opts.
func Decide(b Board, has state.Have, opts Options) Plan {
	uart := !b.NIC
	cold := Plan{Path: Cold, UART: uart, Containerd: opts.Containerd, RetryLostNIC: b.USBNIC && !uart,
		OnTwin: b.Twin && opts.Containerd}
	if !opts.UsesStore() {
		return cold
	}
	cold.Lock = LockUntilSaved
	switch {
	case b.NICMigrates:
		cold.Save = state.Full
	default:
		cold.Save, cold.InstallSerialSSHD = state.Disk, b.UARTCapable
	}
	// Where a whole state is kept: with the disk when QEMU can save the
	// board with its NIC; beside the saved disk when the board is saved
	// without it over its UART; nowhere otherwise.
	stateSlot := state.None
	switch {
	case b.NICMigrates:
		stateSlot = state.Full
	case b.UARTCapable:
		stateSlot = state.Serial
	}
	switch {
	case stateSlot != state.None && has.Has(stateSlot):
		overUART := uart || stateSlot == state.Serial
		// As if the state had not been there.
		fallback := Decide(b, has.Without(stateSlot), opts)
		return Plan{Path: Restore, From: stateSlot, UART: overUART, Containerd: true,
			PlugNIC: overUART && b.NIC, Lock: LockUntilLoaded, OnRestoreFailure: &fallback}
	case !b.NICMigrates && has.Disk && stateSlot == state.Serial && has.DiskSerialSSHD:
		// Booted without the NIC, reached over the UART, and saved: later
		// boards restore this state.
		return Plan{Path: ProvisionedDisk, From: state.Disk, UART: true, Containerd: true,
			Save: state.Serial, PlugNIC: b.NIC, Lock: LockUntilSaved}
	case !b.NICMigrates && has.Disk:
		return Plan{Path: ProvisionedDisk, From: state.Disk, UART: uart, Containerd: true,
			RetryLostNIC: b.USBNIC && !uart, Lock: LockUntilDisk}
	}
	return cold
}

// BoardOf is what the plan needs of profile p. ownDeviceTree: the image
// boots its own device tree, which may give the UART to another driver
// (Bluetooth on a Raspberry Pi OS image), so the board is not reached
// over it.
func BoardOf(p boards.Profile, ownDeviceTree bool) Board {
	return Board{
		NIC:         p.HasNetwork(),
		NICMigrates: p.NotMigratable == "",
		UARTCapable: p.SerialSSH.Enabled() && !ownDeviceTree,
		USBNIC:      strings.HasPrefix(p.NIC, "usb-"),
		Twin:        p.ProvisionOn != "",
	}
}
