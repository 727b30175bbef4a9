package imagetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The scenario test relies on the same inputs giving the same card: its
// prepared copy and provisioned disk are cached by the card's digest.
func TestSDCardIsReproducible(t *testing.T) {
	NeedTools(t, "mkfs.ext4")
	rootfs := filepath.Join(t.TempDir(), "rootfs.img")
	tree := t.TempDir()
	WriteTree(t, tree, map[string]string{"etc/os-release": "ID=debian\n"})
	Run(t, "mkfs.ext4", "-q", "-F", "-d", tree, rootfs, "8M")
	card := SDCard{DiskID: "5eb0c0de", RootFS: rootfs, FileName: "card.img",
		Boot: map[string]string{"kernel8.img": ARM64Kernel(t, RaspiRelease), "overlays/README": "x"}}
	first := card.Image(t)
	second := card.Image(t)
	require.Equal(t, SHA256File(t, first), SHA256File(t, second))
	st, err := os.Stat(first)
	require.NoError(t, err)
	require.Equal(t, int64(8192+40<<11)*512+8<<20, st.Size())
}

func TestInitramfsRoundTrip(t *testing.T) {
	files := map[string]string{"init": "#!/bin/sh\n", "lib/modules/ext4.ko": "module"}
	require.Equal(t, files, ReadInitramfs(t, []byte(Initramfs(t, files))))
}
