// Package cachefs is how socbox publishes files and directories: a file
// written in one piece (WriteFile), and a cache entry built once under a
// lock and published atomically (Ensure, or Lock, NewTemp and Publish for
// an entry built over a longer span). A reader never sees half of either,
// and two processes never build the same entry at once. Every builder in
// the tree uses it: the default image, prepared images, boot files, saved
// machine states, reports, SSH keys.
//
// It imports nothing of socbox but reclaim, so images/ and harness/ both
// use it.
package cachefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path so that readers see either the old file or
// the complete new one, never a partial write; the file gets perm. Missing
// parent directories are made 0700.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, false, true, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}, nil)
}

// CreateFile is WriteFile that refuses to replace an existing file: it
// returns an error wrapping fs.ErrExist instead, so two processes racing
// to create the same file (an SSH key) never replace the one the other
// has handed out already.
func CreateFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, true, true, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}, nil)
}

// WriteFunc is WriteFile for content that fill writes into the temporary
// file as it streams (it may seek and truncate it to start over); check,
// when set, looks at the finished file (its path) before it takes path's
// place. The content is not synced to the disk first: it is large (a
// download, an image) and can be fetched again, and a sync would cost more
// than it saves.
func WriteFunc(path string, perm os.FileMode, fill func(f *os.File) error, check func(tmp string) error) error {
	return write(path, perm, false, false, fill, check)
}

func write(path string, perm os.FileMode, exclusive, sync bool, fill func(*os.File) error, check func(string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// CreateTemp makes the file 0600, so a private key is never readable by
	// others, not even for a moment.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	// After a successful rename the temporary name is gone and Remove
	// fails harmlessly; after a link both names exist and it must go.
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			return err
		}
	}
	if !exclusive {
		return os.Rename(tmp.Name(), path)
	}
	// A hard link fails with EEXIST if path already exists, making
	// "create if absent" atomic across processes.
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, os.ErrExist) {
		return err
	}
	// Some filesystems cannot hard-link; fall back to a plain rename, which
	// is still atomic for readers.
	if _, statErr := os.Lstat(path); statErr == nil {
		return fmt.Errorf("%s: %w", path, os.ErrExist)
	}
	return os.Rename(tmp.Name(), path)
}
