package debarchive

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Download fetches the .deb of p (which must come from an Index: its Size
// and SHA256 are what is trusted) into CacheDir and returns its path. Files
// are named by their SHA256 and written through a temporary file and a
// rename, so a present file is a verified one: a cache hit costs one stat
// and no request, and several processes may download at once. A file that
// fails verification is removed, never left in the cache.
func (c *Client) Download(ctx context.Context, p Package) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	if err := checkDownloadable(p); err != nil {
		return "", err
	}
	dst := filepath.Join(c.CacheDir, "sha256", p.SHA256+"_"+safeFileName(path.Base(p.Filename)))
	if fi, err := os.Stat(dst); err == nil && fi.Size() == p.Size {
		return dst, nil
	}
	url := strings.TrimSuffix(c.mirror(), "/") + "/" + p.Filename
	c.logf("download %s %s (%s)", p.Name, p.Version, humanSize(p.Size))
	start := time.Now()
	err := writeAtomic(dst, func(f *os.File) error {
		return c.fetchVerified(ctx, []string{url}, p.Size, p.SHA256, f, func() error {
			if _, err := f.Seek(0, 0); err != nil {
				return err
			}
			return f.Truncate(0)
		})
	})
	if err != nil {
		var fe *fetchError
		if errors.As(err, &fe) && fe.StatusCode == http.StatusNotFound {
			return "", fmt.Errorf("download %s: %w (the mirror no longer has this version: fetch the index again)", p, err)
		}
		return "", fmt.Errorf("download %s: %w", p, err)
	}
	c.logf("downloaded %s in %s", path.Base(p.Filename), time.Since(start).Round(10*time.Millisecond))
	return dst, nil
}

func checkDownloadable(p Package) error {
	if p.Filename == "" || p.Size <= 0 {
		return fmt.Errorf("download %s: no Filename or Size: the package did not come from an index", p)
	}
	if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("download %s: no valid SHA256: the package did not come from a verified index", p)
	}
	for _, part := range strings.Split(p.Filename, "/") {
		if part == ".." || part == "" {
			return fmt.Errorf("download %s: suspicious Filename %q", p, p.Filename)
		}
	}
	return nil
}

// safeFileName keeps the characters Debian uses in .deb names and replaces
// anything else.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".+~_-", r) {
			return r
		}
		return '_'
	}, s)
}
