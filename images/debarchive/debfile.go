package debarchive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/socbox/socbox/harness/proc"
)

// ExtractDeb unpacks the files of a .deb (its data.tar) into destDir, which
// is created if needed, with the host's `dpkg-deb -x`: it is fast, and it
// knows every compression dpkg does. Maintainer scripts are not run.
func ExtractDeb(ctx context.Context, debPath, destDir string) error {
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return fmt.Errorf("extract %s: dpkg-deb not found on the host: install dpkg", debPath)
	}
	if err := os.MkdirAll(destDir, 0o755); err != nil {
		return fmt.Errorf("extract %s: %w", debPath, err)
	}
	out, err := proc.CombinedOutput(proc.CommandContext(ctx, dpkgDeb, "-x", debPath, destDir))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("extract %s: dpkg-deb -x: %v: %s", debPath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ReadFileFromDeb returns the content of one file of a .deb's data.tar,
// without unpacking the rest. member may be written "./bin/busybox",
// "/bin/busybox" or "bin/busybox". Symbolic and hard links inside the
// package are followed. As on a merged-/usr system, a member under bin/,
// sbin/ or lib*/ that the package does not have is looked for under usr/
// (trixie's busybox-static ships usr/bin/busybox, bookworm's bin/busybox).
func ReadFileFromDeb(ctx context.Context, debPath, member string) ([]byte, error) {
	want := cleanMember(member)
	triedUsr := false
	for hops := 0; hops < 16; hops++ {
		hdr, data, similar, err := findInDeb(ctx, debPath, want)
		if err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", member, debPath, err)
		}
		switch {
		case hdr == nil:
			if alt, ok := usrMerged(want); ok && !triedUsr {
				triedUsr, want = true, alt
				continue
			}
			msg := fmt.Sprintf("read %s from %s: no such file in the package", member, debPath)
			if len(similar) > 0 {
				msg += " (it has " + strings.Join(similar, ", ") + ")"
			}
			return nil, errors.New(msg)
		case hdr.Typeflag == tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(want), target)
			}
			want = cleanMember(target)
		case hdr.Typeflag == tar.TypeLink:
			want = cleanMember(hdr.Linkname)
		case hdr.Typeflag == tar.TypeReg:
			return data, nil
		default:
			return nil, fmt.Errorf("read %s from %s: %s is not a regular file", member, debPath, hdr.Name)
		}
	}
	return nil, fmt.Errorf("read %s from %s: too many links", member, debPath)
}

// cleanMember turns any spelling of a path into the form compared with
// tar names cleaned the same way: "usr/bin/busybox".
func cleanMember(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func usrMerged(name string) (string, bool) {
	first, _, _ := strings.Cut(name, "/")
	switch first {
	case "bin", "sbin", "lib", "lib32", "lib64", "libx32":
		return "usr/" + name, true
	}
	return "", false
}

// findInDeb scans the data.tar of a .deb for want. It returns the header
// and, for a regular file, the content; hdr is nil if want is absent, and
// similar then lists members with the same base name.
func findInDeb(ctx context.Context, debPath, want string) (hdr *tar.Header, data []byte, similar []string, err error) {
	rc, err := openDataTar(ctx, debPath)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil, similar, nil
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("data.tar: %w", err)
		}
		name := cleanMember(h.Name)
		if name != want {
			if h.Typeflag != tar.TypeDir && path.Base(name) == path.Base(want) && len(similar) < 5 {
				similar = append(similar, name)
			}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return h, nil, nil, nil
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("data.tar: %s: %w", h.Name, err)
		}
		return h, data, nil, nil
	}
}

// openDataTar returns the uncompressed data.tar of a .deb. The .deb is an ar
// archive: "!<arch>\n", then members with 60-byte headers, each padded to
// an even length. xz, gzip, bzip2, lzma and no compression are read in Go;
// anything else (zstd) goes through the host's `dpkg-deb --fsys-tarfile`.
func openDataTar(ctx context.Context, debPath string) (io.ReadCloser, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (io.ReadCloser, error) {
		f.Close()
		return nil, err
	}
	magic := make([]byte, 8)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "!<arch>\n" {
		return fail(errors.New("not a .deb (no ar header)"))
	}
	offset := int64(8)
	hdr := make([]byte, 60)
	for {
		if _, err := f.ReadAt(hdr, offset); err != nil {
			if err == io.EOF {
				return fail(errors.New("no data.tar member"))
			}
			return fail(err)
		}
		if hdr[58] != '`' || hdr[59] != '\n' {
			return fail(fmt.Errorf("corrupt ar header at offset %d", offset))
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return fail(fmt.Errorf("corrupt ar member size at offset %d", offset))
		}
		offset += 60
		if rest, ok := strings.CutPrefix(name, "data.tar"); ok {
			section := bufio.NewReaderSize(io.NewSectionReader(f, offset, size), 256<<10)
			var r io.Reader
			switch rest {
			case "":
				r = section
			case ".xz":
				r, err = xz.NewReader(section)
			case ".gz":
				r, err = gzip.NewReader(section)
			case ".bz2":
				r = bzip2.NewReader(section)
			case ".lzma":
				r, err = lzma.NewReader(section)
			default:
				f.Close()
				return fsysTarfile(ctx, debPath)
			}
			if err != nil {
				return fail(fmt.Errorf("%s: %w", name, err))
			}
			return readCloser{r, f}, nil
		}
		offset += size + size%2
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// fsysTarfile runs `dpkg-deb --fsys-tarfile`, for compressions Go's
// standard library and xz package do not read.
func fsysTarfile(ctx context.Context, debPath string) (io.ReadCloser, error) {
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return nil, errors.New("data.tar uses a compression only dpkg-deb reads, and dpkg-deb is not on the host: install dpkg")
	}
	var stderr bytes.Buffer
	cmd := proc.CommandContext(ctx, dpkgDeb, "--fsys-tarfile", debPath)
	cmd.Stderr = &stderr
	out, err := proc.Output(cmd)
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}
