package images

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
)

// KernelArch reads a kernel image's header and says which CPU it is for:
// "arm64" for an arm64 Image ("ARM\x64" at byte 56), "arm" for a 32-bit
// zImage (0x016f2818 at byte 36). Raspberry Pi OS ships kernel8.img and
// Debian ships vmlinuz gzip-compressed: the header is read through gzip.
func KernelArch(data []byte) (string, error) {
	head := data
	if bytes.HasPrefix(data, magicGzip) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return "", err
		}
		head = make([]byte, 64)
		n, err := io.ReadFull(zr, head)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return "", err
		}
		head = head[:n]
	}
	if len(head) >= 60 && string(head[56:60]) == "ARM\x64" {
		return "arm64", nil
	}
	if len(head) >= 40 && binary.LittleEndian.Uint32(head[36:]) == 0x016f2818 {
		return "arm", nil
	}
	return "", errors.New("neither an arm64 Image nor an ARM zImage header")
}
