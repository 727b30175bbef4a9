package harness

import (
	"errors"
	"fmt"
	"strings"
)

// Stage is where a board is on its way from off to containerd-ready.
type Stage string

const (
	StageOff        Stage = "off"
	StageImage      Stage = "image"      // base image built or found, overlay made
	StageQEMU       Stage = "qemu"       // QEMU process up, QMP answering
	StageKernel     Stage = "kernel"     // the guest kernel prints on the console
	StageSSH        Stage = "ssh"        // the guest's sshd accepted our key
	StageContainerd Stage = "containerd" // containerd installed and answering
	StageSnapshot   Stage = "snapshot"   // provisioned state saved for the next boards
	StageRestore    Stage = "restore"    // QEMU resumed a provisioned snapshot
	StageNetwork    Stage = "network"    // a NIC plugged in after a restore has an address
	StageReady      Stage = "ready"
	StageFailed     Stage = "failed"
)

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
	// ErrBoardFailed: an earlier stage failed, so the board refuses to go on.
	ErrBoardFailed = errors.New("board failed earlier")
)

// StageError says which stage of which board failed, with the last console
// lines and where the full log is.
type StageError struct {
	Stage       Stage
	Board       string
	Err         error
	ConsoleLog  string
	ConsoleTail []string
	Hint        string
}

func (e *StageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "boot %s: %s: %v", e.Board, e.Stage, e.Err)
	if len(e.ConsoleTail) > 0 {
		b.WriteString("\nlast console lines:\n  ")
		b.WriteString(strings.Join(e.ConsoleTail, "\n  "))
	}
	if e.ConsoleLog != "" {
		fmt.Fprintf(&b, "\nconsole log: %s", e.ConsoleLog)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "\nhint: %s", e.Hint)
	}
	return b.String()
}

func (e *StageError) Unwrap() error { return e.Err }
