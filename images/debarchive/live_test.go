package debarchive

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDebianArchive talks to deb.debian.org: it takes seconds and fetches
// about 20 MB. go test -short skips it.
func TestDebianArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("talks to deb.debian.org; run without -short")
	}
	if _, err := os.Stat(DefaultKeyring); err != nil {
		t.Skipf("%s missing: install debian-archive-keyring", DefaultKeyring)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &Client{CacheDir: t.TempDir(), Logf: t.Logf}

	t.Run("trixie arm64", func(t *testing.T) {
		idx, err := c.Index(ctx, "trixie", "arm64")
		require.NoError(t, err)
		t.Logf("trixie/arm64: Debian %s of %s, %d packages", idx.Version, idx.Date.Format(time.DateOnly), idx.Len())

		kernel, err := KernelPackage(idx, "linux-image-arm64")
		require.NoError(t, err)
		require.Regexp(t, regexp.MustCompile(`^linux-image-6\.12\.\d+\+deb13-arm64$`), kernel.Name)
		t.Logf("kernel: linux-image-arm64 → %s %s (source %s, %s)", kernel.Name, kernel.Version, kernel.Source, humanSize(kernel.Size))

		installed := idx.Required()
		withMeta, err := idx.Resolve([]string{"linux-image-arm64"}, installed)
		require.NoError(t, err)
		require.Contains(t, names(withMeta), kernel.Name, "resolving the metapackage includes the real kernel")

		bundle, err := idx.Resolve([]string{"containerd", "runc"}, installed)
		require.NoError(t, err)
		logPackages(t, "containerd+runc on a minbase trixie/arm64 guest", bundle)
		require.Equal(t, []string{"runc", "containerd"}, names(bundle))

		bare, err := idx.Resolve([]string{"containerd", "runc"}, nil)
		require.NoError(t, err)
		logPackages(t, "containerd+runc with nothing installed", bare)
		require.Contains(t, names(bare), "libseccomp2")

		paths, err := c.FetchDebs(ctx, "trixie", "arm64", []string{"busybox-static"}, installed)
		require.NoError(t, err)
		require.Len(t, paths, 1)
		requireELF(t, ctx, paths[0], elf.EM_AARCH64)
	})

	t.Run("bookworm armhf", func(t *testing.T) {
		paths, err := c.FetchDebs(ctx, "bookworm", "armhf", []string{"busybox-static"}, nil)
		require.NoError(t, err)
		require.Len(t, paths, 1, "busybox-static has no dependencies")
		requireELF(t, ctx, paths[0], elf.EM_ARM)

		idx, err := c.Index(ctx, "bookworm", "armhf")
		require.NoError(t, err)
		for _, meta := range []string{"linux-image-armmp", "linux-image-armmp-lpae"} {
			kernel, err := KernelPackage(idx, meta)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(kernel.Name, "linux-image-6.1.0-"), kernel.Name)
			t.Logf("kernel: %s → %s %s (%s)", meta, kernel.Name, kernel.Version, humanSize(kernel.Size))
		}
		bundle, err := idx.Resolve([]string{"containerd", "runc"}, idx.Required())
		require.NoError(t, err)
		logPackages(t, "containerd+runc on a minbase bookworm/armhf guest", bundle)
	})
}

func requireELF(t *testing.T, ctx context.Context, deb string, machine elf.Machine) {
	t.Helper()
	data, err := ReadFileFromDeb(ctx, deb, "bin/busybox")
	require.NoError(t, err)
	f, err := elf.NewFile(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, machine, f.Machine)
	for _, prog := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, prog.Type, "busybox-static must be static")
	}
	t.Logf("%s: bin/busybox is a static %s %s ELF, %s", deb, f.Class, f.Machine, humanSize(int64(len(data))))
}

func logPackages(t *testing.T, title string, pkgs []Package) {
	t.Helper()
	var b strings.Builder
	for _, p := range pkgs {
		var deps []string
		for _, alts := range append(append([]Alternatives{}, p.PreDepends...), p.Depends...) {
			deps = append(deps, alts.String())
		}
		b.WriteString("\n  " + p.Name + " " + p.Version + " (" + humanSize(p.Size) + ")")
		if len(deps) > 0 {
			b.WriteString(" depends: " + strings.Join(deps, ", "))
		}
	}
	t.Logf("%s:%s", title, b.String())
}
