package ctrd

import (
	"context"
	"errors"
	"fmt"

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

// daemonPlatform asks containerd which platform its task runtime runs.
func (r *Runtime) daemonPlatform(ctx context.Context) (boards.Platform, error) {
	resp, err := r.client.IntrospectionService().Plugins(r.withNamespace(ctx), `type=="io.containerd.runtime.v2"`)
	if err != nil {
		return boards.Platform{}, fmt.Errorf("ask containerd for its platform: %w", err)
	}
	for _, plugin := range resp.Plugins {
		if plugin.InitErr != nil || len(plugin.Platforms) == 0 {
			continue
		}
		p := plugin.Platforms[0]
		return boards.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
	}
	return boards.Platform{}, errors.New("containerd reports no task runtime with a platform")
}
