package sshx_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// knownHost is the known_hosts name of a test server: "[127.0.0.1]:port".
func knownHost(srv *sshtest.Server) string {
	return knownhosts.Normalize(srv.Endpoint().Addr())
}

func dialKnownHosts(t *testing.T, srv *sshtest.Server, key ssh.Signer, kh *sshx.KnownHosts) error {
	t.Helper()
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: srv.Endpoint(), Signer: key, KnownHosts: kh})
	if err == nil {
		require.NoError(t, c.Close())
	}
	return err
}

func TestKnownHostsAcceptsListedKey(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "known_hosts")
	other := newSigner(t).PublicKey()
	require.NoError(t, os.WriteFile(path, []byte("# comment\n"+
		knownhosts.Line([]string{"elsewhere.example"}, other)+"\n"+
		knownhosts.Line([]string{knownHost(srv)}, srv.HostKey())+"\n"), 0o600))
	require.NoError(t, dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path}))
}

func TestKnownHostsAcceptsHashedEntry(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(path, []byte(knownhosts.Line([]string{knownhosts.HashHostname(knownHost(srv))}, srv.HostKey())+"\n"), 0o600))
	require.NoError(t, dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path}))
}

func TestKnownHostsRefusesUnknownHostWithFingerprintAndFix(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "ssh", "known_hosts") // missing: lists no host

	err := dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path})
	require.ErrorIs(t, err, sshx.ErrUnknownHostKey)
	require.NotErrorIs(t, err, sshx.ErrHostKeyMismatch)
	var uk *sshx.UnknownHostKeyError
	require.ErrorAs(t, err, &uk)
	require.Equal(t, knownHost(srv), uk.Host)
	msg := err.Error()
	require.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey()))
	require.Contains(t, msg, fmt.Sprintf("ssh-keyscan -p %d -t ed25519 127.0.0.1 >> %s", srv.Endpoint().Port, path))
	require.Contains(t, msg, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
	require.NoFileExists(t, path, "refusing a host must not write known_hosts")
}

func TestUnknownHostKeyErrorOnPort22(t *testing.T) {
	err := &sshx.UnknownHostKeyError{Host: "raspberrypi.local", Key: newSigner(t).PublicKey(), KnownHosts: "/home/pi/.ssh/known_hosts"}
	require.Contains(t, err.Error(), "ssh-keyscan -t ed25519 raspberrypi.local >> /home/pi/.ssh/known_hosts")
}

func TestKnownHostsAcceptNewPinsOnFirstUse(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "known_hosts")
	// An existing file without a final newline must keep its last entry.
	other := knownhosts.Line([]string{"elsewhere.example"}, newSigner(t).PublicKey())
	require.NoError(t, os.WriteFile(path, []byte(other), 0o600))

	var logged []string
	kh := &sshx.KnownHosts{Path: path, AcceptNew: true, Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	require.NoError(t, dialKnownHosts(t, srv, key, kh))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, other+"\n"+knownhosts.Line([]string{knownHost(srv)}, srv.HostKey())+"\n", string(data))
	require.Len(t, logged, 1)
	require.Contains(t, logged[0], ssh.FingerprintSHA256(srv.HostKey()))

	// Pinned now: a strict check accepts it, and nothing is added twice.
	require.NoError(t, dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path}))
	require.NoError(t, dialKnownHosts(t, srv, key, kh))
	again, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(data), string(again))
}

func TestKnownHostsRefusesChangedKeyEvenWithAcceptNew(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "known_hosts")
	old := newSigner(t).PublicKey()
	require.NoError(t, os.WriteFile(path, []byte(knownhosts.Line([]string{knownHost(srv)}, old)+"\n"), 0o600))

	for _, acceptNew := range []bool{false, true} {
		err := dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path, AcceptNew: acceptNew})
		require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
		msg := err.Error()
		require.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey()))
		require.Contains(t, msg, ssh.FingerprintSHA256(old))
		require.Contains(t, msg, path+":1")
		require.Contains(t, msg, fmt.Sprintf("ssh-keygen -R '%s' -f %s", knownHost(srv), path))
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(data), "\n"), "a changed key is never pinned")
}

func TestKnownHostsRefusesRevokedKey(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	path := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(path, []byte("@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey())))+"\n"), 0o600))
	err := dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path, AcceptNew: true})
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
	require.ErrorContains(t, err, "revokes")
}

func TestKnownHostsPrefersTheListedKeyType(t *testing.T) {
	// A server with ed25519 and ecdsa host keys, of which known_hosts lists
	// only one: the client must ask for that type, as ssh does, instead of
	// taking the other key for a changed one.
	key := newSigner(t)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecKey, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	edKey := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()), sshtest.WithHostKey(edKey),
		sshtest.WithServerConfig(func(c *ssh.ServerConfig) { c.AddHostKey(ecKey) }))
	for _, listed := range []ssh.PublicKey{ecKey.PublicKey(), edKey.PublicKey()} {
		t.Run(listed.Type(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			require.NoError(t, os.WriteFile(path, []byte(knownhosts.Line([]string{knownHost(srv)}, listed)+"\n"), 0o600))
			require.NoError(t, dialKnownHosts(t, srv, key, &sshx.KnownHosts{Path: path}))
		})
	}
}

func TestSignersAreOfferedInTurn(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	c, err := sshx.Dial(testContext(t), sshx.Config{
		Endpoint: srv.Endpoint(), Signers: []ssh.Signer{newSigner(t), key}, HostKeys: sshx.NewHostKeys(srv.HostKey()),
	})
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
