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

func TestPrivateDirTightensAnExistingOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, privateDir(dir))
	requireMode(t, dir, 0o700)
	require.NoError(t, privateDir(filepath.Join(dir, "a", "b")))
	requireMode(t, filepath.Join(dir, "a"), 0o700)
}
