package ctrd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

// File is a file put into a container's root filesystem before it starts,
// as `docker cp` would: it replaces what the image has there, and the
// container may change or delete it.
type File struct {
	// Path is absolute, inside the container.
	Path    string
	Content []byte
	// Mode is the file's permission bits; 0644 if zero.
	Mode os.FileMode
}

// rootfsDirs are the directories of a container's root filesystem as the
// overlayfs snapshotter lays it out in the guest: the layer the container
// writes to, and the image's layers below it, topmost first.
type rootfsDirs struct {
	upper  string
	lowers []string
}

// rootfs reads where the container's snapshot lives from the snapshotter.
// Only overlay (and the bind mount the snapshotter uses for an image of no
// layers) are understood: they are what the guest's containerd uses.
func (r *Runtime) rootfs(ctx context.Context, key string) (rootfsDirs, error) {
	m, err := r.rootfsMount(ctx, key)
	if err != nil {
		return rootfsDirs{}, err
	}
	return parseRootfs(m)
}

// rootfsMount is the one mount of the container's root filesystem, as the
// snapshotter gives it.
func (r *Runtime) rootfsMount(ctx context.Context, key string) (mount.Mount, error) {
	mounts, err := r.client.SnapshotService(r.snapshotter).Mounts(ctx, key)
	if err != nil {
		return mount.Mount{}, fmt.Errorf("find the root filesystem of %s: %w", key, err)
	}
	if len(mounts) != 1 {
		return mount.Mount{}, fmt.Errorf("root filesystem of %s: %d mounts, want 1", key, len(mounts))
	}
	return mounts[0], nil
}

func parseRootfs(m mount.Mount) (rootfsDirs, error) {
	switch m.Type {
	case "bind":
		return rootfsDirs{upper: m.Source}, nil
	case "overlay":
		var d rootfsDirs
		for _, o := range m.Options {
			switch k, v, _ := strings.Cut(o, "="); k {
			case "upperdir":
				d.upper = v
			case "lowerdir":
				d.lowers = strings.Split(v, ":")
			}
		}
		if d.upper == "" {
			return d, fmt.Errorf("overlay root filesystem without an upper dir (options %v)", m.Options)
		}
		return d, nil
	}
	return rootfsDirs{}, fmt.Errorf("root filesystem of type %q: socbox copies files with the overlayfs snapshotter only", m.Type)
}

// copyIn writes files into the container's root filesystem, in one SSH
// session, as the container will see it: through its overlay, mounted in
// the guest for the copy, so that the kernel copies up the directories a
// file goes into with their modes (writing to the upper directory alone
// made a new /tmp there, 0755, which then hid the image's 1777 one).
// Missing parent directories are made as mkdir -p makes them: 0755, root;
// existing ones are never changed.
func (r *Runtime) copyIn(ctx context.Context, key string, files []File) error {
	m, err := r.rootfsMount(ctx, key)
	if err != nil {
		return err
	}
	if _, err := parseRootfs(m); err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(path.Clean(f.Path), "/"), Mode: int64(mode), Size: int64(len(f.Content)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Content); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	var cmd string
	if m.Type == "bind" {
		// An image of no layers: the directory is all there is.
		cmd = shell.Script(`tar -C "$1" --no-same-owner -xf -`, m.Source)
	} else {
		cmd = shell.Script(`m=$(mktemp -d) && mount -t overlay overlay -o "$1" "$m" || exit 1
tar -C "$m" --no-same-owner -xf -; rc=$?
umount "$m"; rmdir "$m"; exit $rc`, strings.Join(m.Options, ","))
	}
	res, err := r.sh.Run(ctx, cmd, sshx.WithStdin(&buf))
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit status %d: %s", res.ExitCode, bytes.TrimSpace(res.Stderr))
	}
	if err != nil {
		return fmt.Errorf("copy files into the container: %w", err)
	}
	return nil
}

// copyOut reads regular files from the container's root filesystem as the
// container left it: a read-only overlay of its layers is mounted in the
// guest for the copy. Files that are not there are missing from the map.
// Each is read up to limit bytes; a tar stream larger than the files' heads
// allow is cut, and what it held past the cut is lost (the files that were
// read up to then are kept, the last one marked cut).
func (r *Runtime) copyOut(ctx context.Context, key string, paths []string, limit int64) (map[string]sshx.Head, error) {
	d, err := r.rootfs(ctx, key)
	if err != nil {
		return nil, err
	}
	rel := make([]string, len(paths))
	for i, p := range paths {
		rel[i] = "./" + strings.TrimPrefix(path.Clean(p), "/")
	}
	var cmd string
	if len(d.lowers) == 0 {
		cmd = shell.Script(`cd "$1" && shift && tar -cf - --ignore-failed-read -- "$@" 2>/dev/null; true`, append([]string{d.upper}, rel...)...)
	} else {
		// Upper first, as the topmost of the read-only layers: no work
		// dir is needed, and nothing can change the container's files.
		lower := strings.Join(append([]string{d.upper}, d.lowers...), ":")
		cmd = shell.Script(`m=$(mktemp -d) && mount -t overlay overlay -o "ro,lowerdir=$1" "$m" || exit 1
shift
(cd "$m" && tar -cf - --ignore-failed-read -- "$@" 2>/dev/null)
umount "$m"; rmdir "$m"; true`, append([]string{lower}, rel...)...)
	}
	// Each file's head and its tar headers (long names take a few KiB).
	res, err := r.sh.Run(ctx, cmd, sshx.WithOutputLimit(int64(len(paths))*(limit+tarOverhead)))
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit status %d: %s", res.ExitCode, bytes.TrimSpace(res.Stderr))
	}
	if err != nil {
		return nil, fmt.Errorf("copy files out of the container: %w", err)
	}
	cut := res.StdoutSize > int64(len(res.Stdout))
	out := map[string]sshx.Head{}
	tr := tar.NewReader(bytes.NewReader(res.Stdout))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) || (err != nil && cut) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("copy files out of the container: read tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := "/" + strings.TrimPrefix(path.Clean(hdr.Name), "./")
		// hdr.Size is the guest's word: it only goes into the report.
		b, err := io.ReadAll(io.LimitReader(tr, limit))
		if err != nil && !cut {
			return nil, fmt.Errorf("copy files out of the container: %w", err)
		}
		out[name] = sshx.Head{Data: b, Size: max(hdr.Size, int64(len(b)))}
		if err != nil {
			break // the stream was cut inside this file
		}
	}
	return out, nil
}

// tarOverhead is what tar adds to a file: its header, long-name and pax
// records, and padding.
const tarOverhead = 16 << 10
