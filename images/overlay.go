package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/socbox/socbox/harness/proc"
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
	out, err := proc.CombinedOutput(proc.CommandContext(ctx, "qemu-img", args...))
	if err != nil {
		return fmt.Errorf("create overlay %s over %s: %w: %s (is qemu-utils installed?)", path, backing, err, out)
	}
	return nil
}

// RecordBackingRelative makes the qcow2 file at path name its backing
// file (backing, of the given format) by a path relative to path's
// directory, as the cache's saved disks do: the disk and what it is made
// on move together when the cache is restored at another path or on
// another runner, and QEMU resolves a relative name against the
// directory of the file that holds it. Only the header is written (the
// data is the same; qemu-img rebase -u).
func RecordBackingRelative(ctx context.Context, path, backing, format string) error {
	rel, err := relativePath(filepath.Dir(path), backing)
	if err != nil {
		return fmt.Errorf("record the backing file of %s: %w", path, err)
	}
	out, err := proc.CombinedOutput(proc.CommandContext(ctx, "qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", format, "-b", rel, path))
	if err != nil {
		return fmt.Errorf("record the backing file of %s as %s: qemu-img rebase: %w: %s", path, rel, err, out)
	}
	return nil
}

// relativePath is target relative to dir, both taken where they really
// are: the kernel follows a symbolic link in a path before it applies the
// ".." after it, so a relative name made from the paths as written would
// miss when one of the cache's folders is a link.
func relativePath(dir, target string) (string, error) {
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	realTarget, err := filepath.EvalSymlinks(target)
	if err != nil {
		return "", err
	}
	return filepath.Rel(realDir, realTarget)
}

// BackingFile is the backing file the qcow2 file at path names, resolved
// as QEMU resolves it (a relative name against path's directory), or ""
// when it has none. It reads the header only, and opens no other file.
func BackingFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h, err := readQcow2Header(f, st.Size())
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	switch {
	case !h.HasBacking:
		return "", nil
	case h.BackingFile == "":
		return "", fmt.Errorf("read %s: its backing file's name is out of the file's bounds", path)
	case filepath.IsAbs(h.BackingFile):
		return h.BackingFile, nil
	}
	// Not filepath.Join: it would apply the name's ".." to the path as
	// written, where QEMU leaves them to the kernel, which applies them
	// after following a linked folder.
	return filepath.Dir(path) + string(filepath.Separator) + h.BackingFile, nil
}

// CheckBacking says whether the qcow2 file at path is backed by the file
// want, as QEMU would open it: a saved disk restored from another cache
// must be made on the image this cache holds, not on one at the path it
// was saved from.
func CheckBacking(path, want string) error {
	got, err := BackingFile(path)
	if err != nil {
		return err
	}
	if got == "" {
		return fmt.Errorf("%s has no backing file; expected %s", path, want)
	}
	gotSt, err := os.Stat(got)
	if err != nil {
		return fmt.Errorf("%s is backed by %s: %w", path, got, err)
	}
	wantSt, err := os.Stat(want)
	if err != nil {
		return err
	}
	if !os.SameFile(gotSt, wantSt) {
		return errors.New(path + " is backed by " + got + ", not " + want)
	}
	return nil
}

// VirtualSize is the size of the disk a guest sees for the image's disk.
func VirtualSize(ctx context.Context, im *Image) (int64, error) {
	out, err := proc.Output(proc.CommandContext(ctx, "qemu-img", "info", "--output=json", "-f", im.DiskFormat, im.Path(im.Disk)))
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
