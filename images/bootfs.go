package images

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
)

// bootFS is the FAT boot partition of a disk image (Raspberry Pi OS's
// bootfs), read and written with go-diskfs: no mount, no root.
type bootFS struct {
	file string
	part Partition
}

// open opens the partition's filesystem; writable opens the disk
// read-write, which only a prepared copy ever is.
func (b bootFS) open(writable bool) (filesystem.FileSystem, func() error, error) {
	mode := diskfs.ReadOnly
	if writable {
		mode = diskfs.ReadWrite
	}
	d, err := diskfs.Open(b.file, diskfs.WithOpenMode(mode))
	if err != nil {
		return nil, nil, err
	}
	fsys, err := d.GetFilesystem(b.part.Index)
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("partition %d is not a FAT filesystem go-diskfs can read: %w", b.part.Index, err)
	}
	return fsys, d.Close, nil
}

// bootListing is the boot partition's file names, by lower-case path
// ("overlays/" for directories), with the names as stored.
type bootListing map[string]string

// list reads the root directory and the names in overlays/.
func (b bootFS) list() (bootListing, error) {
	fsys, closeFn, err := b.open(false)
	if err != nil {
		return nil, err
	}
	defer closeFn()
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

// readFile reads one file from the boot partition.
func (b bootFS) readFile(name string) ([]byte, error) {
	fsys, closeFn, err := b.open(false)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("boot partition: %s: %w", name, err)
	}
	return data, nil
}

// writeFiles creates or replaces files in the boot partition's root.
func (b bootFS) writeFiles(files map[string][]byte) error {
	if len(files) == 0 {
		return nil
	}
	fsys, closeFn, err := b.open(true)
	if err != nil {
		return err
	}
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
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, b.part.Start); err != nil {
		return err
	}
	if string(bs[82:87]) != "FAT32" {
		return nil // FAT12/16 have no FSInfo
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	bytesPerSector, perCluster, reserved, fats := le16(11), int64(bs[13]), le16(14), int64(bs[16])
	totalSectors, fatSectors, fsinfo := le32(32), le32(36), le16(48)
	if bytesPerSector == 0 || perCluster == 0 || fsinfo == 0 || fsinfo == 0xFFFF {
		return nil
	}
	clusters := (totalSectors - reserved - fats*fatSectors) / perCluster
	fat := make([]byte, (clusters+2)*4)
	if _, err := f.ReadAt(fat, b.part.Start+reserved*bytesPerSector); err != nil {
		return err
	}
	var free, next uint32 = 0, 0xFFFFFFFF
	for c := int64(2); c < clusters+2; c++ {
		if binary.LittleEndian.Uint32(fat[c*4:])&0x0FFFFFFF == 0 {
			free++
			if next == 0xFFFFFFFF {
				next = uint32(c)
			}
		}
	}
	sec := make([]byte, 512)
	at := b.part.Start + fsinfo*bytesPerSector
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
