package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/sshx/serial"
)

// Boards whose NIC QEMU cannot migrate (raspi3b's usb-net) still get a
// machine-state snapshot when they have a serial port for SSH: the board
// provisioned with its NIC keeps its disk, with a serial sshd enabled; the
// next board boots that disk with no NIC, is reached over the serial port,
// and saves its state; every later board restores that state, logs in over
// the serial port at once and gets its NIC plugged back in, as a USB adapter
// would be, while it logs in.

// serialStateVersion changes whenever what a state saved without the NIC
// holds changes, beyond the board's SerialSSH.
const serialStateVersion = 1

const (
	serialSSHDPath = "/usr/local/lib/socbox/serial-sshd"
	serialSSHDUnit = "socbox-serial-sshd.service"
	serialSSHDPID  = "/run/socbox-serial-sshd.pid"
)

// serialCapable says whether this board can be saved and reached over its
// serial port: the board has one, and boots the profile's kernel with the
// device tree socbox made (an image's own device tree may give the port to
// another driver).
func (b *Board) serialCapable() bool {
	return b.Profile.SerialSSH.Enabled() && b.Image != nil && b.Image.KernelDeb != ""
}

// serialSocket is where QEMU listens for the serial port that carries SSH.
func (b *Board) serialSocket() string { return filepath.Join(b.RunDir, "ssh-serial.sock") }

// stateSnapshotDir is where a board keeps its machine state: with the disk
// for boards QEMU can save whole, beside the provisioned disk for boards
// saved without their NIC, nowhere for the rest.
func (b *Board) stateSnapshotDir(dir string) string {
	switch {
	case b.Profile.NotMigratable == "":
		return dir
	case b.serialCapable():
		// What the state is saved with besides the provisioned disk.
		blob, _ := json.Marshal(struct {
			Version int
			Serial  boards.SerialSSH
		}{serialStateVersion, b.Profile.SerialSSH})
		return dir + "-serial-" + shortHash(blob)
	}
	return ""
}

// installSerialSSHD puts the serial sshd into the guest, enabled for the
// next boot; on a board booted with its NIC it is not started.
func (b *Board) installSerialSSHD(ctx context.Context) error {
	// What the script needs: a user's image may lack any of it.
	const needs = "command -v bash stty setsid >/dev/null && test -x /usr/sbin/sshd && command -v systemctl >/dev/null"
	if res, err := b.SSH.Run(ctx, needs); err != nil || res.ExitCode != 0 {
		return fmt.Errorf("no serial sshd: the image lacks bash, stty, setsid, /usr/sbin/sshd or systemd")
	}
	tty := "/dev/" + b.Profile.SerialSSH.TTY
	unit := fmt.Sprintf(`[Unit]
Description=socbox: sshd on %[1]s, for a board restored without its NIC
ConditionPathExists=%[1]s
After=ssh.service

[Service]
ExecStart=%[2]s %[1]s
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`, tty, serialSSHDPath)
	if err := b.SSH.Upload(ctx, bytes.NewReader(serial.Script), serialSSHDPath, 0o755); err != nil {
		return fmt.Errorf("install the serial sshd: %w", err)
	}
	if err := b.SSH.Upload(ctx, strings.NewReader(unit), "/etc/systemd/system/"+serialSSHDUnit, 0o644); err != nil {
		return fmt.Errorf("install the serial sshd: %w", err)
	}
	if _, err := b.SSH.Output(ctx, "systemctl enable "+serialSSHDUnit+" 2>&1"); err != nil {
		return fmt.Errorf("install the serial sshd: %w", err)
	}
	return nil
}

// endSerialSession makes the guest's serial sshd of this connection exit and
// waits until the line announces itself again, so a saved state holds no
// session that a restored board would first have to end.
func (b *Board) endSerialSession(ctx context.Context) error {
	_, err := b.SSH.Output(ctx, fmt.Sprintf("setsid sh -c 'sleep 0.5; kill $(cat %s)' </dev/null >/dev/null 2>&1 &", serialSSHDPID))
	if err != nil {
		return fmt.Errorf("end the serial ssh session: %w", err)
	}
	b.disconnect()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return serial.WaitIdle(ctx, b.serialSocket())
}

// plugNIC gives a board started without its NIC (SerialSSH) its NIC back.
func (b *Board) plugNIC(ctx context.Context) error {
	return b.Machine.PlugNIC(ctx, b.Profile.NIC, b.Profile.NICPort)
}

// loadNICModules loads the NIC's drivers into a guest about to be saved
// without its NIC.
func (b *Board) loadNICModules(ctx context.Context) error {
	mods := b.Profile.SerialSSH.NICModules
	if len(mods) == 0 {
		return nil
	}
	if _, err := b.SSH.Output(ctx, "modprobe -a "+strings.Join(mods, " ")+" 2>&1"); err != nil {
		return fmt.Errorf("load the %s drivers: %w", b.Profile.NIC, err)
	}
	return nil
}

// waitNetwork waits for the plugged NIC to have an address, as the board
// has after a cold boot.
func (b *Board) waitNetwork(ctx context.Context) error {
	start := time.Now()
	const script = `for i in $(seq 300); do ip -4 -o addr show scope global | grep -q inet && exit 0; sleep 0.1; done; ip -o addr; exit 1`
	if out, err := b.SSH.Output(ctx, script); err != nil {
		return fmt.Errorf("the %s plugged in after the restore got no address in 30s: %w (%s)", b.Profile.NIC, err, strings.TrimSpace(out))
	}
	b.logf("network: %s plugged in, address after %.2fs", b.Profile.NIC, time.Since(start).Seconds())
	return nil
}

// nicUnplugged says whether the board runs without the NIC it has (a
// state saved without it, SSH on the UART): the NIC is plugged in after the
// save or restore. A board with no NIC at all (raspi4b) has none to plug.
func (b *Board) nicUnplugged() bool {
	return b.serialSSH != "" && b.Profile.HasNetwork()
}

// usbNICAtBoot says whether the board boots with a USB NIC (raspi3b with
// its usb-net, not the NIC-less boot whose state is saved).
func (b *Board) usbNICAtBoot() bool {
	return b.Machine != nil && b.serialSSH == "" && strings.HasPrefix(b.Profile.NIC, "usb-")
}
