package harness

import "os"

// What socbox keeps is private to the user who runs it: run directories
// hold the overlay the guest writes, which is nobody else's to read (saved
// states are package state's, and as private).
const (
	privateDirMode  os.FileMode = 0o700
	privateFileMode os.FileMode = 0o600
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
