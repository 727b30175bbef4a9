package ctrd

import (
	"archive/tar"
	"encoding/json"
	"io"
	"path"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// indexSniffer keeps a copy of an OCI archive's index.json as the archive
// streams past, so that a refusal can say which platforms the archive does
// have: containerd's importer filters them out without telling.
type indexSniffer struct {
	pw    *io.PipeWriter
	done  chan struct{}
	index []byte
}

// sniffIndex returns a reader to use in place of r and the sniffer. Call
// platforms once the returned reader is no longer read from.
func sniffIndex(r io.Reader) (io.Reader, *indexSniffer) {
	pr, pw := io.Pipe()
	s := &indexSniffer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		// Drain whatever is not parsed, so that the importer is never
		// blocked by the copy (a non-tar stream is simply drained).
		defer io.Copy(io.Discard, pr)
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if path.Clean(h.Name) == ocispec.ImageIndexFile && h.Size < 1<<20 {
				s.index, _ = io.ReadAll(tr)
			}
		}
	}()
	return io.TeeReader(r, pw), s
}

// platforms lists the platforms index.json names, as "linux/arm64".
func (s *indexSniffer) platforms() []string {
	s.pw.Close()
	<-s.done
	var index ocispec.Index
	if json.Unmarshal(s.index, &index) != nil {
		return nil
	}
	var out []string
	for _, m := range index.Manifests {
		if m.Platform != nil {
			out = append(out, platforms.Format(*m.Platform))
		}
	}
	return out
}
