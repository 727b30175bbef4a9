package sshx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic writes data to path so that readers see either the old
// file or the complete new one, never a partial write. With exclusive set it
// refuses to replace an existing file and reports fs.ErrExist instead, which
// lets two processes race to create the same key without one silently
// replacing the key the other has already handed out.
func writeFileAtomic(path string, data []byte, perm os.FileMode, exclusive bool) (err error) {
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
	defer func() {
		// After a successful rename the temporary name is gone and Remove
		// fails harmlessly; after a link both names exist and it must go.
		_ = os.Remove(tmp.Name())
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
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
