package debarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

func TestReadFileFromDeb(t *testing.T) {
	deb := writeTemp(t, "tool.deb", buildDeb(t, "tool", "1", "arm64", "", map[string]string{
		"usr/bin/tool":       "tool binary",
		"usr/sbin/tool-link": "->../bin/tool",
		"usr/lib/tool/abs":   "->/usr/bin/tool",
		"etc/tool/tool":      "config",
	}))
	ctx := context.Background()
	for _, member := range []string{"usr/bin/tool", "./usr/bin/tool", "/usr/bin/tool", "usr/sbin/tool-link", "usr/lib/tool/abs", "bin/tool", "sbin/tool-link"} {
		got, err := ReadFileFromDeb(ctx, deb, member)
		require.NoError(t, err, member)
		require.Equal(t, "tool binary", string(got), member)
	}

	_, err := ReadFileFromDeb(ctx, deb, "bin/other")
	require.ErrorContains(t, err, "no such file in the package")
	_, err = ReadFileFromDeb(ctx, deb, "opt/tool")
	require.ErrorContains(t, err, "(it has etc/tool/tool, usr/bin/tool)", "files with the same name are suggested")
	_, err = ReadFileFromDeb(ctx, deb, "usr/bin")
	require.ErrorContains(t, err, "not a regular file")

	_, err = ReadFileFromDeb(ctx, writeTemp(t, "not.deb", []byte("hello")), "x")
	require.ErrorContains(t, err, "not a .deb")
}

// goDeb builds a .deb in Go, with a gzip-compressed data.tar and ar member
// names in GNU style ("data.tar.gz/"), as some tools write them.
func goDeb(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var data bytes.Buffer
	gz := gzip.NewWriter(&data)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())

	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, body []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
		ar.Write(body)
		if len(body)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary/", []byte("2.0\n"))
	member("control.tar.gz/", []byte("odd")) // odd length: exercises padding
	member("data.tar.gz/", data.Bytes())
	return ar.Bytes()
}

func TestReadFileFromDebGzipInGo(t *testing.T) {
	deb := writeTemp(t, "go.deb", goDeb(t, map[string]string{"bin/busybox": "\x7fELF..."}))
	got, err := ReadFileFromDeb(context.Background(), deb, "bin/busybox")
	require.NoError(t, err)
	require.Equal(t, "\x7fELF...", string(got))
}

func TestExtractDeb(t *testing.T) {
	deb := writeTemp(t, "tool.deb", buildDeb(t, "tool", "1", "arm64", "", map[string]string{
		"usr/bin/tool": "tool binary",
		"usr/bin/link": "->tool",
	}))
	dest := filepath.Join(t.TempDir(), "root")
	require.NoError(t, ExtractDeb(context.Background(), deb, dest))
	got, err := os.ReadFile(filepath.Join(dest, "usr", "bin", "link"))
	require.NoError(t, err)
	require.Equal(t, "tool binary", string(got))
	_, err = os.Stat(filepath.Join(dest, "DEBIAN"))
	require.True(t, os.IsNotExist(err), "only the files are extracted, not the control data")

	err = ExtractDeb(context.Background(), writeTemp(t, "bad.deb", []byte("junk")), dest)
	require.ErrorContains(t, err, "dpkg-deb -x")
}
