package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ext4Part is an ext4 filesystem inside a disk image file, read and written
// with e2fsprogs' debugfs through its "file?offset=N" syntax: no root, no
// loop device, no mount.
type ext4Part struct {
	file   string
	offset int64
	size   int64
}

func (e ext4Part) spec() string { return fmt.Sprintf("%s?offset=%d", e.file, e.offset) }

// debugfs runs one request and returns stdout and stderr. debugfs exits 0
// even when a request fails; callers read stderr.
func (e ext4Part) debugfs(ctx context.Context, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, "debugfs", append(args, e.spec())...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("debugfs %s: %w: %s (is e2fsprogs installed?)", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes(), errb.Bytes(), nil
}

var fastLinkRe = regexp.MustCompile(`Fast link dest: "([^"]*)"`)

// lstat says whether p exists and, for a symlink, where it points.
func (e ext4Part) lstat(ctx context.Context, p string) (exists bool, linkTarget string, isDir bool, err error) {
	out, errOut, err := e.debugfs(ctx, "-R", "stat "+quoteDebugfs(p))
	if err != nil {
		return false, "", false, err
	}
	if bytes.Contains(errOut, []byte("File not found")) || len(out) == 0 {
		return false, "", false, nil
	}
	if bytes.Contains(out, []byte("Type: symlink")) {
		if m := fastLinkRe.FindSubmatch(out); m != nil {
			return true, string(m[1]), false, nil
		}
		// A slow symlink keeps its target in a data block.
		data, _, err := e.debugfs(ctx, "-R", "cat "+quoteDebugfs(p))
		return true, string(data), false, err
	}
	return true, "", bytes.Contains(out, []byte("Type: directory")), nil
}

// resolve follows symlinks in every component of p, as the guest would.
func (e ext4Part) resolve(ctx context.Context, p string) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		ok, target, _, err := e.lstat(ctx, next)
		if err != nil {
			return "", err
		}
		if !ok {
			return path.Join(append([]string{next}, parts...)...), nil
		}
		if target != "" {
			if hops++; hops > 16 {
				return "", fmt.Errorf("too many symlinks resolving %s", p)
			}
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts...)
			cur = "/"
			continue
		}
		cur = next
	}
	return cur, nil
}

// readFile reads a file, following symlinks; fs.ErrNotExist if missing.
func (e ext4Part) readFile(ctx context.Context, p string) ([]byte, error) {
	real, err := e.resolve(ctx, p)
	if err != nil {
		return nil, err
	}
	ok, _, isDir, err := e.lstat(ctx, real)
	if err != nil {
		return nil, err
	}
	if !ok || isDir {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	out, errOut, err := e.debugfs(ctx, "-R", "cat "+quoteDebugfs(real))
	if err != nil {
		return nil, err
	}
	if bytes.Contains(errOut, []byte("File not found")) {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return out, nil
}

// listDir lists the names in a directory (following symlinks).
func (e ext4Part) listDir(ctx context.Context, p string) ([]string, error) {
	real, err := e.resolve(ctx, p)
	if err != nil {
		return nil, err
	}
	out, errOut, err := e.debugfs(ctx, "-R", "ls -p "+quoteDebugfs(real))
	if err != nil {
		return nil, err
	}
	if bytes.Contains(errOut, []byte("File not found")) {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	// ls -p prints /inode/mode/uid/gid/name/size/ per entry.
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(l, "/")
		if len(f) >= 6 && f[5] != "." && f[5] != ".." && f[5] != "" {
			names = append(names, f[5])
		}
	}
	return names, nil
}

// dumpFiles copies files out of the filesystem, guest path → host path,
// in one debugfs run. A missing file leaves no host file; callers check
// for the ones they need.
func (e ext4Part) dumpFiles(ctx context.Context, tmpDir string, files map[string]string) error {
	if len(files) == 0 {
		return nil
	}
	var cmds []string
	for src, dst := range files {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		cmds = append(cmds, "dump "+quoteDebugfs(src)+" "+quoteDebugfs(dst))
	}
	script, err := os.CreateTemp(tmpDir, "debugfs-dump-")
	if err != nil {
		return err
	}
	defer os.Remove(script.Name())
	_, werr := script.WriteString(strings.Join(cmds, "\n") + "\n")
	if err := errors.Join(werr, script.Close()); err != nil {
		return err
	}
	_, _, err = e.debugfs(ctx, "-f", script.Name())
	return err
}

func quoteDebugfs(p string) string {
	if strings.ContainsAny(p, " \t\"") {
		return `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return p
}

// ext4Writer batches changes into one debugfs -w run.
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

// mkdirAll makes dir and the parents it lacks, owned by uid:gid with mode
// (parents: root's, 0755). Directories that exist are left as they are.
func (w *ext4Writer) mkdirAll(ctx context.Context, dir string, mode os.FileMode, uid, gid int) error {
	dir = path.Clean("/" + dir)
	if dir == "/" || w.created[dir] {
		return nil
	}
	if !w.fresh(dir) {
		ok, _, isDir, err := w.e.lstat(ctx, dir)
		if err != nil {
			return err
		}
		if ok {
			if !isDir {
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
	w.cmds = append(w.cmds, "mkdir "+quoteDebugfs(dir))
	w.cmds = append(w.cmds, fmt.Sprintf("sif %s mode 0%o", quoteDebugfs(dir), 0o040000|uint32(mode.Perm())))
	w.owner(dir, uid, gid)
	return nil
}

// fresh says whether dir lies inside a directory this writer made, so it
// cannot exist yet.
func (w *ext4Writer) fresh(dir string) bool { return w.newDirs[path.Dir(dir)] }

func (w *ext4Writer) owner(p string, uid, gid int) {
	w.cmds = append(w.cmds, fmt.Sprintf("sif %s uid %d", quoteDebugfs(p), uid), fmt.Sprintf("sif %s gid %d", quoteDebugfs(p), gid))
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
	q := quoteDebugfs(p)
	if !w.fresh(p) {
		w.cmds = append(w.cmds, "rm "+q)
	}
	w.cmds = append(w.cmds, "write "+quoteDebugfs(local)+" "+q,
		fmt.Sprintf("sif %s mode 0%o", q, 0o100000|uint32(mode.Perm())))
	w.owner(p, uid, gid)
	return nil
}

// symlink makes (or replaces) link pointing at target.
func (w *ext4Writer) symlink(ctx context.Context, link, target string) error {
	if err := w.mkdirAll(ctx, path.Dir(link), 0o755, 0, 0); err != nil {
		return err
	}
	if !w.fresh(link) {
		w.cmds = append(w.cmds, "rm "+quoteDebugfs(link))
	}
	w.cmds = append(w.cmds, "symlink "+quoteDebugfs(link)+" "+quoteDebugfs(target))
	return nil
}

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
	_, errOut, err := w.e.debugfs(ctx, "-w", "-f", script)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(errOut), "\n") {
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
	out, err := exec.CommandContext(ctx, "e2fsck", "-fy", e.spec()).CombinedOutput()
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
	out, err := exec.CommandContext(ctx, "resize2fs", e.spec(), kib).CombinedOutput()
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
