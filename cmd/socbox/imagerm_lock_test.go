package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// `socbox image rm` must wait for a process restoring from a snapshot it
// removes: the restore holds the snapshot's lock.
func TestRemoveSnapshotWaitsForARestore(t *testing.T) {
	parent := t.TempDir()
	snap := filepath.Join(parent, "raspi4b-abc-serial-def")
	require.NoError(t, os.Mkdir(snap, 0o700))
	lock := filepath.Join(parent, "raspi4b-abc.lock")
	require.NoError(t, os.WriteFile(lock, nil, 0o600))
	restoring := exec.Command("flock", "--close", lock, "sleep", "1")
	require.NoError(t, restoring.Start())
	time.Sleep(200 * time.Millisecond)

	var stderr bytes.Buffer
	start := time.Now()
	require.NoError(t, removeSnapshot(snap, &stderr))
	require.NoError(t, restoring.Wait())
	require.Greater(t, time.Since(start), 500*time.Millisecond, "removed while the restore held it")
	require.Contains(t, stderr.String(), "waiting for another socbox using snapshot raspi4b-abc-serial-def")
	require.NoDirExists(t, snap)
}
