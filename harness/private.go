package harness

import "os"

// What socbox keeps is private to the user who runs it: saved states hold
// the guest's RAM and its sshd host keys, run directories the overlay the
// guest writes, and neither is anyone else's to read.
const (
	privateDirMode  os.FileMode = 0o700
	privateFileMode os.FileMode = 0o600
	// frozenFileMode is for a published file that is never written
	// again: a saved state's disk and memory.
	frozenFileMode os.FileMode = 0o400
)

// privateDir makes dir and its missing parents 0700, and tightens dir
// itself if it exists (made by an older socbox, say): only use it on
// directories socbox owns.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, privateDirMode); err != nil {
		return err
	}
	return os.Chmod(dir, privateDirMode)
}
