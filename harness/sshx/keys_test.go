package sshx_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
)

func TestLoadOrCreateKeyCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "id_ed25519")

	created, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.Equal(t, ssh.KeyAlgoED25519, created.PublicKey().Type())

	requireMode(t, dir, 0o700)
	requireMode(t, path, 0o600)
	requireMode(t, path+".pub", 0o644)

	priv, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(priv), "-----BEGIN OPENSSH PRIVATE KEY-----")

	pub, err := os.ReadFile(path + ".pub")
	require.NoError(t, err)
	require.Equal(t, sshx.AuthorizedKey(created)+"\n", string(pub))
	parsed, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	require.NoError(t, err)
	require.Equal(t, created.PublicKey().Marshal(), parsed.Marshal())

	reused, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.Equal(t, created.PublicKey().Marshal(), reused.PublicKey().Marshal())

	// A lost .pub file is written again from the private key.
	require.NoError(t, os.Remove(path+".pub"))
	_, err = sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	pub2, err := os.ReadFile(path + ".pub")
	require.NoError(t, err)
	require.Equal(t, pub, pub2)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"id_ed25519", "id_ed25519.pub"}, names, "no temporary files left behind")
}

func TestLoadOrCreateKeyConcurrentCallersGetOneKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_ed25519")
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := sshx.LoadOrCreateKey(path)
			if err == nil {
				keys[i] = s.PublicKey().Marshal()
			}
		})
	}
	wg.Wait()
	onDisk, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	for i := range n {
		require.Equal(t, onDisk.PublicKey().Marshal(), keys[i], "caller %d", i)
	}
}

func TestLoadOrCreateKeyRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_ed25519")
	require.NoError(t, os.WriteFile(path, []byte("not a key"), 0o600))
	_, err := sshx.LoadOrCreateKey(path)
	require.ErrorContains(t, err, path)
}

func TestAuthorizedKeyIsOneLine(t *testing.T) {
	line := sshx.AuthorizedKey(newSigner(t))
	require.True(t, strings.HasPrefix(line, "ssh-ed25519 "))
	require.NotContains(t, line, "\n")
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode().Perm(), path)
}

func TestLoadOrCreateKeyTightensAnOpenKeyDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh")
	require.NoError(t, os.Mkdir(dir, 0o755)) // as an older socbox left it
	require.NoError(t, os.Chmod(dir, 0o755))
	_, err := sshx.LoadOrCreateKey(filepath.Join(dir, "id_ed25519"))
	require.NoError(t, err)
	requireMode(t, dir, 0o700)
}
