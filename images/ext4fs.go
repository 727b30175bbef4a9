package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/socbox/socbox/harness/proc"
)

// ext4Part is an ext4 filesystem inside a disk image file, read and written
// with e2fsprogs' debugfs through its "file?offset=N" syntax: no root, no
// loop device, no mount.
type ext4Part struct {
	file   string
	offset int64
	size   int64
	// image names the image in errors about its content when file is a
	// copy of it; file if empty.
	image string
}

func (e ext4Part) name() string {
	if e.image != "" {
		return e.image
	}
	return e.file
}

func (e ext4Part) spec() string { return fmt.Sprintf("%s?offset=%d", e.file, e.offset) }

// Bounds on what socbox reads out of an image with debugfs: text files
// (os-release, passwd, uEnv.txt, module indexes) are kilobytes, a shell
// binary (read for its ELF header) a few MiB, a kernel module at most a
// few tens of MiB. debugfs's own output (stat, ls) is small.
const (
	maxTextFile     = 16 << 20
	maxBinaryFile   = 64 << 20
	maxDebugfsOut   = 4 << 20
	maxDebugfsError = 1 << 20
	// maxScriptErrors bounds what a debugfs script prints on stderr: a
	// line or two per request it had to refuse.
	maxScriptErrors = 16 << 20
)

// debugfs runs it with args and the filesystem and returns its stdout (at
// most limit bytes: debugfs is stopped past that) and stderr. debugfs exits
// 0 even when a request fails; callers read stderr.
func (e ext4Part) debugfs(ctx context.Context, limit int64, args ...string) (stdout, stderr []byte, err error) {
	out := &cappedBuffer{max: limit}
	errb := &cappedBuffer{max: maxDebugfsError}
	if err := e.runDebugfs(ctx, out, errb, args...); err != nil {
		return nil, nil, err
	}
	return out.Bytes(), errb.Bytes(), nil
}

func (e ext4Part) runDebugfs(ctx context.Context, stdout io.Writer, stderr *cappedBuffer, args ...string) error {
	cmd := proc.CommandContext(ctx, "debugfs", append(args, e.spec())...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := proc.Run(cmd)
	if c, ok := stdout.(interface{ overflowed() bool }); ok && c.overflowed() {
		return fmt.Errorf("debugfs %s on %s: %w", strings.Join(args, " "), e.file, errOutputTooLarge)
	}
	if err != nil {
		return fmt.Errorf("debugfs %s on %s: %w: %s (is e2fsprogs installed?)", strings.Join(args, " "), e.file, err, stderr.String())
	}
	return nil
}

// request runs one debugfs request on paths (see debugfsRequest).
func (e ext4Part) request(ctx context.Context, limit int64, cmd string, args ...string) (stdout, stderr []byte, err error) {
	req, err := debugfsRequest(cmd, args...)
	if err != nil {
		return nil, nil, e.refusePath(strings.Join(args, " "), err)
	}
	return e.debugfs(ctx, limit, "-R", req)
}

// refusePath is the error for a path in the image socbox refuses.
func (e ext4Part) refusePath(p string, why error) error {
	return &ImageFormatError{File: e.name(), What: fmt.Sprintf("unsafe path %q in the root filesystem: %v", p, why),
		Fix: "socbox refuses paths that could reach outside the image; the image is damaged or made to attack the host that reads it: do not use it"}
}

var errOutputTooLarge = errors.New("more output than socbox reads")

// cappedBuffer holds at most max bytes; a write past that fails, which
// stops the writing process instead of filling memory.
type cappedBuffer struct {
	bytes.Buffer
	max  int64
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len())+int64(len(p)) > b.max {
		b.over = true
		return 0, errOutputTooLarge
	}
	return b.Buffer.Write(p)
}

func (b *cappedBuffer) overflowed() bool { return b.over }

// cappedFile writes at most max bytes to a file, like cappedBuffer.
type cappedFile struct {
	f    *os.File
	n    int64
	max  int64
	over bool
}

func (c *cappedFile) Write(p []byte) (int, error) {
	if c.n+int64(len(p)) > c.max {
		c.over = true
		return 0, errOutputTooLarge
	}
	n, err := c.f.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *cappedFile) overflowed() bool { return c.over }

// lstat says what the image has at p, not following a symbolic link at
// its end (debugfs follows those before it, inside the image).
func (e ext4Part) lstat(ctx context.Context, p string) (guestNode, error) {
	out, errOut, err := e.request(ctx, maxDebugfsOut, "stat", p)
	if err != nil {
		return guestNode{}, err
	}
	if bytes.Contains(errOut, []byte("File not found")) || len(out) == 0 {
		return guestNode{}, nil
	}
	n, err := parseDebugfsStat(out)
	if err != nil {
		return guestNode{}, fmt.Errorf("%s: %s: %w", e.name(), p, err)
	}
	if n.kind == nodeSymlink && n.target == "" {
		// A slow symlink keeps its target in a data block.
		if n.size > maxGuestPath {
			return guestNode{}, e.refusePath(p, fmt.Errorf("a symbolic link with a %d-byte target, more than PATH_MAX", n.size))
		}
		data, _, err := e.request(ctx, maxGuestPath, "cat", p)
		if err != nil {
			return guestNode{}, err
		}
		n.target = string(data)
	}
	return n, nil
}

// debugfs's stat prints the inode's type on its first line, "Size: N" on
// the line that starts with "User:", and a fast symlink's target last, as
// `Fast link dest: "<target>"`. There is no other interface to debugfs
// than its text; the target is taken by its size, so quotes in it do not
// matter.
var (
	statTypeRe = regexp.MustCompile(`^Inode: [0-9]+ +Type: ([A-Za-z/ ]+?) +Mode:`)
	statSizeRe = regexp.MustCompile(`(?m)^User: .* Size: ([0-9]+)$`)
)

// parseDebugfsStat reads what lstat needs from debugfs's stat output.
func parseDebugfsStat(out []byte) (guestNode, error) {
	first, _, _ := bytes.Cut(out, []byte("\n"))
	m := statTypeRe.FindSubmatch(first)
	if m == nil {
		return guestNode{}, fmt.Errorf("cannot read debugfs's stat output %q", truncateText(string(first), 80))
	}
	n := guestNode{exists: true}
	switch string(m[1]) {
	case "regular":
		n.kind = nodeRegular
	case "directory":
		n.kind = nodeDir
	case "symlink":
		n.kind = nodeSymlink
	}
	if s := statSizeRe.FindSubmatch(out); s != nil {
		size, err := strconv.ParseInt(string(s[1]), 10, 64)
		if err != nil {
			return guestNode{}, fmt.Errorf("debugfs's stat output: size %q: %w", s[1], err)
		}
		n.size = size
	}
	if n.kind != nodeSymlink {
		return n, nil
	}
	const fast = "\nFast link dest: \""
	i := bytes.Index(out, []byte(fast))
	if i < 0 {
		return n, nil // a slow symlink: lstat reads its block
	}
	rest := out[i+len(fast):]
	if n.size <= 0 || n.size > int64(len(rest))-1 || rest[n.size] != '"' {
		return guestNode{}, fmt.Errorf("debugfs's stat output: a %d-byte symbolic link target that does not match its size", n.size)
	}
	n.target = string(rest[:n.size])
	return n, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// resolve follows symbolic links in every component of p, as the guest
// would, inside the image's root (see resolveGuestPath).
func (e ext4Part) resolve(ctx context.Context, p string) (string, error) {
	var lookupErr error
	real, err := resolveGuestPath(p, func(q string) (guestNode, error) {
		n, err := e.lstat(ctx, q)
		lookupErr = err
		return n, err
	})
	switch {
	case lookupErr != nil:
		return "", lookupErr // debugfs failed, or refused a name itself
	case err != nil:
		return "", e.refusePath(p, err)
	}
	return real, nil
}

// stat is lstat of p with its symbolic links followed, and the path they
// lead to.
func (e ext4Part) stat(ctx context.Context, p string) (string, guestNode, error) {
	real, err := e.resolve(ctx, p)
	if err != nil {
		return "", guestNode{}, err
	}
	n, err := e.lstat(ctx, real)
	return real, n, err
}

// readFile reads a regular file of at most max bytes, following symbolic
// links; fs.ErrNotExist if missing.
func (e ext4Part) readFile(ctx context.Context, p string, max int64) ([]byte, error) {
	real, n, err := e.stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if !n.exists || n.kind == nodeDir {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	if n.kind != nodeRegular {
		return nil, &ImageFormatError{File: e.name(), What: fmt.Sprintf("%s in the root filesystem is not a regular file", p), Fix: "use an image whose " + p + " is a file"}
	}
	if n.size > max {
		return nil, &ImageFormatError{File: e.name(), What: fmt.Sprintf("%s in the root filesystem is %d bytes, more than the %d socbox reads", p, n.size, max),
			Fix: "the image is damaged or not a board image"}
	}
	out, errOut, err := e.request(ctx, max, "cat", real)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(errOut, []byte("File not found")) {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return out, nil
}

// listDir lists the names in a directory (following symbolic links),
// leaving out names socbox would refuse to follow.
func (e ext4Part) listDir(ctx context.Context, p string) ([]string, error) {
	real, err := e.resolve(ctx, p)
	if err != nil {
		return nil, err
	}
	out, errOut, err := e.request(ctx, maxDebugfsOut, "ls", "-p", real)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(errOut, []byte("File not found")) {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return parseDebugfsList(out), nil
}

// parseDebugfsList reads "ls -p" output: "/inode/mode/uid/gid/name/size/"
// per entry. A name with a newline or a slash (which only a crafted
// filesystem holds) would break a line apart; such lines and names are
// left out.
func parseDebugfsList(out []byte) []string {
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if len(l) < 2 || !strings.HasPrefix(l, "/") || !strings.HasSuffix(l, "/") {
			continue
		}
		f := strings.Split(l[1:len(l)-1], "/")
		if len(f) != 6 {
			continue
		}
		if name := f[4]; checkGuestName(name) == nil {
			names = append(names, name)
		}
	}
	return names
}

// dumpFiles copies regular files out of the filesystem: guest path → path
// relative to dst, of at most max bytes each. Symbolic links are followed
// inside the image. A missing file leaves no host file; callers check for
// the ones they need. The host path never reaches debugfs: it prints the
// file and socbox writes it.
func (e ext4Part) dumpFiles(ctx context.Context, dst string, files map[string]string, max int64) error {
	for src, rel := range files {
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("copy %s out of %s: %q is not a path inside %s", src, e.file, rel, dst)
		}
		// debugfs follows the symbolic links before the last component
		// itself, inside the image: one lookup instead of one per name.
		real := src
		n, err := e.lstat(ctx, src)
		if err == nil && n.kind == nodeSymlink {
			real, n, err = e.stat(ctx, src)
		}
		if err != nil {
			return err
		}
		if !n.exists {
			continue
		}
		if n.kind != nodeRegular {
			return &ImageFormatError{File: e.name(), What: fmt.Sprintf("%s in the root filesystem is not a regular file", src), Fix: "the image is damaged"}
		}
		if n.size > max {
			return &ImageFormatError{File: e.name(), What: fmt.Sprintf("%s in the root filesystem is %d bytes, more than the %d socbox reads", src, n.size, max),
				Fix: "the image is damaged"}
		}
		if err := e.catTo(ctx, real, filepath.Join(dst, rel), max); err != nil {
			return err
		}
	}
	return nil
}

// catTo writes the image's regular file src to the new host file dst.
func (e ext4Part) catTo(ctx context.Context, src, dst string, max int64) error {
	req, err := debugfsRequest("cat", src)
	if err != nil {
		return e.refusePath(src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	errb := &cappedBuffer{max: maxDebugfsError}
	err = e.runDebugfs(ctx, &cappedFile{f: f, max: max}, errb, "-R", req)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && bytes.Contains(errb.Bytes(), []byte("File not found")) {
		err = fmt.Errorf("%s: %w", src, fs.ErrNotExist)
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// ext4Writer batches changes into one debugfs -w run: a script, since a
// kernel's modules are thousands of files and a debugfs run per request
// would take minutes. Every line is made by debugfsRequest and kept under
// maxDebugfsLine, so no name can end its line or start another.
type ext4Writer struct {
	e       ext4Part
	tmp     string
	cmds    []string
	n       int
	created map[string]bool // directories known to exist (or to be made)
	newDirs map[string]bool // directories this writer makes
}

func (e ext4Part) writer(tmpDir string) *ext4Writer {
	return &ext4Writer{e: e, tmp: tmpDir, created: map[string]bool{}, newDirs: map[string]bool{}}
}

// add queues one request.
func (w *ext4Writer) add(cmd string, args ...string) error {
	req, err := debugfsRequest(cmd, args...)
	if err != nil {
		return w.e.refusePath(args[0], err)
	}
	if len(req) > maxDebugfsLine {
		return w.e.refusePath(args[0], fmt.Errorf("a %d-byte debugfs request, longer than the %d bytes of a debugfs script line", len(req), maxDebugfsLine))
	}
	w.cmds = append(w.cmds, req)
	return nil
}

// mkdirAll makes dir and the parents it lacks, owned by uid:gid with mode
// (parents: root's, 0755). Directories that exist are left as they are.
// dir must be resolved (see ext4Part.resolve).
func (w *ext4Writer) mkdirAll(ctx context.Context, dir string, mode os.FileMode, uid, gid int) error {
	dir = path.Clean("/" + dir)
	if dir == "/" || w.created[dir] {
		return nil
	}
	if !w.fresh(dir) {
		n, err := w.e.lstat(ctx, dir)
		if err != nil {
			return err
		}
		if n.exists {
			if n.kind != nodeDir {
				return fmt.Errorf("%s exists and is not a directory (a symlink? resolve the path first)", dir)
			}
			w.created[dir] = true
			return nil
		}
	}
	if err := w.mkdirAll(ctx, path.Dir(dir), 0o755, 0, 0); err != nil {
		return err
	}
	w.created[dir] = true
	w.newDirs[dir] = true
	if err := w.add("mkdir", dir); err != nil {
		return err
	}
	if err := w.add("sif", dir, "mode", fmt.Sprintf("0%o", 0o040000|uint32(mode.Perm()))); err != nil {
		return err
	}
	return w.owner(dir, uid, gid)
}

// fresh says whether dir lies inside a directory this writer made, so it
// cannot exist yet.
func (w *ext4Writer) fresh(dir string) bool { return w.newDirs[path.Dir(dir)] }

func (w *ext4Writer) owner(p string, uid, gid int) error {
	if err := w.add("sif", p, "uid", strconv.Itoa(uid)); err != nil {
		return err
	}
	return w.add("sif", p, "gid", strconv.Itoa(gid))
}

// writeFile replaces p with data.
func (w *ext4Writer) writeFile(ctx context.Context, p string, data []byte, mode os.FileMode, uid, gid int) error {
	w.n++
	local := filepath.Join(w.tmp, fmt.Sprintf("ext4-%d", w.n))
	if err := os.WriteFile(local, data, 0o600); err != nil {
		return err
	}
	return w.copyFile(ctx, local, p, mode, uid, gid)
}

// copyFile replaces p with the host file local.
func (w *ext4Writer) copyFile(ctx context.Context, local, p string, mode os.FileMode, uid, gid int) error {
	if err := w.mkdirAll(ctx, path.Dir(p), 0o755, 0, 0); err != nil {
		return err
	}
	if !w.fresh(p) {
		if err := w.add("rm", p); err != nil {
			return err
		}
	}
	if err := w.add("write", local, p); err != nil {
		return err
	}
	if err := w.add("sif", p, "mode", fmt.Sprintf("0%o", 0o100000|uint32(mode.Perm()))); err != nil {
		return err
	}
	return w.owner(p, uid, gid)
}

// symlink makes (or replaces) link pointing at target.
func (w *ext4Writer) symlink(ctx context.Context, link, target string) error {
	if err := w.mkdirAll(ctx, path.Dir(link), 0o755, 0, 0); err != nil {
		return err
	}
	if !w.fresh(link) {
		if err := w.add("rm", link); err != nil {
			return err
		}
	}
	return w.add("symlink", link, target)
}

// remove deletes p (a file or symbolic link) if it exists.
func (w *ext4Writer) remove(p string) error { return w.add("rm", p) }

// copyTree copies a host directory tree into dst.
func (w *ext4Writer) copyTree(ctx context.Context, src, dst string) (int, error) {
	files := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return w.mkdirAll(ctx, target, info.Mode(), 0, 0)
		case info.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.symlink(ctx, target, l)
		case info.Mode().IsRegular():
			files++
			return w.copyFile(ctx, p, target, info.Mode(), 0, 0)
		}
		return nil
	})
	return files, err
}

// commit runs the batched commands and fails on any error debugfs reports
// other than the expected ones (removing a missing file, making an
// existing directory).
func (w *ext4Writer) commit(ctx context.Context) error {
	if len(w.cmds) == 0 {
		return nil
	}
	script := filepath.Join(w.tmp, "debugfs-cmds")
	if err := os.WriteFile(script, []byte(strings.Join(w.cmds, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	// debugfs echoes every script line on stdout: thousands for a
	// kernel's modules, and nothing socbox needs.
	errb := &cappedBuffer{max: maxScriptErrors}
	if err := w.e.runDebugfs(ctx, io.Discard, errb, "-w", "-f", script); err != nil {
		return err
	}
	for _, l := range strings.Split(errb.String(), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", strings.HasPrefix(l, "debugfs "),
			strings.Contains(l, "already exists"),
			strings.HasPrefix(l, "rm: File not found"),
			strings.Contains(l, "File not found by ext2_lookup") && strings.HasPrefix(l, "rm"):
			continue
		}
		return fmt.Errorf("debugfs: %s", l)
	}
	w.cmds = nil
	return nil
}

// fsck checks and repairs the filesystem (needed before resize2fs, and a
// cheap check after debugfs wrote to it).
func (e ext4Part) fsck(ctx context.Context) error {
	out, err := proc.CombinedOutput(proc.CommandContext(ctx, "e2fsck", "-fy", e.spec()))
	if err != nil {
		// Exit status 1 means "errors corrected": fine for a copy we own.
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return nil
		}
		return fmt.Errorf("e2fsck: %w: %s", err, lastLines(string(out), 8))
	}
	return nil
}

// resize grows the filesystem to fill newSize bytes.
func (e ext4Part) resize(ctx context.Context, newSize int64) error {
	kib := strconv.FormatInt(newSize/1024, 10) + "K"
	out, err := proc.CombinedOutput(proc.CommandContext(ctx, "resize2fs", e.spec(), kib))
	if err != nil {
		return fmt.Errorf("resize2fs: %w: %s", err, lastLines(string(out), 8))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
