package debarchive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIndexVerifiedFetch(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	c := a.client(t.TempDir(), &now)
	ctx := context.Background()

	idx, err := c.Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	require.Equal(t, fakeSuite, idx.Codename)
	require.False(t, idx.Stale)
	require.Equal(t, 2, idx.Len())
	require.Equal(t, 1, a.hitCount("dists/testsuite/main/binary-arm64/by-hash/SHA256/"+sha256Hex(a.packagesXZ)),
		"Packages.xz is fetched by hash when InRelease says Acquire-By-Hash")
	require.Zero(t, a.hitCount("dists/testsuite/main/binary-arm64/Packages.xz"))

	hello, ok := idx.Lookup("hello")
	require.True(t, ok)
	require.Equal(t, sha256Hex(a.debs["hello"]), hello.SHA256)

	paths, err := c.FetchDebs(ctx, fakeSuite, "arm64", []string{"hello"}, nil)
	require.NoError(t, err)
	require.Len(t, paths, 2)
	require.Contains(t, filepath.Base(paths[0]), "libhello_1.0-1_arm64.deb", "dependencies first")
	require.Contains(t, filepath.Base(paths[1]), "hello_1.0-1_arm64.deb")
	data, err := os.ReadFile(paths[1])
	require.NoError(t, err)
	require.Equal(t, a.debs["hello"], data)

	script, err := ReadFileFromDeb(ctx, paths[1], "./usr/bin/hello-2")
	require.NoError(t, err, "symbolic links in the package are followed")
	require.Equal(t, "#!/bin/sh\necho hello\n", string(script))

	_, err = c.Index(ctx, fakeSuite, "armhf")
	require.ErrorContains(t, err, "lists no main/binary-armhf/Packages.xz")
	_, err = c.Index(ctx, "../etc", "arm64")
	require.ErrorContains(t, err, "bad suite name")
}

func TestIndexRefusesBadSignatures(t *testing.T) {
	good := newFakeArchive(t).inRelease()
	for name, tc := range map[string]struct {
		inRelease func(a *fakeArchive) []byte
		want      string
	}{
		"tampered text": {
			inRelease: func(*fakeArchive) []byte {
				return bytes.Replace(good, []byte("Origin: Test"), []byte("Origin: Evil"), 1)
			},
			want: "bad signature",
		},
		"unknown key": {
			inRelease: func(a *fakeArchive) []byte {
				return a.keys.clearsign(t, a.keys.stranger, a.release(a.packagesXZ, time.Now().Add(time.Hour)))
			},
			want: "which the keyring lacks",
		},
		"unsigned text before the signature": {
			inRelease: func(*fakeArchive) []byte { return append([]byte("Codename: testsuite\n\n"), good...) },
			want:      "not a single clearsigned message",
		},
		"not signed at all": {
			inRelease: func(a *fakeArchive) []byte { return []byte(a.release(a.packagesXZ, time.Now().Add(time.Hour))) },
			want:      "not a single clearsigned message",
		},
		"expired": {
			inRelease: func(a *fakeArchive) []byte {
				return a.keys.clearsign(t, a.keys.archive, a.release(a.packagesXZ, time.Now().Add(-time.Hour)))
			},
			want: "expired",
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := newFakeArchive(t)
			a.setRawInRelease(tc.inRelease(a))
			now := time.Now()
			cache := t.TempDir()
			_, err := a.client(cache, &now).Index(context.Background(), fakeSuite, "arm64")
			require.ErrorIs(t, err, ErrVerify)
			require.ErrorContains(t, err, tc.want)
			require.NoFileExists(t, filepath.Join(cache, "index", mirrorSlug(a.srv.URL), fakeSuite, "arm64", "InRelease"))
		})
	}
}

func TestIndexRefusesReplayFromAnotherSuite(t *testing.T) {
	a := newFakeArchive(t)
	a.mu.Lock()
	a.files["dists/other/InRelease"] = a.files["dists/"+fakeSuite+"/InRelease"]
	a.mu.Unlock()
	now := time.Now()
	_, err := a.client(t.TempDir(), &now).Index(context.Background(), "other", "arm64")
	require.ErrorIs(t, err, ErrVerify)
	require.ErrorContains(t, err, `InRelease for other is for suite "testing"`)
}

func TestIndexRefusesPackagesHashMismatch(t *testing.T) {
	a := newFakeArchive(t)
	evil := xzCompress(t, "Package: hello\nVersion: 9.9\nFilename: pool/evil.deb\nSize: 1\nSHA256: "+strings.Repeat("0", 64)+"\n")
	a.setPackagesXZ(evil)
	now := time.Now()
	cache := t.TempDir()
	_, err := a.client(cache, &now).Index(context.Background(), fakeSuite, "arm64")
	require.ErrorIs(t, err, ErrVerify)
	require.ErrorContains(t, err, "the index says")
	require.NoFileExists(t, filepath.Join(cache, "index", mirrorSlug(a.srv.URL), fakeSuite, "arm64", "InRelease"))

	// Same size, other content.
	a.setPackagesXZ(bytes.Repeat([]byte{'x'}, len(a.packagesXZ)))
	_, err = a.client(cache, &now).Index(context.Background(), fakeSuite, "arm64")
	require.ErrorIs(t, err, ErrVerify)
	require.ErrorContains(t, err, "SHA256")
}

func TestIndexCache(t *testing.T) {
	a := newFakeArchive(t)
	cache := t.TempDir()
	now := time.Now()
	ctx := context.Background()

	_, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	hits := a.totalHits()

	c := a.client(cache, &now)
	idx, err := c.Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	require.Equal(t, hits, a.totalHits(), "a fresh cached index needs no request, even in a new process")
	require.Equal(t, 2, idx.Len())
	again, err := c.Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	require.Same(t, idx, again, "a client keeps the index it verified")

	// Past IndexMaxAge the mirror is asked again, but an unchanged
	// Packages.xz is not downloaded again.
	now = now.Add(DefaultIndexMaxAge + time.Minute)
	idx, err = a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	require.Equal(t, hits+1, a.totalHits())
	require.Equal(t, 2, a.hitCount("dists/testsuite/InRelease"))
	require.False(t, idx.Stale)

	// A verification failure is never hidden behind the cache.
	now = now.Add(DefaultIndexMaxAge + time.Minute)
	saved := a.inRelease()
	a.setRawInRelease(bytes.Replace(saved, []byte("Origin: Test"), []byte("Origin: Evil"), 1))
	_, err = a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.ErrorIs(t, err, ErrVerify)
	a.setRawInRelease(saved)

	// With the mirror gone the stale index is used, with a warning.
	a.srv.Close()
	var logs []string
	c = a.client(cache, &now)
	c.Logf = func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	idx, err = c.Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	require.True(t, idx.Stale)
	require.Equal(t, 2, idx.Len())
	require.Len(t, logs, 1)
	require.Contains(t, logs[0], "warning: testsuite/arm64 index: cannot refresh it from the mirror")

	// Without a cache there is nothing to fall back on.
	_, err = a.client(t.TempDir(), &now).Index(ctx, fakeSuite, "arm64")
	require.ErrorContains(t, err, "connection refused")
}

func TestIndexRefreshesChangedPackages(t *testing.T) {
	a := newFakeArchive(t)
	cache := t.TempDir()
	now := time.Now()
	ctx := context.Background()
	_, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)

	newer := xzCompress(t, "Package: hello\nVersion: 2.0-1\nFilename: pool/h/hello_2.0-1_arm64.deb\nSize: 10\nSHA256: "+strings.Repeat("a", 64)+"\n")
	a.packagesXZ = newer
	a.setPackagesXZ(newer)
	a.setInRelease(a.release(newer, time.Now().Add(24*time.Hour)), a.keys.archive)

	now = now.Add(DefaultIndexMaxAge + time.Minute)
	idx, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	hello, _ := idx.Lookup("hello")
	require.Equal(t, "2.0-1", hello.Version)
	old, err := filepath.Glob(filepath.Join(cache, "index", "*", fakeSuite, "arm64", "packages-*"))
	require.NoError(t, err)
	require.Len(t, old, 1, "the cache of the previous Packages is removed")
}

func TestDownloadRefusesMismatch(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	cache := t.TempDir()
	c := a.client(cache, &now)
	ctx := context.Background()
	idx, err := c.Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	hello, _ := idx.Lookup("hello")

	badSum := hello
	badSum.SHA256 = sha256Hex([]byte("something else"))
	badSize := hello
	badSize.Size++
	for name, p := range map[string]Package{"sha256": badSum, "size": badSize} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Download(ctx, p)
			require.ErrorIs(t, err, ErrVerify)
			entries, err := os.ReadDir(filepath.Join(cache, "sha256"))
			require.NoError(t, err)
			require.Empty(t, entries, "nothing unverified stays in the cache")
		})
	}

	gone := hello
	gone.Filename = "pool/main/h/hello/hello_0.9-1_arm64.deb"
	_, err = c.Download(ctx, gone)
	require.ErrorContains(t, err, "fetch the index again")

	_, err = c.Download(ctx, Package{Name: "made-up", Version: "1", Filename: "pool/x.deb", Size: 10})
	require.ErrorContains(t, err, "did not come from a verified index")
	dotdot := hello
	dotdot.Filename = "pool/../../etc/passwd"
	_, err = c.Download(ctx, dotdot)
	require.ErrorContains(t, err, "suspicious Filename")
}

func TestDownloadCacheHit(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	cache := t.TempDir()
	ctx := context.Background()
	idx, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	hello, _ := idx.Lookup("hello")

	first, err := a.client(cache, &now).Download(ctx, hello)
	require.NoError(t, err)
	require.Contains(t, first, hello.SHA256, "the cache is addressed by SHA256")
	hits := a.totalHits()
	second, err := a.client(cache, &now).Download(ctx, hello)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, hits, a.totalHits(), "a cache hit makes no request")
	require.Equal(t, 1, a.hitCount(hello.Filename))
}

func TestDownloadConcurrent(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	cache := t.TempDir()
	ctx := context.Background()
	idx, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	hello, _ := idx.Lookup("hello")

	// Separate clients stand for separate processes sharing the cache.
	const n = 8
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = a.client(cache, &now).Download(ctx, hello)
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, paths[0], paths[i])
	}
	data, err := os.ReadFile(paths[0])
	require.NoError(t, err)
	require.Equal(t, a.debs["hello"], data)
	entries, err := os.ReadDir(filepath.Dir(paths[0]))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files are left behind")
}

func TestClientNeedsCacheDir(t *testing.T) {
	_, err := (&Client{}).Index(context.Background(), "trixie", "arm64")
	require.ErrorContains(t, err, "CacheDir is required")
}

func TestIndexExplainsMissingKeyring(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	c := a.client(t.TempDir(), &now)
	c.Keyring = filepath.Join(t.TempDir(), "absent.gpg")
	_, err := c.Index(context.Background(), fakeSuite, "arm64")
	require.ErrorContains(t, err, "install debian-archive-keyring")
}

func TestCheckGPGStatus(t *testing.T) {
	// What gpgv 2.2 prints, one NEWSIG per signature.
	const good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0E7B82643E131 Debian\n" +
		"[GNUPG:] VALIDSIG 4CB50190207B4758A3F73A796ED0E7B82643E131 2026-11-21 1795252580 0 4 0 1 8 01 B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8\n"
	const missing = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 0123456789ABCDEF 1 8 01 1795252580 9\n[GNUPG:] NO_PUBKEY 0123456789ABCDEF\n"
	const expiredKey = "[GNUPG:] NEWSIG\n[GNUPG:] KEYEXPIRED 1767312000\n[GNUPG:] EXPKEYSIG ED08B8D2238FBE6B exp\n" +
		"[GNUPG:] VALIDSIG AA08474BFF5B1A6D7F234660ED08B8D2238FBE6B 2026-01-01 1767229200 0 4 0 22 8 01 AA08474BFF5B1A6D7F234660ED08B8D2238FBE6B\n"
	const revoked = "[GNUPG:] NEWSIG\n[GNUPG:] REVKEYSIG 9C51F5DEF13A8350 rev\n" +
		"[GNUPG:] VALIDSIG 3142CC2E3814BB91253D30BD9C51F5DEF13A8350 2026-11-29 1795983551 0 4 0 22 8 01 3142CC2E3814BB91253D30BD9C51F5DEF13A8350\n"
	require.NoError(t, checkGPGStatus(good))
	require.NoError(t, checkGPGStatus(good+missing), "one good signature is enough")
	require.NoError(t, checkGPGStatus(expiredKey+good), "an expired key next to a good one does not count, as in apt")
	require.ErrorContains(t, checkGPGStatus(strings.Replace(good, " 8 01 ", " 2 01 ", 1)), "strong digest")
	require.ErrorContains(t, checkGPGStatus(good+"[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 0123456789ABCDEF x\n"), "bad signature")
	require.ErrorContains(t, checkGPGStatus(missing), "0123456789ABCDEF")
	require.ErrorContains(t, checkGPGStatus(expiredKey), "key ED08B8D2238FBE6B, which has expired")
	require.ErrorContains(t, checkGPGStatus(revoked), "key 9C51F5DEF13A8350, which is revoked")
	require.ErrorContains(t, checkGPGStatus(revoked+good), "revoked", "a revoked key's signature refuses the file")
	require.ErrorContains(t, checkGPGStatus("[GNUPG:] NEWSIG\n[GNUPG:] VALIDSIG 4CB50190207B4758A3F73A796ED0E7B82643E131 2026-11-21 1795252580 0 4 0 1 8 01 X\n"),
		"no good signature", "VALIDSIG without GOODSIG")
	require.ErrorContains(t, checkGPGStatus("[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0E7B82643E131 Debian\n[GNUPG:] VALIDSIG 0000000000000000000000000000000000000000 2026-11-21 1795252580 0 4 0 1 8 01 X\n"),
		"no VALIDSIG", "GOODSIG and VALIDSIG by different keys")
}

func TestParseRelease(t *testing.T) {
	rel, err := parseRelease([]byte("Suite: stable\nCodename: trixie\nVersion: 13.8\nDate: Sat, 21 Nov 2026 09:15:44 UTC\n" +
		"Valid-Until: Sat, 28 Nov 2026 09:15:44 +0000\nAcquire-By-Hash: yes\nSHA256:\n" +
		" 5b9a010e6730e4019e90fcb81c92ad59f061955890d691b7d111637d3f8d3dab  9614816 main/binary-arm64/Packages.xz\n"))
	require.NoError(t, err)
	require.Equal(t, "trixie", rel.Codename)
	require.True(t, rel.AcquireByHash)
	require.Equal(t, time.Date(2026, 11, 21, 9, 15, 44, 0, time.UTC), rel.Date.UTC())
	require.Equal(t, fileSum{Size: 9614816, SHA256: "5b9a010e6730e4019e90fcb81c92ad59f061955890d691b7d111637d3f8d3dab"}, rel.files["main/binary-arm64/Packages.xz"])
	require.NoError(t, rel.check("stable", rel.Date))
	require.NoError(t, rel.check("trixie", rel.Date))
	require.ErrorIs(t, rel.check("trixie", rel.ValidUntil.Add(time.Second)), ErrVerify)
	require.ErrorIs(t, rel.check("bookworm", rel.Date), ErrVerify)
}

func TestIndexConcurrent(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	c := a.client(t.TempDir(), &now)
	const n = 4
	got := make([]*Index, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Index(context.Background(), fakeSuite, "arm64")
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Same(t, got[0], got[i])
	}
	require.Equal(t, 1, a.hitCount("dists/testsuite/InRelease"), "one fetch serves every caller")
}

// TestIndexRefusesExpiredAndRevokedSignatures signs InRelease with keys
// the keyring holds but that no longer vouch for anything: gpgv says
// VALIDSIG (and exits 0) for each, and apt requires GOODSIG.
func TestIndexRefusesExpiredAndRevokedSignatures(t *testing.T) {
	k := gpgKeys(t)
	for name, tc := range map[string]struct {
		sign func(a *fakeArchive, text string) []byte
		want string
	}{
		"key expired": {
			sign: func(a *fakeArchive, text string) []byte {
				return k.clearsignAt(t, k.expired, text, keysMadeAt.Add(time.Hour))
			},
			want: "which has expired",
		},
		"key revoked": {
			sign: func(a *fakeArchive, text string) []byte { return k.clearsign(t, k.revoked, text) },
			want: "which is revoked",
		},
		"signature expired": {
			sign: func(a *fakeArchive, text string) []byte {
				return k.clearsignAt(t, k.past, text, keysMadeAt.Add(time.Hour), "--default-sig-expire", "1d")
			},
			want: "signature by key",
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := newFakeArchive(t)
			a.setRawInRelease(tc.sign(a, a.release(a.packagesXZ, time.Now().Add(24*time.Hour))))
			now := time.Now()
			cache := t.TempDir()
			c := a.client(cache, &now)
			c.Keyring = k.allKeyring
			_, err := c.Index(context.Background(), fakeSuite, "arm64")
			require.ErrorIs(t, err, ErrVerify)
			require.ErrorContains(t, err, tc.want)
			require.NoFileExists(t, filepath.Join(cache, "index", mirrorSlug(a.srv.URL), fakeSuite, "arm64", "InRelease"))
		})
	}
	t.Run("good key in the same keyring", func(t *testing.T) {
		a := newFakeArchive(t)
		now := time.Now()
		c := a.client(t.TempDir(), &now)
		c.Keyring = k.allKeyring
		_, err := c.Index(context.Background(), fakeSuite, "arm64")
		require.NoError(t, err)
	})
}

// TestIndexRefusesOlderRelease replays an older, validly signed InRelease
// without Valid-Until (as Debian's stable suites are) after a newer one:
// the cache keeps the newer one.
func TestIndexRefusesOlderRelease(t *testing.T) {
	a := newFakeArchive(t)
	cache := t.TempDir()
	now := time.Now()
	ctx := context.Background()
	old := a.keys.clearsign(t, a.keys.archive, a.releaseAt(a.packagesXZ, now.Add(-30*24*time.Hour), time.Time{}))
	a.setInRelease(a.releaseAt(a.packagesXZ, now.Add(-time.Hour), time.Time{}), a.keys.archive)
	_, err := a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
	cached := filepath.Join(cache, "index", mirrorSlug(a.srv.URL), fakeSuite, "arm64", "InRelease")
	newer, err := os.ReadFile(cached)
	require.NoError(t, err)

	a.setRawInRelease(old)
	now = now.Add(DefaultIndexMaxAge + time.Minute)
	_, err = a.client(cache, &now).Index(ctx, fakeSuite, "arm64")
	require.ErrorIs(t, err, ErrVerify)
	require.ErrorContains(t, err, "older than the one verified before")
	kept, err := os.ReadFile(cached)
	require.NoError(t, err)
	require.Equal(t, newer, kept, "the newer InRelease stays in the cache")

	// Another architecture of the suite is held to the same date.
	_, err = a.client(cache, &now).Index(ctx, fakeSuite, "armhf")
	require.ErrorContains(t, err, "older than the one verified before")

	// A cache that never saw the newer one has nothing to compare with.
	_, err = a.client(t.TempDir(), &now).Index(ctx, fakeSuite, "arm64")
	require.NoError(t, err)
}

// TestDownloadStallEnds is a mirror that stops sending half way through a
// package: the download ends after IdleTimeout without data (each of its
// attempts), instead of holding the cache for ever.
func TestDownloadStallEnds(t *testing.T) {
	a := newFakeArchive(t)
	now := time.Now()
	cache := t.TempDir()
	c := a.client(cache, &now)
	c.IdleTimeout = 200 * time.Millisecond
	idx, err := c.Index(context.Background(), fakeSuite, "arm64")
	require.NoError(t, err)
	p, ok := idx.Lookup("hello")
	require.True(t, ok)
	a.mu.Lock()
	a.stall[p.Filename] = true
	a.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		_, err := c.Download(context.Background(), p)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the download still waits for a server that stopped sending")
	}
	require.ErrorContains(t, err, "the server stopped sending")
	require.Equal(t, fetchAttempts, a.hitCount(p.Filename), "a stall is retried like a broken connection")
	left, _ := filepath.Glob(filepath.Join(cache, "sha256", "*"))
	require.Empty(t, left, "no partial download is left")
}
