package debarchive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testKeysCleanup()
	os.Exit(code)
}

// testKeys are throwaway signing keys: the archive's, whose public half
// is in keyring, a stranger's, and three more that allKeyring holds as
// well: one that expired, one revoked, and one made in the past (for
// signatures that expired).
type testKeys struct {
	dir        string
	archive    string // GnuPG home holding the archive key
	stranger   string // GnuPG home holding a key not in keyring
	keyring    string // exported public archive key, as gpgv reads it
	expired    string // GnuPG home: a key made 40 days ago that expired a day later
	revoked    string // GnuPG home: a key revoked since it signed
	past       string // GnuPG home: a key made 40 days ago, never expiring
	allKeyring string // the archive, expired, revoked and past keys
	makeError  error
}

// keysMadeAt is when the expired and past keys were made.
var keysMadeAt = time.Now().Add(-40 * 24 * time.Hour)

var (
	keysOnce sync.Once
	keys     testKeys
)

// gpgKeys makes the keys once per test binary, or skips the test if the
// host has no gpg.
func gpgKeys(t *testing.T) *testKeys {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg is not installed: signature tests need it (apt-get install gpg)")
	}
	if _, err := exec.LookPath("gpgv"); err != nil {
		t.Skip("gpgv is not installed: signature tests need it (apt-get install gpgv)")
	}
	keysOnce.Do(func() { keys.makeError = keys.make() })
	require.NoError(t, keys.makeError)
	return &keys
}

func (k *testKeys) make() error {
	dir, err := os.MkdirTemp("", "debarchive-gpg-")
	if err != nil {
		return err
	}
	k.dir = dir
	k.archive, k.stranger = filepath.Join(dir, "archive"), filepath.Join(dir, "stranger")
	k.keyring = filepath.Join(dir, "archive-keyring.gpg")
	for _, home := range []string{k.archive, k.stranger} {
		if err := os.Mkdir(home, 0o700); err != nil {
			return err
		}
		if _, err := runGPG(home, nil, "--quick-gen-key", "socbox test archive <archive@example.invalid>", "ed25519", "sign", "never"); err != nil {
			return err
		}
	}
	if _, err = runGPG(k.archive, nil, "--output", k.keyring, "--export"); err != nil {
		return err
	}
	k.expired, k.revoked, k.past = filepath.Join(dir, "expired"), filepath.Join(dir, "revoked"), filepath.Join(dir, "past")
	k.allKeyring = filepath.Join(dir, "all-keyring.gpg")
	for _, key := range []struct {
		home, expire string
		at           time.Time
	}{{k.expired, "1d", keysMadeAt}, {k.revoked, "never", time.Now()}, {k.past, "never", keysMadeAt}} {
		if err := os.Mkdir(key.home, 0o700); err != nil {
			return err
		}
		if _, err := runGPG(key.home, nil, "--faked-system-time", fmt.Sprint(key.at.Unix()),
			"--quick-gen-key", "socbox test "+filepath.Base(key.home)+" <k@example.invalid>", "ed25519", "sign", key.expire); err != nil {
			return err
		}
	}
	var all []byte
	for _, home := range []string{k.archive, k.expired, k.past} {
		pub, err := runGPG(home, nil, "--export")
		if err != nil {
			return err
		}
		all = append(all, pub...)
	}
	// The revoked key's home keeps it unrevoked, to sign with; the keyring
	// has it with its revocation certificate (which gpg made with the
	// key, its armor line escaped so it is not imported by accident).
	revocs, err := filepath.Glob(filepath.Join(k.revoked, "openpgp-revocs.d", "*.rev"))
	if err != nil || len(revocs) != 1 {
		return fmt.Errorf("no revocation certificate for the revoked key: %v", err)
	}
	rev, err := os.ReadFile(revocs[0])
	if err != nil {
		return err
	}
	pub, err := runGPG(k.revoked, nil, "--export")
	if err != nil {
		return err
	}
	scratch := filepath.Join(dir, "revoked-public")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	if _, err := runGPG(scratch, pub, "--import"); err != nil {
		return err
	}
	if _, err := runGPG(scratch, bytes.Replace(rev, []byte(":-----BEGIN"), []byte("-----BEGIN"), 1), "--import"); err != nil {
		return err
	}
	if pub, err = runGPG(scratch, nil, "--export"); err != nil {
		return err
	}
	return os.WriteFile(k.allKeyring, append(all, pub...), 0o644)
}

func testKeysCleanup() {
	if keys.dir == "" {
		return
	}
	for _, home := range []string{keys.archive, keys.stranger, keys.expired, keys.revoked, keys.past, filepath.Join(keys.dir, "revoked-public")} {
		if home == "" {
			continue
		}
		// gpg started an agent for each home: stop exactly those.
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
	}
	os.RemoveAll(keys.dir)
}

func runGPG(home string, stdin []byte, args ...string) ([]byte, error) {
	args = append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.Command("gpg", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (k *testKeys) clearsign(t *testing.T, home, text string, args ...string) []byte {
	t.Helper()
	out, err := runGPG(home, []byte(text), append(args, "--digest-algo", "SHA256", "--clearsign")...)
	require.NoError(t, err)
	return out
}

// clearsignAt signs text as it would have been signed at when.
func (k *testKeys) clearsignAt(t *testing.T, home, text string, when time.Time, args ...string) []byte {
	t.Helper()
	return k.clearsign(t, home, text, append([]string{"--faked-system-time", fmt.Sprint(when.Unix())}, args...)...)
}

// fakeArchive is a tiny Debian archive over HTTP: suite "testsuite"
// (Suite: testing), architecture arm64, packages hello and libhello.
type fakeArchive struct {
	t    *testing.T
	keys *testKeys
	srv  *httptest.Server

	mu    sync.Mutex
	files map[string][]byte // URL path without the leading slash
	hits  map[string]int
	stall map[string]bool // paths whose body stops half way, until the client leaves

	packagesXZ []byte
	debs       map[string][]byte // package name → .deb
}

const fakeSuite = "testsuite"

func newFakeArchive(t *testing.T) *fakeArchive {
	t.Helper()
	k := gpgKeys(t)
	a := &fakeArchive{t: t, keys: k, files: map[string][]byte{}, hits: map[string]int{}, stall: map[string]bool{}, debs: map[string][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)

	var packages strings.Builder
	for _, d := range []struct{ name, depends string }{
		{"libhello", ""},
		{"hello", "libhello (>= 1.0) | libhello-alt"},
	} {
		deb := buildDeb(t, d.name, "1.0-1", "arm64", d.depends, map[string]string{
			"usr/bin/" + d.name:        "#!/bin/sh\necho " + d.name + "\n",
			"usr/share/doc/" + d.name:  "",
			"usr/bin/" + d.name + "-2": "->" + d.name, // a relative symbolic link
		})
		a.debs[d.name] = deb
		filename := fmt.Sprintf("pool/main/h/%s/%s_1.0-1_arm64.deb", d.name, d.name)
		a.files[filename] = deb
		fmt.Fprintf(&packages, "Package: %s\nVersion: 1.0-1\nArchitecture: arm64\n", d.name)
		if d.depends != "" {
			fmt.Fprintf(&packages, "Depends: %s\n", d.depends)
		}
		fmt.Fprintf(&packages, "Description: test package\n a package for tests\nFilename: %s\nSize: %d\nSHA256: %s\n\n",
			filename, len(deb), sha256Hex(deb))
	}
	a.packagesXZ = xzCompress(t, packages.String())
	a.setPackagesXZ(a.packagesXZ)
	a.setInRelease(a.release(a.packagesXZ, time.Now().Add(7*24*time.Hour)), k.archive)
	return a
}

func (a *fakeArchive) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	path := strings.TrimPrefix(r.URL.Path, "/")
	a.hits[path]++
	data, ok := a.files[path]
	stall := a.stall[path]
	a.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if stall {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	w.Write(data)
}

// release is the Release text listing packagesXZ, dated now.
func (a *fakeArchive) release(packagesXZ []byte, validUntil time.Time) string {
	return a.releaseAt(packagesXZ, time.Now(), validUntil)
}

// releaseAt is the Release text listing packagesXZ, dated date, with no
// Valid-Until if validUntil is zero (as Debian's stable suites have none).
func (a *fakeArchive) releaseAt(packagesXZ []byte, date, validUntil time.Time) string {
	valid := ""
	if !validUntil.IsZero() {
		valid = "Valid-Until: " + validUntil.UTC().Format(time.RFC1123) + "\n"
	}
	return fmt.Sprintf(`Origin: Test
Label: Test
Suite: testing
Codename: %s
Date: %s
%sAcquire-By-Hash: yes
Architectures: arm64
Components: main
Description: a tiny archive for tests
SHA256:
 %s %8d main/binary-arm64/Packages.xz
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 main/binary-arm64/Packages
`, fakeSuite, date.UTC().Format(time.RFC1123), valid,
		sha256Hex(packagesXZ), len(packagesXZ))
}

func (a *fakeArchive) setInRelease(release, signingHome string) {
	a.setRawInRelease(a.keys.clearsign(a.t, signingHome, release))
}

func (a *fakeArchive) setRawInRelease(data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files["dists/"+fakeSuite+"/InRelease"] = data
}

func (a *fakeArchive) inRelease() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.files["dists/"+fakeSuite+"/InRelease"]
}

// setPackagesXZ serves data both by hash of a.packagesXZ (what InRelease
// lists) and by name.
func (a *fakeArchive) setPackagesXZ(data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files["dists/"+fakeSuite+"/main/binary-arm64/Packages.xz"] = data
	a.files["dists/"+fakeSuite+"/main/binary-arm64/by-hash/SHA256/"+sha256Hex(a.packagesXZ)] = data
}

func (a *fakeArchive) hitCount(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits[path]
}

func (a *fakeArchive) totalHits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.hits {
		n += c
	}
	return n
}

// client returns a client of the archive with its own cache, no retry
// back-off and the clock at now (which the test may move).
func (a *fakeArchive) client(cacheDir string, now *time.Time) *Client {
	return &Client{
		Mirror:   a.srv.URL,
		Keyring:  a.keys.keyring,
		CacheDir: cacheDir,
		Logf:     a.t.Logf,
		now:      func() time.Time { return *now },
		wait:     func(time.Duration) {},
	}
}

// buildDeb makes a .deb with dpkg-deb --build (skipping the test without
// it). files maps paths to contents; "->target" makes a symbolic link.
func buildDeb(t *testing.T, name, version, arch, depends string, files map[string]string) []byte {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed: needed to build test packages (apt-get install dpkg)")
	}
	root := t.TempDir()
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Test <test@example.invalid>\nDescription: test package\n", name, version, arch)
	if depends != "" {
		control += "Depends: " + depends + "\n"
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "pkg", "DEBIAN"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "pkg", "DEBIAN", "control"), []byte(control), 0o644))
	for path, content := range files {
		full := filepath.Join(root, "pkg", path)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		if target, ok := strings.CutPrefix(content, "->"); ok {
			require.NoError(t, os.Symlink(target, full))
		} else {
			require.NoError(t, os.WriteFile(full, []byte(content), 0o755))
		}
	}
	out := filepath.Join(root, name+".deb")
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", filepath.Join(root, "pkg"), out)
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", msg)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	return data
}

func xzCompress(t *testing.T, text string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	require.NoError(t, err)
	_, err = w.Write([]byte(text))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
