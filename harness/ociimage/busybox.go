// Package ociimage builds the container images socbox runs in a guest, on the
// host and in Go, reads users' images (OCI layouts, docker save tarballs,
// registries: see Source) for the guest's platform, and writes them as OCI
// image-layout archives that containerd's Import accepts. The guest needs no
// registry.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/socbox/socbox/boards"
)

// BusyboxApplets are the names linked to /bin/busybox in the Busybox image.
var BusyboxApplets = []string{
	"sh", "ls", "cat", "echo", "uname", "sleep", "head", "dd", "sha256sum",
	"grep", "mkdir", "rm", "cp", "mv", "env", "true", "false", "wc", "date",
	"id", "hostname", "mount", "ps", "nc", "wget", "ip", "ifconfig", "ping",
	"seq", "tr", "sed", "awk", "tee", "touch", "test", "[", "printf", "find",
	"xargs", "cut", "sort", "uniq", "df", "free", "top", "sync", "stat", "ln",
	"httpd", "nslookup", "kill", "basename", "dirname", "readlink",
}

// DefaultPath is the PATH the images set.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epoch is every timestamp in a built image, so that the same inputs give
// the same digest.
var epoch = time.Unix(0, 0).UTC()

// Busybox builds a one-layer image for p around the static busybox binary
// at busyboxPath: /bin/busybox with a symlink per applet, /tmp, /root and an
// /etc/passwd and /etc/group that know root. Cmd is ["sh"]. Media types are
// OCI throughout and all timestamps are fixed, so the digest depends only on
// the binary and p (and on the Go release's gzip, which is stable in
// practice).
func Busybox(busyboxPath string, p boards.Platform) (v1.Image, error) {
	if err := CheckStaticBinary(busyboxPath, p); err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}
	layerTar, err := busyboxRootfs(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: build layer: %w", p, err)
	}
	layer, err := gzipLayer(layerTar)
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "socbox ociimage.Busybox",
			Comment:   "static busybox with applet symlinks",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: epoch}
	cfg.OS = p.OS
	cfg.Architecture = p.Architecture
	cfg.Variant = p.Variant
	cfg.Config.Cmd = []string{"sh"}
	cfg.Config.Env = []string{"PATH=" + DefaultPath}
	cfg.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("busybox image for %s: %w", p, err)
	}
	return img, nil
}

// busyboxRootfs returns the uncompressed layer tar.
func busyboxRootfs(busybox []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := &layerWriter{tw: tar.NewWriter(&buf)}
	w.dir("bin", 0o755)
	w.file("bin/busybox", 0o755, busybox)
	for _, applet := range BusyboxApplets {
		w.symlink("bin/"+applet, "busybox")
	}
	w.dir("etc", 0o755)
	w.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	w.file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	w.dir("root", 0o700)
	w.dir("tmp", 0o1777) // world-writable with the sticky bit, as /tmp always is
	if w.err != nil {
		return nil, w.err
	}
	if err := w.tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layerWriter writes tar entries owned by root with fixed timestamps and
// keeps the first error.
type layerWriter struct {
	tw  *tar.Writer
	err error
}

func (w *layerWriter) entry(h *tar.Header, data []byte) {
	if w.err != nil {
		return
	}
	h.ModTime = epoch
	h.Format = tar.FormatUSTAR
	h.Size = int64(len(data))
	if w.err = w.tw.WriteHeader(h); w.err != nil {
		return
	}
	_, w.err = w.tw.Write(data)
}

func (w *layerWriter) dir(name string, mode int64) {
	w.entry(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}, nil)
}

func (w *layerWriter) file(name string, mode int64, data []byte) {
	w.entry(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, data)
}

func (w *layerWriter) symlink(name, target string) {
	w.entry(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

// gzipLayer compresses the layer once, here, so that the bytes (and digest)
// do not depend on how go-containerregistry would compress it.
func gzipLayer(uncompressed []byte) (v1.Layer, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// The gzip header carries no name and a zero mtime.
	if _, err := zw.Write(uncompressed); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
