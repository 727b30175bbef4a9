package machine

import "errors"

var (
	// ErrKernelPanic: the guest kernel panicked; the console tail says why.
	ErrKernelPanic = errors.New("kernel panic")
	// ErrInitrd: socbox's initrd could not mount the root filesystem.
	ErrInitrd = errors.New("initrd could not mount the root filesystem")
	// ErrUSBNICLost: the guest gave up enumerating its USB NIC (raspi3b's
	// usb-net on the emulated dwc2, now and then under TCG), so SSH over
	// the network will never answer.
	ErrUSBNICLost = errors.New("the guest could not enumerate its USB NIC")
	// ErrSSHDFailed: systemd could not start the guest's sshd (an image
	// whose host keys its builder removed, say), so SSH will never
	// answer; the console log says why.
	ErrSSHDFailed = errors.New("the guest's sshd failed to start")
)

var errNotStarted = errors.New("the board is not running")
