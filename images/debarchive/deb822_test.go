package debarchive

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func collectStanzas(t *testing.T, text string, only []string) []stanza {
	t.Helper()
	var out []stanza
	require.NoError(t, parseStanzas(strings.NewReader(text), only, func(s stanza) error {
		out = append(out, s)
		return nil
	}))
	return out
}

func TestParseStanzas(t *testing.T) {
	text := "Package: hello\r\n" +
		"Version: 1.0-1\n" +
		"Description: greets\n" +
		" the world\n" +
		" .\n" +
		"\tpolitely\n" +
		"\n\n" +
		"# a comment\n" +
		"package: second\n" +
		"SHA256:\n" +
		" abc 12 main/x\n" +
		" def 34 main/y\n" +
		"   \n" +
		"Package: last\n" +
		"Version: 2" // no final newline
	got := collectStanzas(t, text, nil)
	require.Len(t, got, 3)
	require.Equal(t, "hello", got[0].get("Package"))
	require.Equal(t, "1.0-1", got[0].get("version"))
	require.Equal(t, "greets\nthe world\n.\npolitely", got[0].get("Description"))
	require.Equal(t, "second", got[1].get("Package"), "field names are case-insensitive")
	require.Equal(t, "\nabc 12 main/x\ndef 34 main/y", got[1].get("SHA256"))
	require.Equal(t, "2", got[2].get("Version"))
}

func TestParseStanzasOnlySomeFields(t *testing.T) {
	text := "Package: hello\nDescription: long\n text\nDepends: libc6\n"
	got := collectStanzas(t, text, []string{"Package", "Depends"})
	require.Equal(t, []stanza{{"package": "hello", "depends": "libc6"}}, got)
}

func TestParseStanzasErrors(t *testing.T) {
	for name, text := range map[string]string{
		"continuation first": " orphan\nPackage: x\n",
		"no colon":           "Package: x\nnonsense line\n",
		"empty field name":   ": value\n",
	} {
		t.Run(name, func(t *testing.T) {
			err := parseStanzas(strings.NewReader(text), nil, func(stanza) error { return nil })
			require.ErrorContains(t, err, "line ")
		})
	}
}

func TestParseStanzasLongLine(t *testing.T) {
	long := strings.Repeat("x", 300<<10) // longer than the reader's buffer
	got := collectStanzas(t, "Package: a\nDepends: "+long+"\n\nPackage: b\n", nil)
	require.Len(t, got, 2)
	require.Equal(t, long, got[0].get("Depends"))
}

func TestParsePackages(t *testing.T) {
	text := `Package: linux-image-arm64
Source: linux-signed-arm64 (6.12.117+1)
Version: 6.12.117-1
Installed-Size: 14
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: arm64
Provides: linux-image-generic, wireguard-modules (= 1.0.0)
Depends: linux-image-6.12.117+deb13-arm64 (= 6.12.117-1)
Pre-Depends: init-system-helpers (>= 1.54~) | systemd:any, python3:any
Description: Linux for 64-bit ARMv8 machines (meta-package)
 This package depends on the latest Linux kernel.
Priority: optional
Filename: pool/main/l/linux-signed-arm64/linux-image-arm64_6.12.117-1_arm64.deb
Size: 1444
SHA256: 0ACEF0390EDCC88EC243516960A8530D5938A1FE63CE9859653FF8B68B55EC0B

Package: bare
Version: 1
`
	pkgs, err := ParsePackages(strings.NewReader(text))
	require.NoError(t, err)
	require.Len(t, pkgs, 2)
	p := pkgs[0]
	require.Equal(t, "linux-image-arm64", p.Name)
	require.Equal(t, "linux-signed-arm64", p.Source)
	require.Equal(t, "arm64", p.Architecture)
	require.Equal(t, int64(1444), p.Size)
	require.Equal(t, "0acef0390edcc88ec243516960a8530d5938a1fe63ce9859653ff8b68b55ec0b", p.SHA256)
	require.Equal(t, []Alternatives{{{Name: "linux-image-6.12.117+deb13-arm64", Op: "=", Version: "6.12.117-1"}}}, p.Depends)
	require.Equal(t, []Alternatives{
		{{Name: "init-system-helpers", Op: ">=", Version: "1.54~"}, {Name: "systemd", Arch: "any"}},
		{{Name: "python3", Arch: "any"}},
	}, p.PreDepends)
	require.Equal(t, []Relation{{Name: "linux-image-generic"}, {Name: "wireguard-modules", Op: "=", Version: "1.0.0"}}, p.Provides)
	require.Equal(t, "bare", pkgs[1].Source, "Source defaults to the package name")

	_, err = ParsePackages(strings.NewReader("Package: x\nVersion: 1\nSize: many\n"))
	require.ErrorContains(t, err, "bad Size")
	_, err = ParsePackages(strings.NewReader("Version: 1\n"))
	require.ErrorContains(t, err, "without Package")
}

func TestParseRelations(t *testing.T) {
	got, err := ParseRelations("a (>= 1.0) [amd64 arm64] <!nocheck>, b:native | c (<< 2~), d(=3)")
	require.NoError(t, err)
	require.Equal(t, []Alternatives{
		{{Name: "a", Op: ">=", Version: "1.0"}},
		{{Name: "b", Arch: "native"}, {Name: "c", Op: "<<", Version: "2~"}},
		{{Name: "d", Op: "=", Version: "3"}},
	}, got)
	require.Equal(t, "b:native | c (<< 2~)", got[1].String())

	for _, bad := range []string{"a (>= 1", "a (1.0)", "a b", "| a"} {
		_, err := ParseRelations(bad)
		require.Error(t, err, bad)
	}
}
