package reclaim

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// holdLock starts another process that holds an flock on path until it is
// killed, as a socbox process holds its marker.
func holdLock(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("flock", "--nonblock", "--close", path, "sleep", "100")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return false
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the lock is held")
	return cmd
}

func TestSweepRemovesOnlyWhatDeadOwnersLeft(t *testing.T) {
	parent := t.TempDir()
	mine, release, err := MkdirTemp(parent, "socbox-raspi4b-")
	require.NoError(t, err)
	defer release()
	require.FileExists(t, filepath.Join(mine, Marker))

	// Another process's run, alive, then SIGKILLed.
	other := filepath.Join(parent, "socbox-raspi3b-1")
	require.NoError(t, os.Mkdir(other, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(other, "disk.qcow2"), []byte("GBs"), 0o600))
	owner := holdLock(t, filepath.Join(other, Marker))

	unmarked := filepath.Join(parent, "socbox-kept-1")
	require.NoError(t, os.Mkdir(unmarked, 0o700))
	unrelated := filepath.Join(parent, "other-1")
	require.NoError(t, os.Mkdir(unrelated, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(unrelated, Marker), nil, 0o600))

	removed, err := Sweep(parent, "socbox-*")
	require.NoError(t, err)
	require.Empty(t, removed, "every owner is alive")

	require.NoError(t, owner.Process.Signal(syscall.SIGKILL))
	_ = owner.Wait()
	removed, err = Sweep(parent, "socbox-*")
	require.NoError(t, err)
	require.Equal(t, []string{other}, removed)
	require.NoDirExists(t, other)
	require.DirExists(t, mine, "this process's own")
	require.DirExists(t, unmarked, "no marker: not judged")
	require.DirExists(t, unrelated, "does not match")

	// Released (kept, or about to be published): never swept.
	release()
	removed, err = Sweep(parent, "socbox-*")
	require.NoError(t, err)
	require.Empty(t, removed)
	require.DirExists(t, mine)
}

func TestSweepUnlocked(t *testing.T) {
	parent := t.TempDir()
	mk := func(name string, dir bool) string {
		p := filepath.Join(parent, name)
		if dir {
			require.NoError(t, os.Mkdir(p, 0o755))
		} else {
			require.NoError(t, os.WriteFile(p, nil, 0o644))
		}
		return p
	}
	mk("building.lock", false)
	busy := mk("building.tmp-1", true)
	holdLock(t, filepath.Join(parent, "building.lock"))
	mk("done.lock", false)
	mk("done", true)
	left1 := mk("done.tmp-123", true)
	left2 := mk("done.tmp-456", false)
	nolock := mk("unknown.tmp-1", true)

	removed, err := SweepUnlocked(parent)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{left1, left2}, removed)
	require.DirExists(t, busy, "its build is under way")
	require.DirExists(t, nolock, "no lock file: another convention")
	require.DirExists(t, filepath.Join(parent, "done"))

	removed, err = SweepUnlocked(filepath.Join(parent, "absent"))
	require.NoError(t, err)
	require.Empty(t, removed)
}
