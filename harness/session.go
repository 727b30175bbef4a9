package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/boot"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/serial"
	"github.com/socbox/socbox/harness/state"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/reclaim"
)

// session brings an emulated board up: it prepares the image and the run
// directory, asks the store and boot.Decide how, and carries the plan out
// as its boot.Steps.
type session struct {
	b       *Board
	archive *debarchive.Client
	signer  ssh.Signer
	files   images.BootFiles
	store   *state.Store
	key     state.Key
	// qemu is the machine now running (b.Machine is the same, as the
	// driver every kind of board has).
	qemu *machine.QEMU
	// restored: the machine running was started from a saved state.
	restored bool
	// backing is what the run's overlay is made on (the base image's disk
	// or a saved one), of backingFormat.
	backing, backingFormat string
}

func newSession(b *Board) *session { return &session{b: b} }

func (s *session) logf(format string, args ...any) { s.b.life.logf(format, args...) }

// boot brings the board to containerd-ready, or to SSH.
func (s *session) boot(ctx context.Context) error {
	b := s.b
	cache, err := images.CacheDir()
	if err != nil {
		return err
	}
	reclaimOnce.Do(func() { reclaimLeftovers(cache, s.logf) })
	s.archive = &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: s.logf}
	s.store = &state.Store{Dir: filepath.Join(cache, "snapshots"), Logf: s.logf}
	b.KeyPath = filepath.Join(cache, "ssh", "id_ed25519")
	s.signer, err = sshx.LoadOrCreateKey(b.KeyPath)
	if err != nil {
		return b.life.fail(StageImage, err, "socbox keeps its SSH key in its cache dir; check it is writable")
	}
	if err := b.life.step(ctx, StageImage, s.prepareImage); err != nil {
		return err
	}
	// An image that boots its own device tree may give the UART to
	// another driver: such a board is never reached over it.
	board := boot.BoardOf(b.Profile, b.Image.KernelDeb == "")
	opts := boot.Options{Snapshots: b.opts.snapshots, Containerd: !b.opts.noContainerd}
	var has state.Have
	unlock := func() {}
	if opts.UsesStore() {
		if s.key, err = s.storeKey(!board.NIC); err != nil {
			return b.life.fail(StageImage, err, "")
		}
		// Held while this process provisions the board, so a second
		// test process waits and then restores instead of booting too.
		unlock, err = s.key.Lock(func() {
			s.logf("snapshot: waiting for another process provisioning %s", filepath.Base(s.key.Dir(state.Disk)))
		})
		if err != nil {
			return b.life.fail(StageImage, err, "")
		}
		has = s.key.Find()
	}
	p := boot.Decide(board, has, opts)
	if p.UART && !b.opts.timeoutSet[StageSSH] {
		// Not the user's choice: a login over the UART after a boot (or a
		// restore's fallback to one) is slow.
		b.life.timeouts[StageSSH] = uartSSHTimeout
	}
	if p.Path == boot.ProvisionedDisk {
		if p.Save == state.None {
			s.logf("snapshot: %s; booting the provisioned disk (containerd installed)", b.Profile.NotMigratable)
		} else {
			s.logf("snapshot: %s; booting the provisioned disk without it, over SSH on %s, to save its state", b.Profile.NotMigratable, b.Profile.SerialSSH.TTY)
		}
	}
	if err := boot.Run(ctx, p, s, unlock); err != nil {
		return err
	}
	if p.Containerd {
		b.life.setStage(StageReady)
	}
	return nil
}

// prepareImage builds or finds the image and its boot files, and makes the
// run directory.
func (s *session) prepareImage(ctx context.Context) error {
	b := s.b
	im := b.opts.image
	if im == nil {
		var err error
		im, err = images.BuildDefault(ctx, images.DefaultSpec{
			Board: b.Profile, Suite: b.opts.suite, AuthorizedKey: sshx.AuthorizedKey(s.signer),
			Archive: s.archive, Logf: s.logf,
		})
		if err != nil {
			return err
		}
	}
	b.Image = im
	bf, err := images.EnsureBootFiles(ctx, im, b.Profile, s.archive, s.logf)
	if err != nil {
		return err
	}
	s.files = bf
	if b.opts.runDir == "" {
		// Claimed, so that a later run reclaims it if this process is
		// killed before Close removes it.
		dir, release, err := reclaim.MkdirTemp("", runDirPrefix+b.Profile.Slug+"-")
		if err != nil {
			return err
		}
		b.opts.runDir = dir
		b.cleanup.Push(func(context.Context) error { release(); return nil })
		b.cleanup.Push(b.removeRunDir(dir))
	} else if err := privateDir(b.opts.runDir); err != nil {
		return err
	}
	if b.opts.keepOnFailure || b.opts.keepRunDir {
		b.life.kept = b.opts.runDir
	}
	b.life.console = emulatedConsole(machine.ConsoleLog(b.Profile, b.opts.runDir), b.opts.artifactsDir)
	b.cleanup.Push(s.saveArtifacts)
	// The machine at the time of Close, whichever it is then.
	b.cleanup.Push(b.stopMachine)
	b.cleanup.Push(closeGuest(b))
	return nil
}

// disk is the run's overlay.
func (s *session) disk() string { return filepath.Join(s.b.opts.runDir, "disk.qcow2") }

// qemuConfig is the machine to start, without port forwards (the driver
// picks them); uart: SSH rides the serial port (socbox's device tree for
// it, where the board has one).
func (s *session) qemuConfig(uart bool) qemu.Config {
	return s.machineConfig(s.b.Profile, s.files, uart)
}

// machineConfig is qemuConfig for board p booting files, on the run's
// disk: the board's own, or its twin (Profile.ProvisionOn).
func (s *session) machineConfig(p boards.Profile, files images.BootFiles, uart bool) qemu.Config {
	b := s.b
	smp := b.opts.smp
	if smp == 0 && p.IsVirt() && runtime.NumCPU() < p.SMP {
		smp = runtime.NumCPU()
	}
	appendLine := strings.TrimSpace(b.Image.Append + " console=" + p.Kernel.Console + " " + p.Kernel.ExtraCmdline)
	dtb := files.DTB
	if uart && files.SerialDTB != "" {
		dtb = files.SerialDTB
	}
	accel, _ := qemu.HostAccel(p)
	return qemu.Config{
		Board: p, RunDir: b.opts.runDir,
		Kernel: files.Kernel, Initrd: files.Initrd, DTB: dtb,
		Append: appendLine, Disk: s.disk(), SMP: smp, Accel: accel,
	}
}

// storeKey is the board's key in the store.
func (s *session) storeKey(uart bool) (state.Key, error) {
	in, err := storeInputs(s.b, s.qemuConfig(uart))
	if err != nil {
		return state.Key{}, err
	}
	return s.store.Key(in, s.b.Profile)
}

// storeInputs are what board b, started with cfg, is saved from. Every
// QEMU argument that shapes the machine is in them; the run directory,
// disk path and port forwards are not (they change every run), and the
// boot files, which live in the cache, are named by their content, not
// their path: a cache restored at another path, or on another runner,
// keys its boards as the one it was saved from did.
func storeInputs(b *Board, cfg qemu.Config) (state.Inputs, error) {
	cfg.RunDir, cfg.Disk, cfg.Forwards, cfg.Incoming, cfg.SerialSSH = "/run", "/disk", nil, "", ""
	for _, f := range []*string{&cfg.Kernel, &cfg.Initrd, &cfg.DTB} {
		if *f == "" {
			continue
		}
		d, err := state.FileDigest(*f)
		if err != nil {
			return state.Inputs{}, err
		}
		*f = d
	}
	exe, args, err := qemu.Cmdline(cfg)
	if err != nil {
		return state.Inputs{}, err
	}
	// A state saved by one QEMU build is not loaded by another.
	v, _ := qemu.ExeVersion(context.Background(), exe)
	in := state.Inputs{Version: state.Version, Image: b.Image.Key, ImageBuilt: b.Image.BuiltAt.String(), Board: b.Profile.Slug,
		QEMU: v.Line, Args: args, Containerd: string(b.opts.containerd),
		Busybox: strings.Join(ociimage.BusyboxApplets, " ")}
	if b.opts.crun {
		in.Containerd += "+crun"
	}
	return in, nil
}

// The boot.Steps.

func (s *session) Stage(ctx context.Context, st boot.Stage, fn func(ctx context.Context) error) error {
	return s.b.life.step(ctx, st, fn)
}
func (s *session) Fail(st boot.Stage, err error) error { return s.b.life.fail(st, err, "") }
func (s *session) Recovered()                          { s.b.life.recovered() }
func (s *session) Logf(format string, args ...any)     { s.logf(format, args...) }

// Overlay makes the run's disk over the base image, grown to a power of
// two where the board's SD controller needs it, or over a saved disk.
func (s *session) Overlay(ctx context.Context, from state.Slot) error {
	b := s.b
	if from != state.None {
		saved := s.key.File(from, state.DiskImg)
		// A saved disk names what it is made on relative to itself (see
		// copyOverlayAndResume): in a cache restored elsewhere, that must be this
		// cache's image, not a file left at the path it was saved from.
		want := b.Image.Path(b.Image.Disk)
		if from == state.Serial {
			want = s.key.File(state.Disk, state.DiskImg)
		}
		if err := images.CheckBacking(saved, want); err != nil {
			return fmt.Errorf("saved disk: %w (delete %s; the next board that boots saves it again)", err, s.key.Dir(from))
		}
		s.backing, s.backingFormat = saved, "qcow2"
		if err := images.CreateOverlayOn(ctx, saved, "qcow2", s.disk(), 0); err != nil {
			return err
		}
		return os.Chmod(s.disk(), privateFileMode)
	}
	var size int64
	if b.Profile.DiskSizePowerOfTwo {
		vs, err := images.VirtualSize(ctx, b.Image)
		if err != nil {
			return err
		}
		if p := images.NextPowerOfTwo(vs); p != vs {
			s.logf("image: growing the SD card overlay from %d to %d bytes (a power of two, as %s needs)", vs, p, b.Profile.Machine)
			size = p
		}
	}
	s.backing, s.backingFormat = b.Image.Path(b.Image.Disk), b.Image.DiskFormat
	if err := images.CreateOverlay(ctx, b.Image, s.disk(), size); err != nil {
		return err
	}
	return os.Chmod(s.disk(), privateFileMode)
}

// restoredLoginTimeout bounds the login to a restored board whose profile
// says a CPU may come back without its timer: measured, a good restore of
// raspi3b logs in over its UART in 0.6–1.8 s, one with a stalled CPU in
// about two minutes.
const restoredLoginTimeout = 30 * time.Second

// Start starts QEMU, from a saved state when from is a slot.
func (s *session) Start(ctx context.Context, uart bool, from state.Slot) error {
	b := s.b
	s.restored = from != state.None
	cfg := s.qemuConfig(uart)
	if from != state.None {
		cfg.Incoming = s.key.File(from, state.VMState)
	}
	if uart {
		u, err := machine.StartUART(ctx, cfg, b.Image.User, s.logf)
		if err != nil {
			return err
		}
		b.Machine, s.qemu = u, u.QEMU
	} else {
		q, err := machine.Start(ctx, cfg, b.Image.User, s.logf)
		if err != nil {
			return err
		}
		b.Machine, s.qemu = q, q
	}
	if from != state.None {
		return s.qemu.WaitRunning(ctx)
	}
	return nil
}

func (s *session) WaitKernel(ctx context.Context) error {
	return poll(ctx, requirement{
		desc: "kernel output on the console", interval: 200 * time.Millisecond, alive: s.b.Machine.Alive,
		check: func(context.Context) error {
			if s.qemu.KernelStarted() {
				return nil
			}
			return errors.New("no kernel banner yet")
		},
	})
}

// hostKeys are the image's host keys, the only ones a login accepts.
func (s *session) hostKeys() (*sshx.HostKeys, error) {
	var pinned []ssh.PublicKey
	for _, k := range s.b.Image.HostKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("image %s: bad host key %q: %w", s.b.Image.Name, k, err)
		}
		pinned = append(pinned, pk)
	}
	return sshx.NewHostKeys(pinned...), nil
}

// Login waits for the guest's sshd and logs in, checking its host key
// against the image's; setClock sets the guest's clock from the host's.
func (s *session) Login(ctx context.Context, setClock bool) error {
	b := s.b
	hk, err := s.hostKeys()
	if err != nil {
		return err
	}
	ep := b.Machine.Endpoint()
	dialStart := time.Now()
	// A CPU without its timer can hold a restored board's login for
	// minutes: one that does not log in soon is treated as unusable.
	bounded := s.restored && b.Profile.TimerLostOnRestore != ""
	c, err := s.dial(ctx, ep, hk, b.Machine.Alive, bounded)
	if err != nil {
		return err
	}
	b.SSH = c
	_ = hk.Save(filepath.Join(b.opts.runDir, "host_keys"))
	_ = writeKnownHosts(filepath.Join(b.opts.runDir, "known_hosts"), ep.SSH, hk.Pinned())
	s.logf("ssh: logged in after %.2fs", time.Since(dialStart).Seconds())
	if setClock {
		return s.setClock(ctx)
	}
	return nil
}

// dial logs in at ep, retrying while alive says the machine may still
// answer; bounded: a restored board that has not logged in within
// restoredLoginTimeout is boot.ErrRestoredUnusable.
func (s *session) dial(ctx context.Context, ep machine.Endpoint, hk *sshx.HostKeys, alive func() error, bounded bool) (*sshx.Client, error) {
	dctx := ctx
	if bounded {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, restoredLoginTimeout)
		defer cancel()
	}
	c, err := sshx.DialRetry(dctx, ep.Config(sshx.Config{Signer: s.signer, HostKeys: hk, Timeout: 20 * time.Second}),
		500*time.Millisecond, alive)
	if err != nil && dctx.Err() != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: no login within %s (%s): %w", boot.ErrRestoredUnusable, restoredLoginTimeout, s.b.Profile.TimerLostOnRestore, err)
	}
	return c, err
}

// timersFire fails with boot.ErrRestoredUnusable when a CPU of the
// restored guest behind sh gets no timer interrupt
// (Profile.TimerLostOnRestore).
func (s *session) timersFire(ctx context.Context, sh guest.Shell) error {
	cpus, err := guest.StalledCPUs(ctx, sh)
	if err != nil {
		return err
	}
	if len(cpus) > 0 {
		return fmt.Errorf("%w: CPU %v gets no timer interrupt (%s)", boot.ErrRestoredUnusable, cpus, s.b.Profile.TimerLostOnRestore)
	}
	return nil
}

// setClock sets the guest's clock from the host's: boards without an RTC
// boot in the past, and a restored one stood still since its save.
func (s *session) setClock(ctx context.Context) error {
	start := time.Now()
	if err := guest.SetClock(ctx, s.b.SSH, time.Now()); err != nil {
		return err
	}
	s.logf("ssh: clock set in %.2fs", time.Since(start).Seconds())
	return nil
}

func (s *session) ReadyContainerd(ctx context.Context) error {
	return containerdSetup{b: s.b, archive: s.archive}.ready(ctx)
}

// ReadyRestored makes a board restored from its saved state ready: its
// clock set (it stood still since the save) and, on a board saved without
// its NIC, the NIC's address awaited, while containerd is connected. What
// the store's key guarantees is not checked again: containerd runs, the
// busybox image is there, crun too when asked for.
func (s *session) ReadyRestored(ctx context.Context, waitNetwork bool) error {
	done := make(chan error, 1)
	go func() {
		var err error
		if s.b.Profile.TimerLostOnRestore != "" {
			err = s.checkTimers(ctx)
		}
		if err == nil {
			err = s.setClock(ctx)
		}
		if err == nil && waitNetwork {
			err = s.WaitNetwork(ctx)
		}
		done <- err
	}()
	err := containerdSetup{b: s.b, archive: s.archive}.connectRestored(ctx)
	return errors.Join(err, <-done)
}

// checkTimers fails with boot.ErrRestoredUnusable when a CPU of the
// restored guest gets no timer interrupt (Profile.TimerLostOnRestore).
func (s *session) checkTimers(ctx context.Context) error {
	start := time.Now()
	if err := s.timersFire(ctx, s.b.SSH); err != nil {
		return err
	}
	s.logf("restore: each CPU's timer checked in %.2fs", time.Since(start).Seconds())
	return nil
}

// Save saves the ready board into the store's slot.
func (s *session) Save(ctx context.Context, slot state.Slot, installSerialSSHD bool) error {
	if slot == state.Disk {
		return s.saveDisk(ctx, installSerialSSHD)
	}
	return s.saveState(ctx, slot)
}

// saveState captures the ready board's whole state into slot. The guest is
// paused for the save and the copy of its overlay, then goes on; SSH is
// reconnected.
func (s *session) saveState(ctx context.Context, slot state.Slot) error {
	b := s.b
	e, err := s.key.Save(slot)
	if err != nil {
		return err
	}
	defer e.Discard()
	// No SSH or containerd connection may be inside the saved state: a
	// restored guest would hold half-open sessions to a peer that is gone.
	if u, ok := b.Machine.(*machine.UART); ok {
		if err := s.endSerialSession(ctx, u); err != nil {
			return err
		}
	}
	s.disconnect()
	for attempt := 1; ; attempt++ {
		if err := s.qemu.SaveState(ctx, filepath.Join(e.Dir, state.VMState)); err != nil {
			return err
		}
		if err := s.copyOverlayAndResume(ctx, e.Dir); err != nil {
			return err
		}
		if b.Profile.TimerLostOnRestore == "" {
			break
		}
		start := time.Now()
		err := s.checkRestore(ctx, e.Dir)
		if err == nil {
			s.logf("snapshot: restored once to check it: every CPU gets its timer (%.1fs)", time.Since(start).Seconds())
			break
		}
		if !errors.Is(err, boot.ErrRestoredUnusable) || attempt == 3 {
			return fmt.Errorf("check the saved state: %w", err)
		}
		// The board goes on as it was, with no session: save it again.
		s.logf("snapshot: restored once to check it: %v; saving again", err)
	}
	m, err := e.Publish(false)
	if err != nil {
		return err
	}
	s.logf("snapshot: saved %.0f MiB of machine state in %.1fs (%s)", m.StateMiB, m.SaveSec, s.key.Dir(slot))
	return s.reconnect(ctx)
}

// checkRestore restores the state saved into dir in a second machine, over
// the UART, logs in and checks each CPU's timer (see
// Profile.TimerLostOnRestore): a state that would come back with a stalled
// CPU is never published. The board itself runs on meanwhile.
func (s *session) checkRestore(ctx context.Context, dir string) error {
	b := s.b
	tmp, err := os.MkdirTemp(b.opts.runDir, "check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	disk := filepath.Join(tmp, state.DiskImg)
	if err := images.CreateOverlayOn(ctx, filepath.Join(dir, state.DiskImg), "qcow2", disk, 0); err != nil {
		return err
	}
	cfg := s.qemuConfig(true)
	cfg.RunDir, cfg.Disk, cfg.Incoming = tmp, disk, filepath.Join(dir, state.VMState)
	u, err := machine.StartUART(ctx, cfg, b.Image.User, func(string, ...any) {})
	if err != nil {
		return err
	}
	defer func() { _ = u.Stop(context.WithoutCancel(ctx)) }()
	if err := u.WaitRunning(ctx); err != nil {
		return err
	}
	hk, err := s.hostKeys()
	if err != nil {
		return err
	}
	c, err := s.dial(ctx, u.Endpoint(), hk, u.Alive, true)
	if err != nil {
		return err
	}
	defer c.Close()
	return s.timersFire(ctx, c)
}

// endSerialSession readies a board reached over its UART for its save:
// the NIC's drivers loaded (it is plugged in after the restore), and the
// serial sshd of this connection ended, waiting until the line announces
// itself again, so the saved state holds no session that a restored board
// would first have to end.
func (s *session) endSerialSession(ctx context.Context, u *machine.UART) error {
	b := s.b
	if err := guest.LoadModules(ctx, b.SSH, b.Profile.SerialSSH.NICModules...); err != nil {
		return fmt.Errorf("load the %s drivers: %w", b.Profile.NIC, err)
	}
	if err := guest.EndSerialSession(ctx, b.SSH); err != nil {
		return err
	}
	s.disconnect()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return serial.WaitIdle(ctx, u.Endpoint().Serial)
}

// saveDisk is the fallback for boards whose machine state QEMU cannot save
// with their NIC: only the disk, with containerd installed, is kept. Later
// boards still boot, but skip the containerd install. The guest flushes
// its caches and is paused while its overlay is copied, so the copy is at
// least crash-consistent (ext4's journal covers the rest).
func (s *session) saveDisk(ctx context.Context, installSerialSSHD bool) error {
	b := s.b
	serialSSHD := false
	if installSerialSSHD {
		// Without it later boards boot this disk: slower, not broken.
		if err := guest.InstallSerialSSHD(ctx, b.SSH, b.Profile.SerialSSH.TTY); err != nil {
			s.logf("snapshot: %v; later boards will boot the provisioned disk instead of restoring a saved state", err)
		} else {
			serialSSHD = true
		}
	}
	if err := guest.Sync(ctx, b.SSH); err != nil {
		return err
	}
	e, err := s.key.Save(state.Disk)
	if err != nil {
		return err
	}
	defer e.Discard()
	if err := s.qemu.Pause(ctx); err != nil {
		return err
	}
	if err := s.copyOverlayAndResume(ctx, e.Dir); err != nil {
		return err
	}
	m, err := e.Publish(serialSSHD)
	if err != nil {
		return err
	}
	s.logf("snapshot: kept the provisioned disk in %.1fs (%s); this board cannot save its machine state with its NIC", m.SaveSec, s.key.Dir(state.Disk))
	return nil
}

// copyOverlayAndResume copies the paused guest's overlay into dir, then
// lets the guest go on whatever the copy did. The copy names what it is
// made on relative to itself, so that the cache can move.
func (s *session) copyOverlayAndResume(ctx context.Context, dir string) error {
	saved := filepath.Join(dir, state.DiskImg)
	copyErr := images.CopyFile(s.disk(), saved)
	if err := s.qemu.Resume(ctx); err != nil {
		return errors.Join(err, copyErr)
	}
	if copyErr != nil {
		return copyErr
	}
	return images.RecordBackingRelative(ctx, saved, s.backing, s.backingFormat)
}

// Recover lets a board whose save failed go on: running, and connected
// again if the save had disconnected it.
func (s *session) Recover(ctx context.Context) error {
	if running, err := s.qemu.Running(ctx); err == nil && !running {
		_ = s.qemu.Resume(ctx)
	}
	if s.b.SSH == nil || s.b.Runtime == nil {
		s.disconnect()
		return s.reconnect(ctx)
	}
	return nil
}

// disconnect closes the containerd client and SSH connection.
func (s *session) disconnect() {
	b := s.b
	if b.Runtime != nil {
		_ = b.Runtime.Close()
		b.Runtime = nil
	}
	if b.SSH != nil {
		_ = b.SSH.Close()
		b.SSH = nil
	}
}

// reconnect logs in again and reconnects containerd, after a save; the
// clock is set again since the guest's stood still.
func (s *session) reconnect(ctx context.Context) error {
	if err := s.Login(ctx, true); err != nil {
		return err
	}
	rt, _, err := containerdSetup{b: s.b, archive: s.archive}.connect(ctx)
	if err != nil {
		return fmt.Errorf("reconnect containerd: %w", err)
	}
	s.b.Runtime = rt
	return nil
}

func (s *session) PlugNIC(ctx context.Context) error {
	p, ok := s.b.Machine.(machine.NICPlugger)
	if !ok {
		return fmt.Errorf("plug a NIC into %s: it was started with its NIC", s.b.Profile.Slug)
	}
	return p.PlugNIC(ctx)
}

// WaitNetwork waits for the plugged NIC to have an address, as the board
// has after a cold boot.
func (s *session) WaitNetwork(ctx context.Context) error {
	start := time.Now()
	if err := guest.WaitAddress(ctx, s.b.SSH, 30*time.Second); err != nil {
		return fmt.Errorf("the %s plugged in got no address: %w", s.b.Profile.NIC, err)
	}
	s.logf("network: %s plugged in, address after %.2fs", s.b.Profile.NIC, time.Since(start).Seconds())
	return nil
}

// StartTwin starts the board's twin (Profile.ProvisionOn) on the run's
// disk, with its network, its own kernel arguments and boot files.
func (s *session) StartTwin(ctx context.Context) error {
	b := s.b
	twin, err := boards.Lookup(b.Profile.ProvisionOn)
	if err != nil {
		return fmt.Errorf("the twin of %s: %w", b.Profile.Slug, err)
	}
	bf, err := images.EnsureBootFiles(ctx, b.Image, twin, s.archive, s.logf)
	if err != nil {
		return fmt.Errorf("boot files of %s, the twin of %s: %w", twin.Slug, b.Profile.Slug, err)
	}
	q, err := machine.Start(ctx, s.machineConfig(twin, bf, false), b.Image.User, s.logf)
	if err != nil {
		return err
	}
	b.Machine, s.qemu = q, q
	return nil
}

// StopTwin flushes the twin's disk and stops it, for the board to boot
// the disk next.
func (s *session) StopTwin(ctx context.Context) error {
	if err := guest.Sync(ctx, s.b.SSH); err != nil {
		return err
	}
	s.StopMachine(ctx)
	return nil
}

// StopMachine stops the machine before another one starts.
func (s *session) StopMachine(ctx context.Context) {
	s.disconnect()
	_ = s.b.Machine.Stop(ctx)
	s.b.Machine = machine.Off{NIC: s.b.Profile.HasNetwork()}
}

func (s *session) Drop(slot state.Slot) { _ = s.key.Drop(slot) }

// saveArtifacts copies the console logs and the QEMU command line into the
// artifacts directory, so they outlive the run directory.
func (s *session) saveArtifacts(context.Context) error {
	b := s.b
	if b.opts.artifactsDir == "" {
		return nil
	}
	if err := os.MkdirAll(b.opts.artifactsDir, 0o755); err != nil {
		return err
	}
	var errs []error
	for i := 0; i < max(b.Profile.SerialPorts, 1); i++ {
		src := qemu.SerialLog(b.opts.runDir, i)
		data, err := os.ReadFile(src)
		if err != nil {
			if !os.IsNotExist(err) {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, os.WriteFile(filepath.Join(b.opts.artifactsDir, filepath.Base(src)), data, 0o644))
	}
	if data, err := os.ReadFile(filepath.Join(b.opts.runDir, "qemu.cmdline")); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(b.opts.artifactsDir, "qemu.cmdline"), data, 0o644))
	}
	return errors.Join(errs...)
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
