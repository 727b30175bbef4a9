package sshx_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// An echo service stands for a container's port in the guest: the forward
// must carry both directions and a half-close, and stop on Close.
func TestForwardCarriesConnectionsToTheGuest(t *testing.T) {
	_, c := connect(t)
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer svc.Close()
	go func() {
		for {
			conn, err := svc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				b, _ := io.ReadAll(conn) // until the client's half-close
				_, _ = conn.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()

	f, err := c.Forward(svc.Addr().String())
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(f.Addr, "127.0.0.1:"), f.Addr)
	for range 3 {
		conn, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		_, err = conn.Write([]byte("hello board"))
		require.NoError(t, err)
		require.NoError(t, conn.(*net.TCPConn).CloseWrite())
		got, err := io.ReadAll(bufio.NewReader(conn))
		require.NoError(t, err)
		require.Equal(t, "HELLO BOARD", string(got))
		conn.Close()
	}

	conn, err := c.DialTCP(testContext(t), svc.Addr().String())
	require.NoError(t, err)
	conn.Close()

	require.NoError(t, f.Close())
	_, err = net.Dial("tcp", f.Addr)
	require.Error(t, err, "nothing listens after Close")
}

func TestDialTCPNamesTheAddressWhenRefused(t *testing.T) {
	_, c := connect(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = c.DialTCP(testContext(t), addr)
	require.ErrorContains(t, err, "dial "+addr+" in the guest")
}

// A guest that stops answering must not hold Close: Service.Stop and
// Board.Close call it before they stop the container and QEMU.
func TestForwardCloseDoesNotWaitForAHungGuest(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	proxy := newStallingProxy(t, srv.Endpoint().Addr())
	ep := srv.Endpoint()
	ep.Port = proxy.port
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: ep, Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	svc, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer svc.Close()
	go func() {
		for {
			conn, err := svc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	f, err := c.Forward(svc.Addr().String())
	require.NoError(t, err)

	// One connection is open, then sends more than the channel's window
	// once the guest has stopped answering: its relay blocks in a write.
	// Another is being dialled: its relay waits for the guest to open the
	// channel.
	sending, err := net.Dial("tcp", f.Addr)
	require.NoError(t, err)
	defer sending.Close()
	_, err = sending.Write([]byte("opened"))
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	proxy.stall()
	defer proxy.resume()
	go func() { _, _ = sending.Write(make([]byte, 16<<20)) }()
	dialling, err := net.Dial("tcp", f.Addr)
	require.NoError(t, err)
	defer dialling.Close()
	time.Sleep(300 * time.Millisecond)

	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
		t.Logf("closed in %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close still waits for a guest that stopped answering")
	}
	_, err = net.Dial("tcp", f.Addr)
	require.Error(t, err, "nothing listens after Close")
}
