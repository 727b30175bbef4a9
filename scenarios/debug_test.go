package scenarios

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/scenario"
)

// TestFailedScenarioDebugging runs a scenario that fails on purpose, after
// writing a marker into the kernel's log, on a board started with what a
// person debugging a failure asks for. The guest's journal, kernel log and
// containerd's log over its window are saved under the board's directory;
// its output lines show up while it runs; and the board is kept running
// after Close, reachable over SSH, until Release stops it.
func TestFailedScenarioDebugging(t *testing.T) {
	bootsVM(t)
	slug := oneBoard(t)
	skipUnlessQEMUHasMachine(t, slug)
	artifacts := t.TempDir()
	var mu sync.Mutex
	var logged []string
	// containerd logs nothing of its own while a container runs in the
	// warm shim's group: while the scenario runs, it is asked for its
	// goroutines (SIGUSR1), which it logs at level info.
	var b *harness.Board
	dumped := make(chan error, 1)
	logf := func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		mu.Lock()
		logged = append(logged, line)
		mu.Unlock()
		t.Logf(f, a...)
		if strings.HasSuffix(line, ": fails on purpose stdout: about to fail") {
			go func() {
				_, err := b.SSH.Run(t.Context(), "pkill -USR1 -x containerd")
				dumped <- err
			}()
		}
	}
	b, err := harness.Start(t.Context(), append(suiteOption(), harness.WithBoard(slug), harness.WithLogf(logf),
		harness.WithArtifactsDir(artifacts), harness.WithKeepOnFailure(), harness.WithOutputLines())...)
	t.Cleanup(func() {
		_ = b.Close()
		_ = b.Release(t.Context())
	})
	require.NoError(t, err)

	const marker = "socbox-guest-logs-marker"
	s := scenario.Scenario{
		Name: "fails on purpose",
		Container: ctrd.Container{
			// The guest's devices are not in a privileged container's
			// /dev: the kernel's log device is mounted in.
			Privileged: true,
			Mounts:     []ctrd.Mount{{Source: "/dev/kmsg", Target: "/dev/kmsg"}},
			Cmd:        []string{"sh", "-c", "echo " + marker + " > /dev/kmsg; echo about to fail; sleep 2; echo failing >&2; exit 3"},
		},
	}
	res := b.RunScenario(t.Context(), s)
	require.Equal(t, "fail", res.Status(), "exit 3, want 0: %+v", res.Failures)
	select {
	case err := <-dumped:
		require.NoError(t, err, "signal containerd")
	case <-time.After(time.Minute):
		t.Fatal("containerd was not signalled: the scenario's output line never came, or SSH did not answer")
	}

	t.Run("guest logs", func(t *testing.T) {
		require.Len(t, res.GuestLogs, 3)
		dir := filepath.Join(artifacts, "fails_on_purpose")
		want := map[string]string{"journal": "containerd", "kernel": marker, "containerd": "goroutine stack dump"}
		for _, l := range res.GuestLogs {
			require.Equal(t, filepath.Join(dir, l.Name+".log"), l.Path)
			require.Empty(t, l.Error, l.Name)
			data, err := os.ReadFile(l.Path)
			require.NoError(t, err)
			t.Logf("%s: %d bytes, %d lines:\n%s", l.Path, len(data), strings.Count(string(data), "\n"), clip(string(data)))
			require.Contains(t, string(data), want[l.Name], "%s log", l.Name)
		}
	})

	t.Run("output lines", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		require.Contains(t, logged, slug+": fails on purpose stdout: about to fail")
		require.Contains(t, logged, slug+": fails on purpose stderr: failing")
	})

	t.Run("kept", func(t *testing.T) {
		require.True(t, b.Failed())
		require.NoError(t, b.Close())
		require.True(t, b.Kept())
		m := b.Machine.(machine.Emulated)
		require.NoError(t, m.Alive(), "QEMU goes on after Close")
		// sshd still answers on the forward the ssh command names.
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Endpoint().SSH.Port), 10*time.Second)
		require.NoError(t, err)
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		banner := make([]byte, 8)
		_, err = conn.Read(banner)
		conn.Close()
		require.NoError(t, err)
		require.Equal(t, "SSH-2.0-", string(banner))
		require.DirExists(t, b.RunDir())

		require.NoError(t, b.Release(t.Context()))
		select {
		case <-m.Done():
		case <-time.After(time.Minute):
			t.Fatal("QEMU still runs after Release")
		}
		require.NoDirExists(t, b.RunDir())
	})
}
