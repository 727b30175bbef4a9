// Package serial carries SSH over a board's serial port, for boards whose
// network device QEMU cannot save with the machine state (raspi3b's
// usb-net): QEMU exposes the guest's UART as a unix socket, and the guest
// runs Script on the UART.
//
// A serial line has no connect or hang-up, so neither end can tell when the
// other comes or goes. The two halves therefore agree on a session before
// SSH starts:
//
//  1. The host sends a few newlines (the poke). They make the guest's loop
//     announce itself, and end an sshd left on the line by an earlier,
//     abandoned connection, which reads them as a bad packet length.
//  2. The guest's loop announces itself with the line "socbox-ssh?", about
//     every second while idle and after every line it reads.
//  3. The host answers an announcement with "socbox-ssh!", exactly once per
//     connection, and the guest starts `sshd -i` on the line.
//  4. From sshd's banner ("SSH-2.0-…") on, the line carries plain SSH.
package serial

import "github.com/socbox/socbox/images/guestfiles"

// Script is the guest half of the protocol (guestfiles.SerialSSHD): socbox
// installs it in guests and runs it on the serial device.
var Script = guestfiles.SerialSSHD
