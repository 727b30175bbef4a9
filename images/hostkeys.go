package images

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Golden images often ship without sshd host keys: their builders remove
// them so that every card gets its own. Raspberry Pi OS and BeagleBoard
// images make new ones at first boot with a service of their own, cloud-
// init images through cloud-init; a plain debootstrap or mmdebstrap image
// makes none, and its ssh.service fails at boot. So when an image has no
// host keys, Prepare makes them on the host, writes them into the image
// and records their public halves in the prepared image, which the harness
// pins before its first connection; the image's own first-boot
// regeneration is turned off so that the keys stay the ones pinned.

// defaultHostKeys are the host keys Debian's sshd loads when its
// configuration names none (sshd_config(5), HostKey); socbox makes the
// ed25519 and ECDSA ones, which every OpenSSH since 6.5 offers.
var defaultHostKeys = []string{"/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"}

// hostKeyRegenerators are the first-boot services that delete an image's
// host keys and make new ones: Raspberry Pi OS's (raspberrypi-sys-mods),
// whose script removes /etc/ssh/ssh_host_*_key* before ssh-keygen -A.
var hostKeyRegenerators = []string{"/etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service"}

// beagleRegenerateFlag makes BeagleBoard's first-boot script (generic-
// board-startup) delete and regenerate the host keys.
const beagleRegenerateFlag = "/etc/ssh/ssh.regenerate"

// hostKeys makes the image's sshd host keys when it has none and returns
// their public keys in authorized_keys form, to pin; nil when the image
// has host keys of its own (they are learned on first contact).
func (f firstBoot) hostKeys(ctx context.Context, e ext4Part, w *ext4Writer) ([]string, error) {
	wanted, err := configuredHostKeys(ctx, e)
	if err != nil {
		return nil, err
	}
	for _, p := range wanted {
		_, n, err := e.stat(ctx, p)
		if err != nil {
			return nil, err
		}
		if n.exists {
			return nil, nil
		}
	}
	var pinned []string
	for _, p := range wanted {
		kind := hostKeyKind(p)
		if kind == "" || (kind == "rsa" && contains(defaultHostKeys, p)) {
			// Unknown kinds are sshd's to refuse; RSA (slow to make) only
			// where the configuration asks for it by name.
			continue
		}
		priv, pub, err := newHostKey(kind)
		if err != nil {
			return nil, fmt.Errorf("make %s host key: %w", kind, err)
		}
		real, err := e.resolve(ctx, p)
		if err != nil {
			return nil, err
		}
		if err := w.writeFile(ctx, real, priv, 0o600, 0, 0); err != nil {
			return nil, err
		}
		if err := w.writeFile(ctx, real+".pub", []byte(pub+"\n"), 0o644, 0, 0); err != nil {
			return nil, err
		}
		pinned = append(pinned, pub)
	}
	if len(pinned) == 0 {
		return nil, nil
	}
	for _, p := range append(hostKeyRegenerators, beagleRegenerateFlag) {
		n, err := e.lstat(ctx, p)
		if err != nil {
			return nil, err
		}
		if n.exists {
			if err := w.remove(p); err != nil {
				return nil, err
			}
		}
	}
	return pinned, nil
}

// configuredHostKeys are the host key files the image's sshd loads: the
// HostKey lines of /etc/ssh/sshd_config and its drop-ins, else Debian's
// defaults. sshd_config is read by hand, for this one keyword.
func configuredHostKeys(ctx context.Context, e ext4Part) ([]string, error) {
	files := []string{"/etc/ssh/sshd_config"}
	names, err := e.listDir(ctx, "/etc/ssh/sshd_config.d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, ".conf") {
			files = append(files, "/etc/ssh/sshd_config.d/"+n)
		}
	}
	var keys []string
	for _, f := range files {
		data, err := e.readFile(ctx, f, maxTextFile)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 || !strings.EqualFold(fields[0], "HostKey") {
				continue
			}
			p := strings.Trim(fields[1], `"`)
			if !path.IsAbs(p) {
				p = path.Join("/etc/ssh", p) // sshd reads relative paths from its own directory
			}
			if !contains(keys, p) {
				keys = append(keys, p)
			}
		}
	}
	if len(keys) == 0 {
		return defaultHostKeys, nil
	}
	return keys, nil
}

// hostKeyKind is the kind of key a host key file is for, by its name.
func hostKeyKind(p string) string {
	base := path.Base(p)
	for _, k := range []string{"ed25519", "ecdsa", "rsa"} {
		if strings.Contains(base, k) {
			return k
		}
	}
	return ""
}

// newHostKey makes a host key: the private key in OpenSSH's format, which
// sshd reads, and the public key in authorized_keys form.
func newHostKey(kind string) ([]byte, string, error) {
	var key crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, "", fmt.Errorf("unknown key kind %q", kind)
	}
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(key, "root@socbox")
	if err != nil {
		return nil, "", err
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), nil
}
