package ociimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/socbox/socbox/boards"
)

// The transports a user image can come from, named as skopeo names them so
// that a source string means the same thing in both tools.
const (
	// TransportOCI is an OCI image layout: a directory, or a tar archive of
	// one (what `docker buildx build --output type=oci` and Docker 25's
	// `docker save` write).
	TransportOCI = "oci"
	// TransportDockerArchive is a `docker save` tarball (manifest.json,
	// config and layer tars).
	TransportDockerArchive = "docker-archive"
	// TransportRegistry is a registry reference, pulled on the host.
	TransportRegistry = "docker"
)

var (
	// ErrNotSource is returned (wrapped) by ParseSource for a bare image
	// name, which names an image already in the guest's containerd.
	ErrNotSource = errors.New("not an image source")
	// ErrWrongPlatform is returned (wrapped) when an image has nothing for
	// the board's platform.
	ErrWrongPlatform = errors.New("wrong platform")
)

// otherTransports are skopeo's transports socbox does not read: a source
// written with one of them is refused with a hint rather than taken for an
// image name.
var otherTransports = map[string]string{
	"oci-archive":        "oci:PATH reads OCI archives as well as layout directories",
	"docker-daemon":      "export it with docker save -o IMAGE.tar and use docker-archive:IMAGE.tar",
	"containers-storage": "export it with podman save --format oci-archive -o IMAGE.tar and use oci:IMAGE.tar",
	"dir":                "copy it to a layout with skopeo copy dir:PATH oci:LAYOUT and use oci:LAYOUT",
	"ostree":             "copy it to a layout with skopeo copy and use oci:LAYOUT",
	"sif":                "copy it to a layout with skopeo copy and use oci:LAYOUT",
	"tarball":            "use docker-archive:PATH for a docker save tarball, oci:PATH for an OCI archive",
}

// transportName is what may stand before the colon of a transport.
var transportName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Source is where a user image comes from.
type Source struct {
	// Transport is TransportOCI, TransportDockerArchive or TransportRegistry.
	Transport string
	// Path is the layout directory or tarball (oci, docker-archive).
	Path string
	// Ref picks an image: in an OCI layout its ref name (or containerd
	// image name), in a docker save tarball one of its tags; optional when
	// there is only one. For the registry transport it is the reference.
	Ref string
}

// ParseSource parses a source as skopeo writes it:
//
//	oci:PATH[:REF]             an OCI image layout directory or archive
//	docker-archive:PATH[:TAG]  a docker save tarball
//	docker://REGISTRY/REPO:TAG or docker://REGISTRY/REPO@sha256:HEX
//
// PATH ends at the first colon, as in skopeo. Anything else that parses as
// an image name is not a source: it returns an error wrapping
// ErrNotSource. A string that looks like another transport
// ("oci-archive:x.tar", "https://...") is an error naming the ones socbox
// reads.
func ParseSource(s string) (Source, error) {
	if ref, ok := strings.CutPrefix(s, TransportRegistry+"://"); ok {
		if ref == "" {
			return Source{}, fmt.Errorf("image source %q: no reference: write docker://REGISTRY/REPO:TAG", s)
		}
		if _, err := name.ParseReference(ref); err != nil {
			return Source{}, fmt.Errorf("image source %q: %w: write docker://REGISTRY/REPO:TAG or docker://REGISTRY/REPO@sha256:HEX", s, err)
		}
		return Source{Transport: TransportRegistry, Ref: ref}, nil
	}
	for _, tr := range []string{TransportOCI, TransportDockerArchive} {
		rest, ok := strings.CutPrefix(s, tr+":")
		if !ok {
			continue
		}
		path, ref, _ := strings.Cut(rest, ":")
		if path == "" {
			return Source{}, fmt.Errorf("image source %q: no path: write %s:PATH[:REF]", s, tr)
		}
		return Source{Transport: tr, Path: path, Ref: ref}, nil
	}

	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return Source{}, unknownTransport(s, scheme, "")
	}
	if tr, rest, ok := strings.Cut(s, ":"); ok && transportName.MatchString(tr) {
		if hint, known := otherTransports[tr]; known {
			return Source{}, unknownTransport(s, tr, hint)
		}
		// After a name's first colon comes a tag or a registry's port,
		// never a path.
		if _, err := name.ParseReference(s); err != nil || strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, ".") {
			return Source{}, unknownTransport(s, tr, "")
		}
	}
	return Source{}, fmt.Errorf("%q: %w (a name of an image already in the guest's containerd)", s, ErrNotSource)
}

func unknownTransport(s, tr, hint string) error {
	msg := fmt.Sprintf("image source %q: unknown transport %q: use oci:PATH[:REF], docker-archive:PATH or docker://REGISTRY/REPO:TAG, or a bare name for an image already in the guest's containerd", s, tr)
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return errors.New(msg)
}

// IsSource reports whether s is meant as an image source rather than the
// name of an image in the guest's containerd: it has one of the transport
// prefixes, or looks like a transport socbox does not read (so that using it
// reports why).
func IsSource(s string) bool {
	_, err := ParseSource(s)
	return !errors.Is(err, ErrNotSource)
}

// String writes the source back in the form ParseSource reads.
func (s Source) String() string {
	switch s.Transport {
	case TransportRegistry:
		return TransportRegistry + "://" + s.Ref
	default:
		if s.Ref != "" {
			return s.Transport + ":" + s.Path + ":" + s.Ref
		}
		return s.Transport + ":" + s.Path
	}
}

// Resolve makes a relative Path absolute, against dir; a relative dir is
// taken against the process's working directory. It refuses a path with a
// colon, which String could not write unambiguously.
func (s Source) Resolve(dir string) (Source, error) {
	if s.Path == "" {
		return s, nil
	}
	p := s.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return s, fmt.Errorf("image source %s: %w", s, err)
	}
	if strings.Contains(abs, ":") {
		return s, fmt.Errorf("image source %s: the path %s has a colon, which ends the path in a source: move it to a path without one", s, abs)
	}
	s.Path = abs
	return s, nil
}

// CheckPath checks that a file source's path exists, so that a scenario
// file naming a missing image fails when it is loaded, not when it runs.
func (s Source) CheckPath() error {
	if s.Path == "" {
		return nil
	}
	if _, err := os.Stat(s.Path); err != nil {
		return fmt.Errorf("image source %s: %w", s, pathHint(err))
	}
	return nil
}

// Loaded is a user image read on the host and checked against the board's
// platform, ready for WriteArchive. Its layers are read only when written.
type Loaded struct {
	Source Source
	Image  v1.Image
	// Name is what the image is stored under in the guest's containerd:
	// the reference the source gives it (the registry reference, the docker
	// save tag, the layout's containerd image name), else
	// socbox.local/<file name>:<ref or latest>.
	Name string
	// ID is the digest of the image's config, which the image's content
	// decides: the same ID is the same image, whatever its source.
	ID v1.Hash
	// Platform is the image's, e.g. linux/arm64.
	Platform string
	Layers   int
	// Size is what WriteArchive sends: manifest, config and layers, in
	// bytes.
	Size int64
}

// Load reads the image the source names for platform p: from an index or
// multi-platform list it picks p's manifest, the way containerd does (an
// arm64 board also runs linux/arm/v7 images, when that is all there is),
// and it refuses an image with nothing for p, naming the platforms it has
// and how to build one for p. Only manifests and configs are read here (and
// for a registry, fetched); layers stream later, from WriteArchive.
func (s Source) Load(ctx context.Context, p boards.Platform) (*Loaded, error) {
	var (
		l   *Loaded
		err error
	)
	switch s.Transport {
	case TransportOCI:
		l, err = loadOCI(s, p)
	case TransportDockerArchive:
		l, err = loadDockerArchive(s, p)
	case TransportRegistry:
		l, err = loadRegistry(ctx, s, p)
	default:
		err = fmt.Errorf("unknown transport %q", s.Transport)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", s, err)
	}
	if err := l.describe(); err != nil {
		return nil, fmt.Errorf("load %s: %w", s, err)
	}
	return l, nil
}

// describe fills in ID, Layers and Size from the image.
func (l *Loaded) describe() error {
	var err error
	if l.ID, err = l.Image.ConfigName(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	m, err := l.Image.Manifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	raw, err := l.Image.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	l.Layers = len(m.Layers)
	l.Size = int64(len(raw)) + m.Config.Size
	for _, layer := range m.Layers {
		l.Size += layer.Size
	}
	return nil
}

var (
	nonRepoChars = regexp.MustCompile(`[^a-z0-9._-]+`)
	validTag     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// ResolveSource makes the path of an image source absolute, taking a
// relative one from dir, and checks that it exists; any other image name
// is returned as it is. Scenario files resolve their images with it, so
// that a path is taken from the file's own directory.
func ResolveSource(image, dir string) (string, error) {
	if !IsSource(image) {
		return image, nil
	}
	src, err := ParseSource(image)
	if err != nil {
		return image, err
	}
	if src, err = src.Resolve(dir); err != nil {
		return image, err
	}
	if err := src.CheckPath(); err != nil {
		return image, err
	}
	return src.String(), nil
}
