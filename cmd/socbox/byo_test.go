package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/imagetest"
)

func TestImageInspectRaspberryPiOS(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	img := imagetest.RaspiOS{FileName: "raspios-bookworm-arm64-lite.img"}.Image(t)
	before := imagetest.SHA256File(t, img)

	out, _, err := socbox(t, t.Context(), "image", "inspect", img)
	require.NoError(t, err)
	for _, want := range []string{
		"image:       " + img + " (img, sha256 " + before + ")\n",
		"family:      raspios (Raspberry Pi OS: ssh (and userconf.txt) on the boot partition enable sshd)\n",
		"suite:       bookworm\n",
		"arch:        arm64\n",
		"first user:  pi (uid 1000, /home/pi)\n",
		"table:       MBR, disk id " + imagetest.DiskID + "\n",
		"boot files:  bcm2710-rpi-3-b-plus.dtb bcm2710-rpi-3-b.dtb bcm2711-rpi-4-b.dtb bootcode.bin cmdline.txt config.txt fixup.dat initramfs8 issue.txt kernel8.img overlays/ start.elf\n",
		"kernels:     kernel8.img (arm64)\n",
		"modules:     6.6.51+rpt-rpi-v8\n",
		"boards:      raspi3b, raspi3b-fast, raspi4b, raspi4b-fast\n",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "unpacked:", "a raw image is read in place")
	require.Regexp(t, `(?m)^  1  boot  vfat  bootfs  4 MiB\s+40 MiB  0x0c  `+imagetest.DiskID+`-01$`, out)
	require.Regexp(t, `(?m)^  2  root  ext4  rootfs  44 MiB\s+16 MiB  0x83  `+imagetest.DiskID+`-02$`, out)
	require.Equal(t, before, imagetest.SHA256File(t, img), "inspect never writes the image")

	// A compressed image is unpacked into the cache first; --json has it all.
	gz := imagetest.GzipFile(t, img)
	out, _, err = socbox(t, t.Context(), "image", "inspect", "--json", gz)
	require.NoError(t, err)
	var got struct {
		Source     images.Acquired   `json:"source"`
		Image      images.ImageInfo  `json:"image"`
		KernelArch map[string]string `json:"kernel_arch"`
		Boards     []string          `json:"boards"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, "gz", got.Source.Format)
	require.Equal(t, before, imagetest.SHA256File(t, got.Source.Disk))
	require.Equal(t, images.FamilyRaspiOS, got.Image.Family)
	require.Equal(t, map[string]string{"kernel8.img": "arm64"}, got.KernelArch)
	require.Equal(t, []string{"raspi3b", "raspi3b-fast", "raspi4b", "raspi4b-fast"}, got.Boards)
}

func TestImageInspectBeagleBone(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	out, _, err := socbox(t, t.Context(), "image", "inspect", imagetest.BeagleBone(t))
	require.NoError(t, err)
	require.Contains(t, out, "family:      debian (Debian: sshd enabled and the key written in the root filesystem)\n")
	require.Contains(t, out, "arch:        armhf\n")
	require.Contains(t, out, "first user:  debian (uid 1000, /home/debian)\n")
	require.Contains(t, out, "kernels:     /boot/vmlinuz-5.10.168-ti-r72 (arm)\n")
	require.Contains(t, out, "boards:      beaglebone-black, beaglebone-black-fast\n")
	require.NotContains(t, out, "boot files:")
	require.Regexp(t, `(?m)^  1  root  ext4  rootfs  4 MiB\s+16 MiB  0x83  5eb0b0e0-01$`, out)
}

func TestImageInspectBadInput(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	_, stderr, err := socbox(t, cancelled(), "image", "inspect")
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "give one image file or URL")

	notImage := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(notImage, []byte("not a disk"), 0o644))
	_, _, err = socbox(t, cancelled(), "image", "inspect", notImage)
	require.ErrorContains(t, err, notImage+": not a disk image socbox recognises")
}

func TestImagePrepare(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SOCBOX_CACHE", cache)
	img := imagetest.RaspiOS{FileName: "raspios-bookworm-arm64-lite.img"}.Image(t)
	before := imagetest.SHA256File(t, img)

	out, stderr, err := socbox(t, t.Context(), "image", "prepare", "--board", "raspi3b", "--sha256", before, img)
	require.NoError(t, err, stderr)
	m := regexp.MustCompile(`^(byo-raspios-raspi3b-` + before[:12] + `-[0-9a-f]{12})\t(\S+)\t\(\d+\.\ds\)\n$`).FindStringSubmatch(out)
	require.NotNil(t, m, "prints name, dir and time: %q", out)
	name, dir := m[1], m[2]
	require.Equal(t, filepath.Join(cache, "images", name), dir)
	require.Equal(t, before, imagetest.SHA256File(t, img), "the source is never written")

	im, err := images.LoadImage(dir)
	require.NoError(t, err)
	require.Equal(t, "raspi3b", im.Board)
	require.Equal(t, "raspios", im.Family)
	require.Equal(t, "bookworm", im.Suite)
	require.Equal(t, "board.dtb", im.DTB, "raspi3b boots the image's own kernel and device tree")

	// The key `socbox boot` and `run` log in with is the one authorized.
	signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, "ssh", "id_ed25519"))
	require.NoError(t, err)
	info, err := images.Inspect(t.Context(), im.Path(im.Disk))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(sshx.AuthorizedKey(signer))+"\n", imagetest.ReadExt4(t, im.Path(im.Disk), info.Root.Start, "/root/.ssh/authorized_keys"))
	require.Greater(t, info.Root.Size, int64(2<<30), "the root filesystem has room for containerd")

	// A second prepare is a cache hit, and `image ls` lists the copy.
	start := time.Now()
	again, _, err := socbox(t, t.Context(), "image", "prepare", "--board", "raspi3b", img)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(again, name+"\t"+dir+"\t"), again)
	require.Less(t, time.Since(start), 10*time.Second)
	ls, _, err := socbox(t, t.Context(), "image", "ls")
	require.NoError(t, err)
	require.Contains(t, ls, name)

	// The wrong board: Acquire and Prepare say what is wrong and the fix.
	_, _, err = socbox(t, t.Context(), "image", "prepare", "--board", "beaglebone-black", img)
	require.EqualError(t, err, img+": the image is arm64 but board beaglebone-black runs armhf; use raspi3b or raspi3b-fast or raspi4b or raspi4b-fast")
}

func TestImagePrepareBadArguments(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	img := filepath.Join(t.TempDir(), "x.img")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{img}, "--board is required"},
		{[]string{"--board", "raspi3b"}, "give one image file or URL"},
		{[]string{"--board", "nope", img}, `unknown board "nope"`},
		{[]string{"--board", "raspi3b", "--sha256", "abc", img}, `--sha256 "abc" is not 64 hex digits`},
		{[]string{"--board", "raspi3b", img, "--sha256", "abc"}, `--sha256 "abc" is not 64 hex digits`},
		{[]string{"--board", "raspi3b", img, "--", "--sha256"}, "give one image file or URL"},
	} {
		_, stderr, err := socbox(t, cancelled(), append([]string{"image", "prepare"}, tc.args...)...)
		require.Equal(t, exitCode(2), err, tc.args)
		require.Contains(t, stderr, tc.want)
	}
	_, _, err := socbox(t, cancelled(), "image", "prepare", "--board", "raspi3b", img)
	require.ErrorContains(t, err, "acquire "+img+": stat "+img+": no such file or directory")
}

func TestRunWithImageFailsBeforeBooting(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SOCBOX_CACHE", cache)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")

	missing := filepath.Join(dir, "2025-05-13-raspios-bookworm-arm64-lite.img.xz")
	stdout, stderr, err := socbox(t, cancelled(), "run", "--board", "raspi3b", "--image", missing, "--out", out)
	require.Equal(t, exitCode(2), err)
	require.Equal(t, "socbox run: acquire "+missing+": stat "+missing+": no such file or directory\nnothing was booted\n", stderr)
	require.Empty(t, stdout)
	require.NoDirExists(t, out)

	// A file that is not the one published: the checksum says so.
	img := filepath.Join(dir, "raspios.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 4096), 0o644))
	wrong := strings.Repeat("0", 64)
	_, stderr, err = socbox(t, cancelled(), "run", "--board", "raspi3b", "--image", img, "--sha256", wrong, "--out", out)
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "socbox run: acquire "+img+": checksum mismatch: the file's sha256 is ")
	require.Contains(t, stderr, ", expected "+wrong+"; the file is damaged or not the one published: download it again\nnothing was booted\n")
	require.NoDirExists(t, out)
	require.NoDirExists(t, filepath.Join(cache, "images"), "nothing prepared")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", img, "--sha256", "xyz"}, `--sha256 "xyz" is not 64 hex digits`},
		{[]string{"--sha256", wrong}, "--sha256 goes with --image"},
		{[]string{"--password-hash", "$6$x$y"}, "--password-hash goes with --image"},
		{[]string{"--image", img, "--suite", "bookworm"}, "an --image keeps its own"},
	} {
		_, stderr, err := socbox(t, cancelled(), append([]string{"run", "--out", out}, tc.args...)...)
		require.Equal(t, exitCode(2), err, tc.args)
		require.Contains(t, stderr, tc.want)
	}
	require.NoDirExists(t, out)

	_, _, err = socbox(t, cancelled(), "boot", "--board", "raspi3b", "--image", missing)
	require.ErrorContains(t, err, "no such file or directory")
}

// fitUserImage and prepareUserImage are what `run --image` does before
// booting; called here directly so that no regression can reach a boot.
func TestPrepareUserImageForTheBoardsToRun(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	img := imagetest.RaspiOS{FileName: "raspios-bookworm-arm64-lite.img"}.Image(t)

	// A board named on purpose that cannot run the image: Prepare's error.
	bf := bootFlags{board: "beaglebone-black", imageFlags: imageFlags{image: img}}
	acq, err := bf.acquire(t.Context(), t.Logf)
	require.NoError(t, err)
	err = prepareUserImage(t.Context(), bf, acq, []boardPlan{{slug: "beaglebone-black"}}, t.Logf)
	require.EqualError(t, err, img+": the image is arm64 but board beaglebone-black runs armhf; use raspi3b or raspi3b-fast or raspi4b or raspi4b-fast")
	require.True(t, badImage(err), "exit status 2")

	// --board all leaves out the boards that cannot run it.
	bf.board = "all"
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	acq, plan, err := fitUserImage(t.Context(), bf, []boardPlan{{slug: "beaglebone-black"}, {slug: "raspi3b"}}, logf)
	require.NoError(t, err)
	require.Len(t, plan, 1)
	require.Equal(t, "raspi3b", plan[0].slug)
	require.Contains(t, lines, "image: leaving out beaglebone-black: it runs armhf, the image is arm64")
	require.NoError(t, prepareUserImage(t.Context(), bf, acq, plan, logf))
	require.Equal(t, "raspi3b", plan[0].image.Board)

	_, _, err = fitUserImage(t.Context(), bf, []boardPlan{{slug: "beaglebone-black"}, {slug: "beaglebone-black-fast"}}, logf)
	require.EqualError(t, err, img+": the image is arm64 and none of the boards to run (beaglebone-black, beaglebone-black-fast) runs arm64; see socbox image inspect for the boards that fit")
}
