package debarchive

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testIndex builds an index from a Packages-style text.
func testIndex(t *testing.T, text string) *Index {
	t.Helper()
	pkgs, err := ParsePackages(strings.NewReader(text))
	require.NoError(t, err)
	return NewIndex("trixie", "arm64", pkgs)
}

func names(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name)
	}
	return out
}

const resolveFixture = `
Package: containerd
Version: 1.7.24~ds1-6
Depends: runc (>= 0.1.0~), libc6 (>= 2.34)

Package: runc
Version: 1.1.15+ds1-2
Depends: libc6 (>= 2.38), libseccomp2 (>= 2.5.0)
Recommends: criu

Package: libc6
Version: 2.41-12
Priority: optional
Depends: libgcc-s1

Package: libgcc-s1
Version: 14.2.0-19
Depends: gcc-14-base (= 14.2.0-19), libc6 (>= 2.41)

Package: gcc-14-base
Version: 14.2.0-19
Priority: required

Package: libseccomp2
Version: 2.6.0-2
Depends: libc6 (>= 2.34)

Package: tool
Version: 1
Depends: awk, helper-a | helper-b, mail-transport-agent

Package: mawk
Version: 1.3.4
Priority: required
Provides: awk

Package: gawk
Version: 5.2
Priority: optional
Provides: awk

Package: helper-b
Version: 1

Package: exim4
Version: 4.9
Priority: standard
Provides: mail-transport-agent

Package: postfix
Version: 3.7
Priority: optional
Provides: mail-transport-agent

Package: multi
Version: 1.0

Package: multi
Version: 2.0

Package: multi
Version: 1.5

Package: wants-old
Version: 1
Depends: multi (<< 2)

Package: broken
Version: 1
Depends: runc, not-there (>= 1) | also-not-there
`

func TestResolveClosureDependenciesFirst(t *testing.T) {
	idx := testIndex(t, resolveFixture)
	got, err := idx.Resolve([]string{"containerd"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"gcc-14-base", "libgcc-s1", "libc6", "libseccomp2", "runc", "containerd"}, names(got),
		"dependencies come first; the libc6 ↔ libgcc-s1 cycle ends; Recommends are not followed")

	again, err := idx.Resolve([]string{"containerd"}, nil)
	require.NoError(t, err)
	require.Equal(t, names(got), names(again), "the order is stable")
}

func TestResolveSkipsInstalled(t *testing.T) {
	idx := testIndex(t, resolveFixture)
	got, err := idx.Resolve([]string{"containerd", "runc"}, map[string]bool{"libc6": true, "libseccomp2": true})
	require.NoError(t, err)
	require.Equal(t, []string{"runc", "containerd"}, names(got))

	got, err = idx.Resolve([]string{"containerd"}, map[string]bool{"containerd": true})
	require.NoError(t, err)
	require.Empty(t, got, "a package already installed is not fetched")
}

func TestResolveAlternativesAndVirtuals(t *testing.T) {
	idx := testIndex(t, resolveFixture)

	got, err := idx.Resolve([]string{"tool"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"mawk", "helper-b", "exim4", "tool"}, names(got),
		"awk: the required provider; helper-a is absent so helper-b; mail-transport-agent: the higher Priority")

	got, err = idx.Resolve([]string{"tool"}, map[string]bool{"gawk": true, "postfix": true})
	require.NoError(t, err)
	require.Equal(t, []string{"helper-b", "tool"}, names(got), "installed providers satisfy virtual packages")

	got, err = idx.Resolve([]string{"tool"}, map[string]bool{"helper-a": true})
	require.NoError(t, err)
	require.NotContains(t, names(got), "helper-b", "an installed alternative wins over the first one the index has")

	got, err = idx.Resolve([]string{"gawk", "tool"}, nil)
	require.NoError(t, err)
	require.NotContains(t, names(got), "mawk", "a provider already chosen satisfies the virtual package")

	got, err = idx.Resolve([]string{"awk"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"mawk"}, names(got), "a virtual package can be asked for by name")
}

func TestResolveVersions(t *testing.T) {
	idx := testIndex(t, resolveFixture)
	p, ok := idx.Lookup("multi")
	require.True(t, ok)
	require.Equal(t, "2.0", p.Version, "Lookup returns the newest version")
	require.Equal(t, []string{"2.0", "1.5", "1.0"}, func() (v []string) {
		for _, p := range idx.Versions("multi") {
			v = append(v, p.Version)
		}
		return
	}())

	got, err := idx.Resolve([]string{"wants-old"}, nil)
	require.NoError(t, err)
	require.Equal(t, "1.5", got[0].Version, "a version constraint picks the newest version that meets it")

	_, ok = idx.Lookup("awk")
	require.False(t, ok, "Lookup does not return virtual packages")
	require.Equal(t, []string{"gawk", "mawk"}, names(idx.Providers("awk")))
}

func TestResolveMissing(t *testing.T) {
	idx := testIndex(t, resolveFixture)

	_, err := idx.Resolve([]string{"containerd", "nope"}, nil)
	var missing *MissingPackageError
	require.ErrorAs(t, err, &missing)
	require.Equal(t, "nope", missing.Name)
	require.Empty(t, missing.NeededBy)
	require.EqualError(t, err, "no package nope in trixie/arm64")

	_, err = idx.Resolve([]string{"broken"}, nil)
	require.ErrorAs(t, err, &missing)
	require.Equal(t, []string{"broken"}, missing.NeededBy)
	require.EqualError(t, err, "no package not-there (>= 1) | also-not-there in trixie/arm64 (needed by broken)")
}

func TestRequired(t *testing.T) {
	idx := testIndex(t, resolveFixture+`
Package: dpkg
Version: 1.22
Essential: yes
Depends: tar

Package: tar
Version: 1.35
`)
	got := idx.Required()
	for _, name := range []string{"gcc-14-base", "mawk", "dpkg", "tar"} {
		require.True(t, got[name], name)
	}
	require.False(t, got["containerd"])
	require.False(t, got["libc6"], "libc6 is only optional here and nothing required needs it")
}

const kernelFixture = `
Package: linux-image-arm64
Version: 6.12.117-1
Source: linux-signed-arm64 (6.12.117+1)
Depends: linux-image-6.12.117+deb13-arm64 (= 6.12.117-1)

Package: linux-image-6.12.117+deb13-arm64
Version: 6.12.117-1
Source: linux-signed-arm64 (6.12.117+1)
Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Pre-Depends: linux-base (>= 4.12~)

Package: linux-image-6.12.117+deb13-arm64-unsigned
Version: 6.12.117-1
Source: linux
Depends: kmod

Package: linux-image-rt-arm64
Version: 6.12.117-1
Depends: linux-image-6.12.117+deb13-rt-arm64 (= 6.12.117-1)

Package: linux-image-6.12.117+deb13-rt-arm64-unsigned
Version: 6.12.117-1
Depends: kmod

Package: linux-image-board
Version: 1
Depends: linux-image-arm64

Package: linux-image-dangling
Version: 1
Depends: linux-image-9.9-arm64

Package: kmod
Version: 34
`

func TestKernelPackage(t *testing.T) {
	idx := testIndex(t, kernelFixture)
	for meta, want := range map[string]string{
		"linux-image-arm64":                "linux-image-6.12.117+deb13-arm64",
		"linux-image-rt-arm64":             "linux-image-6.12.117+deb13-rt-arm64-unsigned", // signed one missing
		"linux-image-board":                "linux-image-6.12.117+deb13-arm64",             // metapackage of a metapackage
		"linux-image-6.12.117+deb13-arm64": "linux-image-6.12.117+deb13-arm64",             // already versioned
	} {
		p, err := KernelPackage(idx, meta)
		require.NoError(t, err, meta)
		require.Equal(t, want, p.Name, meta)
	}

	_, err := KernelPackage(idx, "linux-image-missing")
	require.ErrorContains(t, err, "no package linux-image-missing")
	_, err = KernelPackage(idx, "kmod")
	require.ErrorContains(t, err, "not a metapackage")
	_, err = KernelPackage(idx, "linux-image-dangling")
	require.EqualError(t, err, "no package linux-image-9.9-arm64 in trixie/arm64 (needed by linux-image-dangling)")
}

func TestResolveKernelMetapackage(t *testing.T) {
	idx := testIndex(t, kernelFixture)
	got, err := idx.Resolve([]string{"linux-image-arm64"}, map[string]bool{"linux-base": true, "initramfs-tools": true})
	require.NoError(t, err)
	require.Equal(t, []string{"kmod", "linux-image-6.12.117+deb13-arm64", "linux-image-arm64"}, names(got))
}

func TestParseInstalled(t *testing.T) {
	out := "ii  libc6:arm64\nrc  oldpkg\nhi  held\niU  unpacked\nbare\n\n"
	require.Equal(t, map[string]bool{"libc6": true, "held": true, "bare": true}, ParseInstalled(out))
}
