package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

var linuxAMD64 = boards.Platform{OS: "linux", Architecture: "amd64"}

// hostBusybox is Debian's busybox-static, an x86-64 static binary.
func hostBusybox(t *testing.T) string {
	t.Helper()
	const path = "/bin/busybox"
	if err := CheckStaticBinary(path, linuxAMD64); err != nil {
		t.Skipf("needs a static x86-64 busybox at %s (apt-get install busybox-static): %v", path, err)
	}
	return path
}

// fakeELF writes a bare ELF header for the given class and machine.
func fakeELF(t testing.TB, class elf.Class, machine elf.Machine) string {
	t.Helper()
	var hdr []byte
	ident := []byte{0x7f, 'E', 'L', 'F', byte(class), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), 0, 0, 0, 0, 0, 0, 0, 0, 0}
	le := binary.LittleEndian
	switch class {
	case elf.ELFCLASS64:
		hdr = make([]byte, 64)
		copy(hdr, ident)
		le.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
		le.PutUint16(hdr[18:], uint16(machine))
		le.PutUint32(hdr[20:], uint32(elf.EV_CURRENT))
		le.PutUint16(hdr[52:], 64) // e_ehsize
	case elf.ELFCLASS32:
		hdr = make([]byte, 52)
		copy(hdr, ident)
		le.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
		le.PutUint16(hdr[18:], uint16(machine))
		le.PutUint32(hdr[20:], uint32(elf.EV_CURRENT))
		le.PutUint16(hdr[40:], 52) // e_ehsize
	}
	path := filepath.Join(t.TempDir(), "busybox-"+machine.String())
	require.NoError(t, os.WriteFile(path, hdr, 0o755))
	return path
}

func TestCheckStaticBinary(t *testing.T) {
	arm64 := fakeELF(t, elf.ELFCLASS64, elf.EM_AARCH64)
	armhf := fakeELF(t, elf.ELFCLASS32, elf.EM_ARM)

	require.NoError(t, CheckStaticBinary(arm64, boards.LinuxARM64))
	require.NoError(t, CheckStaticBinary(armhf, boards.LinuxARMv7))

	err := CheckStaticBinary(arm64, boards.LinuxARMv7)
	require.ErrorIs(t, err, ErrWrongBinary)
	require.ErrorContains(t, err, arm64)
	require.ErrorContains(t, err, "is a 64-bit aarch64 binary, but linux/arm/v7 needs a 32-bit ARM one")

	err = CheckStaticBinary(armhf, boards.LinuxARM64)
	require.ErrorIs(t, err, ErrWrongBinary)
	require.ErrorContains(t, err, "is a 32-bit ARM binary, but linux/arm64 needs a 64-bit aarch64 one")

	_, err = Busybox(arm64, linuxAMD64)
	require.ErrorIs(t, err, ErrWrongBinary)
	require.ErrorContains(t, err, arm64+" is a 64-bit aarch64 binary, but linux/amd64 needs a 64-bit x86-64 one")

	err = CheckStaticBinary(filepath.Join(t.TempDir(), "missing"), boards.LinuxARM64)
	require.ErrorIs(t, err, os.ErrNotExist)

	notELF := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	require.ErrorContains(t, CheckStaticBinary(notELF, boards.LinuxARM64), notELF)

	require.ErrorContains(t, CheckStaticBinary(arm64, boards.Platform{OS: "linux", Architecture: "riscv64"}),
		`unsupported architecture "riscv64"`)
}

func TestCheckStaticBinaryRefusesDynamic(t *testing.T) {
	const dynamic = "/bin/ls" // Debian's coreutils, dynamically linked
	f, err := elf.Open(dynamic)
	if err != nil || f.Machine != elf.EM_X86_64 {
		t.Skipf("needs an x86-64 %s", dynamic)
	}
	f.Close()
	err = CheckStaticBinary(dynamic, linuxAMD64)
	require.ErrorIs(t, err, ErrWrongBinary)
	require.ErrorContains(t, err, "/bin/ls is dynamically linked")
}

func TestBusyboxDigestIsStable(t *testing.T) {
	bb := hostBusybox(t)
	a, err := Busybox(bb, linuxAMD64)
	require.NoError(t, err)
	b, err := Busybox(bb, linuxAMD64)
	require.NoError(t, err)
	da, err := a.Digest()
	require.NoError(t, err)
	db, err := b.Digest()
	require.NoError(t, err)
	require.Equal(t, da, db)

	var ra, rb bytes.Buffer
	require.NoError(t, WriteArchive(&ra, a, "socbox.local/busybox:latest"))
	require.NoError(t, WriteArchive(&rb, b, "socbox.local/busybox:latest"))
	require.Equal(t, sha256.Sum256(ra.Bytes()), sha256.Sum256(rb.Bytes()), "archives differ")
}

func TestBusyboxImage(t *testing.T) {
	bb := hostBusybox(t)
	img, err := Busybox(bb, linuxAMD64)
	require.NoError(t, err)

	mt, err := img.MediaType()
	require.NoError(t, err)
	require.Equal(t, types.OCIManifestSchema1, mt)
	m, err := img.Manifest()
	require.NoError(t, err)
	require.Equal(t, types.OCIConfigJSON, m.Config.MediaType)
	require.Len(t, m.Layers, 1)
	require.Equal(t, types.OCILayer, m.Layers[0].MediaType)

	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "linux", cfg.OS)
	require.Equal(t, "amd64", cfg.Architecture)
	require.Empty(t, cfg.Variant)
	require.Equal(t, []string{"sh"}, cfg.Config.Cmd)
	require.Equal(t, []string{"PATH=" + DefaultPath}, cfg.Config.Env)
	require.Len(t, cfg.RootFS.DiffIDs, 1)

	layers, err := img.Layers()
	require.NoError(t, err)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	var busyboxSum [32]byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		entries[h.Name] = h
		if h.Name == "bin/busybox" {
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			busyboxSum = sha256.Sum256(data)
		}
	}
	want, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(want), busyboxSum)
	for _, applet := range BusyboxApplets {
		h := entries["bin/"+applet]
		require.NotNil(t, h, applet)
		require.Equal(t, byte(tar.TypeSymlink), h.Typeflag, applet)
		require.Equal(t, "busybox", h.Linkname, applet)
	}
	require.Equal(t, int64(0o1777), entries["tmp/"].Mode)
	require.Contains(t, entries, "etc/passwd")
	require.Contains(t, entries, "etc/group")
	for _, h := range entries {
		require.Zero(t, h.ModTime.Unix(), h.Name)
		require.Zero(t, h.Uid, h.Name)
	}
}

func TestBusyboxARMVariant(t *testing.T) {
	img, err := Busybox(fakeELF(t, elf.ELFCLASS32, elf.EM_ARM), boards.LinuxARMv7)
	require.NoError(t, err)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "arm", cfg.Architecture)
	require.Equal(t, "v7", cfg.Variant)

	var buf bytes.Buffer
	require.NoError(t, WriteArchive(&buf, img, "socbox.local/busybox:armhf"))
	idx := readArchive(t, buf.Bytes())["index.json"]
	var index v1.IndexManifest
	require.NoError(t, json.Unmarshal(idx, &index))
	require.Equal(t, &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, index.Manifests[0].Platform)
}

func TestWriteArchive(t *testing.T) {
	bb := hostBusybox(t)
	img, err := Busybox(bb, linuxAMD64)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteArchive(&buf, img, "socbox.local/busybox:latest"))
	files := readArchive(t, buf.Bytes())

	require.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"]))
	var index v1.IndexManifest
	require.NoError(t, json.Unmarshal(files["index.json"], &index))
	require.Equal(t, types.OCIImageIndex, index.MediaType)
	require.Len(t, index.Manifests, 1)
	desc := index.Manifests[0]
	digest, err := img.Digest()
	require.NoError(t, err)
	require.Equal(t, digest, desc.Digest)
	require.Equal(t, types.OCIManifestSchema1, desc.MediaType)
	require.Equal(t, map[string]string{
		"io.containerd.image.name":          "socbox.local/busybox:latest",
		"org.opencontainers.image.ref.name": "latest",
	}, desc.Annotations)
	require.Equal(t, &v1.Platform{OS: "linux", Architecture: "amd64"}, desc.Platform)

	// Every blob is named by its digest, and the manifest's are all there.
	for name, data := range files {
		dir, file := filepath.Split(name)
		if dir != "blobs/sha256/" || file == "" {
			continue
		}
		sum := sha256.Sum256(data)
		require.Equal(t, file, hex.EncodeToString(sum[:]), name)
	}
	m, err := img.Manifest()
	require.NoError(t, err)
	require.Contains(t, files, "blobs/sha256/"+digest.Hex)
	require.Contains(t, files, "blobs/sha256/"+m.Config.Digest.Hex)
	layer := files["blobs/sha256/"+m.Layers[0].Digest.Hex]
	require.NotEmpty(t, layer)
	_, err = gzip.NewReader(bytes.NewReader(layer))
	require.NoError(t, err, "layer blob is gzip")
}

func TestWriteArchiveNeedsTag(t *testing.T) {
	img, err := Busybox(fakeELF(t, elf.ELFCLASS64, elf.EM_AARCH64), boards.LinuxARM64)
	require.NoError(t, err)
	err = WriteArchive(io.Discard, img, "busybox")
	require.ErrorContains(t, err, `image name "busybox" must be a full reference with a tag or digest`)
}

func readArchive(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name] = data
	}
}
