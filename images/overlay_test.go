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
