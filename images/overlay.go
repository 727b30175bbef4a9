package images

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
)

// CreateOverlay makes a qcow2 file at path backed by the image's disk, so a
// run writes only to its overlay and never to the base. sizeBytes > 0 grows
// the virtual disk (the base is untouched; the guest sees zeros past it).
func CreateOverlay(ctx context.Context, im *Image, path string, sizeBytes int64) error {
	args := []string{"create", "-q", "-f", "qcow2", "-F", im.DiskFormat, "-b", im.Path(im.Disk), path}
	if sizeBytes > 0 {
		args = append(args, strconv.FormatInt(sizeBytes, 10))
	}
	out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create overlay %s over %s: %w: %s (is qemu-utils installed?)", path, im.Path(im.Disk), err, out)
	}
	return nil
}
