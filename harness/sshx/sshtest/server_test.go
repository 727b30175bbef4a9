package sshtest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// dial logs in to srv with a fresh key it authorizes.
func dial(t *testing.T, opts ...sshtest.Option) (*sshtest.Server, *ssh.Client) {
	t.Helper()
	signer, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "id"))
	require.NoError(t, err)
	srv := sshtest.NewServer(t, append([]sshtest.Option{sshtest.WithAuthorizedKey(signer.PublicKey())}, opts...)...)
	c, err := ssh.Dial("tcp", srv.Endpoint().Addr(), &ssh.ClientConfig{
		User:            sshtest.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func TestSFTPSharesTheCommandsFilesystem(t *testing.T) {
	srv, c := dial(t)
	sess, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, sess.Run("printf hello > greeting"))

	client, err := sftp.NewClient(c)
	require.NoError(t, err)
	defer client.Close()
	// Relative paths start where commands run, as with sshd's sftp-server.
	f, err := client.Open("greeting")
	require.NoError(t, err)
	defer f.Close()
	var got strings.Builder
	_, err = f.WriteTo(&got)
	require.NoError(t, err)
	require.Equal(t, "hello", got.String())
	require.Equal(t, 2, srv.Sessions())
}

func TestWithoutSFTPRefusesTheSubsystem(t *testing.T) {
	_, c := dial(t, sshtest.WithoutSFTP())
	_, err := sftp.NewClient(c)
	require.ErrorContains(t, err, "subsystem request failed")
}

func TestCleanupKillsRunningCommands(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Run("server", func(t *testing.T) {
		signer, err := sshx.LoadOrCreateKey(filepath.Join(t.TempDir(), "id"))
		require.NoError(t, err)
		srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(signer.PublicKey()))
		c, err := ssh.Dial("tcp", srv.Endpoint().Addr(), &ssh.ClientConfig{
			User:            sshtest.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
		})
		require.NoError(t, err)
		defer c.Close()
		sess, err := c.NewSession()
		require.NoError(t, err)
		require.NoError(t, sess.Start("echo $$ > "+shell.Quote(pidFile)+"; sleep 30; echo never"))
		require.Eventually(t, func() bool {
			data, err := os.ReadFile(pidFile)
			return err == nil && strings.HasSuffix(string(data), "\n")
		}, 5*time.Second, 10*time.Millisecond)
	}) // the subtest's cleanup closes the server here

	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}, 5*time.Second, 10*time.Millisecond)
}
