package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/cachefs"
)

// fakeCache lays out a cache as socbox leaves it, each entry last used
// days ago as given.
type fakeCache struct {
	t    *testing.T
	root string
	now  time.Time
}

func newFakeCache(t *testing.T) *fakeCache {
	root := t.TempDir()
	t.Setenv("SOCBOX_CACHE", root)
	return &fakeCache{t: t, root: root, now: time.Now()}
}

// file writes size bytes (not sparse, so du counts them) at rel, used
// days ago.
func (c *fakeCache) file(rel string, size int, days float64, content ...string) string {
	p := filepath.Join(c.root, rel)
	require.NoError(c.t, os.MkdirAll(filepath.Dir(p), 0o755))
	data := []byte(strings.Repeat("x", size))
	if len(content) > 0 {
		data = []byte(content[0])
	}
	require.NoError(c.t, os.WriteFile(p, data, 0o644))
	c.age(p, days)
	return p
}

func (c *fakeCache) age(p string, days float64) {
	at := c.now.Add(-time.Duration(days * float64(24*time.Hour)))
	require.NoError(c.t, filepath.Walk(p, func(q string, _ os.FileInfo, err error) error {
		require.NoError(c.t, err)
		return os.Chtimes(q, at, at)
	}))
}

// image makes a cached image with key, and a snapshot made from it.
func (c *fakeCache) image(name, key string, days float64) {
	c.file("images/"+name+"/image.json", 0, days, `{"name":"`+name+`","key":"`+key+`"}`)
	c.file("images/"+name+"/rootfs.img", 256<<10, days)
	c.file("images/"+name+".lock", 0, days)
	c.file("snapshots/raspi4b-"+key+"/snapshot.json", 0, days, `{"inputs":{"image":"`+key+`"}}`)
	c.file("snapshots/raspi4b-"+key+"/state", 128<<10, days)
	c.age(filepath.Join(c.root, "images", name), days)
	c.age(filepath.Join(c.root, "snapshots", "raspi4b-"+key), days)
}

func (c *fakeCache) layout() {
	c.image("debian-trixie-arm64-old", "old", 30)
	c.image("debian-trixie-arm64-new", "new", 1)
	c.image("debian-bookworm-arm64-mid", "mid", 10)
	c.file("images/debian-trixie-arm64-gone.tmp-123/rootfs/etc/os-release", 4<<10, 40) // a build that stopped
	c.age(filepath.Join(c.root, "images/debian-trixie-arm64-gone.tmp-123"), 40)
	c.file("bases/debian-trixie-arm64-base/root.tar", 256<<10, 5)
	c.file("bases/debian-trixie-arm64-base.lock", 0, 5)
	c.age(filepath.Join(c.root, "bases/debian-trixie-arm64-base"), 5)
	c.file("byo/sources/"+strings.Repeat("a", 64)+".img", 512<<10, 20)
	c.file("byo/sources/"+strings.Repeat("a", 64)+".img.lock", 0, 20)
	c.file("debs/sha256/0123_containerd_1.7.24-1_arm64.deb", 64<<10, 25)
	c.file("debs/index/deb.debian.org/trixie/arm64/Packages", 32<<10, 2)
	c.age(filepath.Join(c.root, "debs/index/deb.debian.org"), 2)
	c.file("ssh/id_ed25519", 400, 400)
	c.file("boards/12345.json", 100, 100)
	c.file("mine/notes.txt", 10, 100)
}

func (c *fakeCache) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(c.root, rel))
	return err == nil
}

func TestCacheShowsEachKind(t *testing.T) {
	c := newFakeCache(t)
	c.layout()
	out, _, err := socbox(t, cancelled(), "cache")
	require.NoError(t, err)
	lines := strings.Split(out, "\n")
	require.Regexp(t, `^KIND\s+ENTRIES\s+SIZE\s+OLDEST USE\s+NEWEST USE\s+WHAT`, lines[0])
	require.Regexp(t, `^images\s+4\s+\d+ KiB\s+40d ago\s+24h ago\s+default images`, lines[1], "three images and a build's leftovers")
	require.Regexp(t, `^bases\s+1\s+\d+ KiB\s+5d ago\s+5d ago\s+Debian root`, lines[2])
	require.Regexp(t, `^byo\s+1\s+512 KiB\s+20d ago`, lines[3])
	require.Regexp(t, `^debs\s+2\s+\d+ KiB\s+25d ago\s+2d ago`, lines[4])
	require.Regexp(t, `^snapshots\s+3\s+`, lines[5])
	require.Regexp(t, `^ssh\s+1\s+4 KiB\s+400d ago.*never pruned`, lines[6])
	require.Regexp(t, `^boards\s+1\s+`, lines[7])
	require.Regexp(t, `^other\s+1\s+`, lines[8])
	require.Regexp(t, `^total\s+14\s+.*`+regexpQuote(c.root), lines[9])

	out, _, err = socbox(t, cancelled(), "cache", "--entries")
	require.NoError(t, err)
	require.Contains(t, out, "images/debian-trixie-arm64-gone.tmp-123 (left by a build that stopped)")
	require.Less(t, strings.Index(out, "ssh/id_ed25519"), strings.Index(out, "snapshots/raspi4b-new"), "least recently used first")

	// An empty cache is a table of zeros.
	t.Setenv("SOCBOX_CACHE", filepath.Join(t.TempDir(), "none"))
	out, _, err = socbox(t, cancelled(), "cache")
	require.NoError(t, err)
	require.Regexp(t, `\ntotal\s+0\s+0 B`, out)
}

func regexpQuote(s string) string { return strings.NewReplacer(".", `\.`, "+", `\+`).Replace(s) }

func TestCachePruneByAge(t *testing.T) {
	c := newFakeCache(t)
	c.layout()
	// Another process is making the bookworm image's boot files, inside
	// the image: it holds their lock.
	c.file("images/debian-bookworm-arm64-mid/boot-abc.lock", 0, 10)
	c.age(filepath.Join(c.root, "images/debian-bookworm-arm64-mid"), 10)
	unlock, err := cachefs.Lock(filepath.Join(c.root, "images/debian-bookworm-arm64-mid/boot-abc.lock"), nil)
	require.NoError(t, err)
	defer unlock()

	out, _, err := socbox(t, cancelled(), "cache", "prune", "--older-than", "14d", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "would remove images/debian-trixie-arm64-gone.tmp-123 (16 KiB, left by a build that stopped)")
	require.Contains(t, out, "would remove images/debian-trixie-arm64-old (")
	require.Contains(t, out, "would remove byo/sources/"+strings.Repeat("a", 64)+".img (512 KiB, last used 20d ago)")
	require.Contains(t, out, "would remove debs/sha256/0123_containerd_1.7.24-1_arm64.deb (64 KiB, last used 25d ago)")
	require.NotContains(t, out, "id_ed25519")
	require.NotContains(t, out, "debian-bookworm-arm64-mid", "10 days is not old enough")
	require.True(t, c.exists("images/debian-trixie-arm64-old/rootfs.img"), "a dry run removes nothing")

	out, _, err = socbox(t, cancelled(), "cache", "prune", "--older-than", "14d")
	require.NoError(t, err)
	require.Contains(t, out, "removed images/debian-trixie-arm64-old (")
	require.Contains(t, out, "removed snapshots/raspi4b-old (made from images/debian-trixie-arm64-old)")
	for _, gone := range []string{"images/debian-trixie-arm64-old", "snapshots/raspi4b-old", "images/debian-trixie-arm64-gone.tmp-123",
		"byo/sources/" + strings.Repeat("a", 64) + ".img", "debs/sha256/0123_containerd_1.7.24-1_arm64.deb"} {
		require.False(t, c.exists(gone), gone)
	}
	for _, kept := range []string{"images/debian-trixie-arm64-new", "snapshots/raspi4b-new", "images/debian-bookworm-arm64-mid",
		"debs/index/deb.debian.org", "ssh/id_ed25519", "boards/12345.json", "mine/notes.txt",
		"images/debian-trixie-arm64-old.lock"} {
		require.True(t, c.exists(kept), kept)
	}

	// Everything old enough, but one image is locked inside: kept, and said so.
	out, _, err = socbox(t, cancelled(), "cache", "prune", "--older-than", "1h")
	require.NoError(t, err)
	require.Contains(t, out, "kept images/debian-bookworm-arm64-mid: in use by another socbox process")
	require.True(t, c.exists("images/debian-bookworm-arm64-mid/rootfs.img"))
	require.False(t, c.exists("images/debian-trixie-arm64-new"))
	require.True(t, c.exists("ssh/id_ed25519"), "never the SSH key, however old")
	unlock()
	_, _, err = socbox(t, cancelled(), "cache", "prune", "--older-than", "1h")
	require.NoError(t, err)
	require.False(t, c.exists("images/debian-bookworm-arm64-mid"))
}

func TestCachePruneBySizeLeastRecentlyUsedFirst(t *testing.T) {
	c := newFakeCache(t)
	c.image("debian-a", "a", 3)
	c.image("debian-b", "b", 2)
	c.image("debian-c", "c", 1)
	// A snapshot being provisioned: its lock is held.
	unlock, err := cachefs.Lock(filepath.Join(c.root, "snapshots/raspi4b-a.lock"), nil)
	require.NoError(t, err)
	defer unlock()
	list, err := scanCache(c.root)
	require.NoError(t, err)
	var total int64
	for _, e := range list {
		total += e.size
	}
	// Room for two images and their snapshots, not three.
	out, _, err := socbox(t, cancelled(), "cache", "prune", "--max-size", itoa(total-1))
	require.NoError(t, err)
	require.Contains(t, out, "kept images/debian-a: its snapshot raspi4b-a is in use by another socbox process")
	require.True(t, c.exists("images/debian-a/rootfs.img"), "its snapshot is in use")
	require.False(t, c.exists("images/debian-b"), "the next least recently used went instead")
	require.True(t, c.exists("images/debian-c"))

	unlock()
	out, _, err = socbox(t, cancelled(), "cache", "prune", "--max-size", "1")
	require.NoError(t, err)
	require.Contains(t, out, "the cache takes 0 B")
	entries, err := os.ReadDir(filepath.Join(c.root, "images"))
	require.NoError(t, err)
	for _, e := range entries {
		require.True(t, strings.HasSuffix(e.Name(), ".lock"), "only lock files are left: %s", e.Name())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCachePruneArguments(t *testing.T) {
	newFakeCache(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give --older-than AGE, --max-size SIZE or both"},
		{[]string{"--older-than", "5"}, `--older-than: "5" is not an age like 36h, 14d or 2w`},
		{[]string{"--older-than", "-3d"}, `is not an age`},
		{[]string{"--older-than", "0d"}, `"0d" must be more than zero`},
		{[]string{"--max-size", "10Q"}, `--max-size: "10Q" is not a size like 20G`},
		{[]string{"--max-size", "0"}, `"0" must be a byte or more`},
		{[]string{"--max-size", "1G", "extra"}, `unexpected arguments`},
	} {
		_, stderr, err := socbox(t, cancelled(), append([]string{"cache", "prune"}, tc.args...)...)
		require.Equal(t, exitCode(2), err, tc.args)
		require.Contains(t, stderr, tc.want, tc.args)
	}
}

func TestParseAgeAndSize(t *testing.T) {
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "14d": 14 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "90m": 90 * time.Minute} {
		got, err := parseAge(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "1.5d", "14days", "1y", "-1h", "99999999999w"} {
		_, err := parseAge(in)
		require.Error(t, err, in)
	}
	for in, want := range map[string]int64{"1024": 1024, "20G": 20 << 30, "20GiB": 20 << 30, "20GB": 20e9, "1.5T": 3 << 39, "500M": 500 << 20, "64K": 64 << 10, "1B": 1} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "G", "1e9", "0x10", "NaN", "Inf", "-1G", "1 G", "1g", "9999999999T", "1_000"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}

func FuzzParseAgeAndSize(f *testing.F) {
	for _, s := range []string{"14d", "2w", "36h", "20G", "1.5T", "20GB", "NaN", "1e9", "-1d", "0", "99999999999w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseAge(s); err == nil {
			require.Positive(t, d)
		}
		if n, err := parseSize(s); err == nil {
			require.Positive(t, n)
		}
	})
}

func TestMarkUsed(t *testing.T) {
	c := newFakeCache(t)
	c.image("debian-a", "a", 30)
	c.image("debian-b", "b", 30)
	im, err := images.LoadImage(filepath.Join(c.root, "images", "debian-a"))
	require.NoError(t, err)
	markUsed(im)
	list, err := scanCache(c.root)
	require.NoError(t, err)
	used := map[string]bool{}
	for _, e := range list {
		used[filepath.Base(e.path)] = time.Since(e.lastUsed) < time.Hour
	}
	require.Equal(t, map[string]bool{"debian-a": true, "raspi4b-a": true, "debian-b": false, "raspi4b-b": false}, used)

	// An image outside the cache is not the cache's to mark.
	outside := t.TempDir()
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(outside, old, old))
	markUsed(&images.Image{Dir: outside})
	st, err := os.Stat(outside)
	require.NoError(t, err)
	require.True(t, st.ModTime().Equal(old))
}

func TestMountPointsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
97 22 0:5 / /cache/images/x.tmp-1/rootfs/proc rw - proc proc rw
98 22 0:6 / /cache/images/x.tmp-1/rootfs/dev rw - devtmpfs udev rw
99 22 8:1 /srv /cache/images/with\040space/mnt rw - ext4 /dev/vda rw
100 22 8:1 / /cache/images/x.tmp-10 rw - ext4 /dev/vda rw
`
	require.Equal(t, []string{"/cache/images/x.tmp-1/rootfs/proc", "/cache/images/x.tmp-1/rootfs/dev"}, mountPointsUnder(info, "/cache/images/x.tmp-1/"))
	require.Equal(t, []string{"/cache/images/with space/mnt"}, mountPointsUnder(info, "/cache/images/with space"))
	require.Empty(t, mountPointsUnder(info, "/cache/snapshots"))
}

// A build that stopped half way in root mode may leave file systems
// mounted in its root: prune must not reach into them. Needs root, to
// mount a tmpfs.
func TestCachePruneNeverRemovesThroughAMount(t *testing.T) {
	c := newFakeCache(t)
	leftover := filepath.Join(c.root, "images/debian-x.tmp-7")
	mnt := filepath.Join(leftover, "rootfs", "dev")
	require.NoError(t, os.MkdirAll(mnt, 0o755))
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): run as root", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "null"), []byte("a device node, say"), 0o644))

	out, _, err := socbox(t, cancelled(), "cache", "--entries")
	require.NoError(t, err, "what lies beyond a mount is not counted")
	require.Contains(t, out, "images/debian-x.tmp-7 (left by a build that stopped)")

	_, _, err = socbox(t, cancelled(), "cache", "prune", "--older-than", "1h")
	require.ErrorContains(t, err, "has file systems mounted inside ("+mnt+"): unmount them first")
	data, err := os.ReadFile(filepath.Join(mnt, "null"))
	require.NoError(t, err)
	require.Equal(t, "a device node, say", string(data))
}
