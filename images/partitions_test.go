package images

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/imagetest"
)

// FuzzPartitionTable reads arbitrary bytes as a disk image's partition
// table (seeds: small MBR and GPT disks made by sfdisk): ReadLayout never
// panics, not even inside go-diskfs, and every partition it reports lies
// inside the file.
func FuzzPartitionTable(f *testing.F) {
	const diskSize = 256 * 512
	imagetest.NeedTools(f, "sfdisk")
	for _, table := range []string{
		"label: dos\nlabel-id: 0x1234abcd\nstart=64, size=64, type=c\nstart=128, size=100, type=83\n",
		"label: dos\nstart=64, size=64, type=5\nstart=128, size=60, type=83\n",
		"label: gpt\nstart=64, size=64, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nstart=128, size=60, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
	} {
		img := filepath.Join(f.TempDir(), "disk.img")
		require.NoError(f, os.WriteFile(img, nil, 0o644))
		require.NoError(f, os.Truncate(img, diskSize))
		imagetest.SFDisk(f, img, table)
		data, err := os.ReadFile(img)
		require.NoError(f, err)
		// The head alone: MBR, or GPT's header and entries (go-diskfs
		// reads the primary table only).
		f.Add(bytes.TrimRight(data[:34*512], "\x00"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input is the disk's head; the disk is 128 KiB at least, so
		// that the seeds' partitions are there.
		size := max(int64(len(data)), diskSize)
		img := filepath.Join(t.TempDir(), "disk.img")
		require.NoError(t, os.WriteFile(img, data, 0o644))
		require.NoError(t, os.Truncate(img, size))
		lay, err := ReadLayout(img)
		if err != nil {
			if strings.Contains(err.Error(), "go-diskfs failed") {
				t.Fatal(err)
			}
			return
		}
		for _, p := range lay.Partitions {
			if p.Start < 0 || p.Size <= 0 || p.End() > size {
				t.Fatalf("partition %d at %d, %d bytes, in a %d-byte file", p.Index, p.Start, p.Size, size)
			}
		}
	})
}
