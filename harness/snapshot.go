package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/reclaim"
)

// A provisioned snapshot is a board caught right after it became
// containerd-ready: the disk overlay as it was then (disk.qcow2, backed by
// the base image) and the machine state (vmstate: RAM and devices, saved
// through QEMU migration). Later boards of the same key start QEMU with
// -incoming over a fresh overlay on disk.qcow2 and are ready in about a
// second, without booting. Snapshots live in the cache, are written
// atomically and can be deleted at any time.

// snapshotVersion changes whenever what a snapshot holds changes.
// 2: the shim keeper runs in it.
const snapshotVersion = 2

type snapshotInputs struct {
	Version    int      `json:"version"`
	Image      string   `json:"image"`
	ImageBuilt string   `json:"image_built"`
	Board      string   `json:"board"`
	QEMU       string   `json:"qemu"`
	Args       []string `json:"args"`
	Containerd string   `json:"containerd"`
	// Busybox is what the busybox image imported at provisioning holds,
	// which a restored board keeps.
	Busybox string `json:"busybox"`
}

type snapshotMeta struct {
	Inputs    snapshotInputs `json:"inputs"`
	CreatedAt time.Time      `json:"created_at"`
	SaveSec   float64        `json:"save_seconds"`
	StateMiB  float64        `json:"state_mib"`
	DiskOnly  bool           `json:"disk_only,omitempty"`
	// SerialSSH says the provisioned disk has the serial sshd enabled, so
	// a board booting it can be reached, and saved, without its NIC.
	SerialSSH bool `json:"serial_ssh,omitempty"`
}

// qemuVersion is the first line of `qemu-system-* --version`: a state saved
// by one QEMU build is not loaded by another.
func qemuVersion(exe string) string {
	v, _ := qemu.ExeVersion(context.Background(), exe)
	return v.Line
}

// snapshotDir returns where this board's provisioned snapshot lives. Every
// QEMU argument that shapes the machine is in the key; the run directory,
// disk path and port forwards are not (they change every run).
func (b *Board) snapshotDir(cfg qemu.Config) (string, error) {
	cache, err := images.CacheDir()
	if err != nil {
		return "", err
	}
	cfg.RunDir, cfg.Disk, cfg.Forwards, cfg.Incoming, cfg.SerialSSH = "/run", "/disk", nil, "", ""
	exe, args, err := qemu.Cmdline(cfg)
	if err != nil {
		return "", err
	}
	in := snapshotInputs{Version: snapshotVersion, Image: b.Image.Key, ImageBuilt: b.Image.BuiltAt.String(), Board: b.Profile.Slug,
		QEMU: qemuVersion(exe), Args: args, Containerd: string(b.opts.containerd),
		Busybox: strings.Join(ociimage.BusyboxApplets, " ")}
	if b.opts.crun {
		in.Containerd += "+crun"
	}
	b.snapInputs = in
	blob, _ := json.Marshal(in)
	parent := filepath.Join(cache, "snapshots")
	if err := privateDir(parent); err != nil {
		return "", err
	}
	return filepath.Join(parent, b.Profile.Slug+"-"+shortHash(blob)), nil
}

func snapshotReady(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "snapshot.json"))
	return err == nil
}

// saveSnapshot captures the ready board into dir. The guest is paused for
// the save and the copy of its overlay, then goes on; SSH is reconnected.
func (b *Board) saveSnapshot(ctx context.Context, dir string) error {
	start := time.Now()
	tmp, release, err := reclaim.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer release()
	defer os.RemoveAll(tmp)
	// No SSH or containerd connection may be inside the saved state: a
	// restored guest would hold half-open sessions to a peer that is gone.
	if b.serialSSH != "" {
		if err := b.loadNICModules(ctx); err != nil {
			return err
		}
		if err := b.endSerialSession(ctx); err != nil {
			return err
		}
	}
	b.disconnect()
	if err := b.Machine.SaveState(ctx, filepath.Join(tmp, "vmstate")); err != nil {
		return err
	}
	if err := b.copyOverlayAndResume(ctx, tmp); err != nil {
		return err
	}
	st, _ := os.Stat(filepath.Join(tmp, "vmstate"))
	meta := snapshotMeta{Inputs: b.snapInputs, CreatedAt: time.Now().UTC(), SaveSec: time.Since(start).Seconds()}
	if st != nil {
		meta.StateMiB = float64(st.Size()) / (1 << 20)
	}
	blob, _ := json.MarshalIndent(meta, "", "  ")
	release() // published, it is no longer this process's to reclaim
	if err := publishSnapshot(tmp, dir, "snapshot.json", blob, "vmstate", "disk.qcow2"); err != nil {
		return err
	}
	b.logf("snapshot: saved %.0f MiB of machine state in %.1fs (%s)", meta.StateMiB, meta.SaveSec, dir)
	b.pruneSuperseded(dir)
	return b.reconnect(ctx)
}

// publishSnapshot writes the snapshot's metadata into tmp (made by
// MkdirTemp, so 0700), makes its files read-only for their owner alone and
// renames tmp to dir, in place of what was there. The metadata is written
// last: a directory without it is not a snapshot.
func publishSnapshot(tmp, dir, metaName string, meta []byte, files ...string) error {
	for _, f := range files {
		if err := os.Chmod(filepath.Join(tmp, f), frozenFileMode); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, metaName), meta, privateFileMode); err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}

// copyOverlayAndResume copies the paused guest's overlay into dir, then
// lets the guest go on whatever the copy did.
func (b *Board) copyOverlayAndResume(ctx context.Context, dir string) error {
	copyErr := images.CopyFile(filepath.Join(b.RunDir, "disk.qcow2"), filepath.Join(dir, "disk.qcow2"))
	if err := b.Machine.Resume(ctx); err != nil {
		return errors.Join(err, copyErr)
	}
	return copyErr
}

// disconnect closes the containerd client and SSH connection.
func (b *Board) disconnect() {
	if b.Runtime != nil {
		_ = b.Runtime.Close()
		b.Runtime = nil
	}
	if b.SSH != nil {
		_ = b.SSH.Close()
		b.SSH = nil
	}
}

// reconnect logs in again and reconnects containerd, after a save or a
// restore; the clock is set again since the guest's stood still.
func (b *Board) reconnect(ctx context.Context) error {
	if err := b.waitSSH(ctx); err != nil {
		return err
	}
	if b.opts.noContainerd {
		return nil
	}
	rt, _, err := b.connectContainerd(ctx)
	if err != nil {
		return fmt.Errorf("reconnect containerd: %w", err)
	}
	b.Runtime = rt
	return nil
}

// restore starts the board from a provisioned snapshot.
func (b *Board) restore(ctx context.Context, cfg qemu.Config, dir string) error {
	if err := images.CreateOverlayOn(ctx, filepath.Join(dir, "disk.qcow2"), "qcow2", filepath.Join(b.RunDir, "disk.qcow2"), 0); err != nil {
		return err
	}
	cfg.Incoming = filepath.Join(dir, "vmstate")
	if err := b.launch(ctx, cfg); err != nil {
		return err
	}
	if err := b.Machine.WaitRunning(ctx); err != nil {
		return err
	}
	if b.nicUnplugged() {
		// Plugged now, so the guest finds it while we log in.
		return b.plugNIC(ctx)
	}
	return nil
}

func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// saveProvisionedDisk is the fallback for boards whose machine state QEMU
// cannot save: only the disk, with containerd installed, is kept. Later
// boards still boot, but skip the containerd install. The guest flushes
// its caches and is paused while its overlay is copied, so the copy is at
// least crash-consistent (ext4's journal covers the rest).
func (b *Board) saveProvisionedDisk(ctx context.Context, dir string) error {
	start := time.Now()
	serialSSH := false
	if b.serialCapable() {
		// Without it later boards boot this disk: slower, not broken.
		if err := b.installSerialSSHD(ctx); err != nil {
			b.logf("snapshot: %v; later boards will boot the provisioned disk instead of restoring a saved state", err)
		} else {
			serialSSH = true
		}
	}
	if _, err := b.SSH.Output(ctx, "sync"); err != nil {
		return fmt.Errorf("sync guest disk: %w", err)
	}
	tmp, release, err := reclaim.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer release()
	defer os.RemoveAll(tmp)
	if err := b.Machine.Pause(ctx); err != nil {
		return err
	}
	if err := b.copyOverlayAndResume(ctx, tmp); err != nil {
		return err
	}
	meta := snapshotMeta{Inputs: b.snapInputs, CreatedAt: time.Now().UTC(), SaveSec: time.Since(start).Seconds(), DiskOnly: true, SerialSSH: serialSSH}
	blob, _ := json.MarshalIndent(meta, "", "  ")
	release() // published, it is no longer this process's to reclaim
	if err := publishSnapshot(tmp, dir, "disk.json", blob, "disk.qcow2"); err != nil {
		return err
	}
	b.logf("snapshot: kept the provisioned disk in %.1fs (%s); this board cannot save its machine state with its NIC", meta.SaveSec, dir)
	b.pruneSuperseded(dir)
	return nil
}

func diskSnapshotReady(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "disk.json"))
	return err == nil
}

// diskHasSerialSSH says whether the provisioned disk in dir has the serial
// sshd enabled.
func diskHasSerialSSH(dir string) bool {
	blob, err := os.ReadFile(filepath.Join(dir, "disk.json"))
	if err != nil {
		return false
	}
	var meta snapshotMeta
	return json.Unmarshal(blob, &meta) == nil && meta.SerialSSH
}

// overlayOnProvisionedDisk replaces the run's overlay with one backed by a
// provisioned disk.
func (b *Board) overlayOnProvisionedDisk(ctx context.Context, dir string) error {
	return images.CreateOverlayOn(ctx, filepath.Join(dir, "disk.qcow2"), "qcow2", filepath.Join(b.RunDir, "disk.qcow2"), 0)
}

// SnapshotLockFile is the lock a process holds while it provisions, saves
// or restores the snapshot in dir; a machine state saved on a provisioned
// disk (dir-serial-…) shares the disk's. Whoever removes a snapshot takes
// it first.
func SnapshotLockFile(dir string) string {
	base, _, _ := strings.Cut(filepath.Base(dir), "-serial-")
	return filepath.Join(filepath.Dir(dir), base+".lock")
}

// pruneSuperseded removes the snapshots that the one just saved in saved
// replaces, so that the cache does not grow with every socbox or QEMU
// upgrade: those of the same board, image and containerd choice under
// another key, and states saved on top of a provisioned disk that was
// saved again (their disk changed under them). Other choices (a suite,
// crun, WithSMP) are other images, containerd strings or -smp values and
// stay. A board running
// from a removed snapshot goes on: QEMU keeps its files open; one being
// restored holds the snapshot's lock, and that snapshot is kept.
func (b *Board) pruneSuperseded(saved string) {
	parent, savedName := filepath.Dir(saved), filepath.Base(saved)
	baseName, _, _ := strings.Cut(savedName, "-serial-")
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == savedName || name == baseName || strings.Contains(name, ".tmp-") {
			continue
		}
		stale := strings.HasPrefix(name, baseName+"-serial-")
		if !stale {
			in, ok := readSnapshotInputs(filepath.Join(parent, name))
			stale = ok && in.Board == b.snapInputs.Board && in.Image == b.snapInputs.Image && in.Containerd == b.snapInputs.Containerd &&
				argValue(in.Args, "-smp") == argValue(b.snapInputs.Args, "-smp")
		}
		if !stale {
			continue
		}
		// A restore holds the snapshot's lock; this process holds its own
		// (the states on its disk share it).
		if lock := SnapshotLockFile(filepath.Join(parent, name)); lock != SnapshotLockFile(saved) {
			unlock, free := reclaim.TryLock(lock)
			if !free {
				b.logf("snapshot: kept %s, superseded by %s, while another process uses it", name, savedName)
				continue
			}
			defer unlock()
		}
		if err := os.RemoveAll(filepath.Join(parent, name)); err == nil {
			b.logf("snapshot: removed %s, superseded by %s", name, savedName)
		}
	}
}

// readSnapshotInputs reads what a snapshot directory was made from.
func readSnapshotInputs(dir string) (snapshotInputs, bool) {
	for _, f := range []string{"snapshot.json", "disk.json"} {
		blob, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		var meta snapshotMeta
		if json.Unmarshal(blob, &meta) == nil {
			return meta.Inputs, true
		}
	}
	return snapshotInputs{}, false
}

// argValue is the value after flag in args, or "".
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}
