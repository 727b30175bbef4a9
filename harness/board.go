package harness

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/reclaim"
)

// StageTiming is how long one stage took.
type StageTiming struct {
	Stage    Stage         `json:"stage"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Seconds  float64       `json:"seconds"`
}

// Board is one emulated board on its way off → booted → ssh →
// containerd-ready. It refuses to go on after a failure: every later call
// returns the first error.
type Board struct {
	Profile boards.Profile
	Image   *images.Image
	RunDir  string
	Machine *qemu.Machine
	SSH     *sshx.Client
	Runtime *ctrd.Runtime
	// Endpoint is where the guest's sshd is reached (127.0.0.1:<port>).
	Endpoint sshx.Endpoint
	// KeyPath is the harness's private key, for `ssh -i`.
	KeyPath string
	// BusyboxImage is the name of the busybox image imported at start.
	BusyboxImage string
	// Target is set on a real board reached over SSH (Attach), which has
	// no Machine, Image or RunDir.
	Target *Target

	boot images.BootFiles
	// serialSSH is QEMU's socket for the serial port that carries SSH, on a
	// board started without its NIC (see serialssh.go).
	serialSSH string
	// snapInputs are what the board's snapshot key was made from.
	snapInputs snapshotInputs
	// releaseSlot gives the host slot back on Close.
	releaseSlot func()
	// releaseRunDir gives up the claim on a run directory socbox made
	// (see reclaim): on Close, once it is removed or kept.
	releaseRunDir func()
	opts          options
	logf          func(format string, args ...any)
	archive       *debarchive.Client
	signer        ssh.Signer

	// bg is what StartService and CreateNetwork left running.
	bg background
	// imported is what ImportImage put in the guest (userimages.go).
	imported importedImages

	mu      sync.Mutex
	stage   Stage
	err     error
	timings []StageTiming
	closed  bool
}

// Stage is where the board is now.
func (b *Board) Stage() Stage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stage
}

// Timings are the stages done so far and how long each took.
func (b *Board) Timings() []StageTiming {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]StageTiming(nil), b.timings...)
}

// Err is the error that stopped the board, if any.
func (b *Board) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// SSHCommand is the command a person runs to log in to the board.
func (b *Board) SSHCommand() string {
	if b.Target != nil {
		return b.Target.sshCommand(b.KeyPath)
	}
	return fmt.Sprintf("ssh -i %s -p %d -o UserKnownHostsFile=%s %s@127.0.0.1",
		b.KeyPath, b.Endpoint.Port, filepath.Join(b.RunDir, "known_hosts"), b.Endpoint.User)
}

// Start builds or finds the image, boots the board and brings it to
// containerd-ready (or SSH, WithoutContainerd). On error the board is
// cleaned up unless WithKeepOnFailure; the returned *Board is then still
// non-nil when anything was started, so its logs can be read.
func Start(ctx context.Context, opts ...Option) (*Board, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("socbox options: %w", err)
		}
	}
	prof, err := boards.Lookup(o.board)
	if err != nil {
		return nil, err
	}
	logf := o.logf
	if logf == nil {
		logf = log.New(os.Stderr, "", log.Ltime).Printf
	}
	b := &Board{Profile: prof, opts: o, stage: StageOff}
	b.logf = func(format string, args ...any) { logf(prof.Slug+": "+format, args...) }
	// Before anything is built or booted: a board whose machine this
	// QEMU lacks fails at once, naming the version it needs.
	if v, err := qemu.ExeVersion(ctx, prof.QEMUBinary); err == nil {
		if err := qemu.CheckVersion(prof, v); err != nil {
			return nil, b.fail(StageQEMU, err, "socbox doctor lists the boards this host's QEMU runs")
		}
	}
	release, err := acquireSlot(ctx, b.logf)
	if err != nil {
		return nil, err
	}
	b.releaseSlot = release
	if err := b.start(ctx); err != nil {
		if !o.keepOnFailure {
			_ = b.Close()
		} else {
			b.logf("keeping the failed board: %s (run dir %s)", b.SSHCommand(), b.RunDir)
		}
		return b, err
	}
	return b, nil
}

func (b *Board) fail(stage Stage, err error, hint string) error {
	se := &StageError{Stage: stage, Board: b.Profile.Slug, Err: err, Hint: hint}
	if b.Target != nil {
		se.Board = b.Target.URL
	}
	if b.RunDir != "" {
		se.ConsoleLog = qemu.SerialLog(b.RunDir, b.consolePort())
		se.ConsoleTail = qemu.TailFile(se.ConsoleLog, 25)
		if b.opts.artifactsDir != "" {
			se.ConsoleLog = filepath.Join(b.opts.artifactsDir, filepath.Base(se.ConsoleLog))
		}
		if b.opts.keepOnFailure || b.opts.keepRunDir {
			se.Hint = strings.TrimSpace(se.Hint + " (run dir kept: " + b.RunDir + ")")
		}
	}
	b.mu.Lock()
	b.stage, b.err = StageFailed, se
	b.mu.Unlock()
	return se
}

// consolePort is the serial port the kernel console is on.
func (b *Board) consolePort() int {
	c := b.Profile.Kernel.Console
	if strings.HasSuffix(c, "1") && b.Profile.SerialPorts > 1 {
		return 1
	}
	return 0
}

// step runs one stage with its timeout and records its timing.
func (b *Board) step(ctx context.Context, stage Stage, fn func(ctx context.Context) error) error {
	if err := b.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBoardFailed, err)
	}
	timeout := b.opts.timeouts[stage]
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := fn(sctx)
	d := time.Since(start)
	if err != nil {
		if errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w (raise it with harness.WithTimeout(harness.%s, ...))",
				timeout, err, stageConstName(stage))
		}
		var se *StageError
		if errors.As(err, &se) {
			return err
		}
		return b.fail(stage, err, b.hint(stage))
	}
	b.mu.Lock()
	b.stage = stage
	b.timings = append(b.timings, StageTiming{Stage: stage, Start: start, Duration: d, Seconds: d.Seconds()})
	b.mu.Unlock()
	b.logf("%s ready after %.1fs", stage, d.Seconds())
	return nil
}

func (b *Board) hint(stage Stage) string {
	if b.Target != nil {
		return b.Target.hint(stage)
	}
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

func (b *Board) start(ctx context.Context) error {
	cache, err := images.CacheDir()
	if err != nil {
		return err
	}
	reclaimOnce.Do(func() { reclaimLeftovers(cache, b.logf) })
	b.archive = &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: b.logf}
	b.KeyPath = filepath.Join(cache, "ssh", "id_ed25519")
	b.signer, err = sshx.LoadOrCreateKey(b.KeyPath)
	if err != nil {
		return b.fail(StageImage, err, "socbox keeps its SSH key in its cache dir; check it is writable")
	}
	if err := b.step(ctx, StageImage, b.prepareImage); err != nil {
		return err
	}
	if !b.Profile.HasNetwork() {
		// No NIC at all (raspi4b): SSH rides the UART from the first boot.
		b.serialSSH = b.serialSocket()
	}
	var snapDir string
	if b.opts.snapshots && !b.opts.noContainerd {
		dir, err := b.snapshotDir(b.qemuConfig())
		if err != nil {
			return b.fail(StageImage, err, "")
		}
		// Held while this process provisions the snapshot, so a second
		// test process waits and then restores instead of booting too.
		unlock, err := cachefs.Lock(SnapshotLockFile(dir), func() { b.logf("snapshot: waiting for another process provisioning %s", filepath.Base(dir)) })
		if err != nil {
			return b.fail(StageImage, err, "")
		}
		defer unlock()
		stateDir := b.stateSnapshotDir(dir)
		switch {
		case stateDir != "" && snapshotReady(stateDir):
			if stateDir != dir {
				b.serialSSH = b.serialSocket()
			}
			err := b.step(ctx, StageRestore, func(ctx context.Context) error { return b.restore(ctx, b.qemuConfig(), stateDir) })
			if err == nil {
				unlock()
				if err := b.step(ctx, StageSSH, b.login); err != nil {
					return err
				}
				if err := b.step(ctx, StageContainerd, b.readyRestored); err != nil {
					return err
				}
				b.setStage(StageReady)
				return nil
			}
			// A snapshot that does not load (QEMU upgraded in place, a
			// truncated file): drop it and boot cold.
			b.logf("snapshot: restore failed, booting cold instead: %v", err)
			_ = b.Machine.Stop(ctx, false, 0)
			b.Machine = nil
			if b.Profile.HasNetwork() {
				b.serialSSH = ""
			}
			_ = os.RemoveAll(stateDir)
			b.mu.Lock()
			b.err, b.stage = nil, StageImage
			b.mu.Unlock()
			if err := b.createOverlay(ctx); err != nil {
				return b.fail(StageImage, err, "")
			}
			snapDir = dir
		case b.Profile.NotMigratable != "" && diskSnapshotReady(dir):
			if err := b.overlayOnProvisionedDisk(ctx, dir); err != nil {
				return b.fail(StageImage, err, "")
			}
			if stateDir != "" && !diskHasSerialSSH(dir) {
				stateDir = ""
			}
			if stateDir == "" {
				unlock()
				b.logf("snapshot: %s; booting the provisioned disk (containerd installed)", b.Profile.NotMigratable)
				break
			}
			// Booted without the NIC, reached over the serial port, and
			// saved: later boards restore this state.
			b.logf("snapshot: %s; booting the provisioned disk without it, over SSH on %s, to save its state", b.Profile.NotMigratable, b.Profile.SerialSSH.TTY)
			b.serialSSH = b.serialSocket()
			snapDir = stateDir
		default:
			snapDir = dir
		}
	}
	for attempt := 1; ; attempt++ {
		if err := b.step(ctx, StageQEMU, b.startQEMU); err != nil {
			return err
		}
		if err := b.step(ctx, StageKernel, b.waitKernel); err != nil {
			return err
		}
		err := b.step(ctx, StageSSH, b.waitSSH)
		if err == nil {
			break
		}
		if attempt > 1 || !errors.Is(err, ErrUSBNICLost) {
			return err
		}
		// Seen about one cold raspi3b boot in six here: a fresh machine
		// enumerates it again.
		b.logf("ssh: %v; booting again, once", ErrUSBNICLost)
		_ = b.Machine.Stop(ctx, false, 0)
		b.Machine = nil
		b.mu.Lock()
		b.err, b.stage = nil, StageImage
		b.mu.Unlock()
	}
	if b.opts.noContainerd {
		return nil
	}
	if err := b.step(ctx, StageContainerd, b.readyContainerd); err != nil {
		return err
	}
	if snapDir != "" {
		save := b.saveSnapshot
		if b.Profile.NotMigratable != "" && b.serialSSH == "" {
			save = b.saveProvisionedDisk
		}
		err := b.step(ctx, StageSnapshot, func(ctx context.Context) error {
			if err := save(ctx, snapDir); err != nil {
				// The board itself is fine: go on without a snapshot, as
				// long as it answers again.
				b.logf("snapshot: not saved, later boards will boot cold: %v", err)
				if st, serr := b.Machine.Status(ctx); serr == nil && st != "running" {
					_ = b.Machine.Resume(ctx)
				}
				if b.SSH == nil || b.Runtime == nil {
					b.disconnect()
					return b.reconnect(ctx)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if b.nicUnplugged() {
			// Saved without its NIC: give it back.
			if err := b.step(ctx, StageNetwork, func(ctx context.Context) error {
				if err := b.plugNIC(ctx); err != nil {
					return err
				}
				return b.waitNetwork(ctx)
			}); err != nil {
				return err
			}
		}
	}
	b.setStage(StageReady)
	return nil
}

func (b *Board) setStage(s Stage) {
	b.mu.Lock()
	b.stage = s
	b.mu.Unlock()
}

func (b *Board) prepareImage(ctx context.Context) error {
	im := b.opts.image
	if im == nil {
		var err error
		im, err = images.BuildDefault(ctx, images.DefaultSpec{
			Board: b.Profile, Suite: b.opts.suite, AuthorizedKey: sshx.AuthorizedKey(b.signer),
			Archive: b.archive, Logf: b.logf,
		})
		if err != nil {
			return err
		}
	}
	b.Image = im
	bf, err := images.EnsureBootFiles(ctx, im, b.Profile, b.archive, b.logf)
	if err != nil {
		return err
	}
	b.boot = bf
	dir := b.opts.runDir
	if dir == "" {
		var err error
		// Claimed, so that a later run reclaims it if this process is
		// killed before Close removes it.
		dir, b.releaseRunDir, err = reclaim.MkdirTemp("", runDirPrefix+b.Profile.Slug+"-")
		if err != nil {
			return err
		}
	} else if err := privateDir(dir); err != nil {
		return err
	}
	b.RunDir = dir
	return b.createOverlay(ctx)
}

// createOverlay makes the run's disk over the base image, grown to a power
// of two where the board's SD controller needs it.
func (b *Board) createOverlay(ctx context.Context) error {
	var size int64
	if b.Profile.DiskSizePowerOfTwo {
		vs, err := images.VirtualSize(ctx, b.Image)
		if err != nil {
			return err
		}
		if p := images.NextPowerOfTwo(vs); p != vs {
			b.logf("image: growing the SD card overlay from %d to %d bytes (a power of two, as %s needs)", vs, p, b.Profile.Machine)
			size = p
		}
	}
	overlay := filepath.Join(b.RunDir, "disk.qcow2")
	if err := images.CreateOverlay(ctx, b.Image, overlay, size); err != nil {
		return err
	}
	return os.Chmod(overlay, privateFileMode)
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process may
// take it before QEMU binds it; startQEMU retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// qemuConfig is the machine to start, without port forwards (launch picks
// them) and without the run's own paths where a snapshot key must not see
// them.
func (b *Board) qemuConfig() qemu.Config {
	smp := b.opts.smp
	if smp == 0 && b.Profile.IsVirt() && runtime.NumCPU() < b.Profile.SMP {
		smp = runtime.NumCPU()
	}
	appendLine := strings.TrimSpace(b.Image.Append + " console=" + b.Profile.Kernel.Console + " " + b.Profile.Kernel.ExtraCmdline)
	dtb := b.boot.DTB
	if b.serialSSH != "" && b.boot.SerialDTB != "" {
		dtb = b.boot.SerialDTB
	}
	accel, _ := qemu.HostAccel(b.Profile)
	return qemu.Config{
		Board: b.Profile, RunDir: b.RunDir, SerialSSH: b.serialSSH,
		Kernel: b.boot.Kernel, Initrd: b.boot.Initrd, DTB: dtb,
		Append: appendLine, Disk: filepath.Join(b.RunDir, "disk.qcow2"), SMP: smp, Accel: accel,
	}
}

func (b *Board) startQEMU(ctx context.Context) error { return b.launch(ctx, b.qemuConfig()) }

// launch starts QEMU with an SSH forward on a free loopback port, trying
// another port if one is taken between choosing and binding it.
func (b *Board) launch(ctx context.Context, cfg qemu.Config) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		cfg.Forwards = []qemu.Forward{{HostPort: port, GuestPort: 22}}
		m, err := qemu.Start(ctx, cfg, b.logf)
		if err != nil {
			lastErr = err
			if errors.Is(err, qemu.ErrPortTaken) {
				continue // the port was taken meanwhile
			}
			return err
		}
		b.Machine = m
		b.Endpoint = sshx.Endpoint{Host: "127.0.0.1", Port: port, User: b.Image.User}
		return os.WriteFile(filepath.Join(b.RunDir, "qemu.cmdline"), []byte(m.CommandLine()+"\n"), privateFileMode)
	}
	return lastErr
}

// sshdFailed are the console lines of systemd giving up on the guest's
// sshd: Debian's unit, as systemd ≥ 252 and older ones name it.
var sshdFailed = []string{"Failed to start ssh.service", "Failed to start OpenBSD Secure Shell server"}

// consoleProblem looks for the console lines that mean the boot is lost.
func (b *Board) consoleProblem() error {
	log := qemu.SerialLog(b.RunDir, b.consolePort())
	if b.usbNICAtBoot() && qemu.HeadContains(log, 1<<20, "unable to enumerate USB device") {
		return ErrUSBNICLost
	}
	// From the head: the line is early in the boot and may have scrolled
	// out of the tail by the time it is looked for.
	if l := qemu.HeadLine(log, 1<<20, sshdFailed...); l != "" {
		return fmt.Errorf("%w: the console says %q; see %s for why (missing host keys are the usual cause: run ssh-keygen -A in the image)",
			ErrSSHDFailed, strings.TrimSpace(l), log)
	}
	for _, l := range b.Machine.ConsoleTail(b.consolePort(), 60) {
		switch {
		case strings.Contains(l, "Kernel panic"):
			return fmt.Errorf("%w: %s", ErrKernelPanic, strings.TrimSpace(l))
		case strings.Contains(l, "socbox-initrd: error"):
			return fmt.Errorf("%w: %s", ErrInitrd, strings.TrimSpace(l))
		}
	}
	return nil
}

// alive is checked before every poll: a dead QEMU or a panicked kernel ends
// the wait at once instead of at the timeout.
func (b *Board) alive() error {
	if b.Machine == nil {
		return nil // a real board (Attach): no process or console to watch
	}
	if err := b.Machine.Alive(); err != nil {
		return err
	}
	return b.consoleProblem()
}

func (b *Board) waitKernel(ctx context.Context) error {
	return poll(ctx, requirement{
		desc: "kernel output on the console", interval: 200 * time.Millisecond, alive: b.alive,
		check: func(context.Context) error {
			// From the top of the log: a console that registers late
			// prints the whole early boot at once, banner first.
			if qemu.HeadContains(qemu.SerialLog(b.RunDir, b.consolePort()), 256*1024, "Booting Linux", "Linux version") {
				return nil
			}
			return errors.New("no kernel banner yet")
		},
	})
}

// waitSSH logs in and sets the guest's clock.
func (b *Board) waitSSH(ctx context.Context) error {
	if err := b.login(ctx); err != nil {
		return err
	}
	clockStart := time.Now()
	if err := b.SyncClock(ctx); err != nil {
		return err
	}
	b.logf("ssh: clock set in %.2fs", time.Since(clockStart).Seconds())
	return nil
}

// login waits for the guest's sshd and logs in, checking its host key
// against the image's.
func (b *Board) login(ctx context.Context) error {
	var pinned []ssh.PublicKey
	for _, k := range b.Image.HostKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return fmt.Errorf("image %s: bad host key %q: %w", b.Image.Name, k, err)
		}
		pinned = append(pinned, pk)
	}
	hk := sshx.NewHostKeys(pinned...)
	dialStart := time.Now()
	c, err := sshx.DialRetry(ctx, sshx.Config{Endpoint: b.Endpoint, Serial: b.serialSSH, Signer: b.signer, HostKeys: hk, Timeout: 20 * time.Second},
		500*time.Millisecond, b.alive)
	if err != nil {
		return err
	}
	b.SSH = c
	_ = hk.Save(filepath.Join(b.RunDir, "host_keys"))
	_ = writeKnownHosts(filepath.Join(b.RunDir, "known_hosts"), b.Endpoint, hk.Pinned())
	b.logf("ssh: logged in after %.2fs", time.Since(dialStart).Seconds())
	return nil
}

// SyncClock sets the guest's clock from the host's. Boards without an RTC
// boot in the past, and apt then rejects Debian's Release files as "not
// valid yet".
func (b *Board) SyncClock(ctx context.Context) error {
	now := time.Now().UTC()
	cmd := fmt.Sprintf("date -u -s @%d.%09d >/dev/null", now.Unix(), now.Nanosecond())
	if _, err := b.SSH.Output(ctx, cmd); err != nil {
		return fmt.Errorf("set guest clock: %w", err)
	}
	return nil
}

// Close stops QEMU, closes connections and removes the run directory
// (unless kept). It is safe to call more than once and on a nil board.
func (b *Board) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	var errs []error
	if b.Runtime != nil {
		// Only what a test left behind: on a QEMU board it goes with the
		// machine anyway, on a real one it must not stay.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, b.stopBackground(ctx))
		if b.Machine == nil {
			// A real board stays up: take the shim keeper and the
			// output files made ahead away too.
			errs = append(errs, b.Runtime.StopShimKeeper(ctx), b.Runtime.DropOutputs(ctx))
		}
		cancel()
		_ = b.Runtime.Close()
	}
	if b.SSH != nil {
		_ = b.SSH.Close()
	}
	if b.Machine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, b.Machine.Stop(ctx, false, 0))
		cancel()
	}
	if err := b.saveArtifacts(); err != nil {
		errs = append(errs, err)
	}
	keep := b.opts.keepRunDir || (b.opts.keepOnFailure && b.Err() != nil)
	if b.RunDir != "" && !keep && b.opts.runDir == "" {
		errs = append(errs, os.RemoveAll(b.RunDir))
	}
	if b.releaseRunDir != nil {
		b.releaseRunDir()
	}
	if b.releaseSlot != nil {
		b.releaseSlot()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", b.Profile.Slug, err)
	}
	return nil
}

// ConsoleLogs are the paths of the board's serial logs: in the artifacts
// directory when one is set (they are copied there on Close), else in the
// run directory.
func (b *Board) ConsoleLogs() []string {
	var out []string
	for i := 0; i < max(b.Profile.SerialPorts, 1); i++ {
		p := qemu.SerialLog(b.RunDir, i)
		if b.opts.artifactsDir != "" {
			p = filepath.Join(b.opts.artifactsDir, filepath.Base(p))
		}
		out = append(out, p)
	}
	return out
}

func (b *Board) saveArtifacts() error {
	if b.opts.artifactsDir == "" || b.RunDir == "" {
		return nil
	}
	if err := os.MkdirAll(b.opts.artifactsDir, 0o755); err != nil {
		return err
	}
	var errs []error
	for i := 0; i < max(b.Profile.SerialPorts, 1); i++ {
		src := qemu.SerialLog(b.RunDir, i)
		data, err := os.ReadFile(src)
		if err != nil {
			if !os.IsNotExist(err) {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, os.WriteFile(filepath.Join(b.opts.artifactsDir, filepath.Base(src)), data, 0o644))
	}
	if data, err := os.ReadFile(filepath.Join(b.RunDir, "qemu.cmdline")); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(b.opts.artifactsDir, "qemu.cmdline"), data, 0o644))
	}
	return errors.Join(errs...)
}

// stageConstName is the Go name of a stage's constant, for hints.
func stageConstName(s Stage) string {
	return map[Stage]string{
		StageImage: "StageImage", StageQEMU: "StageQEMU", StageKernel: "StageKernel", StageSSH: "StageSSH",
		StageContainerd: "StageContainerd", StageSnapshot: "StageSnapshot", StageRestore: "StageRestore",
		StageNetwork: "StageNetwork",
	}[s]
}

// writeKnownHosts writes the pinned keys in OpenSSH's known_hosts format,
// for the ssh command SSHCommand prints.
func writeKnownHosts(path string, ep sshx.Endpoint, keys []ssh.PublicKey) error {
	var b strings.Builder
	host := fmt.Sprintf("[%s]:%d", ep.Host, ep.Port)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s", host, ssh.MarshalAuthorizedKey(k))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
