package cachefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/socbox/socbox/images/reclaim"
)

// Lock takes an exclusive flock on path, waiting for another process that
// holds it (a second `go test` building the same image, say); onWait, when
// set, is called once before waiting. The returned unlock may be called
// more than once.
func Lock(path string, onWait func()) (unlock func(), err error) {
	// Private, as the entries they guard: the lock's name says what is
	// built, and nobody else has a reason to take it.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return unlocker(f), nil
	}
	if onWait != nil {
		onWait()
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return unlocker(f), nil
}

func unlocker(f *os.File) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
		})
	}
}

// Temp is a cache entry being built: a private directory beside the
// entry's final place, which a later process reclaims if this one is
// killed before it publishes or discards it.
type Temp struct {
	// Dir is where the entry is built.
	Dir     string
	final   string
	release func()
	done    bool
}

// NewTemp makes the directory to build the entry final in.
func NewTemp(final string) (*Temp, error) {
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return nil, err
	}
	dir, release, err := reclaim.MkdirTemp(filepath.Dir(final), filepath.Base(final)+".tmp-")
	if err != nil {
		return nil, err
	}
	return &Temp{Dir: dir, final: final, release: release}, nil
}

// Publish makes each of frozen (names in the entry) read-only with
// fileMode — a published entry is never written again — gives the
// directory dirMode and renames it to its final place, in place of
// whatever was there.
func (t *Temp) Publish(dirMode, fileMode os.FileMode, frozen ...string) error {
	if t.done {
		return errors.New("publish " + t.final + ": already published or discarded")
	}
	for _, f := range frozen {
		if err := os.Chmod(filepath.Join(t.Dir, f), fileMode); err != nil {
			return err
		}
	}
	if err := os.Chmod(t.Dir, dirMode); err != nil {
		return err
	}
	// Published, it is no longer this process's to reclaim.
	t.release()
	_ = os.RemoveAll(t.final)
	if err := os.Rename(t.Dir, t.final); err != nil {
		return err
	}
	t.done = true
	return nil
}

// Discard removes the entry unless it was published. It is safe to call
// more than once, and after Publish (defer it).
func (t *Temp) Discard() {
	if t.done {
		return
	}
	t.done = true
	_ = os.RemoveAll(t.Dir)
	t.release()
}

// Entry is one directory of a cache, built once and then only read.
type Entry struct {
	// Dir is where the finished entry lives.
	Dir string
	// Ready says whether dir holds a finished entry.
	Ready func(dir string) bool
	// Rebuild builds the entry again even when it is ready.
	Rebuild bool
	// OnWait is called when another process holds the entry's lock.
	OnWait func()
	// DirMode and FileMode are what the published entry and its Frozen
	// files get.
	DirMode, FileMode os.FileMode
	Frozen            []string
}

// tighten takes from dir, an entry published by an older socbox with a
// looser mode, what mode does not allow. It is best effort: a cache that
// is not this user's to change is used as it is.
func tighten(dir string, mode os.FileMode) {
	st, err := os.Stat(dir)
	if err != nil || mode == 0 || st.Mode().Perm()&^mode == 0 {
		return
	}
	_ = os.Chmod(dir, st.Mode().Perm()&mode)
}

// LockPath is the lock file an entry in dir is built under.
func LockPath(dir string) string { return dir + ".lock" }

// Ensure returns once e.Dir holds a finished entry: at once when it does
// already, else after taking the entry's lock, looking again (another
// process may have built it while this one waited), building it with build
// into a temporary directory and publishing that atomically. built says
// whether this call built it.
func Ensure(ctx context.Context, e Entry, build func(ctx context.Context, tmp string) error) (built bool, err error) {
	if !e.Rebuild && e.Ready(e.Dir) {
		tighten(e.Dir, e.DirMode)
		return false, nil
	}
	unlock, err := Lock(LockPath(e.Dir), e.OnWait)
	if err != nil {
		return false, err
	}
	defer unlock()
	if !e.Rebuild && e.Ready(e.Dir) {
		return false, nil
	}
	t, err := NewTemp(e.Dir)
	if err != nil {
		return false, err
	}
	defer t.Discard()
	if err := build(ctx, t.Dir); err != nil {
		return false, err
	}
	if err := t.Publish(e.DirMode, e.FileMode, e.Frozen...); err != nil {
		return false, err
	}
	return true, nil
}
