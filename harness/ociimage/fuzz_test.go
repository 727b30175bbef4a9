package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ociimage/ociimagetest"
)

// User images come from strangers: loading one and writing the archive the
// guest gets must fail cleanly on any input, never panic, never read
// outside the file, never allocate from a size the file claims.

// capWriter fails once more than its budget is written: an archive larger
// than its input would mean sizes taken on trust.
type capWriter struct{ left int64 }

var errTooMuch = errors.New("wrote more than the input could hold")

func (w *capWriter) Write(p []byte) (int, error) {
	if w.left -= int64(len(p)); w.left < 0 {
		return 0, errTooMuch
	}
	return len(p), nil
}

// fuzzLoad loads source for arm64 and, if that works, writes the guest's
// archive of it.
func fuzzLoad(t *testing.T, src Source, inputSize int64) {
	l, err := src.Load(context.Background(), boards.LinuxARM64)
	if err != nil {
		return
	}
	// Blobs are written once each, plus tar headers and socbox's own
	// index and manifest files.
	w := &capWriter{left: 4*inputSize + 1<<20}
	if err := WriteArchive(w, l.Image, l.Name); errors.Is(err, errTooMuch) {
		t.Fatalf("%s: the archive grew past what the input holds", src)
	}
}

// seedArchives are valid inputs: an OCI archive as socbox writes it, a
// layout as go-containerregistry writes it, and docker save's tarball.
func seedArchives(f *testing.F) (oci, layoutTar, docker []byte) {
	img := userImage(f, boards.LinuxARM64, "hello\n")
	var buf bytes.Buffer
	if err := WriteArchive(&buf, img, "example.com/app:1"); err != nil {
		f.Fatal(err)
	}
	oci = buf.Bytes()

	dir := filepath.Join(f.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		f.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		f.Fatal(err)
	}
	buf = bytes.Buffer{}
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		f.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	layoutTar = buf.Bytes()

	saved := filepath.Join(f.TempDir(), "saved.tar")
	ociimagetest.DockerSave(f, saved, img, "example.com/app:1")
	if docker, err = os.ReadFile(saved); err != nil {
		f.Fatal(err)
	}
	return oci, layoutTar, docker
}

func writeInput(t *testing.T, data []byte) string {
	p := filepath.Join(t.TempDir(), "input.tar")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzOCIArchive(f *testing.F) {
	oci, layoutTar, docker := seedArchives(f)
	for _, s := range [][]byte{oci, layoutTar, docker, nil, []byte("\x1f\x8b"), oci[:len(oci)/2]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzLoad(t, Source{Transport: TransportOCI, Path: writeInput(t, data)}, int64(len(data)))
	})
}

func FuzzDockerArchive(f *testing.F) {
	oci, _, docker := seedArchives(f)
	for _, s := range [][]byte{docker, oci, nil, docker[:len(docker)/2]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzLoad(t, Source{Transport: TransportDockerArchive, Path: writeInput(t, data)}, int64(len(data)))
	})
}

// FuzzOCILayout unpacks the input (a tar) into a layout directory, keeping
// regular files under clean relative names, and loads the directory.
func FuzzOCILayout(f *testing.F) {
	_, layoutTar, _ := seedArchives(f)
	f.Add(layoutTar)
	f.Add(layoutTar[:len(layoutTar)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "layout")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		var size int64
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			name := path.Clean(h.Name)
			if h.Typeflag != tar.TypeReg || !strings.HasPrefix(name, "blobs/") && name != "index.json" && name != "oci-layout" {
				continue
			}
			p := filepath.Join(dir, filepath.FromSlash(name))
			if os.MkdirAll(filepath.Dir(p), 0o700) != nil {
				continue
			}
			out, err := os.Create(p)
			if err != nil {
				continue
			}
			n, _ := io.Copy(out, io.LimitReader(tr, 1<<20))
			size += n
			out.Close()
		}
		fuzzLoad(t, Source{Transport: TransportOCI, Path: dir}, size)
	})
}
