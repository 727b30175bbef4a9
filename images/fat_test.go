package images

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/imagetest"
)

// fatSeeds are small FAT12, FAT16 and FAT32 filesystems made by
// mkfs.vfat, without their trailing zeros (the fuzz targets pad them back
// to the size their boot sector says).
func fatSeeds(f *testing.F) [][]byte {
	imagetest.NeedTools(f, "mkfs.vfat", "mcopy")
	dir := f.TempDir()
	hello := filepath.Join(dir, "hello.txt")
	require.NoError(f, os.WriteFile(hello, []byte("hello from the boot partition\n"), 0o644))
	var seeds [][]byte
	for _, fs := range []struct {
		bits string
		mib  int64
		copy bool // mtools refuses a FAT32 this small
	}{{"12", 2, true}, {"16", 4, true}, {"32", 2, false}} {
		img := filepath.Join(dir, "fat"+fs.bits+".img")
		require.NoError(f, os.WriteFile(img, nil, 0o644))
		require.NoError(f, os.Truncate(img, fs.mib<<20))
		imagetest.Run(f, "mkfs.vfat", "--invariant", "-F", fs.bits, "-s", "1", "-n", "BOOT", img)
		if fs.copy {
			imagetest.Run(f, "mcopy", "-i", img, hello, "::HELLO.TXT")
		}
		data, err := os.ReadFile(img)
		require.NoError(f, err)
		seeds = append(seeds, bytes.TrimRight(data, "\x00"))
	}
	return seeds
}

// FuzzFATBootSector checks the boot sector parser: it never panics, and a
// layout it accepts fits the partition and its FAT fits the clusters.
func FuzzFATBootSector(f *testing.F) {
	for _, s := range fatSeeds(f) {
		f.Add(s[:512], int64(4<<20))
	}
	f.Fuzz(func(t *testing.T, bs []byte, size int64) {
		l, err := parseFATBootSector(bs, size)
		if err != nil {
			return
		}
		if l.FATStart+l.FATs*l.FATBytes > size {
			t.Fatalf("FATs end at %d, past the %d-byte partition", l.FATStart+l.FATs*l.FATBytes, size)
		}
		if l.Clusters < 1 || l.fatEntryOffset(l.Clusters+2) > l.FATBytes || l.FATBytes > maxFATBytes {
			t.Fatalf("%d clusters, %d-byte FAT", l.Clusters, l.FATBytes)
		}
	})
}

// FuzzBootPartition reads arbitrary bytes as a boot partition the way
// Inspect and Prepare do (list it, read its files, write one): it never
// panics, not even inside go-diskfs (which bootFS would turn into an
// error), and never loops.
func FuzzBootPartition(f *testing.F) {
	for _, s := range fatSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 512 || len(data) > 1<<20 {
			return
		}
		size := int64(len(data))
		if l, err := parseFATBootSector(data[:512], 64<<20); err == nil {
			// The boot sector's size, so that its clusters are there.
			total := int64(binary.LittleEndian.Uint16(data[19:]))
			if total == 0 {
				total = int64(binary.LittleEndian.Uint32(data[32:]))
			}
			size = max(size, total*l.BytesPerSector)
		}
		img := filepath.Join(t.TempDir(), "boot.img")
		require.NoError(t, os.WriteFile(img, data, 0o644))
		require.NoError(t, os.Truncate(img, size))
		b := bootFS{file: img, part: Partition{Index: 1, Start: 0, Size: size}}
		noPanic := func(err error) {
			if err != nil && strings.Contains(err.Error(), "go-diskfs failed reading it") {
				t.Fatal(err)
			}
		}
		list, err := b.list()
		noPanic(err)
		if err != nil {
			return
		}
		for _, n := range list {
			if !strings.HasSuffix(n, "/") {
				_, err := b.readFile(n)
				noPanic(err)
			}
		}
		noPanic(b.writeFiles(map[string][]byte{"ssh": []byte("socbox\n")}))
	})
}

// TestBootFSReadsWhatItChecks reads the seed filesystems back: the checks
// refuse none of what mkfs.vfat makes.
func TestBootFSReadsWhatItChecks(t *testing.T) {
	imagetest.NeedTools(t, "mkfs.vfat", "mcopy")
	for bits, mib := range map[string]int64{"12": 2, "16": 4, "32": 4} {
		t.Run("FAT"+bits, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "boot.img")
			require.NoError(t, os.WriteFile(img, nil, 0o644))
			require.NoError(t, os.Truncate(img, mib<<20))
			imagetest.Run(t, "mkfs.vfat", "-F", bits, "-s", "1", img)
			b := bootFS{file: img, part: Partition{Index: 1, Size: mib << 20}}
			require.NoError(t, b.writeFiles(map[string][]byte{"ssh": []byte("on\n")}))
			data, err := b.readFile("ssh")
			require.NoError(t, err)
			require.Equal(t, "on\n", string(data))
		})
	}
}

// TestCheckChainsPastTheDataClusters is a FAT whose chain leaves the data
// clusters for entries past them, which go-diskfs follows all the same,
// and loops there.
func TestCheckChainsPastTheDataClusters(t *testing.T) {
	l := &fatLayout{Type: fat16, FATBytes: 64, Clusters: 10}
	fat := make([]byte, 65)
	binary.LittleEndian.PutUint16(fat[2*2:], 20)
	binary.LittleEndian.PutUint16(fat[20*2:], 21)
	binary.LittleEndian.PutUint16(fat[21*2:], 20)
	require.ErrorContains(t, l.checkChains(fat), "loops")
	binary.LittleEndian.PutUint16(fat[21*2:], 0xFFFF)
	require.NoError(t, l.checkChains(fat))
}
