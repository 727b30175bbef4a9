package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/images/cachefs"
)

// keyComment labels socbox's key in the guest's authorized_keys, so that
// whoever later looks at a flashed board can tell where the entry came from.
const keyComment = "socbox"

// LoadOrCreateKey returns the client key stored at path, creating an ed25519
// key there first if the file does not exist. The private key is written in
// OpenSSH format with mode 0600 (its directory gets 0700), and
// the public key beside it at path+".pub" in authorized_keys format, so that
// the same key also works with the ssh command line tool.
//
// Creation is atomic and safe against several test processes sharing one key
// path: exactly one key wins and every caller gets that one.
func LoadOrCreateKey(path string) (ssh.Signer, error) {
	// The directory holds the private key: nobody else may list or
	// replace what is in it, whatever made it first.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	signer, err := loadKey(path)
	if errors.Is(err, os.ErrNotExist) {
		signer, err = createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if err := ensurePublicKey(path+".pub", signer); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return signer, nil
}

// AuthorizedKey returns the authorized_keys line (without a trailing newline)
// that lets s log in.
func AuthorizedKey(s ssh.Signer) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	return line + " " + keyComment
}

func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse private key (socbox needs an unencrypted key; delete the file to have a new one made): %w", err)
	}
	return signer, nil
}

func createKey(path string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	err = cachefs.CreateFile(path, pem.EncodeToMemory(block), 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process created the key first: use theirs.
		return loadKey(path)
	}
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// ensurePublicKey (re)writes the .pub file when it is missing or does not
// match the private key, e.g. after a lost race or a hand-copied key.
func ensurePublicKey(path string, signer ssh.Signer) error {
	want := AuthorizedKey(signer) + "\n"
	if have, err := os.ReadFile(path); err == nil {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(have)
		if err == nil && keysEqual(pub, signer.PublicKey()) {
			return nil
		}
	}
	return cachefs.WriteFile(path, []byte(want), 0o644)
}
