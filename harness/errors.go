package harness

import (
	"errors"
	"fmt"
	"strings"

	"github.com/socbox/socbox/harness/boot"
	"github.com/socbox/socbox/harness/machine"
)

// Stage is where a board is on its way from off to containerd-ready; see
// boot.Stage.
type Stage = boot.Stage

const (
	StageOff        = boot.StageOff
	StageImage      = boot.StageImage
	StageQEMU       = boot.StageQEMU
	StageKernel     = boot.StageKernel
	StageSSH        = boot.StageSSH
	StageContainerd = boot.StageContainerd
	StageSnapshot   = boot.StageSnapshot
	StageRestore    = boot.StageRestore
	StageNetwork    = boot.StageNetwork
	StageReady      = boot.StageReady
	StageFailed     = boot.StageFailed
)

var (
	// ErrKernelPanic: the guest kernel panicked; the console tail says why.
	ErrKernelPanic = machine.ErrKernelPanic
	// ErrInitrd: socbox's initrd could not mount the root filesystem.
	ErrInitrd = machine.ErrInitrd
	// ErrUSBNICLost: the guest gave up enumerating its USB NIC.
	ErrUSBNICLost = machine.ErrUSBNICLost
	// ErrSSHDFailed: systemd could not start the guest's sshd.
	ErrSSHDFailed = machine.ErrSSHDFailed
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
