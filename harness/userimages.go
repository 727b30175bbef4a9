package harness

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/socbox/socbox/harness/ociimage"
)

// progressEvery is how often a long image import says how far it is.
const progressEvery = 10 * time.Second

// importedImages remembers what ImportImage put in a board's containerd, by
// source, so that running the same source again does not send it again.
type importedImages struct {
	// mu also makes imports on one board take turns: two containers
	// started together from one source import it once.
	mu       sync.Mutex
	bySource map[string]importedImage
}

type importedImage struct {
	id   v1.Hash // the image's config digest: its content
	name string
}

// ImportImage puts a user image into the board's containerd and returns the
// name it is stored under, which Container.Image can then use. source is
//
//	oci:PATH[:REF]             an OCI image layout directory, or a tar archive of one
//	docker-archive:PATH[:TAG]  a docker save tarball
//	docker://REGISTRY/REPO:TAG (or @sha256:…) pulled on the host, with docker login's credentials
//
// A relative PATH is taken from the working directory. The image for the
// board's platform is picked from a multi-platform one; an image with
// nothing for it is refused before anything is sent (errors.Is
// ociimage.ErrWrongPlatform). Importing a source again is skipped while
// its content is unchanged. Board.Run calls this itself for a
// Container.Image that is a source.
func (b *Board) ImportImage(ctx context.Context, source string) (string, error) {
	if err := b.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBoardFailed, err)
	}
	if b.Runtime == nil {
		return "", fmt.Errorf("import image on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	name, err := b.importImage(ctx, source)
	if err != nil {
		return "", fmt.Errorf("import image on %s: %w", b.Profile.Slug, err)
	}
	return name, nil
}

func (b *Board) importImage(ctx context.Context, source string) (string, error) {
	src, err := ociimage.ParseSource(source)
	if err != nil {
		return "", err
	}
	if src, err = src.Resolve(""); err != nil {
		return "", err
	}
	p := b.Profile.Platform

	b.imported.mu.Lock()
	defer b.imported.mu.Unlock()
	start := time.Now()
	img, err := src.Load(ctx, p)
	if err != nil {
		return "", err
	}
	key := src.String()
	if prev, ok := b.imported.bySource[key]; ok && prev.id == img.ID && b.Runtime.HasImage(ctx, prev.name) {
		b.logf("image %s: already imported as %s", src, prev.name)
		return prev.name, nil
	}
	b.logf("image %s: %s, %d layers, %s, read in %.1fs; importing as %s",
		src, img.Platform, img.Layers, megabytes(img.Size), time.Since(start).Seconds(), img.Name)

	// Streamed: the archive is written into the import as it is read,
	// layer by layer, from the file or the registry.
	start = time.Now()
	pr, pw := io.Pipe()
	sent := &countingWriter{w: pw}
	stop := b.logProgress(src, sent, img.Size, start)
	go func() { pw.CloseWithError(ociimage.WriteArchive(sent, img.Image, img.Name)) }()
	name, err := b.Runtime.Import(ctx, pr, p)
	pr.CloseWithError(err)
	stop()
	if err != nil {
		return "", fmt.Errorf("send %s to the guest as %s: %w", src, img.Name, err)
	}
	d := time.Since(start).Seconds()
	b.logf("image %s: imported as %s in %.1fs (%s, %.1f MB/s)", src, name, d, megabytes(sent.n.Load()), float64(sent.n.Load())/1e6/max(d, 0.001))

	if b.imported.bySource == nil {
		b.imported.bySource = map[string]importedImage{}
	}
	// The name now holds this image: a source imported under it before
	// must be sent again next time.
	for k, v := range b.imported.bySource {
		if v.name == name {
			delete(b.imported.bySource, k)
		}
	}
	b.imported.bySource[key] = importedImage{id: img.ID, name: name}
	return name, nil
}

// logProgress says every progressEvery how much of an image has gone to
// the guest, until the returned stop is called.
func (b *Board) logProgress(src ociimage.Source, sent *countingWriter, total int64, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.logf("image %s: %s of %s sent after %.0fs", src, megabytes(sent.n.Load()), megabytes(total), time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(done) }
}

// countingWriter counts what goes through it to w.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
