package serial

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// guestSocket listens where QEMU would and plays the guest on the first
// connection: it writes out, then returns (on got) everything the host sent
// until it hung up.
func guestSocket(t *testing.T, out string) (string, <-chan []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte(out))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	return path, got
}

func TestWaitIdle(t *testing.T) {
	path, got := guestSocket(t, "\x00\x17stale sshd output\nmore socbox-ssh?\n")
	require.NoError(t, WaitIdle(context.Background(), path))
	require.Empty(t, <-got, "waiting must not send the guest anything: a hello would start sshd")
}

func TestWaitIdleTimeout(t *testing.T) {
	path, got := guestSocket(t, "SSH-2.0-OpenSSH_10.0\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := WaitIdle(ctx, path)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "wait for the serial sshd to be idle")
	require.Empty(t, <-got)
}
