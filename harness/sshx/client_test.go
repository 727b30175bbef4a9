package sshx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

func TestEndpointString(t *testing.T) {
	require.Equal(t, "pi@127.0.0.1:2222", sshx.Endpoint{Host: "127.0.0.1", Port: 2222, User: "pi"}.String())
	require.Equal(t, "root@[::1]:22", sshx.Endpoint{Host: "::1", Port: 22, User: "root"}.String())
}

func TestClientEndpoint(t *testing.T) {
	srv, c := connect(t)
	require.Equal(t, srv.Endpoint(), c.Endpoint())
}

func TestWrongKeyIsRefused(t *testing.T) {
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(newSigner(t).PublicKey()))
	_, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: srv.Endpoint(), Signer: newSigner(t), HostKeys: sshx.NewHostKeys(srv.HostKey()),
	})
	require.ErrorContains(t, err, "unable to authenticate")
	require.ErrorIs(t, err, sshx.ErrAuth)
	require.NotErrorIs(t, err, sshx.ErrHostKeyMismatch)
}

func TestPasswordIsNeverOffered(t *testing.T) {
	var passwordTried atomic.Bool
	srv := sshtest.NewServer(t,
		sshtest.WithAuthorizedKey(newSigner(t).PublicKey()),
		sshtest.WithServerConfig(func(c *ssh.ServerConfig) {
			c.PasswordCallback = func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
				passwordTried.Store(true)
				return &ssh.Permissions{}, nil // a guest that lets anyone in
			}
		}))
	_, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: srv.Endpoint(), Signer: newSigner(t), HostKeys: sshx.NewHostKeys(srv.HostKey()),
	})
	require.Error(t, err)
	require.False(t, passwordTried.Load())
}

func TestTestServerRefusesPassword(t *testing.T) {
	srv := sshtest.NewServer(t)
	_, err := ssh.Dial("tcp", srv.Endpoint().Addr(), &ssh.ClientConfig{
		User:            sshtest.User,
		Auth:            []ssh.AuthMethod{ssh.Password("raspberry")},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	})
	require.ErrorContains(t, err, "unable to authenticate")
}

func TestDialRequiresKeyAndHostKeys(t *testing.T) {
	ctx := testContext(t)
	ep := unusedEndpoint(t)
	_, err := sshx.Dial(ctx, sshx.Config{Endpoint: ep, HostKeys: sshx.NewHostKeys()})
	require.ErrorContains(t, err, "no client key")
	_, err = sshx.Dial(ctx, sshx.Config{Endpoint: ep, Signer: newSigner(t)})
	require.ErrorContains(t, err, "no host keys")
}

// silentListener accepts TCP connections and never says anything, like a
// QEMU port forward whose guest has no sshd running yet.
func silentListener(t *testing.T) sshx.Endpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return sshx.Endpoint{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, User: sshtest.User}
}

func TestDialHonoursContextDuringHandshake(t *testing.T) {
	ep := silentListener(t)
	ctx, cancel := context.WithCancel(testContext(t))
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := sshx.Dial(ctx, sshx.Config{Endpoint: ep, Signer: newSigner(t), HostKeys: sshx.NewHostKeys()})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestDialTimeoutBoundsHandshake(t *testing.T) {
	ep := silentListener(t)
	_, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: ep, Signer: newSigner(t), HostKeys: sshx.NewHostKeys(), Timeout: 200 * time.Millisecond,
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "no SSH handshake within 200ms")
}

func TestDialRetryStopsWhenNotAlive(t *testing.T) {
	errQEMUDied := errors.New("qemu exited with status 1")
	calls := 0
	alive := func() error {
		calls++
		if calls == 3 {
			return errQEMUDied
		}
		return nil
	}
	start := time.Now()
	_, err := sshx.DialRetry(testContext(t), sshx.Config{
		Endpoint: unusedEndpoint(t), Signer: newSigner(t), HostKeys: sshx.NewHostKeys(),
	}, 20*time.Millisecond, alive)
	require.ErrorIs(t, err, errQEMUDied)
	require.Equal(t, 3, calls)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestDialRetrySucceedsWhenServerAppears(t *testing.T) {
	key := newSigner(t)
	hostKey := newSigner(t)
	ep := unusedEndpoint(t)
	type dialed struct {
		c   *sshx.Client
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := sshx.DialRetry(testContext(t), sshx.Config{
			Endpoint: ep, Signer: key, HostKeys: sshx.NewHostKeys(hostKey.PublicKey()),
		}, 50*time.Millisecond, func() error { return nil })
		done <- dialed{c, err}
	}()

	time.Sleep(300 * time.Millisecond) // let a few attempts fail first
	sshtest.NewServer(t, sshtest.WithAddr(ep.Addr()),
		sshtest.WithAuthorizedKey(key.PublicKey()), sshtest.WithHostKey(hostKey))

	d := <-done
	require.NoError(t, d.err)
	defer d.c.Close()
	out, err := d.c.Output(testContext(t), "echo up")
	require.NoError(t, err)
	require.Equal(t, "up\n", out)
}

func TestDialRetryDoesNotRetryHostKeyMismatch(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	attempts := 0
	start := time.Now()
	_, err := sshx.DialRetry(testContext(t), sshx.Config{
		Endpoint: srv.Endpoint(), Signer: key, HostKeys: sshx.NewHostKeys(newSigner(t).PublicKey()),
	}, 10*time.Millisecond, func() error { attempts++; return nil })
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
	require.Equal(t, 1, attempts)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestDialRetryGivesUpWithLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	_, err := sshx.DialRetry(ctx, sshx.Config{
		Endpoint: unusedEndpoint(t), Signer: newSigner(t), HostKeys: sshx.NewHostKeys(),
	}, 50*time.Millisecond, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "connection refused")
	require.ErrorContains(t, err, "attempts")
}

func TestDialUnixReachesGuestSocket(t *testing.T) {
	_, c := connect(t)
	sock := filepath.Join(t.TempDir(), "echo.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()

	ctx := testContext(t)
	for range 3 { // several streams over one SSH connection
		conn, err := c.DialUnix(ctx, sock)
		require.NoError(t, err)
		_, err = conn.Write([]byte("ping over ssh"))
		require.NoError(t, err)
		buf := make([]byte, len("ping over ssh"))
		_, err = io.ReadFull(conn, buf)
		require.NoError(t, err)
		require.Equal(t, "ping over ssh", string(buf))
		require.NoError(t, conn.Close())
	}

	_, err = c.DialUnix(ctx, filepath.Join(t.TempDir(), "absent.sock"))
	require.ErrorContains(t, err, "absent.sock")
}

// A session that ends without an exit status (sshd killed, say) is an error,
// not exit code 0. sshtest always reports a status, so this uses a bare
// server that closes the session right after accepting the command.
func TestRunWithoutExitStatusIsAnError(t *testing.T) {
	key := newSigner(t)
	hostKey := newSigner(t)
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
	}
	config.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_, chans, reqs, err := ssh.NewServerConn(nc, config)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nch := range chans {
			ch, reqs, err := nch.Accept()
			if err != nil {
				return
			}
			req := <-reqs
			req.Reply(true, nil)
			ch.Close()
			go ssh.DiscardRequests(reqs)
		}
	}()

	c, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: sshx.Endpoint{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, User: "x"},
		Signer:   key,
		HostKeys: sshx.NewHostKeys(hostKey.PublicKey()),
	})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Run(testContext(t), "true")
	var missing *ssh.ExitMissingError
	require.ErrorAs(t, err, &missing)
	require.ErrorContains(t, err, "without an exit status")
}
