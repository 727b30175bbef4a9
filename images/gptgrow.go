package images

import (
	"errors"
	"fmt"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// growGPTPartition moves the end of GPT partition index (1-based) to
// newEnd bytes in a prepared copy whose file has already been extended to
// its new size, and rewrites the table for that size with go-diskfs: the
// backup entries and header move to the new end of the file, both
// headers' CRCs and the protective MBR follow. Every other field of every
// entry (GUIDs, names, attributes) is written back as read.
func growGPTPartition(file string, index int, newEnd int64) (err error) {
	d, err := diskfs.Open(file, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	table, err := d.GetPartitionTable()
	if err != nil {
		return fmt.Errorf("read GPT: %w", err)
	}
	t, ok := table.(*gpt.Table)
	if !ok {
		return errors.New("not a GPT disk")
	}
	t.Resize(uint64(d.Size))
	var part *gpt.Partition
	for _, p := range t.Partitions {
		if p != nil && p.Index == index {
			part = p
		}
	}
	if part == nil {
		return fmt.Errorf("GPT has no partition %d", index)
	}
	sector := uint64(t.LogicalSectorSize)
	end := uint64(newEnd)/sector - 1
	if end > t.LastDataSector() {
		return fmt.Errorf("partition %d would end at sector %d, past the last usable sector %d", index, end, t.LastDataSector())
	}
	part.End = end
	part.Size = (end - part.Start + 1) * sector
	if err := d.Partition(t); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	return nil
}
