package harness

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/boot"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
)

// Board is one session with a board, emulated or real, on its way off →
// booted → ssh → containerd-ready. It refuses to go on after a failure:
// every later call returns the first error. The board itself is its
// Machine (see package machine); how it came up is package boot's; this is
// what a test holds.
type Board struct {
	Profile boards.Profile
	// Image is the base image an emulated board booted (nil on a real
	// board, and before the image is ready).
	Image *images.Image
	// Machine is the board's driver: *machine.QEMU, *machine.UART, or a
	// real board, *Target (machine.Off before it starts).
	Machine machine.Machine
	SSH     *sshx.Client
	Runtime *ctrd.Runtime
	// KeyPath is the private key socbox logs in with, for `ssh -i`.
	KeyPath string
	// BusyboxImage is the name of the busybox image imported at start.
	BusyboxImage string

	opts options
	life *lifecycle
	// cleanup undoes what the session did, last first, on Close.
	cleanup boot.Cleanup
	// bg is what StartService and CreateNetwork left running.
	bg background
	// imported is what ImportImage put in the guest (userimages.go).
	imported importedImages
	// scenarioFailed is set once a scenario failed on the board, or the
	// test holding it did: with WithKeepOnFailure, Close keeps it.
	scenarioFailed atomic.Bool
	// kept is set by Close when it left the board running (keep.go).
	kept bool
	// release undoes what Close left for a kept board, in the order
	// Close would have.
	release []func(context.Context) error
}

// Start builds or finds the image, boots the board and brings it to
// containerd-ready (or SSH, WithoutContainerd). On error the board is
// cleaned up unless WithKeepOnFailure; the returned *Board is then still
// non-nil when anything was started, so its logs can be read.
func Start(ctx context.Context, opts ...Option) (*Board, error) {
	o, err := newOptions(defaultOptions(), opts)
	if err != nil {
		return nil, err
	}
	prof, err := boards.Lookup(o.board)
	if err != nil {
		return nil, err
	}
	logf := prefixedLogf(o.logf, prof.Slug)
	b := &Board{Profile: prof, opts: o, Machine: machine.Off{NIC: prof.HasNetwork()}, life: newLifecycle(prof.Slug, o, logf)}
	b.life.hint = emulatedHint
	// Before anything is built or booted: a board whose machine this
	// QEMU lacks fails at once, naming the version it needs.
	if v, err := qemu.ExeVersion(ctx, prof.QEMUBinary); err == nil {
		if err := qemu.CheckVersion(prof, v); err != nil {
			return nil, b.life.fail(StageQEMU, err, "socbox doctor lists the boards this host's QEMU runs")
		}
	}
	release, err := acquireSlot(ctx, logf)
	if err != nil {
		return nil, err
	}
	b.cleanup.Push(func(context.Context) error { release(); return nil })
	if err := newSession(b).boot(ctx); err != nil {
		if !o.keepOnFailure {
			_ = b.Close()
		} else {
			logf("keeping the failed board: %s (run dir %s)", b.SSHCommand(), b.RunDir())
		}
		return b, err
	}
	return b, nil
}

// newOptions applies opts to o.
func newOptions(o options, opts []Option) (options, error) {
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, fmt.Errorf("socbox options: %w", err)
		}
	}
	return o, nil
}

// prefixedLogf is logf (the standard logger's when nil) with every line
// starting with who.
func prefixedLogf(logf func(string, ...any), who string) func(string, ...any) {
	if logf == nil {
		logf = log.New(os.Stderr, "", log.Ltime).Printf
	}
	return func(format string, args ...any) { logf(who+": "+format, args...) }
}

// emulatedHint says what to check when a stage of an emulated board fails.
func emulatedHint(stage Stage) string {
	switch stage {
	case StageImage:
		return "run scripts/host-setup.sh, or `socbox doctor`, to check the host; delete the image cache to rebuild"
	case StageQEMU:
		return "QEMU did not start: see its output above; `socbox doctor` checks the host"
	case StageKernel:
		return "the kernel printed nothing: check the kernel, dtb and console= against the board"
	case StageSSH:
		return "the guest booted but sshd did not answer: read the console log for network or sshd errors"
	case StageContainerd:
		return "containerd did not come up: try the other strategy (apt or bundle) and read the console log"
	}
	return ""
}

// Stage is where the board is now.
func (b *Board) Stage() Stage { return b.life.Stage() }

// Timings are the stages done so far and how long each took.
func (b *Board) Timings() []StageTiming { return b.life.Timings() }

// Err is the error that stopped the board, if any.
func (b *Board) Err() error { return b.life.Err() }

// RunDir is the emulated board's run directory (overlay, console logs,
// sockets), or "" for a real board.
func (b *Board) RunDir() string { return b.opts.runDir }

// Target is the real board this session attached to, if it is one.
func (b *Board) Target() (*Target, bool) {
	t, ok := b.Machine.(*Target)
	return t, ok
}

// SSHCommand is the command a person runs to log in to the board.
func (b *Board) SSHCommand() string {
	if t, ok := b.Machine.(*Target); ok {
		return t.sshCommand(b.KeyPath)
	}
	ep := b.Machine.Endpoint().SSH
	return fmt.Sprintf("ssh -i %s -p %d -o UserKnownHostsFile=%s %s@127.0.0.1",
		b.KeyPath, ep.Port, filepath.Join(b.RunDir(), "known_hosts"), ep.User)
}

// ConsoleLogs are the paths of an emulated board's serial logs: in the
// artifacts directory when one is set (they are copied there on Close),
// else in the run directory.
func (b *Board) ConsoleLogs() []string {
	var out []string
	for i := 0; i < max(b.Profile.SerialPorts, 1); i++ {
		p := qemu.SerialLog(b.RunDir(), i)
		if b.opts.artifactsDir != "" {
			p = filepath.Join(b.opts.artifactsDir, filepath.Base(p))
		}
		out = append(out, p)
	}
	return out
}

// Close undoes what the session did, last first: what the tests left in
// the guest, the connections, the machine (a real board stays up), the run
// directory (unless kept). With WithKeepOnFailure, a board that failed
// (Failed) is kept: the machine goes on running and its run directory
// stays, until Release, or until this process ends (QEMU ends with the
// process that started it). It is safe to call more than once and on a
// nil board.
func (b *Board) Close() error {
	if b == nil || !b.life.close() {
		return nil
	}
	b.kept = b.opts.keepOnFailure && b.Failed()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer b.sayKept()
	if err := b.cleanup.Run(ctx); err != nil {
		return fmt.Errorf("close %s: %w", b.life.name, err)
	}
	return nil
}

// Report describes the board for a results file: stages, image, and how to
// reproduce it.
func (b *Board) Report() *report.Board {
	r := &report.Board{
		Board: b.Profile.Slug, Tier: string(b.Profile.Tier), Platform: b.Profile.Platform.String(),
		Containerd: string(b.opts.containerd),
	}
	if b.Image != nil {
		r.Image, r.Suite, r.KernelVersion = b.Image.Name, b.Image.Suite, b.Image.KernelVersion
	}
	for _, t := range b.Timings() {
		r.Stages = append(r.Stages, report.Stage{Name: string(t.Stage), StartedAt: t.Start.UTC(), Seconds: t.Seconds})
	}
	if err := b.Err(); err != nil {
		r.Error = err.Error()
		var se *StageError
		if errors.As(err, &se) {
			r.FailedStage = string(se.Stage)
		}
	}
	switch m := b.Machine.(type) {
	case machine.Emulated:
		r.Accelerator = m.Accelerator()
		r.QEMUCommand = m.CommandLine()
		r.Overlay = m.Disk()
		r.SSHCommand = b.SSHCommand()
		r.ConsoleLogs = b.ConsoleLogs()
	case *Target:
		m.describe(r, b.Profile.Slug == "")
		r.SSHCommand = b.SSHCommand()
	}
	return r
}
