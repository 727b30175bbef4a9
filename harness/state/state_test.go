package state

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode().Perm(), path)
}

func profile(t *testing.T, slug string) boards.Profile {
	p, err := boards.Lookup(slug)
	require.NoError(t, err)
	return p
}

func TestKeysAndSlots(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "snapshots")}
	in := Inputs{Version: Version, Board: "raspi3b", Image: "img1", Args: []string{"-smp", "4"}}
	k, err := s.Key(in, profile(t, "raspi3b"))
	require.NoError(t, err)
	requireMode(t, s.Dir, 0o700)
	require.Equal(t, k.Dir(Full), k.Dir(Disk), "a state saved whole lives with its disk")
	require.True(t, strings.HasPrefix(k.Dir(Serial), k.Dir(Disk)+"-serial-"), k.Dir(Serial))
	require.Equal(t, LockFile(k.Dir(Disk)), LockFile(k.Dir(Serial)), "a state on a disk shares the disk's lock")

	changed := profile(t, "raspi3b")
	changed.SerialSSH.NICModules = []string{"cdc_ether", "usbnet"}
	k2, err := s.Key(in, changed)
	require.NoError(t, err)
	require.Equal(t, k.Dir(Disk), k2.Dir(Disk))
	require.NotEqual(t, k.Dir(Serial), k2.Dir(Serial), "what the state is saved with is in its key")

	in.Image = "img2"
	k3, err := s.Key(in, profile(t, "raspi3b"))
	require.NoError(t, err)
	require.NotEqual(t, k.Dir(Disk), k3.Dir(Disk))
}

// save writes an entry as a board would and publishes it.
func save(t *testing.T, k Key, slot Slot, serialSSHD bool) Meta {
	e, err := k.Save(slot)
	require.NoError(t, err)
	defer e.Discard()
	require.NoError(t, os.WriteFile(filepath.Join(e.Dir, DiskImg), []byte("disk"), 0o600))
	if slot != Disk {
		require.NoError(t, os.WriteFile(filepath.Join(e.Dir, VMState), make([]byte, 3<<20), 0o600))
	}
	m, err := e.Publish(serialSSHD)
	require.NoError(t, err)
	return m
}

func TestSaveFindDrop(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "snapshots"), Logf: t.Logf}
	k, err := s.Key(Inputs{Board: "raspi3b", Image: "img1"}, profile(t, "raspi3b"))
	require.NoError(t, err)
	require.Equal(t, Have{}, k.Find())

	m := save(t, k, Disk, false)
	require.True(t, m.DiskOnly)
	require.Equal(t, Have{Disk: true}, k.Find(), "a disk provisioned before the serial sshd, or without it")
	save(t, k, Disk, true)
	require.Equal(t, Have{Disk: true, DiskSerialSSHD: true}, k.Find())

	m = save(t, k, Serial, false)
	require.InDelta(t, 3, m.StateMiB, 0.01)
	require.Equal(t, Have{Disk: true, DiskSerialSSHD: true, Serial: true}, k.Find())
	require.True(t, k.Find().Has(Serial))
	require.False(t, k.Find().Has(Full))

	require.NoError(t, k.Drop(Serial))
	require.Equal(t, Have{Disk: true, DiskSerialSSHD: true}, k.Find())

	f, err := s.Key(Inputs{Board: "raspi4b-fast", Image: "img1"}, profile(t, "raspi4b-fast"))
	require.NoError(t, err)
	save(t, f, Full, false)
	require.Equal(t, Have{Full: true}, f.Find())
}

// A saved state holds the guest's RAM and sshd host keys: only its owner
// may read it, and nobody writes it again.
func TestPublishedEntryIsPrivate(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "snapshots")}
	k, err := s.Key(Inputs{Board: "raspi4b-fast"}, profile(t, "raspi4b-fast"))
	require.NoError(t, err)
	save(t, k, Full, false)
	dir := k.Dir(Full)
	requireMode(t, s.Dir, 0o700)
	requireMode(t, dir, 0o700)
	requireMode(t, filepath.Join(dir, VMState), 0o400)
	requireMode(t, filepath.Join(dir, DiskImg), 0o400)
	requireMode(t, filepath.Join(dir, stateMeta), 0o600)
	entries, err := os.ReadDir(s.Dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary directory is left")
}

func TestAnEntryThatIsNotPublishedLeavesNothing(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "snapshots")}
	k, err := s.Key(Inputs{Board: "raspi4b-fast"}, profile(t, "raspi4b-fast"))
	require.NoError(t, err)
	e, err := k.Save(Full)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(e.Dir, VMState), []byte("half"), 0o600))
	e.Discard()
	entries, err := os.ReadDir(s.Dir)
	require.NoError(t, err)
	require.Empty(t, entries)
	require.Equal(t, Have{}, k.Find())
}

func writeEntry(t *testing.T, dir, name, file string, in Inputs) {
	require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
	blob, err := json.Marshal(Meta{Inputs: in})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name, file), blob, 0o644))
}

func names(t *testing.T, dir string) []string {
	var out []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	in := func(image, containerd, smp string) Inputs {
		return Inputs{Board: "raspi3b", Image: image, Containerd: containerd, Args: []string{"-smp", smp}}
	}
	cur := in("img1", "auto", "4")
	writeEntry(t, dir, "raspi3b-new", diskMeta, cur)
	writeEntry(t, dir, "raspi3b-new-serial-aaa", stateMeta, cur)
	writeEntry(t, dir, "raspi3b-new-serial-bbb", stateMeta, cur)
	writeEntry(t, dir, "raspi3b-old", diskMeta, in("img1", "auto", "4"))
	writeEntry(t, dir, "raspi3b-old-serial", stateMeta, in("img1", "auto", "4"))
	writeEntry(t, dir, "raspi3b-crun", diskMeta, in("img1", "auto+crun", "4"))
	writeEntry(t, dir, "raspi3b-bookworm", diskMeta, in("img2", "auto", "4"))
	writeEntry(t, dir, "raspi3b-smp2", diskMeta, in("img1", "auto", "2"))
	writeEntry(t, dir, "raspi3b-fast-x", stateMeta, Inputs{Board: "raspi3b-fast", Image: "img1", Containerd: "auto"})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "raspi3b-new.tmp-123"), 0o755))

	k := Key{store: &Store{Dir: dir, Logf: t.Logf}, inputs: cur, dir: filepath.Join(dir, "raspi3b-new"), serial: filepath.Join(dir, "raspi3b-new-serial-bbb")}
	k.Prune(Serial)
	require.Equal(t, []string{"raspi3b-bookworm", "raspi3b-crun", "raspi3b-fast-x", "raspi3b-new", "raspi3b-new-serial-bbb", "raspi3b-new.tmp-123", "raspi3b-smp2"}, names(t, dir),
		"an older key's disk and states, and the other state on this disk, go; other choices, other boards and a save in progress stay")

	k.Prune(Disk)
	require.NotContains(t, names(t, dir), "raspi3b-new-serial-bbb", "the disk under a state was saved again")
	require.Contains(t, names(t, dir), "raspi3b-new")
}

// An entry another process is restoring from holds its lock: pruning must
// leave it, as it leaves a save in progress.
func TestPruneSkipsAnEntryInUse(t *testing.T) {
	dir := t.TempDir()
	old := Inputs{Board: "raspi3b", Image: "img1", Containerd: "auto", Args: []string{"-smp", "4"}}
	for _, name := range []string{"raspi3b-old", "raspi3b-old-serial-x", "raspi3b-older"} {
		writeEntry(t, dir, name, stateMeta, old)
	}
	lock := filepath.Join(dir, "raspi3b-old.lock")
	require.NoError(t, os.WriteFile(lock, nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "raspi3b-older.lock"), nil, 0o644))
	restoring := exec.Command("flock", "--close", lock, "sleep", "100")
	require.NoError(t, restoring.Start())
	t.Cleanup(func() { _ = restoring.Process.Kill(); _ = restoring.Wait() })
	time.Sleep(200 * time.Millisecond)

	k := Key{store: &Store{Dir: dir, Logf: t.Logf}, inputs: old, dir: filepath.Join(dir, "raspi3b-new"), serial: filepath.Join(dir, "raspi3b-new-serial-y")}
	k.Prune(Full)
	require.DirExists(t, filepath.Join(dir, "raspi3b-old"), "another process is restoring it")
	require.DirExists(t, filepath.Join(dir, "raspi3b-old-serial-x"), "its state, under the same lock")
	require.NoDirExists(t, filepath.Join(dir, "raspi3b-older"), "nobody uses it")
}

// A superseded disk and the state saved on it share one lock file: pruning
// takes it once and removes both, instead of taking its own lock for the
// one for another process's.
func TestPruneRemovesADiskAndItsStatesTogether(t *testing.T) {
	dir := t.TempDir()
	old := Inputs{Board: "raspi3b", Image: "img1", Containerd: "auto", Args: []string{"-smp", "4"}}
	writeEntry(t, dir, "raspi3b-old", diskMeta, old)
	writeEntry(t, dir, "raspi3b-old-serial-x", stateMeta, old)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "raspi3b-old.lock"), nil, 0o644))

	k := Key{store: &Store{Dir: dir, Logf: t.Logf}, inputs: old, dir: filepath.Join(dir, "raspi3b-new"), serial: filepath.Join(dir, "raspi3b-new-serial-y")}
	k.Prune(Disk)
	require.NoDirExists(t, filepath.Join(dir, "raspi3b-old"))
	require.NoDirExists(t, filepath.Join(dir, "raspi3b-old-serial-x"), "the state on the superseded disk goes with it")
}

// Entries keyed before keys held no path (version 2: the boot files by
// their path in the cache) are never found again; the first save under
// the new key removes them.
func TestASaveRemovesEntriesKeyedOnPaths(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "snapshots"), Logf: t.Logf}
	old := Inputs{Version: 2, Board: "raspi4b-fast", Image: "img1", Containerd: "auto",
		Args: []string{"-smp", "2", "-kernel", filepath.Join(t.TempDir(), "images", "debian-x", "vmlinuz")}}
	writeEntry(t, s.Dir, "raspi4b-fast-0123456789ab", stateMeta, old)
	in := old
	in.Version, in.Args = Version, []string{"-smp", "2", "-kernel", "sha256:0c57da85c644"}
	k, err := s.Key(in, profile(t, "raspi4b-fast"))
	require.NoError(t, err)
	require.Equal(t, Have{}, k.Find())
	save(t, k, Full, false)
	require.Equal(t, []string{filepath.Base(k.Dir(Full))}, names(t, s.Dir))
}
