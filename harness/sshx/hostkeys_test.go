package sshx_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

func dialWith(t *testing.T, srv *sshtest.Server, key ssh.Signer, hk *sshx.HostKeys) error {
	t.Helper()
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: srv.Endpoint(), Signer: key, HostKeys: hk})
	if err == nil {
		require.NoError(t, c.Close())
	}
	return err
}

func TestPinnedHostKeyMatches(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	require.NoError(t, dialWith(t, srv, key, sshx.NewHostKeys(srv.HostKey())))
}

func TestPinnedHostKeyMismatchIsRefused(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	expected := newSigner(t).PublicKey()

	err := dialWith(t, srv, key, sshx.NewHostKeys(expected))
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
	msg := err.Error()
	require.Contains(t, msg, srv.Endpoint().String())
	require.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey()), "names the offered key")
	require.Contains(t, msg, ssh.FingerprintSHA256(expected), "names the expected key")
	require.Contains(t, msg, "rebuilt", "says what may have happened")
}

func TestTrustOnFirstUsePinsThenRejectsOtherKey(t *testing.T) {
	key := newSigner(t)
	first := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	other := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))

	hk := sshx.NewHostKeys()
	require.Empty(t, hk.Pinned())
	require.NoError(t, dialWith(t, first, key, hk))
	require.Len(t, hk.Pinned(), 1)
	require.Equal(t, first.HostKey().Marshal(), hk.Pinned()[0].Marshal())

	require.NoError(t, dialWith(t, first, key, hk), "the pinned key still works")
	require.ErrorIs(t, dialWith(t, other, key, hk), sshx.ErrHostKeyMismatch)
	require.Len(t, hk.Pinned(), 1)
}

func TestTrustOnFirstUsePinsOneKeyUnderConcurrency(t *testing.T) {
	hk := sshx.NewHostKeys()
	cb := hk.Callback()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = cb("127.0.0.1:22", addr, newSigner(t).PublicKey()) })
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		if err == nil {
			accepted++
		} else {
			require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
		}
	}
	require.Equal(t, 1, accepted)
	require.Len(t, hk.Pinned(), 1)
}

// OpenSSH holds several host keys and x/crypto prefers ECDSA: a pinned
// ed25519 key must still be the one asked for.
func TestPinnedKeyTypeIsNegotiated(t *testing.T) {
	key := newSigner(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecSigner, err := ssh.NewSignerFromKey(ecKey)
	require.NoError(t, err)
	srv := sshtest.NewServer(t,
		sshtest.WithAuthorizedKey(key.PublicKey()),
		sshtest.WithServerConfig(func(c *ssh.ServerConfig) { c.AddHostKey(ecSigner) }))

	require.NoError(t, dialWith(t, srv, key, sshx.NewHostKeys(srv.HostKey())))
	require.NoError(t, dialWith(t, srv, key, sshx.NewHostKeys(ecSigner.PublicKey())))
}

func TestHostKeysPersist(t *testing.T) {
	key := newSigner(t)
	hostKey := newSigner(t)
	path := filepath.Join(t.TempDir(), "board", "known_hosts")

	hk, err := sshx.LoadHostKeys(path)
	require.NoError(t, err, "a missing file is an empty set")
	require.Empty(t, hk.Pinned())

	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()), sshtest.WithHostKey(hostKey))
	require.NoError(t, dialWith(t, srv, key, hk))
	require.NoError(t, hk.Save(path))

	loaded, err := sshx.LoadHostKeys(path)
	require.NoError(t, err)
	require.Len(t, loaded.Pinned(), 1)
	require.Equal(t, hostKey.PublicKey().Marshal(), loaded.Pinned()[0].Marshal())

	// The same board again (same host key, new port) is accepted...
	again := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()), sshtest.WithHostKey(hostKey))
	require.NoError(t, dialWith(t, again, key, loaded))

	// ...a rebuilt one is not, and the error names the file to delete.
	rebuilt := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	err = dialWith(t, rebuilt, key, loaded)
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
	require.ErrorContains(t, err, path)
}

func TestLoadHostKeysRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(path, []byte("# comment\n\nnot a key\n"), 0o644))
	_, err := sshx.LoadHostKeys(path)
	require.ErrorContains(t, err, path+":3")
}
