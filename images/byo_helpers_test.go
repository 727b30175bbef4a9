package images

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The board images the tests use are built by images/imagetest, which
// documents the layouts they reproduce.

// testCache points socbox's cache at a temp dir for one test.
func testCache(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Setenv("SOCBOX_CACHE", d)
	return d
}

// readExt4 reads a file from the ext4 partition of a disk image.
func readExt4(t *testing.T, disk string, part Partition, p string) string {
	t.Helper()
	data, err := ext4Part{file: disk, offset: part.Start, size: part.Size}.readFile(t.Context(), p, maxTextFile)
	require.NoError(t, err, "read %s", p)
	return string(data)
}
