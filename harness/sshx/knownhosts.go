package sshx

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/socbox/socbox/harness/shell"
)

// ErrUnknownHostKey is wrapped by the error of a handshake with a host that
// the known_hosts file does not list, when new keys are not accepted.
var ErrUnknownHostKey = errors.New("unknown ssh host key")

// KnownHosts checks a server's host key against an OpenSSH known_hosts file,
// the way ssh does with StrictHostKeyChecking=yes: a listed key is accepted,
// a different key for a listed host is refused (ErrHostKeyMismatch), and an
// unlisted host is refused (ErrUnknownHostKey) unless AcceptNew is set. It
// is for real boards, which have a name and keep their host keys; a QEMU
// guest behind a port forward uses HostKeys instead.
type KnownHosts struct {
	// Path is the known_hosts file, e.g. ~/.ssh/known_hosts. A missing file
	// lists no host.
	Path string
	// AcceptNew pins the key of a host the file does not list yet by
	// appending it to the file (trust on first use, like ssh's
	// StrictHostKeyChecking=accept-new). A changed key is refused either way.
	AcceptNew bool
	// Logf, when set, is told which key was pinned.
	Logf func(format string, args ...any)

	mu sync.Mutex // serialises appends to Path
}

// UnknownHostKeyError says that a host is not in the known_hosts file, with
// the key it offered and how to add it.
type UnknownHostKeyError struct {
	Host       string // as known_hosts writes it: "host" or "[host]:port"
	Key        ssh.PublicKey
	KnownHosts string
}

func (e *UnknownHostKeyError) Error() string {
	host, port := splitKnownHost(e.Host)
	scanPort := ""
	if port != "22" {
		scanPort = "-p " + port + " "
	}
	return fmt.Sprintf("%v: %s is not in %s; it offered %s %s. Compare that fingerprint with the board's own "+
		"(on the board: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), then add it: ssh-keyscan %s-t %s %s >> %s",
		ErrUnknownHostKey, e.Host, e.KnownHosts, e.Key.Type(), ssh.FingerprintSHA256(e.Key),
		keyscanType(e.Key.Type()), scanPort, keyscanType(e.Key.Type()), shell.Quote(host), shell.Quote(e.KnownHosts))
}

func (e *UnknownHostKeyError) Unwrap() error { return ErrUnknownHostKey }

// Callback returns the check for ssh.ClientConfig.HostKeyCallback. The file
// is read on every check, so that a key added by hand meanwhile counts.
func (k *KnownHosts) Callback() ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		check, err := k.load()
		if err != nil {
			return err
		}
		err = check(hostname, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &revoked):
			return fmt.Errorf("%w: %s offered %s %s, which %s revokes: refusing it",
				ErrHostKeyMismatch, hostname, key.Type(), ssh.FingerprintSHA256(key), revoked.Revoked.String())
		case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
			return k.changed(hostname, key, keyErr.Want)
		case errors.As(err, &keyErr):
			host := knownhosts.Normalize(hostname)
			if !k.AcceptNew {
				return &UnknownHostKeyError{Host: host, Key: key, KnownHosts: k.Path}
			}
			return k.pin(host, key)
		}
		return fmt.Errorf("check host key of %s against %s: %w", hostname, k.Path, err)
	}
}

func (k *KnownHosts) changed(hostname string, offered ssh.PublicKey, want []knownhosts.KnownKey) error {
	listed := make([]string, len(want))
	for i, w := range want {
		listed[i] = fmt.Sprintf("%s %s (%s:%d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Filename, w.Line)
	}
	return fmt.Errorf("%w: %s offered %s %s, but %s lists %s. Either this is another machine (or someone in the middle), "+
		"or the board was reinstalled and made new host keys: only in that case remove the old entry with "+
		"ssh-keygen -R %s -f %s and connect again",
		ErrHostKeyMismatch, hostname, offered.Type(), ssh.FingerprintSHA256(offered), k.Path, strings.Join(listed, " and "),
		shell.Quote(knownhosts.Normalize(hostname)), shell.Quote(k.Path))
}

// pin appends host's key to the file.
func (k *KnownHosts) pin(host string, key ssh.PublicKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("pin host key of %s: %w", host, err)
	}
	f, err := os.OpenFile(k.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pin host key of %s: %w", host, err)
	}
	defer f.Close()
	line := knownhosts.Line([]string{host}, key) + "\n"
	// A file whose last line lacks its newline would swallow ours.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("pin host key of %s in %s: %w", host, k.Path, err)
	}
	if k.Logf != nil {
		k.Logf("ssh: %s was not in %s: pinned its key %s %s (trust on first use)", host, k.Path, key.Type(), ssh.FingerprintSHA256(key))
	}
	return nil
}

// load parses the file; a missing one lists no host.
func (k *KnownHosts) load() (ssh.HostKeyCallback, error) {
	if k.Path == "" {
		return nil, errors.New("no known_hosts file given")
	}
	if _, err := os.Stat(k.Path); errors.Is(err, os.ErrNotExist) {
		return knownhosts.New()
	}
	cb, err := knownhosts.New(k.Path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w (fix or move the file)", k.Path, err)
	}
	return cb, nil
}

// Algorithms lists, for ssh.ClientConfig.HostKeyAlgorithms, the host key
// algorithms of the keys the file holds for address ("host:port"), so that a server with several host keys presents the one that
// is known rather than the one the client likes best (as ssh does). Nil
// means no preference: the host is not listed.
func (k *KnownHosts) Algorithms(address string) []string {
	check, err := k.load()
	if err != nil {
		return nil
	}
	// The check lists a host's known keys when it is shown one it does not
	// know: show it a throwaway key.
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(check(address, probeAddr(address), probe), &keyErr) {
		return nil
	}
	var algos []string
	for _, w := range keyErr.Want {
		for _, a := range algorithmsForKey(w.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// probeAddr is a stand-in remote address: the check wants a TCP address but
// decides by the host name when there is one.
func probeAddr(address string) net.Addr {
	_, port, _ := net.SplitHostPort(address)
	p := 0
	fmt.Sscan(port, &p)
	return &net.TCPAddr{IP: net.IPv4zero, Port: p}
}

// splitKnownHost takes "[host]:port" or "host" apart.
func splitKnownHost(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		if h, p, err := net.SplitHostPort(s); err == nil {
			return h, p
		}
	}
	return s, "22"
}

// keyscanType is ssh-keyscan's -t name for a key type.
func keyscanType(keyType string) string {
	switch {
	case keyType == ssh.KeyAlgoED25519:
		return "ed25519"
	case strings.HasPrefix(keyType, "ecdsa-"):
		return "ecdsa"
	case keyType == ssh.KeyAlgoRSA:
		return "rsa"
	}
	return keyType
}
