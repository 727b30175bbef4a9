package images

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/imagetest"
)

// TestReadQcow2HeaderAgreesWithQemuImg reads qcow2 files qemu-img made and
// checks what socbox reads against what qemu-img info says.
func TestReadQcow2HeaderAgreesWithQemuImg(t *testing.T) {
	imagetest.NeedTools(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	require.NoError(t, os.WriteFile(base, make([]byte, 1<<20), 0o644))
	for _, tc := range []struct {
		name          string
		args          []string
		backing, data string
		version, bits uint32
	}{
		{name: "plain v3", args: nil, version: 3, bits: 16},
		{name: "plain v2", args: []string{"-o", "compat=0.10"}, version: 2, bits: 16},
		{name: "small clusters", args: []string{"-o", "cluster_size=512"}, version: 3, bits: 9},
		{name: "backing", args: []string{"-b", base, "-F", "raw"}, backing: base, version: 3, bits: 16},
		{name: "data file", args: []string{"-o", "data_file=" + base}, data: base, version: 3, bits: 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := filepath.Join(dir, tc.name+".qcow2")
			imagetest.Run(t, "qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, tc.args...), q, "1M")...)
			f, err := os.Open(q)
			require.NoError(t, err)
			defer f.Close()
			st, err := f.Stat()
			require.NoError(t, err)
			h, err := readQcow2Header(f, st.Size())
			require.NoError(t, err)
			require.Equal(t, tc.version, h.Version)
			require.Equal(t, tc.bits, h.ClusterBits)
			require.Equal(t, uint64(1<<20), h.Size)
			require.Equal(t, tc.backing != "", h.HasBacking)
			require.Equal(t, tc.backing, h.BackingFile)
			require.Equal(t, tc.data != "", h.HasDataFile)
			require.Equal(t, tc.data, h.DataFile)

			out, err := exec.Command("qemu-img", "info", "-U", "--output=json", q).Output()
			require.NoError(t, err)
			var info struct {
				VirtualSize uint64 `json:"virtual-size"`
				ClusterSize uint64 `json:"cluster-size"`
				BackingFile string `json:"backing-filename"`
				Specific    struct {
					Data struct {
						DataFile string `json:"data-file"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			require.NoError(t, json.Unmarshal(out, &info))
			require.Equal(t, info.VirtualSize, h.Size)
			require.Equal(t, info.ClusterSize, uint64(1)<<h.ClusterBits)
			require.Equal(t, info.BackingFile, h.BackingFile)
			require.Equal(t, info.Specific.Data.DataFile, h.DataFile)

			err = checkQcow2(q)
			if tc.backing == "" && tc.data == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// qcow2Bytes is the start of a qcow2 file: a header of version 2 or 3 and,
// for version 3, header extensions, in a 512-byte cluster.
func qcow2Bytes(version uint32, backing, dataFile string, incompatible uint64) []byte {
	b := make([]byte, 1024)
	be := binary.BigEndian
	copy(b, magicQcow2)
	be.PutUint32(b[4:], version)
	be.PutUint32(b[20:], 9)
	be.PutUint64(b[24:], 1<<20)
	if backing != "" {
		be.PutUint64(b[8:], 512)
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[512:], backing)
	}
	if version < 3 {
		return b
	}
	be.PutUint64(b[72:], incompatible)
	be.PutUint32(b[96:], 4)
	be.PutUint32(b[100:], qcow2V3HeaderLen)
	off := qcow2V3HeaderLen
	if dataFile != "" {
		be.PutUint32(b[off:], qcow2ExtDataFile)
		be.PutUint32(b[off+4:], uint32(len(dataFile)))
		copy(b[off+8:], dataFile)
	}
	return b
}

// FuzzQcow2Header reads arbitrary bytes as a qcow2 header: it never
// panics, and whatever it accepts, it reports the backing file and data
// file the header points at.
func FuzzQcow2Header(f *testing.F) {
	f.Add(qcow2Bytes(2, "", "", 0))
	f.Add(qcow2Bytes(2, "/etc/shadow", "", 0))
	f.Add(qcow2Bytes(3, "", "", 0))
	f.Add(qcow2Bytes(3, "json:{\"driver\":\"nbd\"}", "", 0))
	f.Add(qcow2Bytes(3, "", "/dev/sda", qcow2IncompatDataFile))
	f.Add(qcow2Bytes(3, "", "", qcow2IncompatDataFile))
	f.Add(qcow2Bytes(3, "", "", 1<<40))
	f.Add(qcow2Bytes(3, "", "", 0)[:80])
	f.Add([]byte("QFI\xfb"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := readQcow2Header(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		be := binary.BigEndian
		if h.Version != 2 && h.Version != 3 {
			t.Fatalf("accepted version %d", h.Version)
		}
		if h.ClusterBits < 9 || h.ClusterBits > 21 {
			t.Fatalf("accepted cluster_bits %d", h.ClusterBits)
		}
		if (be.Uint64(data[8:]) != 0 || be.Uint32(data[16:]) != 0) && !h.HasBacking {
			t.Fatal("a backing file went unnoticed")
		}
		if h.Version == 3 && be.Uint64(data[72:])&qcow2IncompatDataFile != 0 && !h.HasDataFile {
			t.Fatal("an external data file went unnoticed")
		}
		if len(h.BackingFile) > qcow2MaxBackingName {
			t.Fatalf("read a %d-byte backing file name", len(h.BackingFile))
		}
	})
}
