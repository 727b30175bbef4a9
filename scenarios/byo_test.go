package scenarios

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// TestBringYourOwnImage hands socbox an SD card image the way a user
// would: a Raspberry-Pi-OS-shaped disk (MBR, FAT32 bootfs with
// kernel8.img, a Raspberry Pi 3 device tree, cmdline.txt, config.txt and
// overlays/, then an ext4 root), acquired, inspected and prepared without
// root, then booted with harness.WithImage and asked to run containers.
// The root filesystem is the default Debian image's and kernel8.img is
// Debian's arm64 kernel: the only Linux userland and kernel this machine
// can get. Runs on raspi3b-fast by default (SOCBOX_BYO_BOARD=raspi3b boots
// the image's own kernel on the faithful board instead).
func TestBringYourOwnImage(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	slug := os.Getenv("SOCBOX_BYO_BOARD")
	if slug == "" {
		slug = "raspi3b-fast"
	}
	if sel := selectedBoards(t); len(sel) != len(boards.Slugs()) && !contains(sel, slug) {
		t.Skipf("board %s not selected", slug)
	}
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/host-setup.sh", tool)
		}
	}
	prof, err := boards.Lookup(slug)
	require.NoError(t, err)
	ctx := t.Context()
	cache, err := images.CacheDir()
	require.NoError(t, err)
	signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, "ssh", "id_ed25519"))
	require.NoError(t, err)
	archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: t.Logf}
	def, err := images.BuildDefault(ctx, images.DefaultSpec{Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer), Archive: archive, Logf: t.Logf})
	require.NoError(t, err)

	img := raspiOSShapedImage(t, def)
	before := sha256Of(t, img)
	acq, err := images.Acquire(ctx, images.Source{Location: img, Logf: t.Logf})
	require.NoError(t, err)
	// A key the image never saw: the harness's own, authorized by Prepare.
	im, err := images.Prepare(ctx, images.PrepareSpec{Image: acq, Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer),
		Archive: archive, Logf: t.Logf, HeadroomMiB: 512})
	require.NoError(t, err)
	t.Logf("prepared %s: kernel %s, append %q", im.Name, im.KernelVersion, im.Append)

	b := harness.Boot(t, slug, harness.WithImage(im), harness.WithoutSnapshot(),
		harness.WithArtifactsDir(filepath.Join(outputDir(t), "byo-"+slug)))
	res, err := b.Run(ctx, harness.Container{Cmd: []string{"uname", "-m"}})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode)
	require.Equal(t, prof.Platform.UnameMachine()+"\n", string(res.Stdout))
	for _, s := range Bundled() {
		if !s.AppliesTo(b.Profile) {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			r := b.RunScenario(ctx, s)
			require.Empty(t, r.Failures, "scenario %s (stdout %q, stderr %q)", s.Name, clip(r.Stdout), clip(r.Stderr))
		})
	}
	require.Equal(t, before, sha256Of(t, img), "the user's image is never written")
}

// raspiOSShapedImage lays the default image's root filesystem out the way
// Raspberry Pi OS's SD card images are (see images/byo_helpers_test.go).
func raspiOSShapedImage(t *testing.T, def *images.Image) string {
	t.Helper()
	dir := t.TempDir()
	bootDir := filepath.Join(dir, "boot")
	require.NoError(t, os.MkdirAll(filepath.Join(bootDir, "overlays"), 0o755))
	kernel, err := os.ReadFile(def.Path(def.Kernel))
	require.NoError(t, err)
	dtb, err := debarchive.ReadFileFromDeb(t.Context(), def.Path(def.KernelDeb),
		"usr/lib/linux-image-"+def.KernelVersion+"/broadcom/bcm2837-rpi-3-b.dtb")
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"kernel8.img":         kernel,
		"bcm2837-rpi-3-b.dtb": dtb,
		"cmdline.txt":         []byte("console=serial0,115200 console=tty1 root=PARTUUID=5eb0c0de-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot net.ifnames=0 systemd.ssh_auto=no\n"),
		"config.txt":          []byte("arm_64bit=1\nenable_uart=1\n[all]\n"),
		"overlays/README":     []byte("device tree overlays\n"),
	} {
		require.NoError(t, os.WriteFile(filepath.Join(bootDir, name), data, 0o644))
	}
	const bootStart, bootSectors = 8192, 131072
	rootDisk := def.Path(def.Disk)
	st, err := os.Stat(rootDisk)
	require.NoError(t, err)
	rootStart := int64(bootStart + bootSectors)
	img := filepath.Join(dir, "raspios-shaped.img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(rootStart*512+st.Size()))
	require.NoError(t, f.Close())
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nlabel-id: 0x5eb0c0de\nstart=%d, size=%d, type=c\nstart=%d, type=83\n",
		bootStart, bootSectors, rootStart))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
	boot := filepath.Join(dir, "bootfs.img")
	out, err = exec.Command("mkfs.vfat", "-C", "-F", "32", "-n", "bootfs", boot, fmt.Sprint(bootSectors/2)).CombinedOutput()
	require.NoError(t, err, "mkfs.vfat: %s", out)
	ents, err := os.ReadDir(bootDir)
	require.NoError(t, err)
	args := []string{"-i", boot, "-s"}
	for _, e := range ents {
		args = append(args, filepath.Join(bootDir, e.Name()))
	}
	out, err = exec.Command("mcopy", append(args, "::")...).CombinedOutput()
	require.NoError(t, err, "mcopy: %s", out)
	sparseInto(t, img, boot, bootStart*512)
	sparseInto(t, img, rootDisk, rootStart*512)
	return img
}

// sparseInto writes src into dst at offset, skipping zero blocks (dst is
// a fresh sparse file).
func sparseInto(t *testing.T, dst, src string, offset int64) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer out.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !allZero(buf[:n]) {
			_, werr := out.WriteAt(buf[:n], offset+off)
			require.NoError(t, werr)
		}
		off += int64(n)
		if err != nil {
			break
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func sha256Of(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", p).Output()
	require.NoError(t, err)
	return strings.Fields(string(out))[0]
}
