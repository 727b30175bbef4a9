// Package reclaim lets a later socbox process remove what a killed one
// left: run directories with multi-GB overlays in the temporary directory,
// and half-built directories in the cache. A process that was SIGKILLed
// (or a `go test -timeout` panic) runs no cleanup, so the next one does it,
// and only for directories whose owner is gone: never one in use.
//
// The owner of a directory made with MkdirTemp holds an flock on a marker
// file inside it for as long as it works there; the kernel drops the lock
// when the process dies, however it dies. Sweep takes the lock of each
// candidate: if it can, the owner is gone. A directory without a marker
// (being made, kept on purpose, or made by an older socbox) is left alone.
//
// It lives under images/ and imports nothing of socbox, so that images/
// (the cache's builders, through cachefs) and harness/ both use it: data
// flows from images to harness, never back.
package reclaim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Marker is the name of the owner marker file in a claimed directory.
const Marker = ".socbox-owner"

// MkdirTemp is os.MkdirTemp for a directory that a later process may
// reclaim once this one is gone. Call release when done with it: after
// removing the directory, or before keeping or publishing it (release
// removes the marker, so a kept directory is never swept).
func MkdirTemp(parent, pattern string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", nil, err
	}
	release, err = Claim(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, release, nil
}

// Claim marks dir as this process's until release: it creates the marker
// and holds an flock on it. release may be called more than once.
func Claim(dir string) (release func(), err error) {
	p := filepath.Join(dir, Marker)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("claim %s: %w", dir, err)
	}
	// For people: who holds it. The lock is what Sweep believes.
	fmt.Fprintf(f, "pid %d\nstarted %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = os.Remove(p)
			f.Close()
		})
	}, nil
}

// Sweep removes the directories in parent whose names match pattern (as
// filepath.Match) and whose owner is gone, and returns their paths. A
// directory whose owner lives, or that has no marker, is left alone.
func Sweep(parent, pattern string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(parent, pattern))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range matches {
		ok, err := sweepOne(dir)
		if ok {
			removed = append(removed, dir)
		}
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func sweepOne(dir string) (bool, error) {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return false, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, Marker), os.O_RDWR, 0)
	if err != nil {
		return false, nil // no marker: not ours to judge
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false, nil // the owner lives
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("reclaim %s: %w", dir, err)
	}
	return true, nil
}

// SweepUnlocked removes what a build left in parent under the cache's
// other convention: X.tmp-* (a directory or file) made while holding the
// lock file X.lock. If nobody holds X.lock, nobody is building X, and every
// X.tmp-* is a leftover; it is removed while the lock is held, so no build
// starts meanwhile.
func SweepUnlocked(parent string) ([]string, error) {
	entries, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byLock := map[string][]string{}
	for _, e := range entries {
		if name, _, ok := strings.Cut(e.Name(), ".tmp-"); ok && name != "" {
			byLock[name] = append(byLock[name], filepath.Join(parent, e.Name()))
		}
	}
	var removed []string
	var errs []error
	for name, leftovers := range byLock {
		f, err := os.OpenFile(filepath.Join(parent, name+".lock"), os.O_RDWR, 0)
		if err != nil {
			continue // no lock file: not made under this convention
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			for _, p := range leftovers {
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, fmt.Errorf("reclaim %s: %w", p, err))
					continue
				}
				removed = append(removed, p)
			}
		}
		f.Close()
	}
	return removed, errors.Join(errs...)
}

// TryLock takes the flock on the lock file path if nobody holds it, and
// reports whether it did; a missing lock file is nobody's, and is taken
// with nothing to unlock. It is the lock cachefs.Lock takes.
func TryLock(path string) (unlock func(), ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, true
	}
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}
