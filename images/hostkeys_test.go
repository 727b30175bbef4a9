package images

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/images/imagetest"
)

// TestPrepareMakesAndPinsHostKeys is an image whose builder removed the
// sshd host keys (so its ssh.service fails at boot): Prepare makes them,
// writes them root's and 0600, and records their public keys for the
// harness to pin, turning off the image's own first-boot regeneration.
func TestPrepareMakesAndPinsHostKeys(t *testing.T) {
	testCache(t)
	regen := "etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service"
	img := imagetest.RaspiOS{
		RootFiles: map[string]string{"usr/lib/systemd/system/regenerate_ssh_host_keys.service": "[Service]\n", "etc/ssh/ssh.regenerate": ""},
		Links:     map[string]string{regen: "/usr/lib/systemd/system/regenerate_ssh_host_keys.service"},
	}.Image(t)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 16})
	require.NoError(t, err)
	require.Len(t, im.HostKeys, 2)

	again, err := LoadImage(im.Dir)
	require.NoError(t, err)
	require.Equal(t, im.HostKeys, again.HostKeys, "the pinned keys are in the prepared image's metadata")

	disk := im.Path(im.Disk)
	info, err := Inspect(t.Context(), disk)
	require.NoError(t, err)
	e := ext4Part{file: disk, offset: info.Root.Start}
	for i, kind := range []string{"ecdsa", "ed25519"} {
		p := "/etc/ssh/ssh_host_" + kind + "_key"
		signer, err := ssh.ParsePrivateKey([]byte(readExt4(t, disk, info.Root, p)))
		require.NoError(t, err, "sshd reads the private key (OpenSSH format)")
		pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(im.HostKeys[i]))
		require.NoError(t, err)
		require.True(t, bytes.Equal(signer.PublicKey().Marshal(), pinned.Marshal()), "the pinned key is the %s key", kind)
		require.Equal(t, im.HostKeys[i]+"\n", readExt4(t, disk, info.Root, p+".pub"))
		st, _, err := e.debugfs(t.Context(), maxDebugfsOut, "-R", "stat "+p)
		require.NoError(t, err)
		require.Contains(t, string(st), "Mode:  0600")
		require.Contains(t, string(st), "User:     0   Group:     0")
	}
	for _, gone := range []string{"/" + regen, "/etc/ssh/ssh.regenerate"} {
		n, err := e.lstat(t.Context(), gone)
		require.NoError(t, err)
		require.False(t, n.exists, "%s would make new host keys at first boot", gone)
	}
	n, err := e.lstat(t.Context(), "/etc/ssh/ssh_host_rsa_key")
	require.NoError(t, err)
	require.False(t, n.exists, "no RSA key unless sshd_config asks for one")
}

func TestPrepareHostKeysAsConfigured(t *testing.T) {
	testCache(t)
	for _, tc := range []struct {
		name   string
		image  imagetest.RaspiOS
		pinned []string // key types
	}{
		{name: "the image's own keys are kept, not pinned",
			image: imagetest.RaspiOS{RootFiles: map[string]string{"etc/ssh/ssh_host_ed25519_key": "private", "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA"}}},
		{name: "HostKey lines name the keys",
			image: imagetest.RaspiOS{RootFiles: map[string]string{
				"etc/ssh/sshd_config":             "Include /etc/ssh/sshd_config.d/*.conf\n# HostKey /etc/ssh/ssh_host_ecdsa_key\n",
				"etc/ssh/sshd_config.d/keys.conf": "HostKey /etc/ssh/keys/host_rsa_key\nhostkey \"/etc/ssh/keys/host_ed25519_key\"\n",
			}},
			pinned: []string{"ssh-rsa", "ssh-ed25519"}},
		{name: "cloud-init keeps socbox's keys", image: imagetest.RaspiOS{Suite: "trixie", CloudInit: true},
			pinned: []string{"ecdsa-sha2-nistp256", "ssh-ed25519"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acq, err := Acquire(t.Context(), Source{Location: tc.image.Image(t)})
			require.NoError(t, err)
			im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 16})
			require.NoError(t, err)
			var kinds []string
			for _, k := range im.HostKeys {
				kinds = append(kinds, strings.Fields(k)[0])
			}
			require.Equal(t, tc.pinned, kinds)
			info, err := Inspect(t.Context(), im.Path(im.Disk))
			require.NoError(t, err)
			if info.CloudInit {
				ud, err := bootFS{file: im.Path(im.Disk), part: *info.Boot}.readFile("user-data")
				require.NoError(t, err)
				require.Contains(t, string(ud), "ssh_deletekeys: false\nssh_genkeytypes: []\n")
			}
			if len(tc.pinned) == 0 {
				require.Equal(t, "private", readExt4(t, im.Path(im.Disk), info.Root, "/etc/ssh/ssh_host_ed25519_key"))
			}
		})
	}
}
