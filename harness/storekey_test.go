package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/state"
	"github.com/socbox/socbox/images"
)

// A cache restored at another path, or on another runner, must find the
// boards saved in it: the store's key holds no path of the cache, only
// what the files in it hold. raspi3b boots a device tree, raspi4b-fast
// does not.
func TestStoreKeyDoesNotDependOnTheCachePath(t *testing.T) {
	for _, slug := range []string{"raspi4b-fast", "raspi3b"} {
		t.Run(slug, func(t *testing.T) {
			p, err := boards.Lookup(slug)
			require.NoError(t, err)
			// key is the entry board p's key names in a cache at root whose
			// image has a kernel of the given content.
			key := func(root, kernel string) (string, state.Inputs) {
				dir := filepath.Join(root, "images", "debian-trixie-arm64-0123456789ab")
				boot := filepath.Join(dir, "boot-0123456789ab")
				require.NoError(t, os.MkdirAll(boot, 0o755))
				files := images.BootFiles{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(boot, "initrd.img")}
				if p.Kernel.DTB != "" {
					files.DTB = filepath.Join(boot, "board.dtb")
				}
				for f, content := range map[string]string{files.Kernel: kernel, files.Initrd: "initrd", files.DTB: "dtb"} {
					if f != "" {
						require.NoError(t, os.WriteFile(f, []byte(content), 0o444))
					}
				}
				im := &images.Image{Name: filepath.Base(dir), Dir: dir, Disk: "rootfs.img", DiskFormat: "raw", Kernel: "vmlinuz",
					Key: "0123456789abcdef", Append: "root=LABEL=socbox-root"}
				b := &Board{Profile: p, Image: im, opts: options{runDir: filepath.Join(root, "run"), containerd: ContainerdAuto}}
				s := &session{b: b, files: files, store: &state.Store{Dir: filepath.Join(root, "snapshots")}}
				k, err := s.storeKey(false)
				require.NoError(t, err)
				in, err := storeInputs(b, s.qemuConfig(false))
				require.NoError(t, err)
				return filepath.Base(k.Dir(state.Full)), in
			}
			here, in := key(filepath.Join(t.TempDir(), "cache"), "kernel")
			there, _ := key(filepath.Join(t.TempDir(), "restored", "elsewhere"), "kernel")
			require.Equal(t, here, there, "the same board and image under two cache roots: %v", in.Args)
			for _, a := range in.Args {
				require.NotContains(t, a, "images", "a path of the cache in the key: %v", in.Args)
			}
			other, _ := key(filepath.Join(t.TempDir(), "cache"), "another kernel")
			require.NotEqual(t, here, other, "another kernel is another board")
		})
	}
}
