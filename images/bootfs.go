package images

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	fatfs12 "github.com/diskfs/go-diskfs/filesystem/fat12"
	fatfs16 "github.com/diskfs/go-diskfs/filesystem/fat16"
	fatfs32 "github.com/diskfs/go-diskfs/filesystem/fat32"
)

// bootFS is the FAT boot partition of a disk image (Raspberry Pi OS's
// bootfs), read and written with go-diskfs: no mount, no root.
type bootFS struct {
	file string
	part Partition
}

// open checks the partition's FAT (see checkFAT) and opens it; writable
// opens the disk read-write, which only a prepared copy ever is. The
// filesystem is read as the FAT type its boot sector says, so no other
// go-diskfs reader (ISO 9660, squashfs, ext4) sees the partition.
func (b bootFS) open(writable bool) (fsys filesystem.FileSystem, l *fatLayout, closeFn func() error, err error) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(b.file, flag, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	defer b.recoverDiskfs(&err) // first, so the file is closed after a panic too
	l, err = checkFAT(f, b.part.Start, b.part.Size)
	if err != nil {
		return nil, nil, nil, b.formatError(err)
	}
	storage := file.New(f, !writable)
	switch l.Type {
	case fat32:
		fsys, err = fatfs32.Read(storage, b.part.Size, b.part.Start, 512)
	case fat16:
		fsys, err = fatfs16.Read(storage, b.part.Size, b.part.Start, 512)
	default:
		fsys, err = fatfs12.Read(storage, b.part.Size, b.part.Start, 512)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("partition %d is not a FAT filesystem go-diskfs can read: %w", b.part.Index, err)
	}
	return fsys, l, f.Close, nil
}

func (b bootFS) formatError(err error) error {
	return &ImageFormatError{File: b.file, What: fmt.Sprintf("boot partition %d is not a sound FAT filesystem: %v", b.part.Index, err),
		Fix: "the image is damaged (or made to attack the host that reads it): fetch it again, or repair its boot partition with fsck.vfat on a copy"}
}

// recoverDiskfs turns a panic inside go-diskfs into an error naming the
// image and the partition: checkFAT refuses the malformed filesystems known
// to panic it, and this is the last line of defence for any other.
func (b bootFS) recoverDiskfs(err *error) {
	if r := recover(); r != nil {
		*err = b.formatError(fmt.Errorf("go-diskfs failed reading it: %v", r))
	}
}

// bootListing is the boot partition's file names, by lower-case path
// ("overlays/" for directories), with the names as stored.
type bootListing map[string]string

// list reads the root directory's names.
func (b bootFS) list() (_ bootListing, err error) {
	fsys, _, closeFn, err := b.open(false)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	defer b.recoverDiskfs(&err)
	out := bootListing{}
	ents, err := fsys.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() {
			out[strings.ToLower(name)+"/"] = name + "/"
			continue
		}
		out[strings.ToLower(name)] = name
	}
	return out, nil
}

// names returns the stored names matching a glob on lower-case names.
func (l bootListing) names(glob string) []string {
	var out []string
	for low, name := range l {
		if ok, _ := path.Match(glob, low); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (l bootListing) has(name string) (string, bool) {
	n, ok := l[strings.ToLower(name)]
	return n, ok
}

// maxBootFile bounds a file read from the boot partition: kernels and
// initramfs images are tens of MiB.
const maxBootFile = 256 << 20

// readFile reads one file from the boot partition.
func (b bootFS) readFile(name string) (_ []byte, err error) {
	fsys, l, closeFn, err := b.open(false)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	defer b.recoverDiskfs(&err)
	f, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("boot partition: %s: %w", name, err)
	}
	defer f.Close()
	if err := b.checkFileSize(f, name, l); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxBootFile+1))
	if err != nil {
		return nil, fmt.Errorf("boot partition: %s: %w", name, err)
	}
	if len(data) > maxBootFile {
		return nil, &ImageFormatError{File: b.file, What: fmt.Sprintf("%s on boot partition %d is larger than %d MiB", name, b.part.Index, maxBootFile>>20),
			Fix: "the image is damaged or not a board image"}
	}
	return data, nil
}

// checkFileSize refuses a file whose directory entry gives it more bytes
// than its cluster chain holds: go-diskfs would read past the chain's end
// (and panic).
func (b bootFS) checkFileSize(f filesystem.File, name string, l *fatLayout) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	chained, ok := f.(interface{ GetClusterChain() ([]uint32, error) })
	if !ok {
		return nil
	}
	chain, err := chained.GetClusterChain()
	if err != nil {
		return b.formatError(fmt.Errorf("%s: %w", name, err))
	}
	if st.Size() > int64(len(chain))*l.ClusterBytes {
		return b.formatError(fmt.Errorf("%s is %d bytes but its cluster chain holds %d", name, st.Size(), int64(len(chain))*l.ClusterBytes))
	}
	return nil
}

// writeFiles creates or replaces files in the boot partition's root.
func (b bootFS) writeFiles(files map[string][]byte) (err error) {
	if len(files) == 0 {
		return nil
	}
	fsys, _, closeFn, err := b.open(true)
	if err != nil {
		return err
	}
	defer b.recoverDiskfs(&err)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := fsys.OpenFile("/"+n, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
		if err != nil {
			closeFn()
			return fmt.Errorf("boot partition: create %s: %w", n, err)
		}
		if _, err := f.Write(files[n]); err != nil {
			f.Close()
			closeFn()
			return fmt.Errorf("boot partition: write %s: %w", n, err)
		}
		if err := f.Close(); err != nil {
			closeFn()
			return fmt.Errorf("boot partition: write %s: %w", n, err)
		}
	}
	if err := closeFn(); err != nil {
		return err
	}
	return b.fixFreeCount()
}

// fixFreeCount rewrites FAT32's FSInfo free-cluster count and next-free
// hint from the FAT itself: go-diskfs does not update them when it
// allocates clusters, and a stale count makes fsck.vfat (run at boot with
// fsck.repair=yes) rewrite the partition.
func (b bootFS) fixFreeCount() error {
	f, err := os.OpenFile(b.file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	l, err := checkFAT(f, b.part.Start, b.part.Size)
	if err != nil {
		return b.formatError(err)
	}
	if l.Type != fat32 || l.FSInfoSector == 0 {
		return nil // FAT12/16 have no FSInfo
	}
	fat, err := l.readFAT(f, b.part.Start)
	if err != nil {
		return err
	}
	var free, next uint32 = 0, 0xFFFFFFFF
	for c := int64(2); c < l.Clusters+2; c++ {
		if l.next(fat, c) == 0 {
			free++
			if next == 0xFFFFFFFF {
				next = uint32(c)
			}
		}
	}
	sec := make([]byte, 512)
	at := b.part.Start + l.FSInfoSector*l.BytesPerSector
	if _, err := f.ReadAt(sec, at); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(sec[0:]) != 0x41615252 || binary.LittleEndian.Uint32(sec[484:]) != 0x61417272 {
		return nil // not an FSInfo sector: leave it
	}
	binary.LittleEndian.PutUint32(sec[488:], free)
	binary.LittleEndian.PutUint32(sec[492:], next)
	_, err = f.WriteAt(sec, at)
	return err
}
