package debarchive

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// The deb822 files socbox parses come from a mirror: InRelease only after
// gpgv verified it, Packages only after its SHA256 matched the signed
// InRelease. The parsers are fuzzed anyway, as the last line behind those
// checks and for the cached copies read back from disk.

const fuzzRelease = "Origin: Debian\nSuite: stable\nCodename: trixie\nVersion: 13.8\nDate: Sat, 21 Nov 2026 09:15:44 UTC\n" +
	"Valid-Until: Sat, 28 Nov 2026 09:15:44 +0000\nAcquire-By-Hash: yes\nSHA256:\n" +
	" 5b9a010e6730e4019e90fcb81c92ad59f061955890d691b7d111637d3f8d3dab  9614816 main/binary-arm64/Packages.xz\n"

const fuzzPackages = "Package: hello\nVersion: 1:2.10-3+b1\nArchitecture: arm64\nDepends: libc6 (>= 2.34), libfoo | libbar (<< 2)\n" +
	"Pre-Depends: dpkg (>= 1.15)\nProvides: greeter (= 1.0)\nDescription: hi\n a long\n .\n description\n" +
	"Filename: pool/main/h/hello/hello_2.10-3+b1_arm64.deb\nSize: 53000\nSHA256: " + "ab" + "0000000000000000000000000000000000000000000000000000000000ab" + "\n\n" +
	"Package: libc6\nVersion: 2.36-9\nArchitecture: arm64\nPriority: required\nFilename: pool/main/g/glibc/libc6.deb\nSize: 1\nSHA256: 00\n"

// FuzzDeb822 splits arbitrary text into stanzas: no panic, and every
// stanza it returns has lower-case field names.
func FuzzDeb822(f *testing.F) {
	f.Add([]byte(fuzzRelease))
	f.Add([]byte(fuzzPackages))
	f.Add([]byte("# comment\n\nA: b\n continued\n\tmore\n\n\n"))
	f.Add([]byte(" leading continuation\n"))
	f.Add([]byte("Field: " + strings.Repeat("x", 300<<10) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = parseStanzas(bytes.NewReader(data), nil, func(s stanza) error {
			for k := range s {
				if k != strings.ToLower(k) {
					t.Fatalf("field %q is not lower-cased", k)
				}
			}
			return nil
		})
	})
}

// FuzzRelease parses arbitrary text as a Release: no panic, and what it
// accepts lists files with sizes that are not negative and suites it can
// be checked against.
func FuzzRelease(f *testing.F) {
	f.Add([]byte(fuzzRelease))
	f.Add([]byte(strings.Replace(fuzzRelease, "UTC", "+0100", 1)))
	f.Add([]byte("Suite: x\nSHA256:\n 00 -1 a\n"))
	f.Add([]byte("Suite: x\nSHA256:\n 5b9a010e6730e4019e90fcb81c92ad59f061955890d691b7d111637d3f8d3dab -1 a\n"))
	f.Add([]byte("Date: yesterday\nSHA256:\n 00 1 a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRelease(data)
		if err != nil {
			return
		}
		for p, s := range r.files {
			if s.Size < 0 || len(s.SHA256) != 64 {
				t.Fatalf("%s: size %d, SHA256 %q", p, s.Size, s.SHA256)
			}
		}
		err = r.check(r.Codename, r.Date)
		if err != nil && !errors.Is(err, ErrVerify) {
			t.Fatalf("check: %v", err)
		}
		_ = r.checkValidUntil(time.Now())
	})
}

// FuzzPackages parses arbitrary text as a Packages index and resolves a
// package through it: no panic, no endless resolution, and every package
// it would download has a plain pool path and a 64-hex-digit SHA256.
func FuzzPackages(f *testing.F) {
	f.Add([]byte(fuzzPackages), "hello")
	f.Add([]byte("Package: a\nVersion: 1\nDepends: b\nFilename: a.deb\nSize: 1\nSHA256: 00\n\nPackage: b\nVersion: 1\nDepends: a\nFilename: b.deb\nSize: 1\nSHA256: 00\n"), "a")
	f.Add([]byte("Package: a\nVersion: 1\nProvides: a\nDepends: a (>= 2) | a\n"), "a")
	f.Fuzz(func(t *testing.T, data []byte, want string) {
		pkgs, err := ParsePackages(bytes.NewReader(data))
		if err != nil {
			return
		}
		idx := NewIndex("testsuite", "arm64", pkgs)
		for _, p := range pkgs {
			_, _ = ParseRelations(p.Name)
		}
		resolved, err := idx.Resolve([]string{want}, nil)
		if err != nil {
			return
		}
		for _, p := range resolved {
			if err := checkDownloadable(p); err == nil && strings.Contains(p.Filename, "..") {
				for _, part := range strings.Split(p.Filename, "/") {
					if part == ".." {
						t.Fatalf("would download %q", p.Filename)
					}
				}
			}
		}
	})
}
