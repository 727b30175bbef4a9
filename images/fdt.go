package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The flattened device tree format, from chapter 5 of the Devicetree
// Specification.
const (
	fdtMagic     = 0xd00dfeed
	fdtHeaderLen = 40 // version 17
	fdtBeginNode = 1
	fdtEndNode   = 2
	fdtProp      = 3
	fdtNop       = 4
	fdtEnd       = 9
)

// DeleteDTBNodes returns a copy of a device tree blob without the nodes at
// the given absolute paths (such as "/soc/serial@7e201000/bluetooth"; names
// include the unit address) and everything beneath them. Their tokens become
// FDT_NOP words, which the kernel and libfdt skip, so no offset or size in
// the blob has to change. The input is never modified.
//
// It exists for QEMU's raspi3b: the Raspberry Pi 3 device tree gives the
// PL011 UART to the Bluetooth driver (the bluetooth child node makes the UART
// a serdev controller, so no /dev/ttyAMA0 appears). Removing that node leaves
// the UART a plain tty that socbox can carry SSH over.
func DeleteDTBNodes(blob []byte, paths ...string) ([]byte, error) {
	nodes, err := dtbNodes(blob)
	if err != nil {
		return nil, fmt.Errorf("delete %s from device tree: %w", strings.Join(paths, ", "), err)
	}
	out := bytes.Clone(blob)
	for _, p := range paths {
		if p == "/" {
			return nil, errors.New("delete / from device tree: the root node cannot be deleted")
		}
		spans, ok := nodes[p]
		if !ok {
			return nil, fmt.Errorf("device tree has no node %s", p)
		}
		for _, s := range spans {
			for off := s.start; off < s.end; off += 4 {
				binary.BigEndian.PutUint32(out[off:], fdtNop)
			}
		}
	}
	return out, nil
}

// DTBHasNode reports whether a device tree blob has a node at the absolute
// path.
func DTBHasNode(blob []byte, path string) (bool, error) {
	nodes, err := dtbNodes(blob)
	if err != nil {
		return false, fmt.Errorf("look for %s in device tree: %w", path, err)
	}
	_, ok := nodes[path]
	return ok, nil
}

// dtbSpan is where a node lies in the blob: from its FDT_BEGIN_NODE token to
// just past its matching FDT_END_NODE.
type dtbSpan struct{ start, end int }

// dtbNodes checks the header, walks the structure block and returns where
// every node lies, by absolute path. A path maps to several spans only if a
// (malformed) tree repeats a name among siblings; deleting it removes them all.
func dtbNodes(blob []byte) (map[string][]dtbSpan, error) {
	if len(blob) < fdtHeaderLen {
		return nil, fmt.Errorf("truncated: %d bytes is shorter than the %d-byte header", len(blob), fdtHeaderLen)
	}
	be := binary.BigEndian
	if magic := be.Uint32(blob); magic != fdtMagic {
		return nil, fmt.Errorf("not a device tree blob: magic %#x, want %#x", magic, fdtMagic)
	}
	total, off, version, size := be.Uint32(blob[4:]), be.Uint32(blob[8:]), be.Uint32(blob[20:]), be.Uint32(blob[36:])
	switch {
	case uint64(total) > uint64(len(blob)):
		return nil, fmt.Errorf("truncated: header says %d bytes, have %d", total, len(blob))
	case version < 17: // older headers have no size_dt_struct
		return nil, fmt.Errorf("format version %d is older than 17", version)
	case off%4 != 0 || uint64(off)+uint64(size) > uint64(total):
		return nil, fmt.Errorf("malformed: structure block at offset %d, size %d, is unaligned or overruns %d bytes", off, size, total)
	}

	type openNode struct {
		path  string
		start int
	}
	nodes := map[string][]dtbSpan{}
	var stack []openNode
	pos, end := int(off), int(off)+int(size)
	for pos+4 <= end {
		switch tok := be.Uint32(blob[pos:]); tok {
		case fdtBeginNode:
			name, _, ok := bytes.Cut(blob[pos+4:end], []byte{0})
			if !ok {
				return nil, fmt.Errorf("malformed: node name at offset %d runs past the structure block", pos)
			}
			p := "/"
			if len(stack) > 0 {
				p = strings.TrimSuffix(stack[len(stack)-1].path, "/") + "/" + string(name)
			} else if len(nodes) > 0 {
				return nil, fmt.Errorf("malformed: second root node at offset %d", pos)
			}
			stack = append(stack, openNode{p, pos})
			pos += 4 + align4(len(name)+1)
		case fdtEndNode:
			if len(stack) == 0 {
				return nil, fmt.Errorf("malformed: FDT_END_NODE at offset %d closes no node", pos)
			}
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			pos += 4
			nodes[n.path] = append(nodes[n.path], dtbSpan{n.start, pos})
		case fdtProp:
			if pos+12 > end {
				return nil, fmt.Errorf("malformed: property at offset %d runs past the structure block", pos)
			}
			n := be.Uint32(blob[pos+4:])
			if uint64(n) > uint64(end-pos-12) {
				return nil, fmt.Errorf("malformed: %d-byte property value at offset %d runs past the structure block", n, pos)
			}
			pos += 12 + align4(int(n))
		case fdtNop:
			pos += 4
		case fdtEnd:
			if len(stack) > 0 {
				return nil, fmt.Errorf("malformed: FDT_END at offset %d inside node %s", pos, stack[len(stack)-1].path)
			}
			if len(nodes) == 0 {
				return nil, errors.New("malformed: no root node")
			}
			return nodes, nil
		default:
			return nil, fmt.Errorf("malformed: unknown token %#x at offset %d", tok, pos)
		}
	}
	return nil, errors.New("malformed: structure block ends without FDT_END")
}

func align4(n int) int { return (n + 3) &^ 3 }
