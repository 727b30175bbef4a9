// Package images makes the disks socbox boots: the default Debian image
// built from Debian's packages, user-supplied board images, and the
// copy-on-write overlays every run writes to instead of its base image.
package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/socbox/socbox/boards"
)

// CacheDir is where socbox keeps images, packages and snapshots: $SOCBOX_CACHE
// if set, else <user cache dir>/socbox. Everything in it can be deleted; it
// is rebuilt on demand.
func CacheDir() (string, error) {
	if d := os.Getenv("SOCBOX_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir: %w (set SOCBOX_CACHE)", err)
	}
	return filepath.Join(d, "socbox"), nil
}

// Image is a bootable base image in the cache. Its files are never written:
// every run boots a qcow2 overlay on top of Disk.
type Image struct {
	Name     string          `json:"name"`
	Suite    string          `json:"suite"`
	Platform boards.Platform `json:"platform"`
	Dir      string          `json:"-"`
	Disk     string          `json:"disk"` // relative to Dir
	// DiskBytes is Disk's size when the image was made: a disk of any
	// other size was damaged since (truncated by a full file system, or a
	// copy of the cache cut short) and is never booted. Zero in images
	// made before socbox recorded it.
	DiskBytes  int64  `json:"disk_bytes,omitempty"`
	DiskFormat string `json:"disk_format"` // "raw" or "qcow2"
	Kernel     string `json:"kernel"`
	// KernelDeb is Debian's kernel package the image's kernel and modules
	// came from; each board's initrd and dtb are made from it.
	KernelDeb string `json:"kernel_deb,omitempty"`
	// DTB and Initrd are set on images that boot their own kernel (a
	// Raspberry Pi OS image on raspi3b): the device tree and initramfs
	// taken from the image's boot partition. Relative to Dir.
	DTB    string `json:"dtb,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// RootModules are set on images whose own kernel has its SD card or
	// ext4 drivers as modules and that ship no initramfs: EnsureBootFiles
	// builds socbox's initrd with these modules, read from the image's
	// /lib/modules/<KernelVersion>.
	RootModules []string `json:"root_modules,omitempty"`
	// Board is the board a user image was prepared for ("" for images any
	// board of the platform boots); Family is the user image's family.
	Board  string `json:"board,omitempty"`
	Family string `json:"family,omitempty"`
	// Append is the kernel command line, without the console.
	Append        string `json:"append"`
	KernelVersion string `json:"kernel_version"`
	// HostKeys are the guest sshd's public host keys, in authorized_keys
	// form, known from the build so SSH is pinned before first contact.
	HostKeys []string  `json:"host_keys"`
	User     string    `json:"user"`
	Key      string    `json:"key"`
	Inputs   any       `json:"inputs"`
	BuiltAt  time.Time `json:"built_at"`
	BuildSec float64   `json:"build_seconds"`
	// BuildPhases are the build's steps and their times.
	BuildPhases []BuildPhase `json:"build_phases,omitempty"`
}

// Path resolves a file of the image relative to its directory.
func (im *Image) Path(rel string) string {
	if rel == "" || filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(im.Dir, rel)
}

const manifestName = "image.json"

// A built or prepared image holds the guest sshd's private host keys (in
// its disk, and in the Debian base's tarball), the key socbox logs in
// with is authorized there, and image.json may hold the user's
// password_hash: the directory is the user's alone, and its files are
// read-only for the user too (they are never written once published).
const (
	imageDirMode  os.FileMode = 0o700
	imageFileMode os.FileMode = 0o400
)

// LoadImage reads an image's manifest from dir.
func LoadImage(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("read image manifest in %s: %w", dir, err)
	}
	im.Dir = dir
	if err := im.intact(); err != nil {
		return nil, err
	}
	return &im, nil
}

// ErrDamaged: an image in the cache is not as it was made; it is made
// again when next asked for.
var ErrDamaged = errors.New("the cached image is damaged")

// intact checks that the image's disk and kernel are there, the disk at
// the size it was made with.
func (im *Image) intact() error {
	for _, f := range []string{im.Disk, im.Kernel} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(im.Path(f)); err != nil {
			return fmt.Errorf("image %s: %w: %w (it is made again when next used; or delete %s)", im.Name, ErrDamaged, err, im.Dir)
		}
	}
	if im.DiskBytes == 0 {
		return nil
	}
	st, err := os.Stat(im.Path(im.Disk))
	if err != nil {
		return err
	}
	if st.Size() != im.DiskBytes {
		return fmt.Errorf("image %s: %w: its disk %s is %d bytes, %d when it was made (it is made again when next used; or delete %s)",
			im.Name, ErrDamaged, im.Path(im.Disk), st.Size(), im.DiskBytes, im.Dir)
	}
	return nil
}

func (im *Image) save(dir string) error {
	if im.Disk != "" && !filepath.IsAbs(im.Disk) {
		st, err := os.Stat(filepath.Join(dir, im.Disk))
		if err != nil {
			return fmt.Errorf("save image manifest: %w", err)
		}
		im.DiskBytes = st.Size()
	}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	// It may hold the user's password_hash: nobody else's to read.
	return os.WriteFile(filepath.Join(dir, manifestName), append(b, '\n'), 0o600)
}

// cacheKey hashes the JSON form of inputs: anything that changes what an
// image contains must be in them.
func cacheKey(inputs any) string {
	b, _ := json.Marshal(inputs)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ListImages returns the images in the cache.
func ListImages() ([]*Image, error) {
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(root, "images"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []*Image
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if im, err := LoadImage(filepath.Join(root, "images", e.Name())); err == nil {
			out = append(out, im)
		}
	}
	return out, nil
}
