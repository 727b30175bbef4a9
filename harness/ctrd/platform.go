package ctrd

import (
	"errors"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socbox/socbox/boards"
)

// ErrPlatformMismatch is returned (wrapped) when an image has nothing for the
// platform asked for.
var ErrPlatformMismatch = errors.New("image has no manifest for the platform")

// matcher matches p and what containerd deems compatible with it (an arm64
// guest also matches linux/arm/v7 images).
func matcher(p boards.Platform) platforms.MatchComparer {
	return platforms.Only(ociPlatform(p))
}

func ociPlatform(p boards.Platform) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}
