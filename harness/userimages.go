package harness

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
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

// add imports source into rt for platform p, unless it is there already
// with the same content.
func (ii *importedImages) add(ctx context.Context, rt *ctrd.Runtime, p boards.Platform, logf func(string, ...any), source string) (string, error) {
	src, err := ociimage.ParseSource(source)
	if err != nil {
		return "", err
	}
	if src, err = src.Resolve(""); err != nil {
		return "", err
	}

	ii.mu.Lock()
	defer ii.mu.Unlock()
	start := time.Now()
	img, err := src.Load(ctx, p)
	if err != nil {
		return "", err
	}
	key := src.String()
	if prev, ok := ii.bySource[key]; ok && prev.id == img.ID && rt.HasImage(ctx, prev.name) {
		logf("image %s: already imported as %s", src, prev.name)
		return prev.name, nil
	}
	logf("image %s: %s, %d layers, %s, read in %.1fs; importing as %s",
		src, img.Platform, img.Layers, megabytes(img.Size), time.Since(start).Seconds(), img.Name)

	// Streamed: the archive is written into the import as it is read,
	// layer by layer, from the file or the registry.
	start = time.Now()
	pr, pw := io.Pipe()
	sent := &countingWriter{w: pw}
	stop := logProgress(logf, src, sent, img.Size, start)
	go func() { pw.CloseWithError(ociimage.WriteArchive(sent, img.Image, img.Name)) }()
	name, err := rt.Import(ctx, pr, p)
	pr.CloseWithError(err)
	stop()
	if err != nil {
		return "", fmt.Errorf("send %s to the guest as %s: %w", src, img.Name, err)
	}
	d := time.Since(start).Seconds()
	logf("image %s: imported as %s in %.1fs (%s, %.1f MB/s)", src, name, d, megabytes(sent.n.Load()), float64(sent.n.Load())/1e6/max(d, 0.001))

	if ii.bySource == nil {
		ii.bySource = map[string]importedImage{}
	}
	// The name now holds this image: a source imported under it before
	// must be sent again next time.
	for k, v := range ii.bySource {
		if v.name == name {
			delete(ii.bySource, k)
		}
	}
	ii.bySource[key] = importedImage{id: img.ID, name: name}
	return name, nil
}

// logProgress says every progressEvery how much of an image has gone to
// the guest, until the returned stop is called.
func logProgress(logf func(string, ...any), src ociimage.Source, sent *countingWriter, total int64, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				logf("image %s: %s of %s sent after %.0fs", src, megabytes(sent.n.Load()), megabytes(total), time.Since(start).Seconds())
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
