package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ociimage/ociimagetest"
)

func TestParseSource(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Source
	}{
		{"oci:./img", Source{Transport: TransportOCI, Path: "./img"}},
		{"oci:/abs/img.tar:v1", Source{Transport: TransportOCI, Path: "/abs/img.tar", Ref: "v1"}},
		{"oci:img:example.com/app:1.0", Source{Transport: TransportOCI, Path: "img", Ref: "example.com/app:1.0"}},
		{"docker-archive:app.tar", Source{Transport: TransportDockerArchive, Path: "app.tar"}},
		{"docker-archive:app.tar:app:1", Source{Transport: TransportDockerArchive, Path: "app.tar", Ref: "app:1"}},
		{"docker://127.0.0.1:5000/test/app:1", Source{Transport: TransportRegistry, Ref: "127.0.0.1:5000/test/app:1"}},
		{"docker://alpine", Source{Transport: TransportRegistry, Ref: "alpine"}},
		{"docker://ghcr.io/a/b@sha256:" + strings.Repeat("ab", 32), Source{Transport: TransportRegistry, Ref: "ghcr.io/a/b@sha256:" + strings.Repeat("ab", 32)}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSource(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in, got.String())
			require.True(t, IsSource(tc.in))
		})
	}

	// Names of images already in the guest's containerd.
	for _, bare := range []string{"", "busybox", "socbox.local/busybox:latest", "localhost:5000/app:1", "docker:latest", "oci", "docker.io/library/alpine@sha256:" + strings.Repeat("cd", 32)} {
		_, err := ParseSource(bare)
		require.ErrorIs(t, err, ErrNotSource, bare)
		require.False(t, IsSource(bare), bare)
	}

	for _, tc := range []struct{ in, msg string }{
		{"oci:", `image source "oci:": no path: write oci:PATH[:REF]`},
		{"docker-archive::tag", `no path: write docker-archive:PATH[:REF]`},
		{"docker://", `no reference: write docker://REGISTRY/REPO:TAG`},
		{"docker://Bad/Name", `image source "docker://Bad/Name": could not parse reference: Bad/Name: write docker://REGISTRY/REPO:TAG`},
		{"oci-archive:img.tar", `unknown transport "oci-archive": use oci:PATH[:REF], docker-archive:PATH or docker://REGISTRY/REPO:TAG, or a bare name for an image already in the guest's containerd (oci:PATH reads OCI archives as well as layout directories)`},
		{"https://example.com/img.tar", `unknown transport "https"`},
		{"docker-daemon:alpine:3", `export it with docker save -o IMAGE.tar`},
		{"layout:/srv/img", `unknown transport "layout"`},
		{"archive:./img.tar", `unknown transport "archive"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseSource(tc.in)
			require.ErrorContains(t, err, tc.msg)
			require.NotErrorIs(t, err, ErrNotSource)
			require.True(t, IsSource(tc.in), "an error, not a bare name")
		})
	}
}

func TestSourceResolve(t *testing.T) {
	src, err := ParseSource("oci:img:v1")
	require.NoError(t, err)
	got, err := src.Resolve("/srv/scenarios")
	require.NoError(t, err)
	require.Equal(t, "oci:/srv/scenarios/img:v1", got.String())

	abs, err := Source{Transport: TransportOCI, Path: "/a/img"}.Resolve("/elsewhere")
	require.NoError(t, err)
	require.Equal(t, "/a/img", abs.Path)

	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := Source{Transport: TransportDockerArchive, Path: "app.tar"}.Resolve("")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(wd, "app.tar"), rel.Path)

	reg := Source{Transport: TransportRegistry, Ref: "alpine:3"}
	same, err := reg.Resolve("/x")
	require.NoError(t, err)
	require.Equal(t, reg, same)

	_, err = Source{Transport: TransportOCI, Path: "img"}.Resolve("/srv/a:b")
	require.ErrorContains(t, err, "the path /srv/a:b/img has a colon")

	err = Source{Transport: TransportOCI, Path: filepath.Join(t.TempDir(), "missing")}.CheckPath()
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "from the scenario file's directory in YAML")
}

// userImage is a busybox-shaped image for p (its "binary" a bare ELF
// header: nothing runs here) with one more layer holding /hello.txt.
func userImage(t testing.TB, p boards.Platform, hello string) v1.Image {
	t.Helper()
	var bb string
	switch p.Architecture {
	case "arm64":
		bb = fakeELF(t, elf.ELFCLASS64, elf.EM_AARCH64)
	case "arm":
		bb = fakeELF(t, elf.ELFCLASS32, elf.EM_ARM)
	case "amd64":
		bb = fakeELF(t, elf.ELFCLASS64, elf.EM_X86_64)
	}
	img, err := Busybox(bb, p)
	require.NoError(t, err)
	var buf bytes.Buffer
	w := &layerWriter{tw: tar.NewWriter(&buf)}
	w.file("hello.txt", 0o644, []byte(hello))
	require.NoError(t, w.err)
	require.NoError(t, w.tw.Close())
	layer, err := gzipLayer(buf.Bytes())
	require.NoError(t, err)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	require.NoError(t, err)
	return img
}

// helloOf reads /hello.txt out of img's layers, as a container would see it.
func helloOf(t *testing.T, img v1.Image) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("no hello.txt in the image")
		}
		require.NoError(t, err)
		if h.Name == "hello.txt" {
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			return string(data)
		}
	}
}

func load(t *testing.T, source string, p boards.Platform) (*Loaded, error) {
	t.Helper()
	src, err := ParseSource(source)
	require.NoError(t, err)
	return src.Load(context.Background(), p)
}

// requireRoundTrip writes l as the archive the guest gets and reads it back
// as an oci: source: what arrives is the same image.
func requireRoundTrip(t *testing.T, l *Loaded, hello string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sent.tar")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, WriteArchive(f, l.Image, l.Name))
	require.NoError(t, f.Close())
	p := boards.Platform{OS: "linux", Architecture: strings.Split(l.Platform, "/")[1]}
	if parts := strings.Split(l.Platform, "/"); len(parts) == 3 {
		p.Variant = parts[2]
	}
	back, err := load(t, "oci:"+path, p)
	require.NoError(t, err)
	require.Equal(t, l.ID, back.ID)
	require.Equal(t, l.Name, back.Name, "the name written is the name read")
	require.Equal(t, hello, helloOf(t, back.Image))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), l.Size, "the archive holds every blob Size counts")
}

func TestLoadOCILayout(t *testing.T) {
	arm64 := userImage(t, boards.LinuxARM64, "arm64\n")
	amd64 := userImage(t, linuxAMD64, "amd64\n")

	// Two platforms side by side in index.json, as ggcr and crane write
	// a multi-platform layout.
	dir := filepath.Join(t.TempDir(), "multi")
	lp, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(amd64, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})))
	require.NoError(t, lp.AppendImage(arm64, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})))

	l, err := load(t, "oci:"+dir, boards.LinuxARM64)
	require.NoError(t, err)
	require.Equal(t, "linux/arm64", l.Platform)
	require.Equal(t, "arm64\n", helloOf(t, l.Image))
	require.Equal(t, "socbox.local/multi:latest", l.Name)
	require.Equal(t, 2, l.Layers)
	wantID, err := arm64.ConfigName()
	require.NoError(t, err)
	require.Equal(t, wantID, l.ID)
	requireRoundTrip(t, l, "arm64\n")

	_, err = load(t, "oci:"+dir, boards.LinuxARMv7)
	require.ErrorIs(t, err, ErrWrongPlatform)
	require.ErrorContains(t, err, "load oci:"+dir+": wrong platform: the image is for linux/amd64, linux/arm64, but the board runs linux/arm/v7: build it for the board (docker buildx build --platform linux/arm/v7)")

	t.Run("nested index with a ref name", func(t *testing.T) {
		// What docker buildx --output type=oci writes: index.json points
		// at one multi-platform index, named by its tag.
		idx := mutate.AppendManifests(empty.Index,
			mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
			mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
		dir := filepath.Join(t.TempDir(), "app")
		lp, err := layout.Write(dir, empty.Index)
		require.NoError(t, err)
		require.NoError(t, lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{AnnotationRefName: "v2"})))

		for _, src := range []string{"oci:" + dir, "oci:" + dir + ":v2"} {
			l, err := load(t, src, boards.LinuxARM64)
			require.NoError(t, err, src)
			require.Equal(t, "arm64\n", helloOf(t, l.Image))
			require.Equal(t, "socbox.local/app:v2", l.Name)
		}
		_, err = load(t, "oci:"+dir+":v3", boards.LinuxARM64)
		require.ErrorContains(t, err, `no image named "v3" (it has v2): write oci:`+dir+":NAME with one of those")
	})

	t.Run("several images", func(t *testing.T) {
		dir := t.TempDir()
		lp, err := layout.Write(dir, empty.Index)
		require.NoError(t, err)
		require.NoError(t, lp.AppendImage(arm64, layout.WithAnnotations(map[string]string{AnnotationRefName: "one"})))
		other := userImage(t, boards.LinuxARM64, "other\n")
		require.NoError(t, lp.AppendImage(other, layout.WithAnnotations(map[string]string{
			AnnotationRefName: "two", AnnotationImageName: "example.com/team/two:2"})))

		_, err = load(t, "oci:"+dir, boards.LinuxARM64)
		require.ErrorContains(t, err, "it holds several images (one, two): pick one with oci:"+dir+":NAME")
		l, err := load(t, "oci:"+dir+":two", boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "other\n", helloOf(t, l.Image))
		require.Equal(t, "example.com/team/two:2", l.Name, "the containerd name it was saved with")
		l, err = load(t, "oci:"+dir+":example.com/team/two:2", boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "other\n", helloOf(t, l.Image))
	})

	t.Run("single image without platforms", func(t *testing.T) {
		// No platform in index.json: the config decides.
		dir := t.TempDir()
		lp, err := layout.Write(dir, empty.Index)
		require.NoError(t, err)
		require.NoError(t, lp.AppendImage(amd64))
		_, err = load(t, "oci:"+dir, boards.LinuxARM64)
		require.ErrorIs(t, err, ErrWrongPlatform)
		require.ErrorContains(t, err, "the image is for linux/amd64, but the board runs linux/arm64")
	})

	t.Run("arm64 board runs an arm/v7-only image", func(t *testing.T) {
		// containerd's rule, which the import in the guest applies too.
		dir := t.TempDir()
		lp, err := layout.Write(dir, empty.Index)
		require.NoError(t, err)
		require.NoError(t, lp.AppendImage(userImage(t, boards.LinuxARMv7, "v7\n")))
		l, err := load(t, "oci:"+dir, boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "linux/arm/v7", l.Platform)
	})
}

// writeLayout writes img as a one-image layout and returns its directory.
func writeLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(img))
	return dir
}

// tarDir writes the files under dir into a tar archive, as
// `tar -C dir -cf out .` would.
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "archive.tar")
	f, err := os.Create(out)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	require.NoError(t, tw.AddFS(os.DirFS(dir)))
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
	return out
}

func TestLoadOCIArchive(t *testing.T) {
	img := userImage(t, boards.LinuxARM64, "from an archive\n")
	archive := tarDir(t, writeLayout(t, img))
	l, err := load(t, "oci:"+archive, boards.LinuxARM64)
	require.NoError(t, err)
	require.Equal(t, "from an archive\n", helloOf(t, l.Image))
	require.Equal(t, "socbox.local/archive:latest", l.Name)
	requireRoundTrip(t, l, "from an archive\n")

	// socbox's own archive, as the guest gets it, names itself.
	var buf bytes.Buffer
	require.NoError(t, WriteArchive(&buf, img, "example.com/app:7"))
	own := filepath.Join(t.TempDir(), "own.tar")
	require.NoError(t, os.WriteFile(own, buf.Bytes(), 0o644))
	l, err = load(t, "oci:"+own, boards.LinuxARM64)
	require.NoError(t, err)
	require.Equal(t, "example.com/app:7", l.Name)
	l, err = load(t, "oci:"+own+":7", boards.LinuxARM64)
	require.NoError(t, err, "picked by its ref name")

	_, err = load(t, "oci:"+own, linuxAMD64)
	require.ErrorIs(t, err, ErrWrongPlatform)
	require.ErrorContains(t, err, "the image is for linux/arm64, but the board runs linux/amd64")
}

// dockerSave writes img as `docker save` does into a new file.
func dockerSave(t *testing.T, img v1.Image, tags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "saved.tar")
	ociimagetest.DockerSave(t, out, img, tags...)
	return out
}

func TestLoadDockerArchive(t *testing.T) {
	img := userImage(t, boards.LinuxARM64, "saved\n")

	t.Run("docker save, plain layers", func(t *testing.T) {
		saved := dockerSave(t, img, "app:1")
		l, err := load(t, "docker-archive:"+saved, boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "docker.io/library/app:1", l.Name)
		require.Equal(t, "saved\n", helloOf(t, l.Image))
		wantID, err := img.ConfigName()
		require.NoError(t, err)
		require.Equal(t, wantID, l.ID, "the same image, whatever the source")
		requireRoundTrip(t, l, "saved\n")

		// Every layer goes to the guest compressed.
		m, err := l.Image.Manifest()
		require.NoError(t, err)
		layer, err := l.Image.LayerByDigest(m.Layers[0].Digest)
		require.NoError(t, err)
		rc, err := layer.Compressed()
		require.NoError(t, err)
		defer rc.Close()
		_, err = gzip.NewReader(rc)
		require.NoError(t, err)

		_, err = load(t, "docker-archive:"+saved, boards.LinuxARMv7)
		require.ErrorIs(t, err, ErrWrongPlatform)
		require.ErrorContains(t, err, "the image is for linux/arm64, but the board runs linux/arm/v7: build it for the board (docker buildx build --platform linux/arm/v7)")
	})

	t.Run("go-containerregistry tarball, compressed layers", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "My App.tar")
		tag, err := name.NewTag("registry.example.com/team/app:2")
		require.NoError(t, err)
		require.NoError(t, tarball.WriteToFile(path, tag, img))
		l, err := load(t, "docker-archive:"+path, boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "registry.example.com/team/app:2", l.Name)
		requireRoundTrip(t, l, "saved\n")
	})

	t.Run("untagged", func(t *testing.T) {
		l, err := load(t, "docker-archive:"+dockerSave(t, img), boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "socbox.local/saved:latest", l.Name)
	})

	t.Run("several images", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "two.tar")
		one, err := name.NewTag("example.com/one:1")
		require.NoError(t, err)
		two, err := name.NewTag("example.com/two:1")
		require.NoError(t, err)
		other := userImage(t, boards.LinuxARM64, "two\n")
		require.NoError(t, tarball.MultiWriteToFile(path, map[name.Tag]v1.Image{one: img, two: other}))
		_, err = load(t, "docker-archive:"+path, boards.LinuxARM64)
		require.ErrorContains(t, err, "it holds 2 images (tags: ")
		require.ErrorContains(t, err, "pick one with docker-archive:"+path+":TAG")
		l, err := load(t, "docker-archive:"+path+":example.com/two:1", boards.LinuxARM64)
		require.NoError(t, err)
		require.Equal(t, "two\n", helloOf(t, l.Image))
		_, err = load(t, "docker-archive:"+path+":example.com/three:1", boards.LinuxARM64)
		require.ErrorContains(t, err, "tag example.com/three:1 not found in tarball")
	})
}

func TestLoadErrors(t *testing.T) {
	img := userImage(t, boards.LinuxARM64, "x\n")
	dir := t.TempDir()
	saved := dockerSave(t, img, "app:1")
	archiveDir := writeLayout(t, img)
	archive := tarDir(t, archiveDir)
	data, err := os.ReadFile(archive)
	require.NoError(t, err)

	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	corruptConfig := writeLayout(t, img)
	cfgName, err := img.ConfigName()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(corruptConfig, "blobs", "sha256", cfgName.Hex), []byte(`{"architecture":"arm64","os":"linux"}`), 0o644))

	missingLayer := writeLayout(t, img)
	m, err := img.Manifest()
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(missingLayer, "blobs", "sha256", m.Layers[1].Digest.Hex)))

	for _, tc := range []struct {
		name, source, msg string
	}{
		{"missing path", "oci:" + filepath.Join(dir, "nope"), "no such file or directory (a relative path is taken from the working directory in Go"},
		{"directory as docker-archive", "docker-archive:" + archiveDir, "is a directory, not a docker save tarball: an OCI layout directory is oci:" + archiveDir},
		{"missing tarball", "docker-archive:" + filepath.Join(dir, "nope.tar"), "no such file or directory"},
		{"not a layout", "oci:" + t.TempDir(), "not an OCI image layout (no index.json): write one with docker buildx build --output type=oci"},
		{"docker save given as oci", "oci:" + saved, "not an OCI image layout (no index.json): it looks like a docker save tarball: use docker-archive:" + saved},
		{"oci archive given as docker-archive", "docker-archive:" + archive, "not a docker save tarball (no manifest.json): it looks like an OCI archive: use oci:" + archive},
		{"truncated tarball", "oci:" + write("truncated.tar", data[:len(data)/2]), "truncated"},
		{"not a tarball", "docker-archive:" + write("garbage.tar", bytes.Repeat([]byte("not a tar file "), 100)), "not a tar archive, or a truncated one"},
		{"empty file", "oci:" + write("empty.tar", nil), "not a tar archive, or an empty one"},
		{"gzip-compressed", "oci:" + write("img.tar.gz", gz.Bytes()), "it is gzip-compressed: decompress it first"},
		{"corrupt config", "oci:" + corruptConfig, "does not match its digest: the layout is corrupt"},
		{"missing layer", "oci:" + missingLayer, "no such file or directory: the layout is incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.source, boards.LinuxARM64)
			require.ErrorContains(t, err, "load "+tc.source+": ")
			require.ErrorContains(t, err, tc.msg)
		})
	}
}

// testRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1, where it is reached over plain HTTP.
func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestLoadRegistry(t *testing.T) {
	host := testRegistry(t)
	arm64 := userImage(t, boards.LinuxARM64, "pulled arm64\n")
	armv7 := userImage(t, boards.LinuxARMv7, "pulled v7\n")
	amd64 := userImage(t, linuxAMD64, "pulled amd64\n")

	multi, err := name.ParseReference(host + "/test/multi:1")
	require.NoError(t, err)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: armv7, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	require.NoError(t, remote.WriteIndex(multi, idx))
	single, err := name.ParseReference(host + "/test/amd64-only:1")
	require.NoError(t, err)
	require.NoError(t, remote.Write(single, amd64))

	l, err := load(t, "docker://"+host+"/test/multi:1", boards.LinuxARM64)
	require.NoError(t, err)
	require.Equal(t, "pulled arm64\n", helloOf(t, l.Image), "the exact platform, not the compatible arm/v7")
	require.Equal(t, host+"/test/multi:1", l.Name)
	requireRoundTrip(t, l, "pulled arm64\n")

	l, err = load(t, "docker://"+host+"/test/multi:1", boards.LinuxARMv7)
	require.NoError(t, err)
	require.Equal(t, "pulled v7\n", helloOf(t, l.Image))

	d, err := arm64.Digest()
	require.NoError(t, err)
	byDigest := host + "/test/multi@" + d.String()
	l, err = load(t, "docker://"+byDigest, boards.LinuxARM64)
	require.NoError(t, err)
	require.Equal(t, byDigest, l.Name)
	requireRoundTrip(t, l, "pulled arm64\n")

	_, err = load(t, "docker://"+host+"/test/amd64-only:1", boards.LinuxARM64)
	require.ErrorIs(t, err, ErrWrongPlatform)
	require.ErrorContains(t, err, "load docker://"+host+"/test/amd64-only:1: wrong platform: the image is for linux/amd64, but the board runs linux/arm64")

	onlyIntel := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	ref, err := name.ParseReference(host + "/test/intel:1")
	require.NoError(t, err)
	require.NoError(t, remote.WriteIndex(ref, onlyIntel))
	_, err = load(t, "docker://"+host+"/test/intel:1", boards.LinuxARMv7)
	require.ErrorIs(t, err, ErrWrongPlatform)
	require.ErrorContains(t, err, "the image is for linux/amd64, but the board runs linux/arm/v7")

	_, err = load(t, "docker://"+host+"/test/absent:1", boards.LinuxARM64)
	require.ErrorContains(t, err, fmt.Sprintf("load docker://%s/test/absent:1: pull from %s: ", host, host))
	require.ErrorContains(t, err, "can this host reach the registry?")
}

func TestLoadIndexThatLies(t *testing.T) {
	// The index says arm64, the config says amd64: the config wins, as it
	// does in the guest's containerd, and nothing is sent.
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(userImage(t, linuxAMD64, "x\n"), layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})))
	_, err = load(t, "oci:"+dir, boards.LinuxARM64)
	require.ErrorIs(t, err, ErrWrongPlatform)
	require.ErrorContains(t, err, ", listed as linux/arm64: wrong platform: the image is for linux/amd64, but the board runs linux/arm64")
}
