// Package ociimagetest builds container images and image files for tests:
// an image with one more file, and the tarball `docker save` writes.
package ociimagetest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"
)

// WithFile returns img with a layer on top that holds one regular file
// (name is relative to the root, e.g. "hello.txt").
func WithFile(t testing.TB, img v1.Image, name, content string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}))
	_, err := tw.Write([]byte(content))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	img, err = mutate.AppendLayers(img, layer)
	require.NoError(t, err)
	return img
}

// DockerSave writes img to path as `docker save` did before Docker 25:
// manifest.json, the config, and every layer as a plain tar under its diff
// ID. go-containerregistry's tarball package writes a newer variant
// (compressed layers); this is the one most tarballs in the wild are.
func DockerSave(t testing.TB, path string, img v1.Image, tags ...string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	cfgName, err := img.ConfigName()
	require.NoError(t, err)
	cfg, err := img.RawConfigFile()
	require.NoError(t, err)
	add(cfgName.Hex+".json", cfg)
	layers, err := img.Layers()
	require.NoError(t, err)
	var paths []string
	for _, l := range layers {
		diffID, err := l.DiffID()
		require.NoError(t, err)
		rc, err := l.Uncompressed()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		paths = append(paths, diffID.Hex+"/layer.tar")
		add(paths[len(paths)-1], data)
	}
	if tags == nil {
		tags = []string{}
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": cfgName.Hex + ".json", "RepoTags": tags, "Layers": paths}})
	require.NoError(t, err)
	add("manifest.json", manifest)
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
}
