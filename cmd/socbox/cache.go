package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/socbox/socbox/images"
)

// cacheKind is one kind of thing socbox keeps in its cache directory.
type cacheKind struct {
	name string
	// dirs hold the entries, relative to the cache root: each child of
	// one (but lock files) is one entry.
	dirs []string
	what string
	// keep: never pruned (socbox's SSH key; the records of running boards).
	keep bool
}

// cacheKinds are the cache's top-level folders, as the README's Caches
// table lists them.
var cacheKinds = []cacheKind{
	{name: "images", dirs: []string{"images"}, what: "default images and prepared user images"},
	{name: "bases", dirs: []string{"bases"}, what: "Debian root filesystems the default images are made from"},
	{name: "byo", dirs: []string{"byo/sources"}, what: "unpacked and downloaded user images"},
	{name: "debs", dirs: []string{"debs/sha256", "debs/index"}, what: "verified Debian packages and indexes"},
	{name: "snapshots", dirs: []string{"snapshots"}, what: "provisioned snapshots (disk and machine state)"},
	{name: "ssh", dirs: []string{"ssh"}, what: "socbox's SSH key: never pruned", keep: true},
	{name: "boards", dirs: []string{"boards"}, what: "boards socbox boot keeps up: never pruned", keep: true},
}

// cacheEntry is one image, source, package, index or snapshot.
type cacheEntry struct {
	kind *cacheKind
	path string
	// size is the disk space it takes, as du counts it (images are sparse).
	size int64
	// lastUsed is the latest of its files' modification times and access
	// times (but a manifest's: listing reads those); socbox run and boot
	// also mark the image and snapshots they boot.
	lastUsed time.Time
	// leftover is what a build that stopped half way left (NAME.tmp-…).
	leftover bool
}

// lockPath is the lock a build or use of the entry holds: NAME.lock beside
// it, also for NAME.tmp-… and NAME.tmp, the build's temporary copy.
func (e *cacheEntry) lockPath() string {
	name := filepath.Base(e.path)
	if i := strings.Index(name, ".tmp"); i > 0 {
		name = name[:i]
	}
	return filepath.Join(filepath.Dir(e.path), name+".lock")
}

// scanCache lists every entry under root, kind by kind. Whatever else is
// there comes under "other", and is never pruned.
func scanCache(root string) ([]*cacheEntry, error) {
	var out []*cacheEntry
	known := map[string]bool{}
	for i := range cacheKinds {
		k := &cacheKinds[i]
		for _, d := range k.dirs {
			known[strings.SplitN(d, "/", 2)[0]] = true
			children, err := os.ReadDir(filepath.Join(root, d))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read cache: %w", err)
			}
			for _, c := range children {
				if strings.HasSuffix(c.Name(), ".lock") {
					continue
				}
				e, err := measure(k, filepath.Join(root, d, c.Name()))
				if err != nil {
					return nil, err
				}
				e.leftover = strings.Contains(c.Name(), ".tmp")
				out = append(out, e)
			}
		}
	}
	children, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	other := &cacheKind{name: "other", what: "not socbox's: never pruned", keep: true}
	for _, c := range children {
		if !known[c.Name()] {
			e, err := measure(other, filepath.Join(root, c.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// measure adds up an entry's disk space and finds when it was last used.
// Like du -x it stays on the entry's file system (a build in progress has
// /proc mounted in its root), follows no symbolic link, and passes over
// what it may not read.
func measure(k *cacheKind, path string) (*cacheEntry, error) {
	e := &cacheEntry{kind: k, path: path}
	var dev uint64
	if st, err := os.Lstat(path); err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	} else if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		dev = sys.Dev
	}
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == path {
				return err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if st.Dev != dev {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			e.size += st.Blocks * 512
			// Reading a directory or a manifest (socbox image ls, this
			// very scan) is not a use: a boot reads the disk and kernel.
			if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); at.After(e.lastUsed) && !d.IsDir() && !strings.HasSuffix(p, ".json") {
				e.lastUsed = at
			}
		} else {
			e.size += info.Size()
		}
		if info.ModTime().After(e.lastUsed) {
			e.lastUsed = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	return e, nil
}

// mountsUnder lists the mount points at or under dir, from
// /proc/self/mountinfo: a build that stopped half way may have left /proc,
// /dev or a bind mount of the host in its root, and removing the entry
// would then reach into them.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return mountPointsUnder(string(data), dir), nil
}

// mountPointsUnder reads mountinfo's fifth field, octal escapes and all.
func mountPointsUnder(mountinfo, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// prunePolicy says what `socbox cache prune` removes: entries unused for
// longer than olderThan, then the least recently used until the cache
// takes at most maxSize. Zero means no such limit.
type prunePolicy struct {
	olderThan time.Duration
	maxSize   int64
	now       time.Time
}

// prune goes through the entries least recently used first and removes
// (with remove, which returns the bytes it freed) the leftovers of stopped
// builds, those unused for longer than olderThan, then as many as bring
// the cache down to maxSize. Kinds that are kept are never removed; they
// still count in the size.
func (p prunePolicy) prune(entries []*cacheEntry, remove func(*cacheEntry) int64) {
	var total int64
	var candidates []*cacheEntry
	for _, e := range entries {
		total += e.size
		if !e.kind.keep {
			candidates = append(candidates, e)
		}
	}
	slices.SortStableFunc(candidates, func(a, b *cacheEntry) int { return a.lastUsed.Compare(b.lastUsed) })
	for _, e := range candidates {
		old := p.olderThan > 0 && p.now.Sub(e.lastUsed) > p.olderThan
		big := p.maxSize > 0 && total > p.maxSize
		if e.leftover || old || big {
			total -= remove(e)
		}
	}
}

// tryLock takes the lock that images.LockFile takes, without waiting: ok is
// false while another process holds it (building, provisioning or
// restoring what the lock guards).
func tryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, true, nil
}

// lockHeld reports whether another process holds the lock at path; a
// lock file that is not there is not held (and is not made).
func lockHeld(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// lockEntry takes, without waiting, the entry's own lock and every lock
// inside it (an image's boot files have theirs). ok is false when another
// process holds any of them; nothing is held then.
func lockEntry(e *cacheEntry) (unlock func(), ok bool, err error) {
	paths := []string{e.lockPath()}
	if e.kind.name == "debs" {
		paths = nil // the package cache writes through renames and takes no lock
	}
	_ = filepath.WalkDir(e.path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".lock") {
			paths = append(paths, p)
		}
		return nil
	})
	var unlocks []func()
	release := func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}
	for _, p := range paths {
		u, ok, err := tryLock(p)
		if err != nil || !ok {
			release()
			return nil, false, err
		}
		unlocks = append(unlocks, u)
	}
	return release, true, nil
}

// removeEntry deletes an entry holding its locks; an image goes with the
// snapshots made from it, which cannot be restored without it. Lock files
// stay: a process waiting on one holds it open.
func removeEntry(e *cacheEntry, byPath map[string]*cacheEntry) (freed int64, removed []string, err error) {
	unlock, ok, err := lockEntry(e)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		return 0, nil, errInUse
	}
	defer unlock()
	targets := []*cacheEntry{e}
	if e.kind.name == "images" && !e.leftover {
		if im, err := images.LoadImage(e.path); err == nil {
			for _, s := range snapshotsOf(im) {
				if se := byPath[s]; se != nil {
					targets = append(targets, se)
				}
			}
		}
	}
	for _, t := range targets {
		if t != e {
			u, ok, err := lockEntry(t)
			if err != nil {
				return 0, nil, err
			}
			if !ok {
				return 0, nil, fmt.Errorf("its snapshot %s is %w", filepath.Base(t.path), errInUse)
			}
			defer u()
		}
	}
	for _, t := range targets {
		mounts, err := mountsUnder(t.path)
		if err != nil {
			return freed, removed, fmt.Errorf("check for mounts: %w", err)
		}
		if len(mounts) > 0 {
			return freed, removed, fmt.Errorf("%s has file systems mounted inside (%s): unmount them first (umount -R)", t.path, strings.Join(mounts, ", "))
		}
		if err := os.RemoveAll(t.path); err != nil {
			return freed, removed, err
		}
		freed += t.size
		removed = append(removed, t.path)
	}
	return freed, removed, nil
}

var errInUse = errors.New("in use by another socbox process")

// markUsed records that a run booted the image in dir, and the snapshots
// made from it, so that `socbox cache prune` keeps what CI still uses: a
// cache restored by CI has every file's access time set by the restore,
// and file systems mounted relatime keep access times only to the day.
func markUsed(im *images.Image) {
	root, err := images.CacheDir()
	if err != nil || im == nil || im.Dir == "" {
		return
	}
	if rel, err := filepath.Rel(root, im.Dir); err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	now := time.Now()
	for _, d := range append([]string{im.Dir}, snapshotsOf(im)...) {
		_ = os.Chtimes(d, now, now)
	}
}

// markSourceUsed does the same for an unpacked or downloaded user image.
func markSourceUsed(path string) {
	root, err := images.CacheDir()
	if err != nil {
		return
	}
	if rel, err := filepath.Rel(filepath.Join(root, "byo"), path); err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

const cacheUsage = `Usage: socbox cache [prune] [flags]

Show what socbox's cache holds, kind by kind, or prune it. The cache is $SOCBOX_CACHE, else
~/.cache/socbox; everything in it is rebuilt on demand, but an image takes minutes to build.

Commands:
  (none)   size, entries and last use of each kind: images, byo (user images), debs, snapshots, ssh, boards
  prune    remove what was not used for a while, least recently used first

Examples:
  socbox cache
  socbox cache --entries
  socbox cache prune --older-than 14d
  socbox cache prune --max-size 20G --dry-run
  SOCBOX_CACHE=/srv/socbox-cache socbox cache prune --older-than 7d --max-size 30G

Run 'socbox cache <command> --help' for its flags.
`

func cmdCache(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "prune":
			return cmdCachePrune(args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stdout, cacheUsage)
			return nil
		}
	}
	fs := newFlags(command{name: "cache",
		synopsis: "Show what socbox's cache holds: for each kind, the entries, the disk space they take (as du counts it:\n" +
			"images are sparse) and when the least and most recently used entry was last used. 'socbox cache prune'\n" +
			"removes what was not used for a while (see socbox cache prune --help).",
		examples: "  socbox cache\n  socbox cache --entries\n  SOCBOX_CACHE=/srv/socbox-cache socbox cache\n"}, stderr)
	entries := fs.Bool("entries", false, "list every entry, least recently used first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected arguments %q; did you mean socbox cache prune?", fs.Args())
	}
	root, err := images.CacheDir()
	if err != nil {
		return err
	}
	list, err := scanCache(root)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tENTRIES\tSIZE\tOLDEST USE\tNEWEST USE\tWHAT")
	var total int64
	kinds := append(slices.Clone(cacheKinds), cacheKind{name: "other", what: "not socbox's: never pruned"})
	for _, k := range kinds {
		var n int
		var size int64
		var oldest, newest time.Time
		for _, e := range list {
			if e.kind.name != k.name {
				continue
			}
			n++
			size += e.size
			if oldest.IsZero() || e.lastUsed.Before(oldest) {
				oldest = e.lastUsed
			}
			if e.lastUsed.After(newest) {
				newest = e.lastUsed
			}
		}
		total += size
		if n == 0 && k.name == "other" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", k.name, n, humanSize(size), ago(now, oldest), ago(now, newest), k.what)
	}
	fmt.Fprintf(tw, "total\t%d\t%s\t\t\t%s\n", len(list), humanSize(total), root)
	if err := tw.Flush(); err != nil {
		return err
	}
	if *entries {
		slices.SortStableFunc(list, func(a, b *cacheEntry) int { return a.lastUsed.Compare(b.lastUsed) })
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tSIZE\tLAST USE\tENTRY")
		for _, e := range list {
			name, _ := filepath.Rel(root, e.path)
			switch {
			case e.leftover && lockHeld(e.lockPath()):
				name += " (being built)"
			case e.leftover:
				name += " (left by a build that stopped)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.kind.name, humanSize(e.size), ago(now, e.lastUsed), name)
		}
		return tw.Flush()
	}
	return nil
}

func cmdCachePrune(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "cache prune",
		synopsis: `Remove cache entries — images, user images, Debian packages and indexes, snapshots — that were not
used for a while: first those unused for longer than --older-than, then, least recently used first,
until the cache takes at most --max-size. An image goes with the snapshots made from it. What a
build that stopped half way left is always removed.

Never removed: socbox's SSH key (the images it built trust it), the records of boards socbox boot
keeps up, anything that is not socbox's, and any entry another socbox process holds the lock of
(while it builds, prepares, provisions or restores it): it is skipped and said so.

An entry was last used when one of its files was last read or written (the file system's access
time: to the day on relatime mounts, and set to the time of the restore on a cache CI restored);
socbox run and socbox boot mark the image and the snapshots they boot from, and the user image
they unpack, as used when they boot.`,
		examples: `  socbox cache prune --older-than 14d
  socbox cache prune --max-size 20G
  socbox cache prune --older-than 7d --max-size 30G --dry-run
`}, stderr)
	olderThan := fs.String("older-than", "", "remove entries not used for this `AGE`: a Go duration (36h) or days and weeks (14d, 2w)")
	maxSize := fs.String("max-size", "", "then remove the least recently used until the cache takes at most `SIZE`: bytes, or with K, M, G, T (powers of 1024; KB, MB, GB, TB: of 1000)")
	dryRun := fs.Bool("dry-run", false, "say what would be removed, remove nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", fs.Args())
	}
	p := prunePolicy{now: time.Now()}
	var err error
	if *olderThan == "" && *maxSize == "" {
		return usageError(fs, stderr, "give --older-than AGE, --max-size SIZE or both")
	}
	if *olderThan != "" {
		if p.olderThan, err = parseAge(*olderThan); err != nil {
			return usageError(fs, stderr, "--older-than: %v", err)
		}
	}
	if *maxSize != "" {
		if p.maxSize, err = parseSize(*maxSize); err != nil {
			return usageError(fs, stderr, "--max-size: %v", err)
		}
	}
	root, err := images.CacheDir()
	if err != nil {
		return err
	}
	list, err := scanCache(root)
	if err != nil {
		return err
	}
	byPath := map[string]*cacheEntry{}
	var total int64
	for _, e := range list {
		byPath[e.path] = e
		total += e.size
	}
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	var freed int64
	var errs []error
	gone := map[string]bool{}
	p.prune(list, func(e *cacheEntry) int64 {
		if gone[e.path] {
			return 0
		}
		name, _ := filepath.Rel(root, e.path)
		name = filepath.ToSlash(name)
		why := "last used " + ago(p.now, e.lastUsed)
		if e.leftover {
			why = "left by a build that stopped"
		}
		if *dryRun {
			unlock, ok, err := lockEntry(e)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("prune %s: %w", name, err))
				return 0
			case !ok:
				fmt.Fprintf(stdout, "would keep %s: %v\n", name, errInUse)
				return 0
			}
			unlock()
			freed += e.size
			fmt.Fprintf(stdout, "%s %s (%s, %s)\n", verb, name, humanSize(e.size), why)
			return e.size
		}
		n, removed, err := removeEntry(e, byPath)
		freed += n
		for _, r := range removed {
			gone[r] = true
			rel, _ := filepath.Rel(root, r)
			rel = filepath.ToSlash(rel)
			if r == e.path {
				fmt.Fprintf(stdout, "%s %s (%s, %s)\n", verb, rel, humanSize(e.size), why)
			} else {
				fmt.Fprintf(stdout, "%s %s (made from %s)\n", verb, rel, name)
			}
		}
		switch {
		case errors.Is(err, errInUse):
			fmt.Fprintf(stdout, "kept %s: %v\n", name, err)
		case err != nil:
			errs = append(errs, fmt.Errorf("prune %s: %w", name, err))
		}
		return n
	})
	fmt.Fprintf(stdout, "%s %s; the cache takes %s (%s)\n", verb, humanSize(freed), humanSize(total-freed), root)
	return errors.Join(errs...)
}

// parseAge reads --older-than: a Go duration, or whole days or weeks.
func parseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not an age like 36h, 14d or 2w", s)
	var d time.Duration
	if n, unit := strings.TrimRight(s, "dw"), strings.TrimLeft(s, "0123456789"); unit == "d" || unit == "w" {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || n == "" {
			return 0, bad
		}
		if unit == "w" {
			days *= 7
		}
		if days > 100*365 {
			return 0, fmt.Errorf("%q is more than a hundred years", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	return d, nil
}

// parseSize reads --max-size: bytes, or a whole or decimal number with K,
// M, G, T (powers of 1024, as du prints them; KiB… the same) or KB, MB,
// GB, TB (powers of 1000).
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGTiBb")
	unit := s[len(num):]
	mult, ok := map[string]float64{"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "KB": 1e3, "M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
		"G": 1 << 30, "GiB": 1 << 30, "GB": 1e9, "T": 1 << 40, "TiB": 1 << 40, "TB": 1e12}[unit]
	n, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || strings.ContainsAny(num, "eEpPxXnN_") {
		return 0, fmt.Errorf("%q is not a size like 20G, 500M or 1.5T", s)
	}
	if n*mult < 1 {
		return 0, fmt.Errorf("%q must be a byte or more", s)
	}
	if n*mult >= 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n * mult), nil
}

// ago says how long before now t was, in the largest whole unit.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}
