package ociimage

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/socbox/socbox/boards"
)

// loadRegistry resolves a registry reference on the host, with the
// credentials docker login (or a credential helper) left in the default
// keychain, so that the guest needs no registry access. Only the manifests
// and the config are fetched here; layers stream from the registry when the
// archive is written.
func loadRegistry(ctx context.Context, src Source, p boards.Platform) (*Loaded, error) {
	ref, err := name.ParseReference(src.Ref)
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("socbox"),
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull from %s: %w (can this host reach the registry? for a private one, docker login %s first)",
			ref.Context().RegistryStr(), err, ref.Context().RegistryStr())
	}
	l := &Loaded{Source: src, Name: canonicalName(ref)}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		cands, err := collectImages(idx, m.Manifests, 0)
		if err != nil {
			return nil, err
		}
		if l.Image, err = pickPlatform(cands, p); err != nil {
			return nil, err
		}
	case desc.MediaType.IsImage():
		if l.Image, err = desc.Image(); err != nil {
			return nil, err
		}
		if err := checkPlatform(l.Image, p); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s is a %s, not an image or an image index", ref, desc.MediaType)
	}
	if l.Platform, err = imagePlatform(l.Image); err != nil {
		return nil, err
	}
	return l, nil
}
