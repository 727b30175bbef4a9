package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

func TestStageErrorSaysWhereAndWhatNext(t *testing.T) {
	err := error(&StageError{
		Stage: StageSSH, Board: "raspi4b-fast", Err: fmt.Errorf("waiting for ssh: %w", ErrKernelPanic),
		ConsoleLog: "/r/serial0.log", ConsoleTail: []string{"Kernel panic - not syncing"}, Hint: "read the log",
	})
	require.ErrorIs(t, err, ErrKernelPanic)
	var se *StageError
	require.True(t, errors.As(err, &se))
	require.Equal(t, StageSSH, se.Stage)
	msg := err.Error()
	require.Contains(t, msg, "boot raspi4b-fast: ssh: waiting for ssh: kernel panic")
	require.Contains(t, msg, "last console lines:\n  Kernel panic - not syncing")
	require.Contains(t, msg, "console log: /r/serial0.log")
	require.Contains(t, msg, "hint: read the log")
}

func TestOptionsRejectBadInput(t *testing.T) {
	for name, opt := range map[string]Option{
		"suite":      WithSuite("sid"),
		"containerd": WithContainerd("docker"),
		"timeout":    WithTimeout(StageSSH, 0),
		"smp":        WithSMP(0),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Start(context.Background(), opt)
			require.Nil(t, b)
			require.ErrorContains(t, err, "socbox options")
		})
	}
	b, err := Start(context.Background(), WithBoard("raspi5"))
	require.Nil(t, b)
	require.ErrorContains(t, err, `unknown board "raspi5"`)
	require.ErrorContains(t, err, "raspi4b-fast")
}

func TestCloseIsNilSafeAndIdempotent(t *testing.T) {
	var b *Board
	require.NoError(t, b.Close())
	b = &Board{Machine: machine.Off{}, life: newLifecycle("raspi4b-fast", defaultOptions(), t.Logf)}
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
}

// guest.ReadOS reads what an installer needs over SSH; here the "guest" is
// the host itself behind the in-process SSH server, a Debian system too.
func TestGuestInfoOverSSH(t *testing.T) {
	signer, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "id"))
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(signer.PublicKey()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sshx.Dial(ctx, sshx.Config{Endpoint: srv.Endpoint(), Signer: signer, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	defer c.Close()
	g, err := guest.ReadOS(ctx, c)
	require.NoError(t, err)
	require.NotEmpty(t, g.Suite)
	require.NotEmpty(t, g.Arch)
	require.True(t, g.Installed["dpkg"], "dpkg is installed on any Debian system")
}

// The ssh command a board prints must work with OpenSSH, which reads
// known_hosts lines as "[host]:port key".
func TestWriteKnownHostsIsOpenSSHFormat(t *testing.T) {
	signer, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "id"))
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "known_hosts")
	ep := sshx.Endpoint{Host: "127.0.0.1", Port: 40022, User: "root"}
	require.NoError(t, writeKnownHosts(p, ep, []ssh.PublicKey{signer.PublicKey()}))
	cb, err := knownhosts.New(p)
	require.NoError(t, err)
	addr := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40022}
	require.NoError(t, cb("127.0.0.1:40022", addr, signer.PublicKey()))
	other, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "other"))
	require.NoError(t, err)
	require.Error(t, cb("127.0.0.1:40022", addr, other.PublicKey()))
}

func TestBoardSlotsBoundConcurrency(t *testing.T) {
	t.Setenv("SOCBOX_MAX_BOARDS", "3")
	require.Equal(t, 3, MaxBoards())
	t.Setenv("SOCBOX_MAX_BOARDS", "")
	require.GreaterOrEqual(t, MaxBoards(), 1)
}
