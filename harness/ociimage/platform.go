package ociimage

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socbox/socbox/boards"
)

// maxIndexDepth bounds how deep indexes may nest (a layout's index.json
// pointing at a multi-platform index is one level): deeper is a loop or a
// broken layout.
const maxIndexDepth = 4

// candidate is one image manifest an index offers.
type candidate struct {
	desc     v1.Descriptor
	platform *v1.Platform // nil until known
	index    v1.ImageIndex
}

// collectImages walks descs (entries of idx) and the indexes they point at
// and returns every image manifest, with its platform from the descriptor
// where it has one. Entries that are neither images nor indexes
// (signatures, other artifacts) are left out.
func collectImages(idx v1.ImageIndex, descs []v1.Descriptor, depth int) ([]candidate, error) {
	if depth > maxIndexDepth {
		return nil, fmt.Errorf("indexes nest more than %d deep", maxIndexDepth)
	}
	var out []candidate
	for _, d := range descs {
		switch {
		case d.MediaType.IsImage():
			out = append(out, candidate{desc: d, platform: d.Platform, index: idx})
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			m, err := child.IndexManifest()
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			more, err := collectImages(child, m.Manifests, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
	}
	return out, nil
}

// pickPlatform returns the image among cands for p, preferring an exact
// match over a compatible one (containerd's order).
func pickPlatform(cands []candidate, p boards.Platform) (v1.Image, error) {
	if len(cands) == 0 {
		return nil, errors.New("it holds no image manifest (nothing, or only other artifacts)")
	}
	match := platforms.Only(ociPlatform(p))
	best := -1
	var have []string
	for i := range cands {
		c := &cands[i]
		if c.platform == nil {
			// An entry without a platform: the config says.
			img, err := c.index.Image(c.desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", c.desc.Digest, err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				return nil, fmt.Errorf("image %s: config: %w", c.desc.Digest, err)
			}
			c.platform = cfg.Platform()
			if c.platform == nil {
				c.platform = &v1.Platform{}
			}
		}
		op := toOCI(*c.platform)
		if op.OS == "unknown" {
			continue // buildx's attestation manifests
		}
		have = append(have, platformString(*c.platform))
		if match.Match(op) && (best < 0 || match.Less(op, toOCI(*cands[best].platform))) {
			best = i
		}
	}
	if best < 0 {
		return nil, wrongPlatform(have, p)
	}
	img, err := cands[best].index.Image(cands[best].desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cands[best].desc.Digest, err)
	}
	// The index's word is checked against the config's, which is what
	// the guest's containerd goes by.
	if err := checkPlatform(img, p); err != nil {
		return nil, fmt.Errorf("image %s, listed as %s: %w", cands[best].desc.Digest, platformString(*cands[best].platform), err)
	}
	return img, nil
}

// checkPlatform refuses an image whose config is not for p.
func checkPlatform(img v1.Image, p boards.Platform) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	have := v1.Platform{}
	if cp := cfg.Platform(); cp != nil {
		have = *cp
	}
	if !platforms.Only(ociPlatform(p)).Match(toOCI(have)) {
		return wrongPlatform([]string{platformString(have)}, p)
	}
	return nil
}

func wrongPlatform(have []string, p boards.Platform) error {
	slices.Sort(have)
	have = slices.Compact(have)
	what := "no platform"
	if len(have) > 0 {
		what = strings.Join(have, ", ")
	}
	return fmt.Errorf("%w: the image is for %s, but the board runs %s: build it for the board (docker buildx build --platform %s), or use a multi-platform image that includes %s",
		ErrWrongPlatform, what, p, p, p)
}

func ociPlatform(p boards.Platform) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}

func toOCI(p v1.Platform) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion})
}

func platformString(p v1.Platform) string {
	if p.OS == "" && p.Architecture == "" {
		return "no platform"
	}
	return platforms.Format(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}

// imagePlatform is the platform an image's config gives, as "linux/arm64".
func imagePlatform(img v1.Image) (string, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if p := cfg.Platform(); p != nil {
		return platformString(*p), nil
	}
	return "no platform", nil
}
