package sshx_test

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// serialGuest listens on a unix socket as QEMU's serial chardev would and
// plays the guest's serial sshd: it announces itself, and once greeted it
// carries the line to srv, as `sshd -i` would take it over.
func serialGuest(t *testing.T, srv *sshtest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		line, err := l.Accept()
		if err != nil {
			return
		}
		defer line.Close()
		if _, err := line.Write([]byte("boot noise\r\nsocbox-ssh?\n")); err != nil {
			return
		}
		var got []byte
		for !bytes.HasSuffix(got, []byte("socbox-ssh!\n")) {
			b := make([]byte, 1) // no further: what follows the hello is sshd's
			if _, err := line.Read(b); err != nil {
				return
			}
			got = append(got, b...)
		}
		sshd, err := net.Dial("tcp", srv.Endpoint().Addr())
		if err != nil {
			t.Errorf("guest: %v", err)
			return
		}
		defer sshd.Close()
		go func() { _, _ = io.Copy(sshd, line) }()
		_, _ = io.Copy(line, sshd)
	}()
	return path
}

func TestDialOverSerial(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	ctx := testContext(t)
	c, err := sshx.Dial(ctx, sshx.Config{
		// Nothing listens there: only the serial line leads to the server.
		Endpoint: sshx.Endpoint{Host: "raspi3b.invalid", Port: 22, User: sshtest.User},
		Signer:   key,
		HostKeys: sshx.NewHostKeys(srv.HostKey()),
		Serial:   serialGuest(t, srv),
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	out, err := c.Output(ctx, "echo over serial")
	require.NoError(t, err)
	require.Equal(t, "over serial\n", out)
}

func TestDialOverSerialChecksHostKey(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	_, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: sshx.Endpoint{Host: "raspi3b.invalid", Port: 22, User: sshtest.User},
		Signer:   key,
		HostKeys: sshx.NewHostKeys(newSigner(t).PublicKey()),
		Serial:   serialGuest(t, srv),
	})
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
}

func TestDialOverSerialNamesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.sock")
	_, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: sshx.Endpoint{Host: "raspi3b.invalid", Port: 22, User: sshtest.User},
		Signer:   newSigner(t),
		HostKeys: sshx.NewHostKeys(),
		Serial:   path,
	})
	require.EqualError(t, err, "ssh socbox@raspi3b.invalid:22 over serial "+path+": connect: no such file or directory")
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestDialOverSerialTimeoutNamesMissingGuest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() { // a board that never runs the serial sshd
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()

	start := time.Now()
	_, err = sshx.Dial(testContext(t), sshx.Config{
		Endpoint: sshx.Endpoint{Host: "raspi3b.invalid", Port: 22, User: sshtest.User},
		Signer:   newSigner(t),
		HostKeys: sshx.NewHostKeys(),
		Serial:   path,
		Timeout:  300 * time.Millisecond,
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "over serial "+path+": no announcement from the guest's serial sshd within")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestDialRetryOverSerialWaitsForSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	path := filepath.Join(t.TempDir(), "absent.sock")
	_, err := sshx.DialRetry(ctx, sshx.Config{
		Endpoint: sshx.Endpoint{Host: "raspi3b.invalid", Port: 22, User: sshtest.User},
		Signer:   newSigner(t),
		HostKeys: sshx.NewHostKeys(),
		Serial:   path,
	}, 50*time.Millisecond, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "over serial "+path+": gave up after")
	require.ErrorContains(t, err, "no such file or directory")
}
