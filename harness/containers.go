package harness

import (
	"context"
	"fmt"
	"io"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/ociimage"
)

// Container says what to run in the guest; see ctrd.Container.
type Container = ctrd.Container

// Mount is a bind mount of a guest path into a container; see
// ctrd.Mount.
type Mount = ctrd.Mount

// ContainerResult is what a container did; see ctrd.ContainerResult.
type ContainerResult = ctrd.ContainerResult

// BusyboxRef is the name the built-in busybox image is imported under.
const BusyboxRef = "socbox.local/busybox:latest"

// Run runs a container on the board and returns its exit code, output and
// duration. A non-zero exit is a result, not an error. An empty Image means
// the built-in busybox.
func (b *Board) Run(ctx context.Context, c Container) (ContainerResult, error) {
	if err := b.Err(); err != nil {
		return ContainerResult{}, fmt.Errorf("%w: %w", ErrBoardFailed, err)
	}
	if b.Runtime == nil {
		return ContainerResult{}, fmt.Errorf("run on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	var err error
	if c, err = b.resolveImage(ctx, c); err != nil {
		return ContainerResult{}, err
	}
	res, err := b.Runtime.Run(ctx, c)
	if err != nil {
		return res, fmt.Errorf("run on %s: %w", b.Profile.Slug, err)
	}
	return res, nil
}

// resolveImage names the image c runs in the guest: the built-in busybox
// for an empty Image, and for an image source (oci:, docker-archive:,
// docker://) the name ImportImage stored it under.
func (b *Board) resolveImage(ctx context.Context, c Container) (Container, error) {
	switch {
	case c.Image == "":
		c.Image = b.BusyboxImage
	case ociimage.IsSource(c.Image):
		name, err := b.ImportImage(ctx, c.Image)
		if err != nil {
			return c, err
		}
		c.Image = name
	}
	return c, nil
}

func importBusyboxImage(ctx context.Context, rt *ctrd.Runtime, busybox string, p boards.Platform) (string, error) {
	img, err := ociimage.Busybox(busybox, p)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ociimage.WriteArchive(pw, img, BusyboxRef)) }()
	name, err := rt.Import(ctx, pr, p)
	pr.CloseWithError(err)
	if err != nil {
		return "", fmt.Errorf("import busybox image: %w", err)
	}
	return name, nil
}
