package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

// A QEMU that cannot start (here: its kernel file is missing) must be
// reported at once, with QEMU's own words, not after a boot timeout. This
// runs the real QEMU binary, which exits before any guest code runs.
func TestStartReportsEarlyExit(t *testing.T) {
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	if _, err := exec.LookPath(b.QEMUBinary); err != nil {
		t.Skipf("%s not installed: run scripts/host-setup.sh", b.QEMUBinary)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput()
	require.NoError(t, err, string(out))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	m, err := Start(ctx, Config{Board: b, RunDir: dir, Kernel: filepath.Join(dir, "no-such-kernel"), Disk: disk}, t.Logf)
	require.Error(t, err)
	require.Nil(t, m)
	require.ErrorIs(t, err, ErrExited)
	require.Contains(t, err.Error(), "within a second of starting")
	require.Contains(t, err.Error(), "no-such-kernel", "QEMU's own message is quoted")
	require.Less(t, time.Since(start), 20*time.Second)
}

func TestStartMissingBinary(t *testing.T) {
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	b.QEMUBinary = "qemu-system-nonexistent"
	_, err = Start(context.Background(), Config{Board: b, RunDir: t.TempDir(), Kernel: "/k", Disk: "/d"}, nil)
	require.ErrorContains(t, err, "qemu-system-nonexistent not found")
	require.ErrorContains(t, err, "apt-get install qemu-system-arm")
}

func TestTailFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(p, []byte("a\r\nb\nc\n"), 0o644))
	require.Equal(t, []string{"b", "c"}, TailFile(p, 2))
	require.Nil(t, TailFile(filepath.Join(t.TempDir(), "none"), 3))
}

func TestRepeatedOutputLinesCollapse(t *testing.T) {
	var got []string
	r := repeats{emit: func(l string) { got = append(got, l) }}
	var fresh []bool
	for _, l := range []string{"", "", "a", "Slirp: Failed to send packet, ret: -1", "Slirp: Failed to send packet, ret: -1",
		"Slirp: Failed to send packet, ret: -1", "b", "b"} {
		fresh = append(fresh, r.line(l))
	}
	r.end()
	r.end()
	require.Equal(t, []bool{true, false, true, true, false, false, true, false}, fresh)
	require.Equal(t, []string{"", "(the line above came once more)", "a", "Slirp: Failed to send packet, ret: -1",
		"(the line above came 2 more times)", "b", "(the line above came once more)"}, got)
}
