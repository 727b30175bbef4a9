package sshx_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
