package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// TestFailedScenarioSavesTheGuestLogs reads the logs over the in-process
// SSH server, whose commands find a journalctl stub first on PATH: the
// same session a real board is reached over.
func TestFailedScenarioSavesTheGuestLogs(t *testing.T) {
	stubs := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(stubs, "journalctl"), []byte(`#!/bin/sh
case "$*" in
*" -k"*) echo "kernel: Out of memory: Killed process 42 (stress)";;
*containerd*) echo "containerd[300]: level=error msg=\"task exited\"";;
*) echo "systemd[1]: first"; yes "systemd[1]: Started a unit, one of many" | head -n 40000; echo "systemd[1]: last";;
esac
`), 0o755))
	t.Setenv("PATH", stubs+":"+os.Getenv("PATH"))
	key, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "id"))
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	c, err := sshx.Dial(t.Context(), sshx.Config{Endpoint: srv.Endpoint(), Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	artifacts := t.TempDir()
	o := defaultOptions()
	o.artifactsDir = artifacts
	var logged []string
	b := &Board{SSH: c, opts: o, life: newLifecycle("raspi4b-fast", o, func(f string, a ...any) { logged = append(logged, f) })}
	res := &report.Scenario{Name: "../oom kill", StartedAt: time.Now().Add(-3 * time.Second), Seconds: 2, Failures: []string{"exit code 137, want 0"}}
	b.saveGuestLogs(t.Context(), res)

	dir := filepath.Join(artifacts, ".._oom_kill")
	require.Len(t, res.GuestLogs, 3)
	for _, l := range res.GuestLogs {
		require.Equal(t, filepath.Join(dir, l.Name+".log"), l.Path, "under the board's directory, by the scenario's name made safe")
		require.Empty(t, l.Error)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name+".log"))
		require.NoError(t, err)
		return string(data)
	}
	require.Contains(t, read("kernel"), "Out of memory: Killed process 42")
	require.Contains(t, read("containerd"), `level=error msg="task exited"`)
	journal := read("journal")
	require.True(t, strings.HasPrefix(journal, "# socbox: journalctl --no-pager"), journal[:100])
	require.Contains(t, journal, "systemd[1]: first\n")
	require.False(t, strings.Contains(journal, "systemd[1]: last"), "cut at the limit")
	require.Less(t, len(journal), GuestLogLimit+1000)
	require.Contains(t, journal, "# socbox: cut at 1048576 of")
	require.True(t, res.GuestLogs[0].Truncated)
}
