package images

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// A qcow2 file can name other files for qemu-img to read: a backing file
// (whose data shows through every cluster the qcow2 does not hold) and an
// external data file (which holds all of it). A user's qcow2 that names
// /etc/shadow or a private key would have qemu-img copy that file of this
// machine into the disk the guest boots, and the guest has a network. So
// socbox reads the header itself and refuses both before qemu-img ever
// opens the file, and opens it with "backing": null as well.
//
// The header is QEMU's docs/interop/qcow2.txt. It is read by hand: no Go
// library reads qcow2, and socbox needs a handful of fields, with every
// offset and length checked against the file before it is used.

const (
	qcow2V2HeaderLen = 72
	qcow2V3HeaderLen = 104
	// qcow2IncompatDataFile is the incompatible-features bit that says the
	// guest's data lives in an external data file.
	qcow2IncompatDataFile = 1 << 2
	// qcow2IncompatKnown are the incompatible features QEMU 7.2 knows
	// (dirty, corrupt, external data file, compression type, extended
	// L2); qemu-img refuses a file with any other.
	qcow2IncompatKnown = 0x1f
	// Header extension types.
	qcow2ExtEnd      = 0x00000000
	qcow2ExtDataFile = 0x44415441
	// qcow2MaxBackingName is QEMU's limit on a backing file's name.
	qcow2MaxBackingName = 1023
)

// qcow2Header is what socbox reads of a qcow2 header.
type qcow2Header struct {
	Version      uint32
	ClusterBits  uint32
	Size         uint64 // the virtual disk's size
	CryptMethod  uint32
	Incompatible uint64
	// BackingFile is the backing file's name ("" if none); HasBacking is
	// set whenever the header points at one, even an unreadable one.
	BackingFile string
	HasBacking  bool
	// DataFile is the external data file's name from its header extension;
	// HasDataFile is set when the extension or the feature bit is there.
	DataFile    string
	HasDataFile bool
}

// readQcow2Header reads and checks the header of a qcow2 file of size
// bytes. It reads at most the first cluster and the backing file's name.
func readQcow2Header(r io.ReaderAt, size int64) (*qcow2Header, error) {
	head := make([]byte, qcow2V3HeaderLen)
	n, err := r.ReadAt(head, 0)
	if n < qcow2V2HeaderLen {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read the qcow2 header: %w", err)
	}
	head = head[:n]
	be := binary.BigEndian
	if string(head[:4]) != string(magicQcow2) {
		return nil, errors.New("not a qcow2 file (no QFI\\xfb magic)")
	}
	h := &qcow2Header{
		Version:     be.Uint32(head[4:]),
		ClusterBits: be.Uint32(head[20:]),
		Size:        be.Uint64(head[24:]),
		CryptMethod: be.Uint32(head[32:]),
	}
	backingOff, backingLen := be.Uint64(head[8:]), be.Uint32(head[16:])
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return nil, fmt.Errorf("cluster_bits %d is outside 9..21", h.ClusterBits)
	}
	cluster := int64(1) << h.ClusterBits
	headerLen := int64(qcow2V2HeaderLen)
	switch h.Version {
	case 2:
	case 3:
		if n < qcow2V3HeaderLen {
			return nil, fmt.Errorf("read the qcow2 version 3 header: %w", io.ErrUnexpectedEOF)
		}
		h.Incompatible = be.Uint64(head[72:])
		headerLen = int64(be.Uint32(head[100:]))
		if headerLen < qcow2V3HeaderLen || headerLen%8 != 0 || headerLen > cluster {
			return nil, fmt.Errorf("header_length %d is not a multiple of 8 between %d and the cluster size", headerLen, qcow2V3HeaderLen)
		}
	default:
		return nil, fmt.Errorf("qcow2 version %d (socbox reads versions 2 and 3)", h.Version)
	}
	h.HasDataFile = h.Incompatible&qcow2IncompatDataFile != 0

	if backingOff != 0 || backingLen != 0 {
		h.HasBacking = true
		if backingLen > 0 && backingLen <= qcow2MaxBackingName && backingOff < uint64(size) && uint64(size)-backingOff >= uint64(backingLen) {
			name := make([]byte, backingLen)
			if _, err := r.ReadAt(name, int64(backingOff)); err == nil {
				h.BackingFile = string(name)
			}
		}
	}

	// Header extensions follow the header, up to the end of the first
	// cluster: type, length, data padded to 8 bytes.
	end := min(cluster, size)
	if headerLen >= end {
		return h, nil
	}
	ext := make([]byte, end-headerLen)
	if n, err := r.ReadAt(ext, headerLen); n < len(ext) {
		return nil, fmt.Errorf("read the qcow2 header extensions: %w", err)
	}
	for off := 0; off+8 <= len(ext); {
		typ, l := be.Uint32(ext[off:]), be.Uint32(ext[off+4:])
		off += 8
		if typ == qcow2ExtEnd {
			break
		}
		if uint64(l) > uint64(len(ext)-off) {
			return nil, fmt.Errorf("header extension %#x of %d bytes runs past the first cluster", typ, l)
		}
		if typ == qcow2ExtDataFile {
			h.HasDataFile = true
			h.DataFile = string(ext[off : off+int(l)])
		}
		off += (int(l) + 7) &^ 7
	}
	return h, nil
}

// checkQcow2 refuses a qcow2 file socbox will not hand to qemu-img: one
// with a backing file or an external data file, an encrypted one, or one
// with features qemu-img cannot read.
func checkQcow2(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h, err := readQcow2Header(f, st.Size())
	if err != nil {
		return &ImageFormatError{File: file, What: "cannot read it as qcow2: " + err.Error(),
			Fix: "the file is truncated or corrupt: fetch it again"}
	}
	flatten := fmt.Sprintf("flatten it on a machine you trust, where the file it names is what you mean: qemu-img convert -O qcow2 %s flat.qcow2 (or qemu-img rebase -b '' %s), and pass the result", file, file)
	switch {
	case h.HasBacking:
		return &ImageFormatError{File: file,
			What: fmt.Sprintf("the qcow2 has a backing file (%q): qemu-img would copy that file of this machine into the image the guest boots; socbox refuses qcow2 files that name other files", h.BackingFile),
			Fix:  flatten}
	case h.HasDataFile:
		return &ImageFormatError{File: file,
			What: fmt.Sprintf("the qcow2 keeps its data in an external data file (%q): qemu-img would read that file of this machine into the image the guest boots; socbox refuses qcow2 files that name other files", h.DataFile),
			Fix:  flatten}
	case h.CryptMethod != 0:
		return &ImageFormatError{File: file, What: "the qcow2 is encrypted", Fix: "decrypt it into a plain qcow2 or raw image first (qemu-img convert, with its secret)"}
	case h.Incompatible&^qcow2IncompatKnown != 0:
		return &ImageFormatError{File: file, What: fmt.Sprintf("the qcow2 uses incompatible features %#x that qemu-img does not know", h.Incompatible&^qcow2IncompatKnown),
			Fix: "convert it with the qemu-img that made it: qemu-img convert -O raw"}
	}
	return nil
}

// qemuImgSource is how qemu-img opens a checked qcow2 file: as JSON options
// with "backing": null, so that whatever the header says, qemu-img opens
// no backing file (the check above already refused one).
func qemuImgSource(file string) (string, error) {
	b, err := json.Marshal(map[string]any{
		"driver":  "qcow2",
		"backing": nil,
		"file":    map[string]string{"driver": "file", "filename": file},
	})
	if err != nil {
		return "", err
	}
	return "json:" + string(b), nil
}
