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

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

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
		require.NoError(t, sess.Start("echo $$ > "+sshx.Quote(pidFile)+"; sleep 30; echo never"))
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
