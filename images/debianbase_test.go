package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func TestMmdebstrapArgs(t *testing.T) {
	in := baseInputs{Suite: "trixie", Arch: "arm64", Mirror: "http://deb.debian.org/debian", Packages: []string{"udev", "openssh-server"}}
	args := mmdebstrapArgs(in, "/cache/bases/x.tmp-1/rootfs", true)
	joined := strings.Join(args, "\n")
	// dpkg's path filters must not reach mmdebstrap: it would pass every
	// essential package through mmtarfilter.
	require.NotContains(t, joined, "--dpkgopt")
	require.Contains(t, args, "--aptopt=#clear DPkg::Pre-Install-Pkgs")
	require.Contains(t, args, "--include=udev,openssh-server")
	require.Contains(t, args, "--hook-dir="+eatmydataHooks)
	require.Equal(t, []string{"trixie", "/cache/bases/x.tmp-1/rootfs", "http://deb.debian.org/debian"}, args[len(args)-3:])
	for _, a := range args {
		if strings.Contains(a, "-hook=") {
			// Paths reach the hooks through the environment, never the
			// shell text.
			require.NotContains(t, a, "/cache/", a)
		}
	}
	require.NotContains(t, strings.Join(mmdebstrapArgs(in, "/r", false), "\n"), "eatmydata")
}

func TestMmdebstrapPhase(t *testing.T) {
	for line, want := range map[string]string{
		"I: installing essential packages...":                           "installing essential packages",
		"I: installing remaining packages inside the chroot...":         "installing remaining packages inside the chroot",
		"I: running --customize-hook in shell: sh -c 'chroot \"$1\" x'": "running --customize-hook in shell",
		"I: success in 466.0182 seconds":                                "success in 466",
	} {
		require.Equal(t, want, mmdebstrapPhase(line), line)
	}
}

func TestPruneExcludedPaths(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{
		"usr/share/man/man1/ls.1.gz", "usr/share/locale/de/LC_MESSAGES/x.mo", "usr/share/info/dir",
		"usr/share/doc/bash/copyright", "usr/share/doc/bash/README.gz", "usr/share/doc/bash/examples/x",
		"usr/share/zoneinfo/UTC",
	} {
		p := filepath.Join(root, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	}
	require.NoError(t, os.Symlink("bash", filepath.Join(root, "usr/share/doc/bash-builtins")))
	require.NoError(t, pruneExcludedPaths(root))

	var left []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			left = append(left, rel)
		}
		return err
	}))
	require.ElementsMatch(t, []string{"usr/share/doc/bash/copyright", "usr/share/zoneinfo/UTC"}, left)
	for _, d := range []string{"usr/share/man", "usr/share/locale", "usr/share/info"} {
		st, err := os.Stat(filepath.Join(root, d))
		require.NoError(t, err, "the directory itself stays")
		require.True(t, st.IsDir())
	}
}

func TestWriteHostKeys(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeHostKeys(dir))
	for _, kind := range []string{"rsa", "ecdsa", "ed25519"} {
		path := filepath.Join(dir, "ssh_host_"+kind+"_key")
		priv, err := os.ReadFile(path)
		require.NoError(t, err)
		st, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "sshd refuses a readable host key")
		signer, err := ssh.ParsePrivateKey(priv)
		require.NoError(t, err, kind)
		pubLine, err := os.ReadFile(path + ".pub")
		require.NoError(t, err)
		pub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
		require.NoError(t, err)
		require.Equal(t, signer.PublicKey().Marshal(), pub.Marshal(), kind)
	}
}

func TestMarkUpdatesDone(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr", "etc", "var"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	require.NoError(t, markUpdatesDone(root, now))
	usr, err := os.Stat(filepath.Join(root, "usr"))
	require.NoError(t, err)
	require.Equal(t, now.Truncate(time.Second), usr.ModTime().UTC())
	for _, d := range []string{"etc", "var"} {
		p := filepath.Join(root, d, ".updated")
		st, err := os.Stat(p)
		require.NoError(t, err)
		// systemd's ConditionNeedsUpdate is false when /usr is not newer
		// than the stamp, by its time and then by TIMESTAMP_NSEC.
		require.Equal(t, usr.ModTime(), st.ModTime())
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Contains(t, string(b), "\nTIMESTAMP_NSEC=1795953600000000000\n")
	}
}

func TestCustomizeRootfs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr", "etc", "var", "root"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:$y$hash:20000:0:99999:7:::\n"), 0o640))
	require.NoError(t, customizeRootfs(root, "ssh-ed25519 AAAA test"))

	for _, unit := range []string{"getty@.service", "systemd-pstore.service", "modprobe@drm.service"} {
		target, err := os.Readlink(filepath.Join(root, "etc/systemd/system", unit))
		require.NoError(t, err, unit)
		require.Equal(t, "/dev/null", target, unit)
	}
	target, err := os.Readlink(filepath.Join(root, "etc/systemd/system-generators/systemd-gpt-auto-generator"))
	require.NoError(t, err)
	require.Equal(t, "/dev/null", target)
	for _, kept := range []string{"systemd-fstab-generator", "systemd-getty-generator"} {
		_, err := os.Lstat(filepath.Join(root, "etc/systemd/system-generators", kept))
		require.ErrorIs(t, err, os.ErrNotExist, kept)
	}
	dropIn, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/ssh.service.d/socbox.conf"))
	require.NoError(t, err)
	require.Equal(t, "[Service]\nExecStartPre=\n", string(dropIn))
	st, err := os.Stat(filepath.Join(root, "etc/systemd/system/ssh.service.d"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(root, "root/.ssh"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	shadow, err := os.ReadFile(filepath.Join(root, "etc/shadow"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(shadow), "root:*:"))
	_, err = os.Stat(filepath.Join(root, "etc/.updated"))
	require.NoError(t, err)
}
