// Package machine is the drivers of the boards socbox reaches: one small
// interface, Machine, and its implementations — a board QEMU emulates and
// SSH reaches through a port forward (*QEMU), one QEMU emulates and SSH
// reaches over its UART (*UART), and a real board (*Real). Code that
// serves all of them never asks which it has; what only some can do (save
// their state, plug a NIC in, keep a run directory) are the small
// interfaces beside Machine, found with a type assertion.
package machine

import (
	"context"

	"github.com/socbox/socbox/harness/sshx"
)

// Machine is a board socbox can reach.
type Machine interface {
	// Alive is nil while the board runs and shows no sign of a lost
	// boot; checked before every poll, so that a dead board ends a wait
	// at once instead of at its timeout.
	Alive() error
	// ConsoleTail is the last n lines of the board's console, or none
	// where socbox sees no console.
	ConsoleTail(n int) []string
	// Endpoint is where SSH reaches the board.
	Endpoint() Endpoint
	// Shared says the board outlives the session and others may use it
	// meanwhile (a real board): the session takes away what it left, and
	// leaves the board's clock alone.
	Shared() bool
	// HasNetwork says the guest has a network interface besides loopback.
	HasNetwork() bool
	// Stop ends an emulated board; a real board is left running.
	Stop(ctx context.Context) error
}

// Endpoint is where SSH reaches a board.
type Endpoint struct {
	// SSH is the address and user; for a board reached over its UART
	// still the user and the name its host key is checked under.
	SSH sshx.Endpoint
	// Serial, when set, is QEMU's socket for the serial port that
	// carries SSH.
	Serial string
}

// Config is how sshx reaches the endpoint, with the rest of cfg.
func (e Endpoint) Config(cfg sshx.Config) sshx.Config {
	cfg.Endpoint, cfg.Serial = e.SSH, e.Serial
	return cfg
}

// Emulated is a board QEMU runs: its process, run directory and logs.
type Emulated interface {
	Machine
	// RunDir holds its disk overlay, console logs and sockets.
	RunDir() string
	// Disk is the overlay the guest writes.
	Disk() string
	// CommandLine is the QEMU command, quoted for a shell.
	CommandLine() string
	// Accelerator is how QEMU runs the guest's CPUs: "tcg" or "kvm".
	Accelerator() string
	// ConsoleLogs are the serial ports' log files.
	ConsoleLogs() []string
	// Done is closed when QEMU has exited.
	Done() <-chan struct{}
	// KernelStarted says the kernel has printed its banner.
	KernelStarted() bool
}

// Saver is a board whose whole state QEMU can pause and save.
type Saver interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Running says whether the guest's CPUs run.
	Running(ctx context.Context) (bool, error)
	// SaveState pauses the guest and writes its machine state to path.
	SaveState(ctx context.Context, path string) error
}

// NICPlugger is a board started without its NIC, which can have it
// plugged in: a board reached over its UART that has one.
type NICPlugger interface {
	PlugNIC(ctx context.Context) error
}

// Off is a board not started yet, or no longer: what a session's Machine
// is before its driver exists, so that nothing asks whether it has one.
type Off struct {
	// NIC says whether the board will have a network interface.
	NIC bool
}

func (Off) Alive() error               { return errNotStarted }
func (Off) ConsoleTail(int) []string   { return nil }
func (Off) Endpoint() Endpoint         { return Endpoint{} }
func (Off) Shared() bool               { return false }
func (o Off) HasNetwork() bool         { return o.NIC }
func (Off) Stop(context.Context) error { return nil }
