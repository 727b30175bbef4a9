package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/socbox/socbox/boards"
)

// maxMetadata bounds index.json, manifests and configs, which are read
// whole: anything bigger is not one.
const maxMetadata = 8 << 20

// blobStore reads the files of an OCI image layout by their slash path
// inside it ("index.json", "blobs/sha256/<hex>"), from a directory or from
// a tar archive of one.
type blobStore interface {
	open(name string) (io.ReadCloser, error)
	size(name string) (int64, error)
}

// dirStore is a layout directory.
type dirStore string

func (d dirStore) open(name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
}

func (d dirStore) size(name string) (int64, error) {
	fi, err := os.Stat(filepath.Join(string(d), filepath.FromSlash(name)))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// tarStore is a layout in a tar file, read in place: one pass over the
// headers finds where each file's bytes are, and a blob is then a section
// of the file, so nothing is unpacked or held in memory.
type tarStore struct {
	path    string
	entries map[string]tarEntry
}

type tarEntry struct{ offset, size int64 }

func openTarStore(p string) (*tarStore, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic := make([]byte, 6)
	if n, _ := io.ReadFull(f, magic); n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return nil, errors.New("it is gzip-compressed: decompress it first (gunzip), socbox reads the archive in place")
	} else if n == 6 && bytes.Equal(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return nil, errors.New("it is xz-compressed: decompress it first (unxz), socbox reads the archive in place")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	s := &tarStore{path: p, entries: map[string]tarEntry{}}
	// archive/tar seeks past each file's data, since *os.File is an
	// io.Seeker, and leaves the file at the data after each header.
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive, or a truncated one: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		s.entries[cleanTarName(h.Name)] = tarEntry{offset: off, size: h.Size}
	}
	if len(s.entries) == 0 {
		return nil, errors.New("not a tar archive, or an empty one")
	}
	// A truncated archive may still list every header of a file that
	// ends early: check the last file's bytes are all there.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	for name, e := range s.entries {
		if e.offset+e.size > fi.Size() {
			return nil, fmt.Errorf("truncated: %s ends past the end of the file", name)
		}
	}
	return s, nil
}

func cleanTarName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

func (s *tarStore) open(name string) (io.ReadCloser, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: s.path + ":" + name, Err: fs.ErrNotExist}
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, e.offset, e.size), f}, nil
}

func (s *tarStore) size(name string) (int64, error) {
	e, ok := s.entries[name]
	if !ok {
		return 0, &fs.PathError{Op: "stat", Path: s.path + ":" + name, Err: fs.ErrNotExist}
	}
	return e.size, nil
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// readMetadata reads a small file of the layout whole.
func readMetadata(s blobStore, name string) ([]byte, error) {
	rc, err := s.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxMetadata {
		return nil, fmt.Errorf("%s is over %d bytes: not a manifest or config", name, maxMetadata)
	}
	return data, nil
}

// readBlob reads a manifest or config blob and checks it against its
// digest: a layout that is corrupt fails here, on the host.
func readBlob(s blobStore, h v1.Hash) ([]byte, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: only sha256 digests are supported", h)
	}
	data, err := readMetadata(s, blobName(h))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return nil, fmt.Errorf("blob %s does not match its digest: the layout is corrupt", h)
	}
	return data, nil
}

// layoutIndex is an index of a layout (index.json, or an index blob) as a
// v1.ImageIndex, so that layouts and registries are walked alike.
type layoutIndex struct {
	store blobStore
	raw   []byte
	index *v1.IndexManifest
}

func newLayoutIndex(s blobStore, raw []byte) (*layoutIndex, error) {
	index, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not an image index: %w", err)
	}
	return &layoutIndex{store: s, raw: raw, index: index}, nil
}

func (i *layoutIndex) MediaType() (types.MediaType, error) {
	if i.index.MediaType != "" {
		return i.index.MediaType, nil
	}
	return types.OCIImageIndex, nil
}

func (i *layoutIndex) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.raw))
	return h, err
}

func (i *layoutIndex) Size() (int64, error)                      { return int64(len(i.raw)), nil }
func (i *layoutIndex) IndexManifest() (*v1.IndexManifest, error) { return i.index, nil }
func (i *layoutIndex) RawManifest() ([]byte, error)              { return i.raw, nil }

func (i *layoutIndex) Image(h v1.Hash) (v1.Image, error) {
	raw, err := readBlob(i.store, h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
		for _, d := range i.index.Manifests {
			if d.Digest == h && d.MediaType != "" {
				mt = d.MediaType
			}
		}
	}
	config, err := readBlob(i.store, m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", h, err)
	}
	// Every layer must be there, at its size, before any byte goes to the
	// guest.
	for _, l := range m.Layers {
		if len(l.URLs) > 0 {
			continue // a foreign layer, fetched by whoever runs it
		}
		size, err := i.store.size(blobName(l.Digest))
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w: the layout is incomplete", l.Digest, err)
		}
		if size != l.Size {
			return nil, fmt.Errorf("layer %s is %d bytes, the manifest says %d: the layout is corrupt", l.Digest, size, l.Size)
		}
	}
	return partial.CompressedToImage(&layoutImage{store: i.store, raw: raw, manifest: m, mediaType: mt, config: config})
}

func (i *layoutIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	raw, err := readBlob(i.store, h)
	if err != nil {
		return nil, err
	}
	return newLayoutIndex(i.store, raw)
}

// layoutImage is one image manifest of a layout, with its config read.
type layoutImage struct {
	store     blobStore
	raw       []byte
	manifest  *v1.Manifest
	mediaType types.MediaType
	config    []byte
}

func (l *layoutImage) RawConfigFile() ([]byte, error)      { return l.config, nil }
func (l *layoutImage) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *layoutImage) RawManifest() ([]byte, error)        { return l.raw, nil }

func (l *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == l.manifest.Config.Digest {
		return &layoutBlob{store: l.store, desc: l.manifest.Config}, nil
	}
	for _, d := range l.manifest.Layers {
		if d.Digest == h {
			return &layoutBlob{store: l.store, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in the manifest", h)
}

// layoutBlob is a layer as stored: its bytes are streamed from the layout,
// compressed or not, exactly as the manifest describes them.
type layoutBlob struct {
	store blobStore
	desc  v1.Descriptor
}

func (b *layoutBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *layoutBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *layoutBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *layoutBlob) Compressed() (io.ReadCloser, error) {
	return b.store.open(blobName(b.desc.Digest))
}

// loadOCI reads an OCI image layout, a directory or a tar archive of one.
func loadOCI(src Source, p boards.Platform) (*Loaded, error) {
	fi, err := os.Stat(src.Path)
	if err != nil {
		return nil, pathHint(err)
	}
	var store blobStore
	if fi.IsDir() {
		store = dirStore(src.Path)
	} else {
		ts, err := openTarStore(src.Path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", src.Path, err)
		}
		store = ts
	}
	raw, err := readMetadata(store, "index.json")
	if errors.Is(err, fs.ErrNotExist) {
		hint := "write one with docker buildx build --output type=oci,dest=IMAGE.tar, skopeo copy ... oci:DIR or crane pull --format=oci"
		if _, err := store.size("manifest.json"); err == nil {
			hint = "it looks like a docker save tarball: use docker-archive:" + src.Path
		}
		return nil, fmt.Errorf("not an OCI image layout (no index.json): %s", hint)
	}
	if err != nil {
		return nil, err
	}
	top, err := newLayoutIndex(store, raw)
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}

	entries, err := pickRef(top.index.Manifests, src)
	if err != nil {
		return nil, err
	}
	cands, err := collectImages(top, entries, 0)
	if err != nil {
		return nil, err
	}
	img, err := pickPlatform(cands, p)
	if err != nil {
		return nil, err
	}
	platform, err := imagePlatform(img)
	if err != nil {
		return nil, err
	}
	return &Loaded{Source: src, Image: img, Name: layoutName(src, entries[0].Annotations), Platform: platform}, nil
}

// pickRef returns the entries of index.json that are src's image: those
// whose ref name (or containerd image name) is src.Ref, or, without a Ref,
// all of them as long as they are one image (one name, or none).
func pickRef(entries []v1.Descriptor, src Source) ([]v1.Descriptor, error) {
	var names []string
	var picked []v1.Descriptor
	for _, d := range entries {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		n := d.Annotations[AnnotationRefName]
		if n == "" {
			n = d.Annotations[AnnotationImageName]
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
		if src.Ref == "" || d.Annotations[AnnotationRefName] == src.Ref || d.Annotations[AnnotationImageName] == src.Ref {
			picked = append(picked, d)
		}
	}
	named := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
	switch {
	case len(names) == 0:
		return nil, errors.New("index.json lists no image")
	case src.Ref != "" && len(picked) == 0:
		have := "no names"
		if len(named) > 0 {
			have = strings.Join(named, ", ")
		}
		return nil, fmt.Errorf("no image named %q (it has %s): write %s:%s:NAME with one of those", src.Ref, have, src.Transport, src.Path)
	case src.Ref == "" && len(names) > 1:
		if len(named) < len(names) {
			named = append(named, "and unnamed ones")
		}
		return nil, fmt.Errorf("it holds several images (%s): pick one with %s:%s:NAME", strings.Join(named, ", "), src.Transport, src.Path)
	}
	return picked, nil
}

// layoutName is the containerd name of an image from a layout: the
// containerd image name it was saved with, a ref name that is a full
// reference, else socbox.local/<file name>:<ref name>.
func layoutName(src Source, ann map[string]string) string {
	if n := ann[AnnotationImageName]; n != "" {
		if ref, err := name.ParseReference(n); err == nil {
			return canonicalName(ref)
		}
	}
	refName := ann[AnnotationRefName]
	if strings.Contains(refName, "/") {
		if ref, err := name.ParseReference(refName); err == nil {
			return canonicalName(ref)
		}
	}
	if refName == "" {
		refName = src.Ref
	}
	return localName(src.Path, refName)
}
