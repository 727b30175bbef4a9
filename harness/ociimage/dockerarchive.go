package ociimage

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/socbox/socbox/boards"
)

// loadDockerArchive reads a `docker save` tarball. Its layers are plain
// tars, which go-containerregistry compresses as they are written, so only
// compressed bytes go to the guest.
func loadDockerArchive(src Source, p boards.Platform) (*Loaded, error) {
	fi, err := os.Stat(src.Path)
	if err != nil {
		return nil, pathHint(err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a docker save tarball: an OCI layout directory is oci:%s", src.Path, src.Path)
	}
	// The same pass the OCI reader makes: it tells a compressed, truncated
	// or non-tar file apart before go-containerregistry reads it.
	ts, err := openTarStore(src.Path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src.Path, err)
	}
	if _, err := ts.size("manifest.json"); err != nil {
		hint := "save one with docker save -o IMAGE.tar IMAGE"
		if _, err := ts.size("index.json"); err == nil {
			hint = "it looks like an OCI archive: use oci:" + src.Path
		}
		return nil, fmt.Errorf("not a docker save tarball (no manifest.json): %s", hint)
	}
	opener := func() (io.ReadCloser, error) { return os.Open(src.Path) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var tags []string
	for _, d := range manifest {
		tags = append(tags, d.RepoTags...)
	}

	var (
		tag     *name.Tag
		imgName string
	)
	switch {
	case src.Ref != "":
		t, err := name.NewTag(src.Ref)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", src.Ref, err)
		}
		tag, imgName = &t, canonicalName(t)
	case len(manifest) == 0:
		return nil, fmt.Errorf("manifest.json lists no image: save one with docker save -o IMAGE.tar IMAGE")
	case len(manifest) > 1:
		return nil, fmt.Errorf("it holds %d images (tags: %s): pick one with docker-archive:%s:TAG", len(manifest), strings.Join(tags, ", "), src.Path)
	default:
		imgName = localName(src.Path, "")
		if len(manifest[0].RepoTags) > 0 {
			if t, err := name.NewTag(manifest[0].RepoTags[0]); err == nil {
				imgName = canonicalName(t)
			}
		}
	}
	img, err := tarball.Image(opener, tag)
	if err != nil {
		if tag != nil {
			return nil, fmt.Errorf("%w (it has %s): write docker-archive:%s:TAG with one of those", err, strings.Join(tags, ", "), src.Path)
		}
		return nil, err
	}
	if err := checkPlatform(img, p); err != nil {
		return nil, err
	}
	platform, err := imagePlatform(img)
	if err != nil {
		return nil, err
	}
	return &Loaded{Source: src, Image: img, Name: imgName, Platform: platform}, nil
}
