package images

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/proc"
)

// A build killed while it has file systems mounted inside its root (as
// mmdebstrap has /proc, /sys and /dev/pts) must leave no mount behind on
// this host: deleting the half-built root would otherwise walk into them.
func TestPrivateMountCommandKilledLeavesNoMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	root := t.TempDir()
	procDir := filepath.Join(root, "rootfs", "proc")
	require.NoError(t, os.MkdirAll(procDir, 0o755))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A stand-in for mmdebstrap's chroot set-up: mount, then keep working
	// in a child (as dpkg and qemu-user do) until killed.
	cmd := privateMountCommand(ctx, "sh", "-c", `mount -t proc proc "$1" && echo mounted && sleep 300 & wait`, "sh", procDir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, proc.Start(cmd))
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the command did not mount")
	require.Equal(t, "mounted\n", line)

	cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the killed command's group did not end")
	}
	require.False(t, mountedUnder(t, root), "a mount under %s outlived the killed command", root)
	// A plain directory again: deleting it does not walk into /proc.
	entries, err := os.ReadDir(procDir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// mountedUnder says whether this host's mount table has a mount point at
// or below dir.
func mountedUnder(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			return true
		}
	}
	require.NoError(t, sc.Err())
	return false
}
