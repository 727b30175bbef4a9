package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode().Perm(), path)
}

// A saved state holds the guest's RAM and sshd host keys: only its owner
// may read it.
func TestPublishedSnapshotIsPrivate(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "snapshots")
	require.NoError(t, privateDir(parent))
	dir := filepath.Join(parent, "raspi4b-0123")
	tmp, err := os.MkdirTemp(parent, "raspi4b-0123.tmp-")
	require.NoError(t, err)
	for _, f := range []string{"vmstate", "disk.qcow2"} {
		require.NoError(t, os.WriteFile(filepath.Join(tmp, f), []byte("secret"), 0o644))
	}
	require.NoError(t, publishSnapshot(tmp, dir, "snapshot.json", []byte("{}"), "vmstate", "disk.qcow2"))

	requireMode(t, parent, 0o700)
	requireMode(t, dir, 0o700)
	requireMode(t, filepath.Join(dir, "vmstate"), 0o400)
	requireMode(t, filepath.Join(dir, "disk.qcow2"), 0o400)
	requireMode(t, filepath.Join(dir, "snapshot.json"), 0o600)
	_, err = os.Stat(tmp)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestPrivateDirTightensAnExistingOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, privateDir(dir))
	requireMode(t, dir, 0o700)
	require.NoError(t, privateDir(filepath.Join(dir, "a", "b")))
	requireMode(t, filepath.Join(dir, "a"), 0o700)
}
