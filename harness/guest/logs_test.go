package guest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// sshGuest is a client of an in-process SSH server whose commands find
// stubs first on PATH, each logging its argv to dir/log, one argument a
// line after the stub's name.
func sshGuest(t *testing.T, stubs map[string]string) (*sshx.Client, *localShell) {
	t.Helper()
	stubbed := newLocalShell(t, stubs)
	t.Setenv("PATH", stubbed.dir+":"+os.Getenv("PATH"))
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	c, err := sshx.Dial(t.Context(), sshx.Config{Endpoint: srv.Endpoint(), Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, stubbed
}

func TestReadLogsAsksForTheWindowAndCapsEachLog(t *testing.T) {
	sh, stubs := sshGuest(t, map[string]string{
		// The kernel log is long: it is cut at the limit.
		"journalctl": `case "$*" in *" -k"*) yes kernel-line | head -n 1000;; *containerd*) echo "containerd: level=info msg=started";; *) echo "systemd[1]: Started session";; esac`,
	})
	since, until := time.Unix(1700000000, 0), time.Unix(1700000060, 500)
	logs, err := ReadLogs(t.Context(), sh, since, until, 4096)
	require.NoError(t, err)
	require.Len(t, logs, 3)
	window := "journalctl --no-pager -o short-iso-precise --since @1700000000 --until @1700000061 -n 5000"
	require.Equal(t, []string{window, window + " -k", window + " -u containerd"}, stubs.calls(t),
		"the window and the units are arguments, read in the guest's own journal")

	byName := map[string]Log{}
	for _, l := range logs {
		require.NoError(t, l.Err, l.Name)
		byName[l.Name] = l
	}
	require.Equal(t, "systemd[1]: Started session\n", string(byName["journal"].Data))
	require.Equal(t, "containerd: level=info msg=started\n", string(byName["containerd"].Data))
	k := byName["kernel"]
	require.Len(t, k.Data, 4096, "each log keeps at most the limit")
	require.Equal(t, int64(1000*len("kernel-line\n")), k.Size, "and counts what it cut")
	require.True(t, k.Truncated())
	require.Equal(t, window+" -k", k.Command)
}

func TestReadLogsFallsBackToDmesgWithoutAJournal(t *testing.T) {
	sh, stubs := sshGuest(t, map[string]string{
		"journalctl": `echo "No journal files were found." >&2; exit 1`,
		"dmesg":      `echo "[    0.000000] Booting Linux on physical CPU 0x0"`,
		"tail":       `cat`,
	})
	logs, err := ReadLogs(t.Context(), sh, time.Unix(10, 0), time.Unix(20, 0), 1<<20)
	require.NoError(t, err)
	require.Equal(t, "kernel", logs[1].Name)
	require.NoError(t, logs[1].Err)
	require.Contains(t, string(logs[1].Data), "Booting Linux")
	require.Contains(t, stubs.calls(t), "tail -n 5000", "the count of lines is an argument")
	for _, i := range []int{0, 2} {
		var exit *ExitError
		require.ErrorAs(t, logs[i].Err, &exit, logs[i].Name)
		require.Contains(t, string(logs[i].Data), "No journal files", "what the guest said instead is kept")
	}
}

func TestReadLogsStopsWithTheContext(t *testing.T) {
	sh, _ := sshGuest(t, map[string]string{"journalctl": "sleep 30"})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ReadLogs(ctx, sh, time.Unix(10, 0), time.Unix(20, 0), 1<<20)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 20*time.Second, "a hung guest does not hold the run")
}
