package state

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// digests remembers the files this process hashed, by path, size and
// modification time: a test process keys many boards on one kernel.
var digests sync.Map // digestID -> string

type digestID struct {
	path  string
	size  int64
	mtime time.Time
}

// FileDigest names a file by its content ("sha256:HEX"), for a key that
// must not depend on where the file is: the kernel, initrd and device
// tree a saved board was booted with live in the cache, whose path
// differs between runners and restores.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("snapshot key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("snapshot key: %w", err)
	}
	id := digestID{path: path, size: st.Size(), mtime: st.ModTime()}
	if d, ok := digests.Load(id); ok {
		return d.(string), nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("snapshot key: read %s: %w", path, err)
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	digests.Store(id, d)
	return d, nil
}
