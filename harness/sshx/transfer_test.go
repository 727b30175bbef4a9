package sshx_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
)

// The test server runs on this host, so "remote" paths are local ones.

func TestUploadDownloadRoundTrip(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "a dir", "it's nested")
	remote := filepath.Join(dir, "my file $(x).bin")
	data := make([]byte, 3<<20)
	_, err := rand.Read(data)
	require.NoError(t, err)

	require.NoError(t, c.Upload(ctx, bytes.NewReader(data), remote, 0o751))

	fi, err := os.Stat(remote)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o751), fi.Mode().Perm())

	var got bytes.Buffer
	require.NoError(t, c.Download(ctx, remote, &got))
	require.Equal(t, data, got.Bytes())

	// Uploading again replaces the file, mode included.
	require.NoError(t, c.Upload(ctx, strings.NewReader("small"), remote, 0o600))
	got.Reset()
	require.NoError(t, c.Download(ctx, remote, &got))
	require.Equal(t, "small", got.String())
	fi, err = os.Stat(remote)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	requireOnlyFile(t, dir, filepath.Base(remote))
}

var errBrokenSource = errors.New("broken source")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBrokenSource }

func TestUploadFromFailingReaderLeavesNothing(t *testing.T) {
	_, c := connect(t)
	dir := t.TempDir()
	remote := filepath.Join(dir, "file")
	src := io.MultiReader(strings.NewReader("the first half"), failingReader{})

	err := c.Upload(testContext(t), src, remote, 0o644)
	require.ErrorIs(t, err, errBrokenSource)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "neither a truncated file nor a temporary one")
}

func TestUploadErrorsSayWhy(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))

	err := c.Upload(ctx, strings.NewReader("x"), filepath.Join(blocker, "file"), 0o644)
	var cmdErr *sshx.CommandError
	require.ErrorAs(t, err, &cmdErr)
	require.ErrorContains(t, err, "upload "+filepath.Join(blocker, "file"))

	require.Error(t, c.Upload(ctx, strings.NewReader("x"), "some/dir/", 0o644))
}

func TestDownloadMissingFile(t *testing.T) {
	_, c := connect(t)
	var w bytes.Buffer
	err := c.Download(testContext(t), filepath.Join(t.TempDir(), "absent"), &w)
	var cmdErr *sshx.CommandError
	require.ErrorAs(t, err, &cmdErr)
	require.ErrorContains(t, err, "absent", "cat's complaint is in the error")
}

func requireOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left behind")
	require.Equal(t, name, entries[0].Name())
}
