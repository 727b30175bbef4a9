package ctrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socbox/socbox/boards"
)

// Import reads an OCI image-layout (or docker save) tar stream, stores the
// image for platform p in the guest's containerd and unpacks it into the
// runtime's snapshotter, so that Run can start it at once. It returns the
// name the image is stored under, taken from the archive's index
// (io.containerd.image.name, else org.opencontainers.image.ref.name). An
// archive with nothing for p is refused with ErrPlatformMismatch and leaves no
// image behind.
func (r *Runtime) Import(ctx context.Context, archive io.Reader, p boards.Platform) (string, error) {
	ctx = r.withNamespace(ctx)
	name, err := r.importImage(ctx, archive, p)
	if err != nil {
		return "", fmt.Errorf("import image for %s: %w", p, err)
	}
	return name, nil
}

func (r *Runtime) importImage(ctx context.Context, archive io.Reader, p boards.Platform) (string, error) {
	// The client's own default platform is the host's; every step below
	// names p instead.
	match := matcher(p)
	archive, sniffer := sniffIndex(archive)
	imgs, err := r.client.Import(ctx, archive, client.WithImportPlatform(match))
	listed := sniffer.platforms()
	if errors.Is(err, images.ErrEmptyWalk) {
		has := "nothing with a platform"
		if len(listed) > 0 {
			has = strings.Join(listed, ", ")
		}
		return "", fmt.Errorf("%w: the archive's index has %s, not %s", ErrPlatformMismatch, has, p)
	}
	if err != nil {
		return "", err
	}
	if len(imgs) == 0 {
		return "", errors.New("the archive names no image: its index.json needs an io.containerd.image.name or org.opencontainers.image.ref.name annotation")
	}

	// Import names every manifest in the index, whatever its platform, and
	// an index entry without a platform is only checked here, against the
	// image config.
	cs := r.client.ContentStore()
	var (
		chosen  *images.Image
		matched = map[string]bool{}
		found   []string // platforms of the others
	)
	for i := range imgs {
		ok, err := hasPlatform(ctx, cs, imgs[i].Target, match)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", imgs[i].Name, err)
		}
		if ok {
			matched[imgs[i].Name] = true
			if chosen == nil {
				chosen = &imgs[i]
			}
			continue
		}
		if ps, err := images.Platforms(ctx, cs, imgs[i].Target); err == nil {
			for _, ip := range ps {
				found = append(found, platforms.Format(ip))
			}
		}
	}

	// Names given only to other platforms' manifests would point at
	// content that was not imported: drop them.
	var errs []error
	for _, img := range imgs {
		if matched[img.Name] {
			continue
		}
		if err := r.client.ImageService().Delete(ctx, img.Name); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove image %s for another platform: %w", img.Name, err))
		}
	}
	if chosen == nil {
		desc := "no platform"
		if len(found) > 0 {
			desc = strings.Join(found, ", ")
		}
		return "", errors.Join(append([]error{
			fmt.Errorf("%w: %s is for %s, not %s", ErrPlatformMismatch, imgs[0].Name, desc, p)}, errs...)...)
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	// A name given to manifests of several platforms ends up on the last
	// one stored: point it at the one for p.
	if _, err := r.client.ImageService().Update(ctx, *chosen, "target"); err != nil {
		return "", fmt.Errorf("image %s: %w", chosen.Name, err)
	}

	img := client.NewImageWithPlatform(r.client, *chosen, match)
	if err := img.Unpack(ctx, r.snapshotter); err != nil {
		return "", fmt.Errorf("unpack %s into %s: %w", chosen.Name, r.snapshotter, err)
	}
	return chosen.Name, nil
}

// hasPlatform reports whether the image target has a manifest match accepts.
func hasPlatform(ctx context.Context, cs content.Provider, target ocispec.Descriptor, match platforms.MatchComparer) (bool, error) {
	if images.IsIndexType(target.MediaType) {
		_, err := images.Manifest(ctx, cs, target, match)
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	// A lone manifest: images.Manifest does not check its platform, so
	// read it from the descriptor or, failing that, from the config.
	if target.Platform != nil {
		return match.Match(*target.Platform), nil
	}
	m, err := images.Manifest(ctx, cs, target, nil)
	if err != nil {
		return false, err
	}
	p, err := images.ConfigPlatform(ctx, cs, m.Config)
	if err != nil {
		return false, err
	}
	return match.Match(p), nil
}

// image looks up name and makes sure it is unpacked for the runtime's
// platform and snapshotter. What a container needs of it (its config and
// layers) is read once per content and kept: content does not change under
// its digest, and every read is a round trip into the guest.
func (r *Runtime) image(ctx context.Context, name string) (knownImage, error) {
	meta, err := r.client.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return knownImage{}, fmt.Errorf("image %s is not in the guest's containerd (namespace %s): import it first: %w", name, r.namespace, err)
	}
	if err != nil {
		return knownImage{}, fmt.Errorf("look up image %s: %w", name, err)
	}
	match := matcher(r.platform)
	r.mu.Lock()
	known, checked := r.checkedImages[name]
	r.mu.Unlock()
	if checked && known.Target().Digest == meta.Target.Digest {
		// Same name, same content as a container before: its platform
		// was checked and it was unpacked then.
		return known, nil
	}
	ok, err := hasPlatform(ctx, r.client.ContentStore(), meta.Target, match)
	if err != nil {
		return knownImage{}, fmt.Errorf("image %s: %w", name, err)
	}
	if !ok {
		return knownImage{}, fmt.Errorf("%w: image %s has nothing for %s", ErrPlatformMismatch, name, r.platform)
	}
	image := client.NewImageWithPlatform(r.client, meta, match)
	unpacked, err := image.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return knownImage{}, fmt.Errorf("image %s for %s: %w", name, r.platform, err)
	}
	if !unpacked {
		if err := image.Unpack(ctx, r.snapshotter); err != nil {
			return knownImage{}, fmt.Errorf("unpack image %s for %s: %w", name, r.platform, err)
		}
	}
	known = knownImage{Image: image}
	if known.config, err = image.Config(ctx); err != nil {
		return knownImage{}, fmt.Errorf("image %s for %s: config: %w", name, r.platform, err)
	}
	if known.configBlob, err = content.ReadBlob(ctx, image.ContentStore(), known.config); err != nil {
		return knownImage{}, fmt.Errorf("image %s for %s: read config: %w", name, r.platform, err)
	}
	if known.diffIDs, err = image.RootFS(ctx); err != nil {
		return knownImage{}, fmt.Errorf("image %s for %s: layers: %w", name, r.platform, err)
	}
	r.mu.Lock()
	if r.checkedImages == nil {
		r.checkedImages = map[string]knownImage{}
	}
	r.checkedImages[name] = known
	r.mu.Unlock()
	return known, nil
}

// knownImage is an image found usable for the board, with what a
// container needs of it read once: its config (descriptor and blob) and
// its layers' diff IDs.
type knownImage struct {
	client.Image
	config     ocispec.Descriptor
	configBlob []byte
	diffIDs    []digest.Digest
}

func (i knownImage) Config(context.Context) (ocispec.Descriptor, error) { return i.config, nil }
func (i knownImage) RootFS(context.Context) ([]digest.Digest, error)    { return i.diffIDs, nil }

// ContentStore serves the config blob from memory, the rest from the
// guest.
func (i knownImage) ContentStore() content.Store {
	return configStore{Store: i.Image.ContentStore(), desc: i.config, blob: i.configBlob}
}

type configStore struct {
	content.Store
	desc ocispec.Descriptor
	blob []byte
}

func (s configStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if desc.Digest == s.desc.Digest {
		return blobReader{bytes.NewReader(s.blob)}, nil
	}
	return s.Store.ReaderAt(ctx, desc)
}

type blobReader struct{ *bytes.Reader }

func (blobReader) Close() error { return nil }
