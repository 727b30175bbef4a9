package harness

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/qemu"
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

	require.Equal(t, "/s/raspi4b-1", board("raspi4b-fast", profileKernel).stateSnapshotDir("/s/raspi4b-1"),
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

func TestPruneSuperseded(t *testing.T) {
	dir := t.TempDir()
	in := func(image, containerd, smp string) snapshotInputs {
		return snapshotInputs{Board: "raspi3b", Image: image, Containerd: containerd, Args: []string{"-smp", smp}}
	}
	write := func(name, file string, inputs snapshotInputs) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		blob, err := json.Marshal(snapshotMeta{Inputs: inputs})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, file), blob, 0o644))
	}
	cur := in("img1", "auto", "4")
	write("raspi3b-new", "disk.json", cur)
	write("raspi3b-new-serial-aaa", "snapshot.json", cur)
	write("raspi3b-new-serial-bbb", "snapshot.json", cur)
	write("raspi3b-old", "disk.json", in("img1", "auto", "4"))
	write("raspi3b-old-serial", "snapshot.json", in("img1", "auto", "4"))
	write("raspi3b-crun", "disk.json", in("img1", "auto+crun", "4"))
	write("raspi3b-bookworm", "disk.json", in("img2", "auto", "4"))
	write("raspi3b-smp2", "disk.json", in("img1", "auto", "2"))
	write("raspi3b-fast-x", "snapshot.json", snapshotInputs{Board: "raspi3b-fast", Image: "img1", Containerd: "auto"})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "raspi3b-new.tmp-123"), 0o755))

	b := &Board{snapInputs: cur, logf: t.Logf}
	b.pruneSuperseded(filepath.Join(dir, "raspi3b-new-serial-bbb"))
	left := func() []string {
		var names []string
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	require.Equal(t, []string{"raspi3b-bookworm", "raspi3b-crun", "raspi3b-fast-x", "raspi3b-new", "raspi3b-new-serial-bbb", "raspi3b-new.tmp-123", "raspi3b-smp2"}, left(),
		"an older key's disk and states, and the other state on this disk, go; other choices, other boards and a save in progress stay")

	b.pruneSuperseded(filepath.Join(dir, "raspi3b-new"))
	require.NotContains(t, left(), "raspi3b-new-serial-bbb", "the disk under a state was saved again")
	require.Contains(t, left(), "raspi3b-new")
}

func TestConsoleProblemUSBNICLost(t *testing.T) {
	p, err := boards.Lookup("raspi3b")
	require.NoError(t, err)
	dir := t.TempDir()
	b := &Board{Profile: p, RunDir: dir, Machine: &qemu.Machine{}}
	log := qemu.SerialLog(dir, b.consolePort())
	require.NoError(t, os.WriteFile(log, []byte("[   61.3] usb usb1-port1: attempt power cycle\n[   62.9] usb usb1-port1: unable to enumerate USB device\n"), 0o644))
	require.ErrorIs(t, b.consoleProblem(), ErrUSBNICLost)

	b.serialSSH = filepath.Join(dir, "ssh-serial.sock")
	require.False(t, b.usbNICAtBoot(), "the NIC-less boot has no USB NIC to lose")
}

func TestConsoleProblemSSHDFailed(t *testing.T) {
	for _, line := range []string{
		"[FAILED] Failed to start ssh.service - OpenBSD Secure Shell server.",
		"[FAILED] Failed to start OpenBSD Secure Shell server.",
	} {
		p, err := boards.Lookup("raspi4b")
		require.NoError(t, err)
		dir := t.TempDir()
		b := &Board{Profile: p, RunDir: dir, Machine: &qemu.Machine{}}
		log := qemu.SerialLog(dir, b.consolePort())
		require.NoError(t, os.WriteFile(log, []byte("[  OK  ] Started systemd-logind.service.\r\n"+line+"\r\n"), 0o644))
		err = b.consoleProblem()
		require.ErrorIs(t, err, ErrSSHDFailed)
		require.ErrorContains(t, err, line)
		require.ErrorContains(t, err, log, "points at the console log")

		// Early in the boot: still found once it has scrolled out of the tail.
		require.NoError(t, os.WriteFile(log, []byte(line+"\n"+strings.Repeat("[  OK  ] Reached target.\n", 200)), 0o644))
		require.ErrorIs(t, b.consoleProblem(), ErrSSHDFailed)
	}
}

// A snapshot another process is restoring from holds its lock: pruning
// must leave it, as it leaves a save in progress.
func TestPruneSupersededSkipsASnapshotInUse(t *testing.T) {
	dir := t.TempDir()
	old := snapshotInputs{Board: "raspi3b", Image: "img1", Containerd: "auto", Args: []string{"-smp", "4"}}
	for _, name := range []string{"raspi3b-old", "raspi3b-old-serial-x", "raspi3b-older"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		blob, err := json.Marshal(snapshotMeta{Inputs: old})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "snapshot.json"), blob, 0o644))
	}
	lock := filepath.Join(dir, "raspi3b-old.lock")
	require.NoError(t, os.WriteFile(lock, nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "raspi3b-older.lock"), nil, 0o644))
	restoring := exec.Command("flock", "--close", lock, "sleep", "100")
	require.NoError(t, restoring.Start())
	t.Cleanup(func() { _ = restoring.Process.Kill(); _ = restoring.Wait() })
	time.Sleep(200 * time.Millisecond)

	b := &Board{snapInputs: old, logf: t.Logf}
	b.pruneSuperseded(filepath.Join(dir, "raspi3b-new"))
	require.DirExists(t, filepath.Join(dir, "raspi3b-old"), "another process is restoring it")
	require.DirExists(t, filepath.Join(dir, "raspi3b-old-serial-x"), "its state, under the same lock")
	require.NoDirExists(t, filepath.Join(dir, "raspi3b-older"), "nobody uses it")
}
