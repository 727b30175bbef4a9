package machine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/sshx"
)

// QEMU is a board QEMU emulates, reached over SSH through a port forward
// on 127.0.0.1.
type QEMU struct {
	proc *qemu.Machine
	prof boards.Profile
	ssh  sshx.Endpoint
	// watchUSBNIC: the board boots with a USB NIC whose enumeration the
	// console is watched for.
	watchUSBNIC bool
	// usbTrouble is when Alive first saw the guest's USB enumeration in
	// trouble (unix nanoseconds; 0: not seen).
	usbTrouble atomic.Int64
}

// usbNICStall is how long the guest may go on with a USB enumeration in
// trouble (its hub driver power-cycled the port) without its NIC
// registering, before the NIC is taken as lost. Seen in CI: the fourth
// try after the power cycle hung, with no "unable to enumerate" line,
// until the SSH stage gave up 3 min later; a NIC that comes up after a
// power cycle registers within seconds.
const usbNICStall = 90 * time.Second

// usbNICState reads a console log's head for the guest's USB NIC: lost
// (the kernel gave up on it), or in trouble (the port power-cycled and no
// usbnet interface registered since).
func usbNICState(head string) (lost, trouble bool) {
	if strings.Contains(head, "unable to enumerate USB device") {
		return true, false
	}
	// usbnet's line for every NIC it binds: "usb0: register 'cdc_ether' at ...".
	return false, strings.Contains(head, "attempt power cycle") && !strings.Contains(head, ": register '")
}

// usbNICLost applies usbNICState's verdict at now: nil, or ErrUSBNICLost
// once the trouble has lasted usbNICStall.
func (q *QEMU) usbNICLost(head string, now time.Time) error {
	lost, trouble := usbNICState(head)
	switch {
	case lost:
		return ErrUSBNICLost
	case !trouble:
		return nil
	}
	q.usbTrouble.CompareAndSwap(0, now.UnixNano())
	if since := now.Sub(time.Unix(0, q.usbTrouble.Load())); since >= usbNICStall {
		return fmt.Errorf("%w: its enumeration stalled after the port's power cycle (%s without the NIC)", ErrUSBNICLost, since.Round(time.Second))
	}
	return nil
}

// UART is a board QEMU emulates, reached over SSH on a serial port: one
// with no NIC at all (raspi4b), or one started without its NIC to save its
// state (raspi3b's usb-net cannot be migrated), which gets it plugged in
// later.
type UART struct {
	*QEMU
	socket string
}

// cmdlineFile keeps the QEMU command in the run directory.
const cmdlineFile = "qemu.cmdline"

// Start starts QEMU for cfg, with SSH forwarded from a free port on
// 127.0.0.1 to the guest's port 22, for the user given.
func Start(ctx context.Context, cfg qemu.Config, user string, logf qemu.Logf) (*QEMU, error) {
	cfg.SerialSSH = ""
	q, err := launch(ctx, cfg, user, logf)
	if err != nil {
		return nil, err
	}
	q.watchUSBNIC = strings.HasPrefix(cfg.Board.NIC, "usb-")
	return q, nil
}

// StartUART starts QEMU for cfg with the board's SerialSSH port on a
// socket in the run directory, and no NIC at start.
func StartUART(ctx context.Context, cfg qemu.Config, user string, logf qemu.Logf) (*UART, error) {
	cfg.SerialSSH = SerialSocket(cfg.RunDir)
	q, err := launch(ctx, cfg, user, logf)
	if err != nil {
		return nil, err
	}
	return &UART{QEMU: q, socket: cfg.SerialSSH}, nil
}

// SerialSocket is where QEMU listens for the serial port that carries SSH.
func SerialSocket(runDir string) string { return filepath.Join(runDir, "ssh-serial.sock") }

// launch starts QEMU with an SSH forward on a free loopback port, trying
// another port if one is taken between choosing and binding it.
func launch(ctx context.Context, cfg qemu.Config, user string, logf qemu.Logf) (*QEMU, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg.Forwards = []qemu.Forward{{HostPort: port, GuestPort: 22}}
		m, err := qemu.Start(ctx, cfg, logf)
		if errors.Is(err, qemu.ErrPortTaken) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, err
		}
		q := &QEMU{proc: m, prof: cfg.Board, ssh: sshx.Endpoint{Host: "127.0.0.1", Port: port, User: user}}
		if err := os.WriteFile(filepath.Join(cfg.RunDir, cmdlineFile), []byte(m.CommandLine()+"\n"), 0o600); err != nil {
			_ = m.Stop(ctx, false, 0)
			return nil, err
		}
		return q, nil
	}
	return nil, lastErr
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process may
// take it before QEMU binds it; launch retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ConsolePort is the serial port the kernel console of p is on.
func ConsolePort(p boards.Profile) int {
	if strings.HasSuffix(p.Kernel.Console, "1") && p.SerialPorts > 1 {
		return 1
	}
	return 0
}

// ConsoleLog is the console's log file in a run directory.
func ConsoleLog(p boards.Profile, runDir string) string {
	return qemu.SerialLog(runDir, ConsolePort(p))
}

// sshdFailed are the console lines of systemd giving up on the guest's
// sshd: Debian's unit, as systemd ≥ 252 and older ones name it.
var sshdFailed = []string{"Failed to start ssh.service", "Failed to start OpenBSD Secure Shell server"}

// Alive is nil while QEMU runs and the console shows no sign of a lost
// boot: a kernel panic, an initrd that found no root, an sshd that
// failed, a USB NIC the guest gave up on.
func (q *QEMU) Alive() error {
	if err := q.proc.Alive(); err != nil {
		return err
	}
	// From the head, read once: these lines are early in the boot and may
	// have scrolled out of the tail by the time they are looked for.
	log := ConsoleLog(q.prof, q.RunDir())
	head := qemu.Head(log, 1<<20)
	if q.watchUSBNIC {
		if err := q.usbNICLost(head, time.Now()); err != nil {
			return err
		}
	}
	if l := qemu.LineWith(head, sshdFailed...); l != "" {
		return fmt.Errorf("%w: the console says %q; see %s for why (missing host keys are the usual cause: run ssh-keygen -A in the image)",
			ErrSSHDFailed, strings.TrimSpace(l), log)
	}
	for _, l := range q.ConsoleTail(60) {
		switch {
		case strings.Contains(l, "Kernel panic"):
			return fmt.Errorf("%w: %s", ErrKernelPanic, strings.TrimSpace(l))
		case strings.Contains(l, "socbox-initrd: error"):
			return fmt.Errorf("%w: %s", ErrInitrd, strings.TrimSpace(l))
		}
	}
	return nil
}

// KernelStarted says the kernel has printed its banner. From the top of
// the log: a console that registers late prints the whole early boot at
// once, banner first.
func (q *QEMU) KernelStarted() bool {
	return qemu.HeadContains(ConsoleLog(q.prof, q.RunDir()), 256*1024, "Booting Linux", "Linux version")
}

func (q *QEMU) ConsoleTail(n int) []string { return q.proc.ConsoleTail(ConsolePort(q.prof), n) }
func (q *QEMU) Endpoint() Endpoint         { return Endpoint{SSH: q.ssh} }
func (q *QEMU) Shared() bool               { return false }
func (q *QEMU) HasNetwork() bool           { return true }
func (q *QEMU) Stop(ctx context.Context) error {
	return q.proc.Stop(ctx, false, 0)
}

func (q *QEMU) RunDir() string        { return q.proc.Config().RunDir }
func (q *QEMU) Disk() string          { return q.proc.Config().Disk }
func (q *QEMU) CommandLine() string   { return q.proc.CommandLine() }
func (q *QEMU) Accelerator() string   { return string(q.proc.Config().Accelerator()) }
func (q *QEMU) Done() <-chan struct{} { return q.proc.Done() }

// ConsoleLogs are the log files of every serial port.
func (q *QEMU) ConsoleLogs() []string {
	var out []string
	for i := 0; i < max(q.prof.SerialPorts, 1); i++ {
		out = append(out, qemu.SerialLog(q.RunDir(), i))
	}
	return out
}

func (q *QEMU) Pause(ctx context.Context) error  { return q.proc.Pause(ctx) }
func (q *QEMU) Resume(ctx context.Context) error { return q.proc.Resume(ctx) }
func (q *QEMU) Running(ctx context.Context) (bool, error) {
	st, err := q.proc.Status(ctx)
	return st == "running", err
}
func (q *QEMU) SaveState(ctx context.Context, path string) error {
	return q.proc.SaveState(ctx, path)
}

// WaitRunning waits until a machine started from a saved state runs.
func (q *QEMU) WaitRunning(ctx context.Context) error { return q.proc.WaitRunning(ctx) }

// Endpoint is the serial port's socket, with the user the login is for.
func (u *UART) Endpoint() Endpoint { return Endpoint{SSH: u.ssh, Serial: u.socket} }

// HasNetwork says whether the board has a NIC, plugged in or to be.
func (u *UART) HasNetwork() bool { return u.prof.HasNetwork() }

// PlugNIC gives the board its NIC, as a USB adapter plugged into the real
// board would be.
func (u *UART) PlugNIC(ctx context.Context) error {
	if !u.prof.HasNetwork() {
		return fmt.Errorf("plug a NIC into %s: the board has none", u.prof.Slug)
	}
	return u.proc.PlugNIC(ctx, u.prof.NIC, u.prof.NICPort)
}
