package debarchive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ulikunitz/xz"
)

// Index returns the verified index of main/binary-<arch> in suite. It
// fetches dists/<suite>/InRelease, verifies its signature with gpgv and that
// it has not expired (Valid-Until), then fetches Packages.xz (by hash when
// the archive supports it), checks its size and SHA256 against InRelease and
// parses it.
//
// The result is cached under CacheDir and used for IndexMaxAge; after that
// the mirror is asked again, and Packages is downloaded only if it changed.
// If the mirror cannot be reached the cached index is used however old it
// is, with a warning through Logf and Index.Stale set. A verification
// failure is never hidden that way.
func (c *Client) Index(ctx context.Context, suite, arch string) (*Index, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := checkSuiteArch(suite, arch); err != nil {
		return nil, err
	}
	key := suite + "/" + arch
	unlock := c.lockIndex(key)
	defer unlock()
	now := c.clock()
	if idx := c.remembered(key); idx != nil && now.Sub(idx.FetchedAt) < c.maxAge() {
		return idx, nil
	}

	dir := c.indexDir(suite, arch)
	cached, cacheErr := c.loadCachedIndex(ctx, dir, suite, arch)
	if cacheErr == nil && now.Sub(cached.FetchedAt) < c.maxAge() && cached.release.checkValidUntil(now) == nil {
		c.remember(key, cached)
		return cached, nil
	}

	idx, err := c.refreshIndex(ctx, dir, suite, arch)
	if err == nil {
		c.remember(key, idx)
		return idx, nil
	}
	var fe *fetchError
	if cacheErr != nil || !errors.As(err, &fe) || ctx.Err() != nil {
		return nil, fmt.Errorf("index %s: %w", key, err)
	}
	cached.Stale = true
	msg := fmt.Sprintf("warning: %s index: cannot refresh it from the mirror (%v); using the cached index verified %s ago",
		key, err, now.Sub(cached.FetchedAt).Round(time.Minute))
	if vErr := cached.release.checkValidUntil(now); vErr != nil {
		msg += "; " + vErr.Error()
	}
	c.logf("%s", msg)
	return cached, nil
}

// lockIndex makes concurrent Index calls for one suite/arch wait for each
// other (the second then finds the first one's result), while other
// suites and architectures go ahead.
func (c *Client) lockIndex(key string) (unlock func()) {
	c.mu.Lock()
	if c.indexLocks == nil {
		c.indexLocks = map[string]*sync.Mutex{}
	}
	l := c.indexLocks[key]
	if l == nil {
		l = &sync.Mutex{}
		c.indexLocks[key] = l
	}
	c.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (c *Client) remembered(key string) *Index {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.memo[key]
}

func (c *Client) remember(key string, idx *Index) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.memo == nil {
		c.memo = map[string]*Index{}
	}
	c.memo[key] = idx
}

// indexDir is where the index of suite/arch from this mirror is cached.
func (c *Client) indexDir(suite, arch string) string {
	return filepath.Join(c.CacheDir, "index", mirrorSlug(c.mirror()), suite, arch)
}

// mirrorSlug turns a mirror URL into a directory name:
// "http://deb.debian.org/debian" → "deb.debian.org_debian".
func mirrorSlug(mirror string) string {
	if _, rest, ok := strings.Cut(mirror, "://"); ok {
		mirror = rest
	}
	mirror = strings.Trim(mirror, "/")
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, mirror)
}

// The cache of one suite/arch holds the InRelease file as fetched (its
// modification time is when it was last verified) and the parsed Packages
// in packagesCacheFile, named by the SHA256 of the Packages.xz it came
// from, so InRelease always names the matching one.
const (
	inReleaseFile = "InRelease"
	cacheFormat   = 1
)

func packagesCacheFile(sum string) string { return "packages-" + sum + ".gob" }

type packagesCache struct {
	Format   int
	Packages []Package
}

// loadCachedIndex reads a cached index, verifying the InRelease signature
// again (cheap, and it catches a keyring that dropped a key). It does not
// check the index's age or Valid-Until: the caller decides.
func (c *Client) loadCachedIndex(ctx context.Context, dir, suite, arch string) (*Index, error) {
	raw, err := os.ReadFile(filepath.Join(dir, inReleaseFile))
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(filepath.Join(dir, inReleaseFile))
	if err != nil {
		return nil, err
	}
	text, err := verifyInRelease(ctx, c.keyring(), raw)
	if err != nil {
		return nil, err
	}
	rel, err := parseRelease(text)
	if err != nil {
		return nil, err
	}
	if suite != rel.Suite && suite != rel.Codename {
		return nil, fmt.Errorf("cached InRelease is for %s", rel.Codename)
	}
	sum, ok := rel.files[packagesPath(arch)]
	if !ok {
		return nil, fmt.Errorf("cached InRelease lists no %s", packagesPath(arch))
	}
	pkgs, err := readPackagesCache(filepath.Join(dir, packagesCacheFile(sum.SHA256)))
	if err != nil {
		return nil, err
	}
	idx := newIndexFromRelease(suite, arch, rel, pkgs)
	idx.FetchedAt = fi.ModTime()
	return idx, nil
}

func packagesPath(arch string) string { return "main/binary-" + arch + "/Packages.xz" }

// refreshIndex asks the mirror for the current index and caches it.
func (c *Client) refreshIndex(ctx context.Context, dir, suite, arch string) (*Index, error) {
	base := strings.TrimSuffix(c.mirror(), "/") + "/dists/" + suite + "/"
	raw, err := c.getSmall(ctx, base+inReleaseFile, 64<<20)
	if err != nil {
		return nil, err
	}
	text, err := verifyInRelease(ctx, c.keyring(), raw)
	if err != nil {
		return nil, err
	}
	rel, err := parseRelease(text)
	if err != nil {
		return nil, err
	}
	if err := rel.check(suite, c.clock()); err != nil {
		return nil, err
	}
	if err := c.checkNotOlder(ctx, suite, rel); err != nil {
		return nil, err
	}
	path := packagesPath(arch)
	sum, ok := rel.files[path]
	if !ok {
		return nil, fmt.Errorf("InRelease of %s lists no %s: is %s one of its architectures?", suite, path, arch)
	}

	cacheFile := filepath.Join(dir, packagesCacheFile(sum.SHA256))
	pkgs, err := readPackagesCache(cacheFile)
	if err != nil {
		urls := []string{base + path}
		if rel.AcquireByHash {
			// by-hash names cannot change under us while the mirror syncs.
			urls = []string{base + "main/binary-" + arch + "/by-hash/SHA256/" + sum.SHA256, base + path}
		}
		c.logf("fetch %s/%s index (%s)", suite, arch, humanSize(sum.Size))
		var buf bytes.Buffer
		err := c.fetchVerified(ctx, urls, sum.Size, sum.SHA256, &buf, func() error { buf.Reset(); return nil })
		if err != nil {
			return nil, err
		}
		xr, err := xz.NewReader(&buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if pkgs, err = ParsePackages(xr); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := writeAtomic(cacheFile, func(f *os.File) error {
			return gob.NewEncoder(f).Encode(packagesCache{Format: cacheFormat, Packages: pkgs})
		}); err != nil {
			return nil, fmt.Errorf("cache %s index: %w", suite+"/"+arch, err)
		}
	}
	// InRelease goes last: its presence says the packages it names are there.
	if err := writeAtomic(filepath.Join(dir, inReleaseFile), func(f *os.File) error {
		_, err := f.Write(raw)
		return err
	}); err != nil {
		return nil, fmt.Errorf("cache %s index: %w", suite+"/"+arch, err)
	}
	removeOtherPackagesCaches(dir, packagesCacheFile(sum.SHA256))

	idx := newIndexFromRelease(suite, arch, rel, pkgs)
	idx.FetchedAt = c.clock()
	c.logf("%s/%s index: %d packages (%s of %s)", suite, arch, idx.Len(),
		strings.TrimSpace(rel.Codename+" "+rel.Version), rel.Date.UTC().Format(time.DateOnly))
	return idx, nil
}

// checkNotOlder refuses a Release dated before one this cache verified
// for the same suite from the same mirror, for any architecture. A signed
// Release stays validly signed forever, and Debian's stable suites carry
// no Valid-Until, so over plain http a man in the middle could otherwise
// replay an old one and hold a guest on packages with known holes. The
// cached copy is verified again before its Date is trusted.
func (c *Client) checkNotOlder(ctx context.Context, suite string, rel *release) error {
	cached, _ := filepath.Glob(filepath.Join(c.CacheDir, "index", mirrorSlug(c.mirror()), suite, "*", inReleaseFile))
	for _, f := range cached {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		text, err := verifyInRelease(ctx, c.keyring(), raw)
		if err != nil {
			continue // a cache socbox can no longer verify says nothing
		}
		prev, err := parseRelease(text)
		if err != nil || (suite != prev.Suite && suite != prev.Codename) {
			continue
		}
		if rel.Date.Before(prev.Date) {
			return fmt.Errorf("%w: the mirror's InRelease for %s is dated %s, older than the one verified before (%s): an old signed index replayed, or a mirror that went back in time; try again later or use another mirror",
				ErrVerify, suite, rel.Date.UTC().Format(time.RFC1123), prev.Date.UTC().Format(time.RFC1123))
		}
	}
	return nil
}

func newIndexFromRelease(suite, arch string, rel *release, pkgs []Package) *Index {
	idx := NewIndex(suite, arch, pkgs)
	idx.Codename, idx.Version, idx.Date = rel.Codename, rel.Version, rel.Date
	idx.release = rel
	return idx
}

func readPackagesCache(path string) ([]Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pc packagesCache
	if err := gob.NewDecoder(bufioReader(f)).Decode(&pc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pc.Format != cacheFormat {
		return nil, fmt.Errorf("%s: cache format %d, want %d", path, pc.Format, cacheFormat)
	}
	return pc.Packages, nil
}

// removeOtherPackagesCaches deletes cached Packages no InRelease names any
// more. Best effort: another process may be doing the same.
func removeOtherPackagesCaches(dir, keep string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "packages-*.gob"))
	for _, m := range matches {
		if filepath.Base(m) != keep {
			os.Remove(m)
		}
	}
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func bufioReader(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 1<<20) }
