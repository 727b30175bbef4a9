package images

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// go-diskfs trusts a FAT boot sector: it sizes its tables from it (a zero
// FAT size panics, a large one allocates gigabytes) and follows cluster
// chains without looking for loops (one that loops appends forever). A
// boot partition comes from the user's image, so socbox checks the boot
// sector against Microsoft's FAT specification (fatgen103) and the
// partition's size, and the FAT for loops, before go-diskfs sees either.
// The few fields that matter are read by hand: go-diskfs is the library
// that trusts them.

const (
	fatMinClusters16 = 4085  // fewer clusters: FAT12
	fatMinClusters32 = 65525 // fewer clusters: FAT16 (on a FAT12/16 layout)
	// maxFATBytes bounds one copy of the FAT, which socbox and go-diskfs
	// read whole: 64 MiB maps 16M clusters, a 512 GiB partition with
	// 32 KiB clusters. Boot partitions are under a GiB, their FAT a few MiB.
	maxFATBytes = 64 << 20
)

// fatType is the kind of FAT, by the specification's rule: the count of
// clusters, on the layout the BPB has.
type fatType int

const (
	fat12 fatType = 12
	fat16 fatType = 16
	fat32 fatType = 32
)

// fatLayout is what a checked boot sector says about a FAT filesystem, in
// bytes from the partition's start.
type fatLayout struct {
	Type           fatType
	BytesPerSector int64
	ClusterBytes   int64
	FATStart       int64 // the first FAT
	FATBytes       int64 // one FAT's size
	FATs           int64
	Clusters       int64 // data clusters, numbered from 2
	RootCluster    uint32
	FSInfoSector   int64 // FAT32; 0 if none
}

// parseFATBootSector checks the first sector of a FAT partition of
// partSize bytes and returns its layout.
func parseFATBootSector(bs []byte, partSize int64) (*fatLayout, error) {
	if len(bs) < 512 {
		return nil, fmt.Errorf("boot sector is %d bytes, not 512", len(bs))
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, errors.New("no boot sector signature (0x55AA)")
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	l := &fatLayout{BytesPerSector: le16(11), FATs: int64(bs[16])}
	perCluster, reserved, rootEntries := int64(bs[13]), le16(14), le16(17)
	total, fatSectors := le16(19), le16(22)
	if total == 0 {
		total = le32(32)
	}
	fat32Layout := fatSectors == 0
	if fat32Layout {
		fatSectors = le32(36)
		l.RootCluster = uint32(le32(44))
		l.FSInfoSector = le16(48)
	}
	switch {
	case l.BytesPerSector != 512 && l.BytesPerSector != 1024 && l.BytesPerSector != 2048 && l.BytesPerSector != 4096:
		return nil, fmt.Errorf("%d bytes per sector (FAT has 512, 1024, 2048 or 4096)", l.BytesPerSector)
	case perCluster == 0 || perCluster&(perCluster-1) != 0:
		return nil, fmt.Errorf("%d sectors per cluster (FAT has a power of two)", perCluster)
	case perCluster*l.BytesPerSector > 64<<10:
		return nil, fmt.Errorf("%d-byte clusters (FAT has at most 64 KiB)", perCluster*l.BytesPerSector)
	case reserved == 0:
		return nil, errors.New("no reserved sectors (the boot sector is one)")
	case l.FATs != 1 && l.FATs != 2:
		return nil, fmt.Errorf("%d FATs (FAT has 1 or 2)", l.FATs)
	case fatSectors == 0:
		return nil, errors.New("a FAT of 0 sectors")
	case total == 0:
		return nil, errors.New("0 sectors in all")
	case total*l.BytesPerSector > partSize:
		return nil, fmt.Errorf("%d sectors of %d bytes, more than the %d-byte partition", total, l.BytesPerSector, partSize)
	case fat32Layout && rootEntries != 0:
		return nil, errors.New("a FAT32 layout with a fixed root directory")
	case !fat32Layout && rootEntries == 0:
		return nil, errors.New("a FAT12/16 layout without a root directory")
	}
	l.ClusterBytes = perCluster * l.BytesPerSector
	l.FATStart = reserved * l.BytesPerSector
	l.FATBytes = fatSectors * l.BytesPerSector
	rootDirSectors := (rootEntries*32 + l.BytesPerSector - 1) / l.BytesPerSector
	meta := reserved + l.FATs*fatSectors + rootDirSectors
	if meta >= total {
		return nil, fmt.Errorf("reserved sectors, FATs and root directory (%d sectors) fill all %d sectors", meta, total)
	}
	if l.FATBytes > maxFATBytes {
		return nil, fmt.Errorf("a %d-byte FAT, more than the %d socbox reads", l.FATBytes, maxFATBytes)
	}
	l.Clusters = (total - meta) / perCluster
	switch {
	case fat32Layout:
		// By the specification's rule a FAT32 has 65525 clusters or more,
		// but mkfs.vfat -F 32 makes smaller ones on small partitions, and
		// Linux and go-diskfs read them by their layout.
		l.Type = fat32
	case l.Clusters < fatMinClusters16:
		l.Type = fat12
	case l.Clusters < fatMinClusters32:
		l.Type = fat16
	default:
		return nil, fmt.Errorf("%d clusters on a FAT12/16 layout", l.Clusters)
	}
	if need := l.fatEntryOffset(l.Clusters + 2); need > l.FATBytes {
		return nil, fmt.Errorf("a %d-byte FAT, too small for %d clusters", l.FATBytes, l.Clusters)
	}
	if l.Type == fat32 {
		switch {
		case int64(l.RootCluster) < 2 || int64(l.RootCluster) >= l.Clusters+2:
			return nil, fmt.Errorf("root directory at cluster %d, outside clusters 2..%d", l.RootCluster, l.Clusters+1)
		case l.FSInfoSector >= reserved && l.FSInfoSector != 0xFFFF:
			return nil, fmt.Errorf("FSInfo at sector %d, outside the %d reserved sectors", l.FSInfoSector, reserved)
		}
		if l.FSInfoSector == 0xFFFF {
			l.FSInfoSector = 0
		}
	}
	return l, nil
}

// fatEntryOffset is where cluster n's entry starts in the FAT (FAT12 packs
// two entries in three bytes; the offset is rounded up).
func (l *fatLayout) fatEntryOffset(n int64) int64 {
	switch l.Type {
	case fat12:
		return (n*3 + 1) / 2
	case fat16:
		return n * 2
	}
	return n * 4
}

// next is the FAT entry of cluster n: the next cluster of its chain, or a
// marker (free, bad, end of chain) outside 2..Clusters+1.
func (l *fatLayout) next(fat []byte, n int64) int64 {
	switch l.Type {
	case fat12:
		v := int64(binary.LittleEndian.Uint16(fat[n*3/2:]))
		if n%2 == 1 {
			return v >> 4
		}
		return v & 0xFFF
	case fat16:
		return int64(binary.LittleEndian.Uint16(fat[n*2:]))
	}
	return int64(binary.LittleEndian.Uint32(fat[n*4:]) & 0x0FFFFFFF)
}

// readFAT reads the first FAT of the filesystem at start in r.
func (l *fatLayout) readFAT(r io.ReaderAt, start int64) ([]byte, error) {
	// One more byte: FAT12's last entry is read as a 16-bit word.
	fat := make([]byte, l.FATBytes+1)
	if _, err := r.ReadAt(fat[:l.FATBytes], start+l.FATStart); err != nil {
		return nil, fmt.Errorf("read the FAT: %w", err)
	}
	return fat, nil
}

// entries is how many cluster entries the FAT holds. go-diskfs follows a
// chain to any of them, inside the data region or not.
func (l *fatLayout) entries() int64 {
	switch l.Type {
	case fat12:
		return l.FATBytes * 2 / 3
	case fat16:
		return l.FATBytes / 2
	}
	return l.FATBytes / 4
}

// checkChains refuses a FAT in which a cluster chain loops: following it
// would never end. Every entry is visited once.
func (l *fatLayout) checkChains(fat []byte) error {
	const (
		unseen = iota
		onPath
		done
	)
	first, end := int64(2), l.entries()
	state := make([]uint8, end)
	valid := func(c int64) bool { return c >= first && c < end }
	for c := first; c < end; c++ {
		if state[c] != unseen {
			continue
		}
		x := c
		for valid(x) && state[x] == unseen {
			state[x] = onPath
			x = l.next(fat, x)
		}
		if valid(x) && state[x] == onPath {
			return fmt.Errorf("the cluster chain through cluster %d loops", x)
		}
		for x = c; valid(x) && state[x] == onPath; x = l.next(fat, x) {
			state[x] = done
		}
	}
	return nil
}

// checkFAT reads and checks the FAT filesystem of the partition at start,
// size bytes, in r.
func checkFAT(r io.ReaderAt, start, size int64) (*fatLayout, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, start); err != nil {
		return nil, fmt.Errorf("read the boot sector: %w", err)
	}
	l, err := parseFATBootSector(bs, size)
	if err != nil {
		return nil, fmt.Errorf("boot sector: %w", err)
	}
	fat, err := l.readFAT(r, start)
	if err != nil {
		return nil, err
	}
	if err := l.checkChains(fat); err != nil {
		return nil, fmt.Errorf("FAT: %w", err)
	}
	return l, nil
}
