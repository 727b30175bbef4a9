package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Partition is one partition of a disk image, with what its first sectors
// say it holds.
type Partition struct {
	Index int   `json:"index"` // 1-based, as Linux numbers them
	Start int64 `json:"start"` // bytes from the start of the disk
	Size  int64 `json:"size"`  // bytes
	// TableType is the partition table's type: "0x0c" (MBR) or a GPT
	// type GUID.
	TableType string `json:"table_type"`
	// PartUUID is what root=PARTUUID= names: "xxxxxxxx-02" on MBR, the
	// partition GUID on GPT.
	PartUUID string `json:"partuuid"`
	// FS is the filesystem found in the partition: "vfat", "ext4" (ext2/3/4),
	// or "" when neither.
	FS string `json:"fs,omitempty"`
	// FSUUID and FSLabel are the filesystem's UUID (ext4; the volume ID on
	// FAT) and label.
	FSUUID  string `json:"fs_uuid,omitempty"`
	FSLabel string `json:"fs_label,omitempty"`
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// DiskLayout is a disk image's partition table.
type DiskLayout struct {
	Table      string      `json:"table"` // "mbr" or "gpt"
	DiskID     string      `json:"disk_id"`
	Size       int64       `json:"size"`
	Partitions []Partition `json:"partitions"`
}

// ErrNoPartitionTable is wrapped when a disk image has neither MBR nor GPT.
var ErrNoPartitionTable = errors.New("no partition table")

// ReadLayout reads a raw disk image's MBR or GPT partition table and looks
// at each partition's superblock. It only reads the file. A panic inside
// go-diskfs on a malformed table becomes an error naming the image.
func ReadLayout(file string) (_ *DiskLayout, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &ImageFormatError{File: file, What: fmt.Sprintf("unreadable partition table: go-diskfs failed reading it: %v", r),
				Fix: "the image is damaged (or made to attack the host that reads it): fetch it again"}
		}
	}()
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, err
	}
	if st.Size() < 1024 {
		return nil, &ImageFormatError{File: file, What: fmt.Sprintf("only %d bytes: too small to be a disk image", st.Size()),
			Fix: "the file is truncated: fetch it again"}
	}
	d, err := diskfs.Open(file, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("read partition table of %s: %w", file, err)
	}
	defer d.Close()
	noTable := &ImageFormatError{File: file, What: ErrNoPartitionTable.Error() + " (neither MBR nor GPT)",
		Fix: "pass the whole-disk image you would write to the SD card, not a single partition or filesystem"}
	table, err := d.GetPartitionTable()
	if err != nil || table == nil {
		return nil, fmt.Errorf("%w: %w", noTable, ErrNoPartitionTable)
	}
	lay := &DiskLayout{Size: st.Size()}
	switch t := table.(type) {
	case *gpt.Table:
		lay.Table = "gpt"
		lay.DiskID = strings.ToLower(t.GUID)
		for i, p := range t.Partitions {
			if p == nil || p.Type == gpt.Unused || p.Size == 0 {
				continue
			}
			lay.Partitions = append(lay.Partitions, Partition{
				Index: i + 1, Start: p.GetStart(), Size: int64(p.GetSize()),
				TableType: strings.ToLower(string(p.Type)), PartUUID: strings.ToLower(p.GUID),
			})
		}
	case *mbr.Table:
		lay.Table = "mbr"
		lay.DiskID = fmt.Sprintf("%08x", mbrDiskID(file))
		for i, p := range t.Partitions {
			if p == nil || p.Type == mbr.Empty || p.Size == 0 {
				continue
			}
			lay.Partitions = append(lay.Partitions, Partition{
				Index: i + 1, Start: p.GetStart(), Size: p.GetSize(),
				TableType: fmt.Sprintf("0x%02x", byte(p.Type)), PartUUID: fmt.Sprintf("%s-%02x", lay.DiskID, i+1),
			})
		}
	default:
		return nil, fmt.Errorf("%w: %w", noTable, ErrNoPartitionTable)
	}
	if len(lay.Partitions) == 0 {
		return nil, &ImageFormatError{File: file, What: "the " + strings.ToUpper(lay.Table) + " partition table lists no partitions",
			Fix: "the image is blank or damaged: fetch it again"}
	}
	f, err = os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for i := range lay.Partitions {
		p := &lay.Partitions[i]
		if p.End() > lay.Size {
			return nil, &ImageFormatError{File: file,
				What: fmt.Sprintf("partition %d ends at byte %d but the file has only %d bytes", p.Index, p.End(), lay.Size),
				Fix:  "the image is truncated: fetch it again and check its sha256"}
		}
		probeFS(f, p)
	}
	return lay, nil
}

// mbrDiskID is the 32-bit disk signature at offset 440 that Linux uses
// for MBR PARTUUIDs.
func mbrDiskID(file string) uint32 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 440); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// probeFS reads a partition's superblock: ext2/3/4's magic at byte 1080,
// or a FAT boot sector's signature and type string.
func probeFS(r io.ReaderAt, p *Partition) {
	sb := make([]byte, 2048)
	if _, err := r.ReadAt(sb, p.Start); err != nil {
		return
	}
	if binary.LittleEndian.Uint16(sb[1024+0x38:]) == 0xEF53 {
		p.FS = "ext4"
		u := sb[1024+0x68 : 1024+0x78]
		p.FSUUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		p.FSLabel = cString(sb[1024+0x78 : 1024+0x88])
		return
	}
	if sb[510] == 0x55 && sb[511] == 0xAA {
		switch {
		case bytes.HasPrefix(sb[82:], []byte("FAT32")):
			p.FS = "vfat"
			p.FSUUID = fmt.Sprintf("%04X-%04X", binary.LittleEndian.Uint16(sb[69:]), binary.LittleEndian.Uint16(sb[67:]))
			p.FSLabel = strings.TrimSpace(string(sb[71:82]))
		case bytes.HasPrefix(sb[54:], []byte("FAT1")):
			p.FS = "vfat"
			p.FSUUID = fmt.Sprintf("%04X-%04X", binary.LittleEndian.Uint16(sb[41:]), binary.LittleEndian.Uint16(sb[39:]))
			p.FSLabel = strings.TrimSpace(string(sb[43:54]))
		}
	}
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// BootPartition is the first FAT partition: Raspberry Pi OS's bootfs.
func (l *DiskLayout) BootPartition() (Partition, bool) {
	for _, p := range l.Partitions {
		if p.FS == "vfat" {
			return p, true
		}
	}
	return Partition{}, false
}

// RootPartition is the ext4 partition holding the root filesystem: the
// first one, as on Raspberry Pi OS (p2) and BeagleBone images (p1).
func (l *DiskLayout) RootPartition() (Partition, bool) {
	for _, p := range l.Partitions {
		if p.FS == "ext4" {
			return p, true
		}
	}
	return Partition{}, false
}
