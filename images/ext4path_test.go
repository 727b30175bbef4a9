package images

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/imagetest"
)

// libssSplit splits a request the way debugfs does (e2fsprogs' lib/ss
// ss_parse: spaces and tabs separate, double quotes group, a doubled quote
// inside quotes is a quote), written from its documented behaviour, to
// check debugfsRequest against it.
func libssSplit(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '"' && i+1 < len(line) && line[i+1] == '"':
			cur.WriteByte('"')
			i++
		case quoted && c == '"':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == ' ' || c == '\t':
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		case c == '"':
			in, quoted = true, true
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if quoted {
		return nil, errors.New("unbalanced quotes")
	}
	if in {
		args = append(args, cur.String())
	}
	return args, nil
}

// TestDebugfsRequestReachesTheNamedFile reads files whose names debugfs's
// request syntax gives meaning to, out of a real ext4 filesystem.
func TestDebugfsRequestReachesTheNamedFile(t *testing.T) {
	imagetest.NeedTools(t, "mkfs.ext4", "debugfs")
	names := []string{`we"ird name`, "a  b c", `""`, "<2>", "!bang", "#hash", `back\slash`, "ünïcode", "-R", `x" "y`}
	dir := filepath.Join(t.TempDir(), "root")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "d d"), 0o755))
	for i, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "d d", n), []byte{byte('a' + i)}, 0o644))
	}
	require.NoError(t, os.Symlink("d d/"+names[0], filepath.Join(dir, "link \"quoted\"")))
	fsImg := filepath.Join(t.TempDir(), "root.img")
	imagetest.Run(t, "mkfs.ext4", "-q", "-F", "-d", dir, fsImg, "4M")
	e := ext4Part{file: fsImg}
	for i, n := range names {
		data, err := e.readFile(t.Context(), "/d d/"+n, 16)
		require.NoError(t, err, "%q", n)
		require.Equal(t, string(rune('a'+i)), string(data), "%q", n)
	}
	data, err := e.readFile(t.Context(), `/link "quoted"`, 16)
	require.NoError(t, err)
	require.Equal(t, "a", string(data), "a symbolic link with quotes in its name and target")
	list, err := e.listDir(t.Context(), "/d d")
	require.NoError(t, err)
	require.ElementsMatch(t, names, list)

	// And written through a debugfs script.
	w := e.writer(t.TempDir())
	for _, n := range names {
		require.NoError(t, w.writeFile(t.Context(), "/new dir/"+n, []byte(n), 0o644, 0, 0))
	}
	require.NoError(t, w.commit(t.Context()))
	for _, n := range names {
		data, err := e.readFile(t.Context(), "/new dir/"+n, 64)
		require.NoError(t, err, "%q", n)
		require.Equal(t, n, string(data))
	}
}

func TestDebugfsRequestRefuses(t *testing.T) {
	for _, bad := range []string{"a\nb", "a\rb", "a\x00b", "\x7f", "\xff", "a\u0085b"} {
		_, err := debugfsRequest("cat", "/"+bad)
		require.Error(t, err, "%q", bad)
	}
	w := ext4Part{file: "disk.img"}.writer(t.TempDir())
	err := w.add("write", "/local", "/"+strings.Repeat("x", maxDebugfsLine))
	require.ErrorContains(t, err, "longer than the 1023 bytes of a debugfs script line")
}

// fakeTree is a directory tree for resolveGuestPath: paths of directories
// and files, and symbolic links with their targets.
type fakeTree struct {
	dirs, files []string
	links       map[string]string
}

func (f fakeTree) lookup(p string) (guestNode, error) {
	if t, ok := f.links[p]; ok {
		return guestNode{exists: true, kind: nodeSymlink, target: t}, nil
	}
	for _, d := range f.dirs {
		if d == p {
			return guestNode{exists: true, kind: nodeDir}, nil
		}
	}
	for _, x := range f.files {
		if x == p {
			return guestNode{exists: true, kind: nodeRegular}, nil
		}
	}
	return guestNode{}, nil
}

func TestResolveGuestPath(t *testing.T) {
	tree := fakeTree{
		dirs:  []string{"/usr", "/usr/lib", "/usr/lib/modules", "/etc", "/etc/ssh", "/home", "/home/pi"},
		files: []string{"/etc/os-release-real", "/usr/lib/os-release"},
		links: map[string]string{
			"/lib": "usr/lib", "/etc/os-release": "../usr/lib/os-release", "/root": "/home/pi",
			"/loop": "/loop", "/up": "../../..", "/deep": "usr/../../etc", "/bad": "x\ndump / /host",
			"/etc/alt": "/etc/../etc/./ssh//", "/empty": "",
		},
	}
	for _, tc := range []struct{ in, out, err string }{
		{in: "/lib/modules/6.6", out: "/usr/lib/modules/6.6"},
		{in: "/etc/os-release", out: "/usr/lib/os-release"},
		{in: "/root/.ssh/authorized_keys", out: "/home/pi/.ssh/authorized_keys"},
		{in: "//etc/./ssh/", out: "/etc/ssh"},
		{in: "/etc/alt/sshd_config", out: "/etc/ssh/sshd_config"},
		{in: "/usr/lib/os-release/x", out: "/usr/lib/os-release/x"},
		{in: "/missing/dir", out: "/missing/dir"},
		{in: "/loop/x", err: "more than 40 symbolic links"},
		{in: "/up", err: "leads out of the image's root"},
		{in: "/deep", err: "leads out of the image's root"},
		{in: "/bad", err: "control character"},
		{in: "/empty", err: "an empty target"},
		{in: "/home/../etc", err: `a ".." component`},
		{in: "etc/passwd", err: "not an absolute path"},
		{in: "/etc/\x1b[2J", err: "control character"},
		{in: "/" + strings.Repeat("n", 256), err: "longer than ext4's 255"},
	} {
		got, err := resolveGuestPath(tc.in, tree.lookup)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.out, got, tc.in)
	}
}

// FuzzExt4Path resolves arbitrary paths through arbitrary symbolic links
// and quotes the result for debugfs: nothing it accepts can leave the
// image's root or be read by debugfs as anything but the one argument.
func FuzzExt4Path(f *testing.F) {
	f.Add("/root/.ssh/authorized_keys", "/root", "x\ndump /etc/os-release /host/path\ny")
	f.Add("/lib/modules/6.6/modules.dep", "/lib", "usr/lib")
	f.Add("/etc/os-release", "/etc/os-release", "../usr/lib/os-release")
	f.Add("/a/b", "/a", "../../..")
	f.Add("/a", "/a", "/a")
	f.Add(`/we"ird name`, `/we"ird name`, `"" <2> !sh`)
	f.Fuzz(func(t *testing.T, p, link, target string) {
		tree := fakeTree{dirs: []string{"/usr", "/usr/lib", "/etc"}, links: map[string]string{link: target}}
		got, err := resolveGuestPath(p, tree.lookup)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") || len(got) > maxGuestPath {
			t.Fatalf("%q resolved to %q", p, got)
		}
		if got != "/" {
			for _, n := range strings.Split(got[1:], "/") {
				if err := checkGuestName(n); err != nil {
					t.Fatalf("%q resolved to %q, with %v", p, got, err)
				}
			}
		}
		req, err := debugfsRequest("stat", got)
		if err != nil {
			t.Fatalf("%q resolved to %q, which debugfs cannot be given: %v", p, got, err)
		}
		args, err := libssSplit(req)
		if err != nil || len(args) != 2 || args[1] != got {
			t.Fatalf("%q: debugfs would read %q as %q (%v)", got, req, args, err)
		}
	})
}

// FuzzDebugfsRequest quotes arbitrary text: what it accepts is one line
// that libss splits back into exactly the arguments given.
func FuzzDebugfsRequest(f *testing.F) {
	f.Add("/etc/os-release", "")
	f.Add(`we"ird name`, `""`)
	f.Add("a\nb", "!x")
	f.Fuzz(func(t *testing.T, a, b string) {
		req, err := debugfsRequest("write", a, b)
		if err != nil {
			return
		}
		if strings.ContainsAny(req, "\n\r\x00") {
			t.Fatalf("%q: a request with a line break", req)
		}
		args, err := libssSplit(req)
		if err != nil || len(args) != 3 || args[1] != a || args[2] != b {
			t.Fatalf("%q, %q: debugfs would read %q as %q (%v)", a, b, req, args, err)
		}
	})
}

// FuzzDebugfsOutput reads arbitrary text as debugfs's stat and ls output,
// which a crafted filesystem partly controls.
func FuzzDebugfsOutput(f *testing.F) {
	f.Add([]byte("Inode: 16   Type: symlink    Mode:  0777   Flags: 0x0\nGeneration: 0    Version: 0x00000000:00000000\nUser:     0   Group:     0   Project:     0   Size: 5\nFast link dest: \"a\"b c\"\n"))
	f.Add([]byte("Inode: 12   Type: directory    Mode:  0755   Flags: 0x80000\nUser:     0   Group:     0   Project:     0   Size: 1024\n"))
	f.Add([]byte("/12/040755/0/0/.//\n/13/100644/0/0/we\"ird name/3/\n/14/100644/0/0/a/b/3/\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		if n, err := parseDebugfsStat(out); err == nil && n.kind == nodeSymlink && int64(len(n.target)) != n.size && n.target != "" {
			t.Fatalf("a %d-byte target for size %d", len(n.target), n.size)
		}
		for _, name := range parseDebugfsList(out) {
			if err := checkGuestName(name); err != nil {
				t.Fatalf("listed %q: %v", name, err)
			}
		}
	})
}
