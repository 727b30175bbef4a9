package sshx_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// newSigner returns a fresh ed25519 key.
func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// testContext is bounded, so that a hang fails the test instead of the run.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect starts a test server and returns a client logged in to it with
// the server's host key pinned.
func connect(t *testing.T, opts ...sshtest.Option) (*sshtest.Server, *sshx.Client) {
	t.Helper()
	key := newSigner(t)
	srv := sshtest.NewServer(t, append([]sshtest.Option{sshtest.WithAuthorizedKey(key.PublicKey())}, opts...)...)
	c, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: srv.Endpoint(),
		Signer:   key,
		HostKeys: sshx.NewHostKeys(srv.HostKey()),
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// unusedEndpoint returns an endpoint on 127.0.0.1 where nothing listens
// (for now: the port is free when returned).
func unusedEndpoint(t *testing.T) sshx.Endpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return sshx.Endpoint{Host: "127.0.0.1", Port: port, User: sshtest.User}
}
