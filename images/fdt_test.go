package images

import (
	"bytes"
	"encoding/binary"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// fdtWriter lays out a device tree blob by hand, token by token, the way dtc
// does: header, empty memory reservation map, structure block, strings block.
type fdtWriter struct{ structure, strings []byte }

func (w *fdtWriter) word(v uint32) { w.structure = binary.BigEndian.AppendUint32(w.structure, v) }

func (w *fdtWriter) padded(b []byte) {
	w.structure = append(w.structure, b...)
	for len(w.structure)%4 != 0 {
		w.structure = append(w.structure, 0)
	}
}

// node writes FDT_BEGIN_NODE, whatever body writes, then FDT_END_NODE.
func (w *fdtWriter) node(name string, body func()) {
	w.word(fdtBeginNode)
	w.padded([]byte(name + "\x00"))
	body()
	w.word(fdtEndNode)
}

func (w *fdtWriter) prop(name, value string) {
	w.word(fdtProp)
	w.word(uint32(len(value)))
	w.word(uint32(len(w.strings)))
	w.strings = append(w.strings, name+"\x00"...)
	w.padded([]byte(value))
}

// blob returns the whole DTB; the caller writes FDT_END (or, to test, not).
func (w *fdtWriter) blob() []byte {
	const rsvmap = 16 // one all-zero entry ends the memory reservation map
	structOff := fdtHeaderLen + rsvmap
	total := structOff + len(w.structure) + len(w.strings)
	var b []byte
	for _, v := range []int{
		fdtMagic, total, structOff, structOff + len(w.structure), fdtHeaderLen,
		17, 16, 0, len(w.strings), len(w.structure),
	} {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	b = append(b, make([]byte, rsvmap)...)
	return append(append(b, w.structure...), w.strings...)
}

// raspi3DTB is a cut-down Raspberry Pi 3 device tree: the PL011 UART with
// the bluetooth child socbox removes, UARTs named "serial" and "serial@1" so
// a prefix can't pass for a match, and a NOP like earlier edits leave behind.
func raspi3DTB() []byte {
	var w fdtWriter
	w.node("", func() {
		w.prop("compatible", "raspberrypi,3-model-b\x00brcm,bcm2837\x00")
		w.node("aliases", func() { w.prop("serial0", "/soc/serial@7e215040\x00") })
		w.node("soc", func() {
			w.node("serial@7e201000", func() {
				w.prop("compatible", "arm,pl011\x00arm,primecell\x00")
				w.prop("status", "okay\x00")
				w.node("bluetooth", func() {
					w.prop("compatible", "brcm,bcm43438-bt\x00")
					w.prop("max-speed", "\x00\x2d\xc6\xc0")
				})
			})
			w.node("serial", func() { w.prop("status", "disabled\x00") })
			w.node("serial@1", func() {})
			w.word(fdtNop)
			w.node("gpio@7e200000", func() {
				w.node("bt_pins", func() { w.prop("brcm,pins", "\x00\x00\x00\x20\x00\x00\x00\x21") })
			})
		})
		w.node("chosen", func() { w.prop("bootargs", "") })
	})
	w.word(fdtEnd)
	return w.blob()
}

var raspi3Nodes = []string{
	"/", "/aliases", "/chosen", "/soc", "/soc/gpio@7e200000", "/soc/gpio@7e200000/bt_pins",
	"/soc/serial", "/soc/serial@1", "/soc/serial@7e201000", "/soc/serial@7e201000/bluetooth",
}

func dtbPaths(t *testing.T, blob []byte) []string {
	t.Helper()
	nodes, err := dtbNodes(blob)
	require.NoError(t, err)
	return slices.Sorted(maps.Keys(nodes))
}

func TestDeleteDTBNodes(t *testing.T) {
	require.Equal(t, raspi3Nodes, dtbPaths(t, raspi3DTB()), "the test tree itself")
	for _, tc := range []struct {
		name  string
		paths []string
		gone  []string
	}{
		{"leaf with properties", []string{"/soc/serial@7e201000/bluetooth"},
			[]string{"/soc/serial@7e201000/bluetooth"}},
		{"node with subnodes", []string{"/soc/serial@7e201000"},
			[]string{"/soc/serial@7e201000", "/soc/serial@7e201000/bluetooth"}},
		{"two nodes", []string{"/soc/gpio@7e200000/bt_pins", "/aliases"},
			[]string{"/aliases", "/soc/gpio@7e200000/bt_pins"}},
		{"name that prefixes another", []string{"/soc/serial"}, []string{"/soc/serial"}},
		{"name with a prefix of its own", []string{"/soc/serial@1"}, []string{"/soc/serial@1"}},
		{"node and its child", []string{"/soc/serial@7e201000", "/soc/serial@7e201000/bluetooth"},
			[]string{"/soc/serial@7e201000", "/soc/serial@7e201000/bluetooth"}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := raspi3DTB()
			orig := bytes.Clone(in)
			out, err := DeleteDTBNodes(in, tc.paths...)
			require.NoError(t, err)
			require.Equal(t, orig, in, "input modified")

			kept := slices.DeleteFunc(slices.Clone(raspi3Nodes), func(p string) bool { return slices.Contains(tc.gone, p) })
			require.Equal(t, kept, dtbPaths(t, out))
			for _, p := range tc.gone {
				has, err := DTBHasNode(out, p)
				require.NoError(t, err)
				require.False(t, has, p)
			}

			// Every offset stays valid: same length, and the only changes are
			// words turned into FDT_NOP.
			require.Len(t, out, len(in))
			changed := 0
			for off := 0; off < len(in); off += 4 {
				if !bytes.Equal(in[off:off+4], out[off:off+4]) {
					require.Equal(t, uint32(fdtNop), binary.BigEndian.Uint32(out[off:]), "offset %d", off)
					changed++
				}
			}
			require.Equal(t, len(tc.gone) > 0, changed > 0)
		})
	}
}

func TestDeleteDTBNodesErrors(t *testing.T) {
	const bt = "/soc/serial@7e201000/bluetooth"
	withWords := func(words ...uint32) []byte {
		var w fdtWriter
		for _, v := range words {
			w.word(v)
		}
		return w.blob()
	}
	patched := func(off int, v uint32) []byte {
		b := raspi3DTB()
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name  string
		blob  []byte
		paths []string
		want  string
	}{
		{"missing path", raspi3DTB(), []string{"/aliases", "/soc/uart@7e201000"},
			"device tree has no node /soc/uart@7e201000"},
		{"unit address left off", raspi3DTB(), []string{"/soc/gpio"}, "device tree has no node /soc/gpio"},
		{"relative path", raspi3DTB(), []string{"soc"}, "device tree has no node soc"},
		{"root", raspi3DTB(), []string{"/"}, "delete / from device tree: the root node cannot be deleted"},
		{"bad magic", patched(0, 0xfeeddead), []string{bt},
			"delete " + bt + " from device tree: not a device tree blob: magic 0xfeeddead, want 0xd00dfeed"},
		{"old version", patched(20, 16), []string{bt}, "format version 16 is older than 17"},
		{"truncated", raspi3DTB()[:200], []string{bt}, "delete " + bt + " from device tree: truncated: header says"},
		{"truncated header", raspi3DTB()[:12], []string{bt}, "truncated: 12 bytes is shorter than the 40-byte header"},
		{"structure overruns blob", patched(36, 1<<20), []string{bt}, "malformed: structure block at offset 56"},
		{"unknown token", withWords(fdtBeginNode, 0, 7), []string{bt}, "malformed: unknown token 0x7 at offset 64"},
		{"unclosed node", withWords(fdtBeginNode, 0, fdtEnd), []string{bt}, "FDT_END at offset 64 inside node /"},
		{"stray end node", withWords(fdtEndNode), []string{bt}, "FDT_END_NODE at offset 56 closes no node"},
		{"two roots", withWords(fdtBeginNode, 0, fdtEndNode, fdtBeginNode, 0, fdtEndNode, fdtEnd), []string{bt},
			"second root node at offset 68"},
		{"no root", withWords(fdtNop, fdtEnd), []string{bt}, "malformed: no root node"},
		{"no end", withWords(fdtBeginNode, 0, fdtEndNode), []string{bt}, "structure block ends without FDT_END"},
		{"name past end", withWords(fdtBeginNode, 0x41414141), []string{bt}, "node name at offset 56 runs past"},
		{"property past end", withWords(fdtBeginNode, 0, fdtProp, 1000, 0, fdtEndNode, fdtEnd), []string{bt},
			"1000-byte property value at offset 64 runs past the structure block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.blob)
			out, err := DeleteDTBNodes(tc.blob, tc.paths...)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, out)
			require.Equal(t, orig, tc.blob, "input modified")
		})
	}
}

func TestDTBHasNode(t *testing.T) {
	blob := raspi3DTB()
	for path, want := range map[string]bool{
		"/": true, "/soc/serial@7e201000/bluetooth": true, "/soc/serial@7e201000/": false,
		"/soc/serial@7e2": false, "/bluetooth": false, "": false,
	} {
		has, err := DTBHasNode(blob, path)
		require.NoError(t, err)
		require.Equal(t, want, has, path)
	}
	_, err := DTBHasNode([]byte("\xd0\x0d\xfe\xedrpi3b"), "/soc")
	require.ErrorContains(t, err, "look for /soc in device tree: truncated")
}

// FuzzFDT walks arbitrary bytes as a device tree blob: dtbNodes never
// panics, every span it reports lies in the blob on a token boundary, and
// deleting a node it found always works.
func FuzzFDT(f *testing.F) {
	f.Add(raspi3DTB())
	f.Add(raspi3DTB()[:fdtHeaderLen])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		nodes, err := dtbNodes(blob)
		if err != nil {
			return
		}
		for p, spans := range nodes {
			for _, s := range spans {
				if s.start < 0 || s.end > len(blob) || s.start >= s.end || (s.end-s.start)%4 != 0 {
					t.Fatalf("node %s spans %d..%d of %d bytes", p, s.start, s.end, len(blob))
				}
			}
			if p == "/" {
				continue
			}
			if _, err := DeleteDTBNodes(blob, p); err != nil {
				t.Fatalf("delete %s, which dtbNodes found: %v", p, err)
			}
		}
	})
}
