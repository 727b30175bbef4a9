// Package guestfiles holds the files socbox puts into guests of its own
// making: the serial sshd, which carries SSH over a board's UART where the
// board has no network (raspi4b) or its NIC cannot be saved with the
// machine state (raspi3b). The image builder writes them into every
// default image; the harness installs them on boards it provisions.
package guestfiles

import (
	_ "embed"
	"fmt"
)

// SerialSSHD is serial-sshd.sh, the guest half of the serial SSH protocol
// (see harness/sshx/serial): socbox installs it as SerialSSHDPath and runs
// it on the serial device.
//
// Usage: serial-sshd.sh DEVICE [SSHD [ARGS...]]
//
//go:embed serial-sshd.sh
var SerialSSHD []byte

// SerialSSHDPath is where the script lives in a guest.
const SerialSSHDPath = "/usr/local/lib/socbox/serial-sshd"

// SerialSSHDTemplate is the systemd template unit of the default images:
// instance TTY runs only when the kernel command line holds
// KernelArg(TTY), so the one image serves boards with a network (the unit
// never starts) and boards reached over their UART alone.
const SerialSSHDTemplate = "socbox-serial-sshd@.service"

// KernelArg is what a board adds to the kernel command line to be reached
// over tty ("ttyAMA0") from its first boot.
func KernelArg(tty string) string { return "socbox.serial_ssh=" + tty }

// SerialSSHDTemplateUnit is the text of SerialSSHDTemplate.
func SerialSSHDTemplateUnit() string {
	return fmt.Sprintf(`[Unit]
Description=socbox: sshd on %%I, for a board reached over its UART
ConditionKernelCommandLine=socbox.serial_ssh=%%I
ConditionPathExists=/dev/%%I
After=ssh.service

[Service]
ExecStart=%s /dev/%%I
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`, SerialSSHDPath)
}

// SerialSSHDInstances are the instances the default images enable: every
// UART a board profile carries SSH on.
var SerialSSHDInstances = []string{"ttyAMA0"}
