package cachefs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/reclaim"
)

func TestWriteFileReplacesWhole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	require.NoError(t, WriteFile(p, []byte("one"), 0o600))
	require.NoError(t, WriteFile(p, []byte("two"), 0o644))
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "two", string(data))
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(p))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left")
}

func TestCreateFileRefusesToReplace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	require.NoError(t, CreateFile(p, []byte("first"), 0o600))
	err := CreateFile(p, []byte("second"), 0o600)
	require.ErrorIs(t, err, fs.ErrExist)
	data, _ := os.ReadFile(p)
	require.Equal(t, "first", string(data))
}

func TestWriteFuncCheckKeepsTheOldFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, WriteFile(p, []byte("good"), 0o644))
	bad := errors.New("bad checksum")
	err := WriteFunc(p, 0o444, func(f *os.File) error { _, err := f.Write([]byte("evil")); return err },
		func(tmp string) error {
			data, _ := os.ReadFile(tmp)
			require.Equal(t, "evil", string(data))
			return bad
		})
	require.ErrorIs(t, err, bad)
	data, _ := os.ReadFile(p)
	require.Equal(t, "good", string(data))
}

func ready(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "done"))
	return err == nil
}

func TestEnsureBuildsOnceAcrossRacers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "entry")
	var builds atomic.Int32
	build := func(_ context.Context, tmp string) error {
		builds.Add(1)
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, os.WriteFile(filepath.Join(tmp, "disk"), []byte("x"), 0o644))
		return os.WriteFile(filepath.Join(tmp, "done"), nil, 0o644)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Ensure(t.Context(), Entry{Dir: dir, Ready: ready, DirMode: 0o755, FileMode: 0o444, Frozen: []string{"disk"}}, build)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, builds.Load(), "the others waited, looked again and found it")
	st, err := os.Stat(filepath.Join(dir, "disk"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o444), st.Mode().Perm())
	_, err = os.Stat(filepath.Join(dir, reclaim.Marker))
	require.ErrorIs(t, err, fs.ErrNotExist, "a published entry is nobody's to reclaim")

	built, err := Ensure(t.Context(), Entry{Dir: dir, Ready: ready, Rebuild: true, DirMode: 0o700}, build)
	require.NoError(t, err)
	require.True(t, built)
	require.EqualValues(t, 2, builds.Load())
}

func TestEnsureLeavesNothingWhenTheBuildFails(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "entry")
	boom := errors.New("boom")
	_, err := Ensure(t.Context(), Entry{Dir: dir, Ready: ready}, func(_ context.Context, tmp string) error {
		require.NoError(t, os.WriteFile(filepath.Join(tmp, "half"), []byte("x"), 0o644))
		return boom
	})
	require.ErrorIs(t, err, boom)
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	for _, e := range entries {
		require.Equal(t, "entry.lock", e.Name(), "only the lock file stays")
	}
}

func TestTempIsReclaimableUntilPublished(t *testing.T) {
	parent := t.TempDir()
	tmp, err := NewTemp(filepath.Join(parent, "entry"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(tmp.Dir, reclaim.Marker))
	require.NoError(t, err, "claimed while it is built")
	require.NoError(t, tmp.Publish(0o700, 0o400))
	tmp.Discard() // after Publish: nothing
	_, err = os.Stat(filepath.Join(parent, "entry"))
	require.NoError(t, err)
	require.Error(t, tmp.Publish(0o700, 0o400), "published once only")
}

func TestLockIsPrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "locks", "entry.lock")
	unlock, err := Lock(p, nil)
	require.NoError(t, err)
	defer unlock()
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the lock file")
	st, err = os.Stat(filepath.Dir(p))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "the directory it is made in")
}

func TestEnsureTightensAnOlderLooserEntry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "entry")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "done"), nil, 0o644))
	built, err := Ensure(t.Context(), Entry{Dir: dir, Ready: ready, DirMode: 0o700}, func(context.Context, string) error {
		t.Fatal("a ready entry is not built again")
		return nil
	})
	require.NoError(t, err)
	require.False(t, built)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}
