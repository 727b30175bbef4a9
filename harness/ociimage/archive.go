package ociimage

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations containerd's importer reads from index.json to name images.
const (
	// AnnotationImageName is the full reference containerd stores the image
	// under.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is the OCI layout's own name: the tag.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// WriteArchive writes img to w as an OCI image-layout tar stream (oci-layout,
// index.json, blobs/sha256/...), the form containerd's client Import takes.
// ref is a full reference with a tag or a digest, e.g.
// "socbox.local/busybox:latest": it names the image in containerd, and a tag
// is also the layout's ref name. The index entry carries the image's
// platform so that importers can filter by it without reading the config.
// Layers are streamed from img, never held in memory.
func WriteArchive(w io.Writer, img v1.Image, ref string) error {
	parsed, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("write oci archive: image name %q must be a full reference with a tag or digest, like socbox.local/busybox:latest: %w", ref, err)
	}
	// A digest reference has no tag to give the layout; containerd names
	// the image by the full reference anyway.
	tag := ""
	if t, ok := parsed.(name.Tag); ok {
		tag = t.TagStr()
	}
	if err := writeArchive(w, img, ref, tag); err != nil {
		return fmt.Errorf("write oci archive %s: %w", ref, err)
	}
	return nil
}

func writeArchive(w io.Writer, img v1.Image, ref, tag string) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	manifestType, err := img.MediaType()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	configFile, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	annotations := map[string]string{AnnotationImageName: ref}
	if tag != "" {
		annotations[AnnotationRefName] = tag
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   manifestType,
			Size:        int64(len(manifest)),
			Digest:      manifestDigest,
			Platform:    configFile.Platform(),
			Annotations: annotations,
		}},
	})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	if err := writeTarFile(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := writeTarFile(tw, "index.json", index); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := writeTarFile(tw, blobPath(manifestDigest), manifest); err != nil {
		return err
	}
	if err := writeTarFile(tw, blobPath(configName), config); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	for i, layer := range layers {
		digest, err := layer.Digest()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if written[digest] {
			continue
		}
		written[digest] = true
		if err := writeLayer(tw, layer, digest); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, digest, err)
		}
	}
	return tw.Close()
}

func writeLayer(tw *tar.Writer, layer v1.Layer, digest v1.Hash) error {
	size, err := layer.Size()
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(digest), Mode: 0o444, Size: size, ModTime: epoch}); err != nil {
		return err
	}
	n, err := io.Copy(tw, rc)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("layer is %d bytes, its descriptor says %d", n, size)
	}
	return nil
}

func writeTarFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func blobPath(h v1.Hash) string {
	return "blobs/" + h.Algorithm + "/" + h.Hex
}
