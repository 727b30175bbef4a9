package sshx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/images/cachefs"
)

// ErrHostKeyMismatch is wrapped by the error of a handshake in which the
// server offered a host key other than the pinned ones.
var ErrHostKeyMismatch = errors.New("ssh host key mismatch")

// HostKeys is the set of host keys one board is trusted to present. Keys are
// not tied to a host name: a QEMU guest is reached through a port forward
// whose port changes from run to run, so the set belongs to the board (and is
// stored beside its disk image), not to an address.
//
// With keys pinned, only those are accepted. With none pinned, the first key
// a server presents is trusted and pinned (trust on first use). HostKeys is
// safe for concurrent use.
type HostKeys struct {
	mu     sync.Mutex
	pinned []ssh.PublicKey
	path   string // file the keys were loaded from, named in mismatch errors
}

// NewHostKeys returns a set holding the given keys; with none it trusts the
// first key it sees.
func NewHostKeys(pinned ...ssh.PublicKey) *HostKeys {
	h := &HostKeys{}
	for _, k := range pinned {
		h.pin(k)
	}
	return h
}

// LoadHostKeys reads a file written by Save: one key per line in
// authorized_keys format, blank lines and lines starting with # ignored. A
// missing file gives an empty set, which pins the first key seen; Save it
// afterwards to remember that key.
func LoadHostKeys(path string) (*HostKeys, error) {
	h := &HostKeys{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load ssh host keys: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("load ssh host keys: %s:%d: %w", path, n, err)
		}
		h.pin(key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load ssh host keys: %s: %w", path, err)
	}
	return h, nil
}

// Save writes the pinned keys to path, atomically, in the format
// LoadHostKeys reads.
func (h *HostKeys) Save(path string) error {
	var b strings.Builder
	b.WriteString("# SSH host keys pinned by socbox for one board.\n")
	b.WriteString("# Delete this file if the board's image was rebuilt and its host keys changed.\n")
	for _, k := range h.Pinned() {
		b.Write(ssh.MarshalAuthorizedKey(k))
	}
	if err := cachefs.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("save ssh host keys: %w", err)
	}
	h.mu.Lock()
	h.path = path
	h.mu.Unlock()
	return nil
}

// Pinned returns a copy of the pinned keys.
func (h *HostKeys) Pinned() []ssh.PublicKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.pinned)
}

// Callback returns the check for ssh.ClientConfig.HostKeyCallback.
func (h *HostKeys) Callback() ssh.HostKeyCallback {
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.pinned) == 0 {
			h.pinned = append(h.pinned, key)
			return nil
		}
		if slices.ContainsFunc(h.pinned, func(k ssh.PublicKey) bool { return keysEqual(k, key) }) {
			return nil
		}
		return h.mismatch(hostname, key)
	}
}

func (h *HostKeys) mismatch(hostname string, offered ssh.PublicKey) error {
	expected := make([]string, len(h.pinned))
	for i, k := range h.pinned {
		expected[i] = k.Type() + " " + ssh.FingerprintSHA256(k)
	}
	fix := "remove the pinned key"
	if h.path != "" {
		fix = "delete " + h.path
	}
	return fmt.Errorf("%w: %s offered %s %s, expected %s; the board's image may have been rebuilt (new host keys) or this is another machine: if the change is expected, %s and connect again",
		ErrHostKeyMismatch, hostname, offered.Type(), ssh.FingerprintSHA256(offered), strings.Join(expected, " or "), fix)
}

// algorithms lists the host key algorithms matching the pinned keys, so that
// a server holding several host keys (OpenSSH has ecdsa, ed25519 and rsa)
// presents the pinned one rather than whichever the client prefers. Nil means
// "no preference": nothing is pinned yet.
func (h *HostKeys) algorithms() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var algos []string
	for _, k := range h.pinned {
		for _, a := range algorithmsForKey(k.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsForKey(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		// An RSA key signs with SHA-2 under these names; plain ssh-rsa
		// (SHA-1) is disabled by x/crypto by default.
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

func (h *HostKeys) pin(key ssh.PublicKey) {
	if !slices.ContainsFunc(h.pinned, func(k ssh.PublicKey) bool { return keysEqual(k, key) }) {
		h.pinned = append(h.pinned, key)
	}
}

func keysEqual(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}
