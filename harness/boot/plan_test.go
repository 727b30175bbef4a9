package boot

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/state"
)

func board(t *testing.T, slug string, ownDeviceTree bool) Board {
	p, err := boards.Lookup(slug)
	require.NoError(t, err)
	return BoardOf(p, ownDeviceTree)
}

func TestBoardOf(t *testing.T) {
	require.Equal(t, Board{NIC: true, NICMigrates: true}, board(t, "raspi4b-fast", false))
	require.Equal(t, Board{NIC: true, NICMigrates: false, UARTCapable: true, USBNIC: true}, board(t, "raspi3b", false))
	require.Equal(t, Board{NIC: true, NICMigrates: false, UARTCapable: false, USBNIC: true}, board(t, "raspi3b", true),
		"an image's own device tree may give the UART to Bluetooth")
	require.Equal(t, Board{NIC: false, NICMigrates: true, UARTCapable: true, Twin: true}, board(t, "raspi4b", false))
	require.Equal(t, Board{NIC: true, NICMigrates: true}, board(t, "beaglebone-black", false))
}

// Every path a board comes up by, as the profile, the store and the options
// make it.
func TestDecide(t *testing.T) {
	store := Options{Snapshots: true, Containerd: true}
	coldFull := Plan{Path: Cold, Containerd: true, Save: state.Full, Lock: LockUntilSaved}
	coldDisk := Plan{Path: Cold, Containerd: true, Save: state.Disk, InstallSerialSSHD: true, RetryLostNIC: true, Lock: LockUntilSaved}
	coldDiskOwnDT := Plan{Path: Cold, Containerd: true, Save: state.Disk, RetryLostNIC: true, Lock: LockUntilSaved}
	coldUART := Plan{Path: Cold, UART: true, Containerd: true, Save: state.Full, OnTwin: true, Lock: LockUntilSaved}

	for _, tc := range []struct {
		name  string
		board string
		ownDT bool
		has   state.Have
		opts  Options
		want  Plan
	}{
		{name: "snapshots off: cold, nothing saved", board: "raspi4b-fast", opts: Options{Containerd: true}, has: state.Have{Full: true},
			want: Plan{Path: Cold, Containerd: true}},
		{name: "SSH only: cold, nothing saved", board: "raspi4b-fast", opts: Options{Snapshots: true}, has: state.Have{Full: true},
			want: Plan{Path: Cold}},
		{name: "first board: cold, saved whole", board: "raspi4b-fast", opts: store, want: coldFull},
		{name: "restore", board: "raspi4b-fast", opts: store, has: state.Have{Full: true},
			want: Plan{Path: Restore, From: state.Full, Containerd: true, Lock: LockUntilLoaded, OnRestoreFailure: &coldFull}},
		{name: "32-bit board: as any board QEMU saves whole", board: "beaglebone-black", opts: store, has: state.Have{Full: true},
			want: Plan{Path: Restore, From: state.Full, Containerd: true, Lock: LockUntilLoaded, OnRestoreFailure: &coldFull}},

		{name: "raspi3b first board: cold, disk saved with the serial sshd, NIC retry", board: "raspi3b", opts: store, want: coldDisk},
		{name: "raspi3b, snapshots off: NIC retry still", board: "raspi3b", opts: Options{Containerd: true},
			want: Plan{Path: Cold, Containerd: true, RetryLostNIC: true}},
		{name: "raspi3b second board: the disk booted without its NIC, over the UART, its state saved (serial save)", board: "raspi3b", opts: store,
			has:  state.Have{Disk: true, DiskSerialSSHD: true},
			want: Plan{Path: ProvisionedDisk, From: state.Disk, UART: true, Containerd: true, Save: state.Serial, PlugNIC: true, Lock: LockUntilSaved}},
		{name: "raspi3b later boards: restore the serial state, NIC plugged in; if it fails, boot the disk and save again", board: "raspi3b", opts: store,
			has: state.Have{Disk: true, DiskSerialSSHD: true, Serial: true},
			want: Plan{Path: Restore, From: state.Serial, UART: true, Containerd: true, PlugNIC: true, Lock: LockUntilLoaded,
				OnRestoreFailure: &Plan{Path: ProvisionedDisk, From: state.Disk, UART: true, Containerd: true, Save: state.Serial, PlugNIC: true, Lock: LockUntilSaved}}},
		{name: "raspi3b serial state whose disk is gone: the state has its own disk", board: "raspi3b", opts: store, has: state.Have{Serial: true},
			want: Plan{Path: Restore, From: state.Serial, UART: true, Containerd: true, PlugNIC: true, Lock: LockUntilLoaded, OnRestoreFailure: &coldDisk}},
		{name: "raspi3b disk saved without the serial sshd: boot it (disk only)", board: "raspi3b", opts: store, has: state.Have{Disk: true},
			want: Plan{Path: ProvisionedDisk, From: state.Disk, Containerd: true, RetryLostNIC: true, Lock: LockUntilDisk}},
		{name: "raspi3b own device tree: disk only, never a state", board: "raspi3b", ownDT: true, opts: store,
			has:  state.Have{Disk: true, DiskSerialSSHD: true, Serial: true},
			want: Plan{Path: ProvisionedDisk, From: state.Disk, Containerd: true, RetryLostNIC: true, Lock: LockUntilDisk}},
		{name: "raspi3b own device tree, first board", board: "raspi3b", ownDT: true, opts: store, want: coldDiskOwnDT},
		{name: "raspi3b: a whole state is never looked for", board: "raspi3b", opts: store, has: state.Have{Full: true}, want: coldDisk},

		{name: "raspi4b (no NIC) first board: containerd installed on its twin, then cold over the UART, saved whole", board: "raspi4b", opts: store, want: coldUART},
		{name: "raspi4b restore: over the UART, no NIC to plug", board: "raspi4b", opts: store, has: state.Have{Full: true},
			want: Plan{Path: Restore, From: state.Full, UART: true, Containerd: true, Lock: LockUntilLoaded, OnRestoreFailure: &coldUART}},
		{name: "raspi4b, snapshots off", board: "raspi4b", opts: Options{Containerd: true}, want: Plan{Path: Cold, UART: true, Containerd: true, OnTwin: true}},
		{name: "raspi4b, SSH only: no twin", board: "raspi4b", opts: Options{Snapshots: true}, want: Plan{Path: Cold, UART: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Decide(board(t, tc.board, tc.ownDT), tc.has, tc.opts))
		})
	}
}
