package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/images"
)

func TestStateSnapshotDir(t *testing.T) {
	board := func(slug string, im *images.Image) *Board {
		p, err := boards.Lookup(slug)
		require.NoError(t, err)
		return &Board{Profile: p, Image: im}
	}
	ownKernel := &images.Image{Kernel: "boot/kernel8.img"}
	profileKernel := &images.Image{KernelDeb: "linux-image-arm64.deb"}

	require.Equal(t, "/s/raspi4b-1", board("raspi4b", profileKernel).stateSnapshotDir("/s/raspi4b-1"),
		"a board QEMU saves whole keeps its state with its disk")
	r3 := board("raspi3b", profileKernel).stateSnapshotDir("/s/raspi3b-1")
	require.True(t, strings.HasPrefix(r3, "/s/raspi3b-1-serial-"), r3)
	require.Empty(t, board("raspi3b", ownKernel).stateSnapshotDir("/s/raspi3b-1"),
		"an image's own device tree may give the UART to Bluetooth: disk only")

	changed := board("raspi3b", profileKernel)
	changed.Profile.SerialSSH.NICModules = []string{"cdc_ether", "usbnet"}
	require.NotEqual(t, r3, changed.stateSnapshotDir("/s/raspi3b-1"), "what the state is saved with is in its key")
}

func TestDiskHasSerialSSH(t *testing.T) {
	dir := t.TempDir()
	require.False(t, diskHasSerialSSH(dir), "no disk.json")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "disk.json"), []byte(`{"disk_only":true}`), 0o644))
	require.False(t, diskHasSerialSSH(dir), "a disk provisioned before the serial sshd, or without it")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "disk.json"), []byte(`{"disk_only":true,"serial_ssh":true}`), 0o644))
	require.True(t, diskHasSerialSSH(dir))
}
