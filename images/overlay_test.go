package images

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNextPowerOfTwo(t *testing.T) {
	for in, want := range map[int64]int64{1: 1, 3: 4, 4096: 4096, 3 << 30: 4 << 30, 4<<30 + 1: 8 << 30} {
		require.Equal(t, want, NextPowerOfTwo(in), in)
	}
}

// An overlay grows the disk the guest sees and leaves the base image
// byte-for-byte unchanged.
func TestOverlayNeverWritesTheBase(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: run scripts/host-setup.sh")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	require.NoError(t, os.WriteFile(base, make([]byte, 3<<20), 0o444))
	before := fileSum(t, base)
	im := &Image{Dir: dir, Disk: "base.img", DiskFormat: "raw"}
	ctx := context.Background()
	vs, err := VirtualSize(ctx, im)
	require.NoError(t, err)
	require.Equal(t, int64(3<<20), vs)

	overlay := filepath.Join(dir, "run.qcow2")
	require.NoError(t, CreateOverlay(ctx, im, overlay, NextPowerOfTwo(vs)))
	out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", overlay).CombinedOutput()
	require.NoError(t, err, string(out))
	grown, err := VirtualSize(ctx, &Image{Dir: dir, Disk: "run.qcow2", DiskFormat: "qcow2"})
	require.NoError(t, err)
	require.Equal(t, int64(4<<20), grown)
	require.Equal(t, before, fileSum(t, base), "the base image was written")

	err = CreateOverlay(ctx, &Image{Dir: dir, Disk: "missing.img", DiskFormat: "raw"}, filepath.Join(dir, "x.qcow2"), 0)
	require.ErrorContains(t, err, "missing.img")
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// A kernel package that ships /lib/modules must land in usr/lib on a
// merged-/usr root, leaving the /lib symlink in place.
func TestMergeTreeKeepsMergedUsrSymlinks(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/lib/systemd/systemd"), []byte("init"), 0o755))
	require.NoError(t, os.Symlink("usr/lib", filepath.Join(root, "lib")))
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "lib/modules/6.1.0-50-arm64/kernel"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "lib/modules/6.1.0-50-arm64/kernel/ext4.ko"), []byte("ko"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "boot/vmlinuz-6.1.0-50-arm64"), []byte("k"), 0o644))

	require.NoError(t, mergeTree(src, root))
	target, err := os.Readlink(filepath.Join(root, "lib"))
	require.NoError(t, err, "/lib must still be a symlink")
	require.Equal(t, "usr/lib", target)
	b, err := os.ReadFile(filepath.Join(root, "usr/lib/modules/6.1.0-50-arm64/kernel/ext4.ko"))
	require.NoError(t, err)
	require.Equal(t, "ko", string(b))
	_, err = os.Stat(filepath.Join(root, "lib/systemd/systemd"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "boot/vmlinuz-6.1.0-50-arm64"))
	require.NoError(t, err)
}

// A saved disk names its backing file relative to itself: the cache
// moved to another path (restored by CI, another runner) still boots it
// on its own image, and a disk made on another file is told apart.
func TestBackingFileMovesWithTheCache(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: run scripts/host-setup.sh")
	}
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "cache")
	base := filepath.Join(root, "images", "debian-0123", "rootfs.img")
	saved := filepath.Join(root, "snapshots", "raspi4b-fast-0123", "disk.qcow2")
	require.NoError(t, os.MkdirAll(filepath.Dir(base), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(saved), 0o700))
	require.NoError(t, os.WriteFile(base, make([]byte, 1<<20), 0o444))
	require.NoError(t, CreateOverlayOn(ctx, base, "raw", saved, 0))
	require.NoError(t, CheckBacking(saved, base))

	require.NoError(t, RecordBackingRelative(ctx, saved, base, "raw"))
	moved := filepath.Join(t.TempDir(), "restored", "cache")
	require.NoError(t, os.MkdirAll(filepath.Dir(moved), 0o755))
	require.NoError(t, os.Rename(root, moved))
	movedBase := filepath.Join(moved, "images", "debian-0123", "rootfs.img")
	movedSaved := filepath.Join(moved, "snapshots", "raspi4b-fast-0123", "disk.qcow2")
	got, err := BackingFile(movedSaved)
	require.NoError(t, err)
	require.Equal(t, movedBase, filepath.Clean(got))
	require.NoError(t, CheckBacking(movedSaved, movedBase))
	// And QEMU opens it so: a run's overlay on the moved disk reads the
	// moved image.
	run := filepath.Join(t.TempDir(), "run.qcow2")
	require.NoError(t, CreateOverlayOn(ctx, movedSaved, "qcow2", run, 0))
	out, err := exec.Command("qemu-img", "info", "--backing-chain", run).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "../../images/debian-0123/rootfs.img")

	other := filepath.Join(moved, "images", "debian-4567", "rootfs.img")
	require.NoError(t, os.MkdirAll(filepath.Dir(other), 0o755))
	require.NoError(t, os.WriteFile(other, make([]byte, 1<<20), 0o444))
	require.ErrorContains(t, CheckBacking(movedSaved, other), "is backed by")

	// A disk saved with its backing file's absolute path, as before, is
	// not taken for one on the moved image.
	abs := filepath.Join(t.TempDir(), "abs.qcow2")
	require.NoError(t, CreateOverlayOn(ctx, filepath.Join(moved, "images", "debian-0123", "rootfs.img"), "raw", abs, 0))
	require.NoError(t, os.Rename(filepath.Join(moved, "images", "debian-0123"), filepath.Join(moved, "images", "debian-89ab")))
	require.Error(t, CheckBacking(abs, filepath.Join(moved, "images", "debian-89ab", "rootfs.img")))
}

// The relative name is made from where the folders really are, so a cache
// whose snapshots/ is a link to another disk still finds its image.
func TestBackingFileThroughALinkedFolder(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: run scripts/host-setup.sh")
	}
	ctx := context.Background()
	root, elsewhere := t.TempDir(), t.TempDir()
	base := filepath.Join(root, "images", "img", "rootfs.img")
	require.NoError(t, os.MkdirAll(filepath.Dir(base), 0o755))
	require.NoError(t, os.WriteFile(base, make([]byte, 1<<20), 0o444))
	require.NoError(t, os.MkdirAll(filepath.Join(elsewhere, "entry"), 0o700))
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(root, "snapshots")))
	saved := filepath.Join(root, "snapshots", "entry", "disk.qcow2")
	require.NoError(t, CreateOverlayOn(ctx, base, "raw", saved, 0))
	require.NoError(t, RecordBackingRelative(ctx, saved, base, "raw"))
	require.NoError(t, CheckBacking(saved, base))
	run := filepath.Join(t.TempDir(), "run.qcow2")
	require.NoError(t, CreateOverlayOn(ctx, saved, "qcow2", run, 0))
	out, err := exec.Command("qemu-img", "info", "--backing-chain", run).CombinedOutput()
	require.NoError(t, err, string(out))
}
