package scenarios

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/imagetest"
)

// TestBringYourOwnImage hands socbox an SD card image the way a user
// would: a Raspberry-Pi-OS-shaped disk (MBR, FAT32 bootfs with
// kernel8.img, a Raspberry Pi 3 device tree, cmdline.txt, config.txt and
// overlays/, then an ext4 root), acquired, inspected and prepared without
// root, then booted with harness.WithImage and asked to run containers.
// The root filesystem is the default Debian image's and kernel8.img is
// Debian's arm64 kernel: the only Linux userland and kernel this machine
// can get. Runs on the faithful raspi3b, which boots the image's own
// kernel; that kernel has its SD card and ext4 drivers as modules and the
// image ships no initramfs, so socbox builds an initrd from the modules in
// the image's root filesystem. And on raspi3b-fast, virt with the board's
// kernel and the image's root filesystem. SOCBOX_BYO_BOARD=raspi3b-fast
// (a comma-separated list) picks.
//
// Budget: the image is built byte-for-byte the same every run, so its
// prepared copy and raspi3b's provisioned disk (containerd installed,
// ~190 s under TCG) are cached; a warm run pays the boot (~100 s) and
// the scenarios.
func TestBringYourOwnImage(t *testing.T) {
	bootsVM(t)
	// Both ways an image boots: its own kernel (raspi3b) and the
	// profile's kernel with the image's root filesystem (raspi3b-fast).
	want := os.Getenv("SOCBOX_BYO_BOARD")
	if want == "" {
		want = "raspi3b,raspi3b-fast"
	}
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mcopy", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/host-setup.sh", tool)
		}
	}
	for _, slug := range strings.Split(want, ",") {
		t.Run(slug, func(t *testing.T) {
			if sel := selectedBoards(t); len(sel) != len(boards.Slugs()) && !slices.Contains(sel, slug) {
				t.Skipf("board %s not selected", slug)
			}
			bringYourOwnImage(t, slug)
		})
	}
}

func bringYourOwnImage(t *testing.T, slug string) {
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
	before := fileStamp(t, img)
	acq, err := images.Acquire(ctx, images.Source{Location: img, Logf: t.Logf})
	require.NoError(t, err)
	// A key the image never saw: the harness's own, authorized by Prepare.
	im, err := images.Prepare(ctx, images.PrepareSpec{Image: acq, Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer),
		Archive: archive, Logf: t.Logf, HeadroomMiB: 512})
	require.NoError(t, err)
	t.Logf("prepared %s: kernel %s, append %q", im.Name, im.KernelVersion, im.Append)
	if prof.Machine == "raspi3b" {
		// The image's own kernel, whose root drivers are modules: socbox's
		// initrd loads them from the image's /lib/modules.
		require.Empty(t, im.KernelDeb)
		require.Equal(t, def.KernelVersion, im.KernelVersion)
		require.Contains(t, im.RootModules, "sdhci_iproc")
		require.Contains(t, im.Append, "root=UUID=")
	}

	b := harness.Boot(t, slug, harness.WithImage(im),
		harness.WithArtifactsDir(filepath.Join(outputDir(t), "byo-"+slug)))
	res, err := b.Run(ctx, harness.Container{Cmd: []string{"uname", "-m"}})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode)
	require.Equal(t, prof.Platform.UnameMachine()+"\n", string(res.Stdout))
	runScenarios(t, b, nil, "the prepared image on "+slug)
	require.Equal(t, before, fileStamp(t, img), "the user's image is never written")
}

// fileStamp is what any write to a file changes: its size and its
// modification and change times (a change time cannot be set back).
// Hashing the 4 GiB image before and after would cost tens of seconds;
// images' unit tests check the same by digest on small images.
func fileStamp(t *testing.T, p string) string {
	t.Helper()
	st, err := os.Stat(p)
	require.NoError(t, err)
	sys, ok := st.Sys().(*syscall.Stat_t)
	require.True(t, ok)
	return fmt.Sprintf("size %d, mtime %d, ctime %d.%09d", st.Size(), st.ModTime().UnixNano(), sys.Ctim.Sec, sys.Ctim.Nsec)
}

// raspiOSShapedImage lays the default image's root filesystem out the way
// Raspberry Pi OS's SD card images are (see images/imagetest), with
// Debian's arm64 kernel as kernel8.img. The same default image gives the
// same bytes, so the prepared copy and the provisioned disk are reused.
func raspiOSShapedImage(t *testing.T, def *images.Image) string {
	t.Helper()
	kernel, err := os.ReadFile(def.Path(def.Kernel))
	require.NoError(t, err)
	dtb, err := debarchive.ReadFileFromDeb(t.Context(), def.Path(def.KernelDeb),
		"usr/lib/linux-image-"+def.KernelVersion+"/broadcom/bcm2837-rpi-3-b.dtb")
	require.NoError(t, err)
	return imagetest.SDCard{
		DiskID: "5eb0c0de",
		Boot: map[string]string{
			"kernel8.img":         string(kernel),
			"bcm2837-rpi-3-b.dtb": string(dtb),
			"cmdline.txt":         "console=serial0,115200 console=tty1 root=PARTUUID=5eb0c0de-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot net.ifnames=0 systemd.ssh_auto=no\n",
			"config.txt":          "arm_64bit=1\nenable_uart=1\n[all]\n",
			"overlays/README":     "device tree overlays\n",
		},
		BootMiB:  64,
		RootFS:   def.Path(def.Disk),
		FileName: "raspios-shaped.img",
	}.Image(t)
}
