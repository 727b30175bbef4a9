package images

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// CreateOverlay makes a qcow2 file at path backed by the image's disk, so a
// run writes only to its overlay and never to the base. sizeBytes > 0 grows
// the virtual disk (the base is untouched; the guest sees zeros past it).
func CreateOverlay(ctx context.Context, im *Image, path string, sizeBytes int64) error {
	return CreateOverlayOn(ctx, im.Path(im.Disk), im.DiskFormat, path, sizeBytes)
}

// CreateOverlayOn makes a qcow2 file at path backed by the disk file
// backing (of the given format), replacing any file at path.
func CreateOverlayOn(ctx context.Context, backing, format, path string, sizeBytes int64) error {
	_ = os.Remove(path)
	args := []string{"create", "-q", "-f", "qcow2", "-F", format, "-b", backing, path}
	if sizeBytes > 0 {
		args = append(args, strconv.FormatInt(sizeBytes, 10))
	}
	out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create overlay %s over %s: %w: %s (is qemu-utils installed?)", path, backing, err, out)
	}
	return nil
}

// VirtualSize is the size of the disk a guest sees for the image's disk.
func VirtualSize(ctx context.Context, im *Image) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", "-f", im.DiskFormat, im.Path(im.Disk)).Output()
	if err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", im.Path(im.Disk), err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", im.Path(im.Disk), err)
	}
	return info.VirtualSize, nil
}

// NextPowerOfTwo rounds n up to a power of two: the size an SD card must
// have on boards whose QEMU SD controller insists on it (raspi3b). Only the
// overlay grows; the base image is never touched.
func NextPowerOfTwo(n int64) int64 {
	p := int64(1)
	for p < n {
		p <<= 1
	}
	return p
}
