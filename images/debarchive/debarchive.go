// Package debarchive is a small, verified client for Debian's archive. It
// fetches .deb files for a guest's suite and architecture (trixie/arm64,
// bookworm/armhf) without touching the host's apt configuration: the
// kernel package, busybox-static for a host-built initrd, containerd and
// runc to push to a guest over SSH.
//
// Trust flows the way it does for apt: InRelease is checked with the host's
// gpgv against debian-archive-keyring, Packages.xz against the SHA256 that
// InRelease lists, and each .deb against the SHA256 that Packages lists.
// Everything verified is cached under Client.CacheDir.
package debarchive

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"
)

const (
	// DefaultMirror is Debian's CDN-backed mirror.
	DefaultMirror = "http://deb.debian.org/debian"
	// DefaultKeyring is where debian-archive-keyring puts the archive keys.
	DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
	// DefaultIndexMaxAge is how long a verified index is used before the
	// mirror is asked again. Debian's mirrors update four times a day.
	DefaultIndexMaxAge = 6 * time.Hour
	// DefaultIdleTimeout is how long a download may send nothing before it
	// is given up (and retried): a stalled body would otherwise hold the
	// cache for other processes forever.
	DefaultIdleTimeout = time.Minute
)

// Client fetches and verifies indexes and packages from one Debian mirror.
// Its zero value needs only CacheDir. A Client is safe for concurrent use;
// several processes may share one CacheDir.
type Client struct {
	Mirror      string        // default DefaultMirror; plain http is fine, everything is verified
	Keyring     string        // default DefaultKeyring
	CacheDir    string        // required, e.g. <os.UserCacheDir()>/socbox/debs
	IndexMaxAge time.Duration // default DefaultIndexMaxAge
	HTTP        *http.Client  // default: http.DefaultClient's settings, a 1-minute response header timeout
	IdleTimeout time.Duration // default DefaultIdleTimeout
	// Logf receives progress lines ("fetch trixie/arm64 index …"); may be nil.
	Logf func(format string, args ...any)

	mu          sync.Mutex
	memo        map[string]*Index      // suite/arch → index verified by this process
	indexLocks  map[string]*sync.Mutex // one Index fetch per suite/arch at a time
	defaultHTTP *http.Client
	now         func() time.Time    // tests move the clock
	wait        func(time.Duration) // tests skip retry back-off
}

func (c *Client) mirror() string {
	if c.Mirror == "" {
		return DefaultMirror
	}
	return c.Mirror
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

func (c *Client) keyring() string {
	if c.Keyring == "" {
		return DefaultKeyring
	}
	return c.Keyring
}

func (c *Client) maxAge() time.Duration {
	if c.IndexMaxAge <= 0 {
		return DefaultIndexMaxAge
	}
	return c.IndexMaxAge
}

// httpClient is c.HTTP or, by default, one like http.DefaultClient (proxy
// from the environment) that gives up on a server that accepts a request
// and never answers. Downloads are bounded by the caller's context.
func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defaultHTTP == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		c.defaultHTTP = &http.Client{Transport: t}
	}
	return c.defaultHTTP
}

func (c *Client) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c *Client) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

func (c *Client) check() error {
	if c.CacheDir == "" {
		return fmt.Errorf("debarchive: Client.CacheDir is required")
	}
	return nil
}

// FetchDebs resolves pkgs (see Index.Resolve) against suite/arch, leaving out
// what installed names, downloads what is left and returns the local .deb
// paths in install order, dependencies first.
func (c *Client) FetchDebs(ctx context.Context, suite, arch string, pkgs []string, installed map[string]bool) ([]string, error) {
	idx, err := c.Index(ctx, suite, arch)
	if err != nil {
		return nil, err
	}
	resolved, err := idx.Resolve(pkgs, installed)
	if err != nil {
		return nil, fmt.Errorf("fetch debs for %s/%s: %w", suite, arch, err)
	}
	paths := make([]string, 0, len(resolved))
	for _, p := range resolved {
		path, err := c.Download(ctx, p)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// nameRE limits suites and architectures to what can go into a URL path and
// a directory name unchanged.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_-]*$`)

func checkSuiteArch(suite, arch string) error {
	if !nameRE.MatchString(suite) {
		return fmt.Errorf("debarchive: bad suite name %q", suite)
	}
	if !nameRE.MatchString(arch) {
		return fmt.Errorf("debarchive: bad architecture name %q", arch)
	}
	return nil
}
