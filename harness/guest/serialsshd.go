package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/socbox/socbox/harness/sshx/serial"
)

// The serial sshd: sshd on a serial port, for a board reached over its
// UART (see package serial for the other end).
const (
	SerialSSHDPath = "/usr/local/lib/socbox/serial-sshd"
	SerialSSHDUnit = "socbox-serial-sshd.service"
	SerialSSHDPID  = "/run/socbox-serial-sshd.pid"
)

// ErrNoSerialSSHD: the image lacks what the serial sshd needs.
var ErrNoSerialSSHD = errors.New("no serial sshd: the image lacks bash, stty, setsid, /usr/sbin/sshd or systemd")

// InstallSerialSSHD puts the serial sshd for tty (e.g. "ttyAMA1") into the
// guest, enabled for the next boot; it is not started.
func InstallSerialSSHD(ctx context.Context, sh Shell, tty string) error {
	// What the script needs: a user's image may lack any of it.
	if _, err := script(ctx, sh, "look for what the serial sshd needs",
		`command -v bash stty setsid >/dev/null && test -x /usr/sbin/sshd && command -v systemctl >/dev/null`); err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			return ErrNoSerialSSHD
		}
		return err
	}
	dev := "/dev/" + tty
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
`, dev, SerialSSHDPath)
	if err := sh.Upload(ctx, bytes.NewReader(serial.Script), SerialSSHDPath, 0o755); err != nil {
		return fmt.Errorf("install the serial sshd: %w", err)
	}
	if err := sh.Upload(ctx, strings.NewReader(unit), "/etc/systemd/system/"+SerialSSHDUnit, 0o644); err != nil {
		return fmt.Errorf("install the serial sshd: %w", err)
	}
	return EnableUnit(ctx, sh, SerialSSHDUnit)
}

// EndSerialSession makes the serial sshd of this connection exit half a
// second from now, detached, so that the command itself returns first.
func EndSerialSession(ctx context.Context, sh Shell) error {
	_, err := script(ctx, sh, "end the serial ssh session",
		`setsid sh -c 'sleep 0.5; kill $(cat "$1")' sh "$1" </dev/null >/dev/null 2>&1 &`, SerialSSHDPID)
	return err
}
