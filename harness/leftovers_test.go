package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/reclaim"
)

// What a SIGKILLed run left is reclaimed by the next one; what a live run
// uses is not.
func TestReclaimLeftovers(t *testing.T) {
	tmp, cache := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := func(parts ...string) string {
		p := filepath.Join(parts...)
		require.NoError(t, os.MkdirAll(p, 0o700))
		return p
	}
	file := func(p string) {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
	}

	dead := dir(tmp, "socbox-raspi4b-111")
	file(filepath.Join(dead, reclaim.Marker)) // its owner was killed: nobody holds it
	file(filepath.Join(dead, "disk.qcow2"))
	live, release, err := reclaim.MkdirTemp(tmp, runDirPrefix+"raspi3b-")
	require.NoError(t, err)
	defer release()
	kept := dir(tmp, "socbox-raspi4b-222") // kept on purpose: no marker

	deadSave := dir(cache, "snapshots", "raspi4b-abc.tmp-1")
	file(filepath.Join(deadSave, reclaim.Marker))
	file(filepath.Join(cache, "snapshots", "raspi4b-abc.lock"))
	saved := dir(cache, "snapshots", "raspi4b-abc")

	deadBuild := dir(cache, "images", "trixie-raspi4b.tmp-9")
	file(filepath.Join(cache, "images", "trixie-raspi4b.lock"))
	busyBuild := dir(cache, "images", "bookworm-raspi3b.tmp-3")
	file(filepath.Join(cache, "images", "bookworm-raspi3b.lock"))
	holder := exec.Command("flock", "--close", filepath.Join(cache, "images", "bookworm-raspi3b.lock"), "sleep", "100")
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	time.Sleep(200 * time.Millisecond)

	var logged []string
	reclaimLeftovers(cache, func(format string, args ...any) { logged = append(logged, format) })

	require.NoDirExists(t, dead)
	require.NoDirExists(t, deadSave)
	require.NoDirExists(t, deadBuild)
	require.DirExists(t, live)
	require.DirExists(t, kept)
	require.DirExists(t, saved)
	require.DirExists(t, busyBuild, "its build is under way in another process")
	require.Len(t, logged, 3)
}
