package images

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/internal/idleread"
)

// Source is a board image a user hands socbox: the very file they would
// write to an SD card, or a qcow2 disk.
type Source struct {
	// Location is a local path or an https:// URL.
	Location string
	// SHA256 is the expected digest of the file at Location (the download,
	// not the image inside an archive). Required for URLs; for a local path
	// it is checked when given and computed otherwise.
	SHA256 string
	// HTTPClient fetches URLs; http.DefaultClient if nil.
	HTTPClient *http.Client
	// IdleTimeout ends a download that receives nothing for that long;
	// DefaultIdleTimeout if 0.
	IdleTimeout time.Duration
	Logf        func(format string, args ...any)
}

// DefaultIdleTimeout is how long a download may receive nothing before it
// is given up: a stalled one would hold the download lock, and every other
// process waiting for the same image, forever.
const DefaultIdleTimeout = time.Minute

// Acquired is a user image ready to inspect: a raw disk (or a qcow2 one)
// that socbox only ever reads.
type Acquired struct {
	// Source is what the user named.
	Source string `json:"source"`
	// SHA256 is the source file's digest: the cache key.
	SHA256 string `json:"sha256"`
	// Format is how the source was packed: "img", "xz", "gz", "zip", "qcow2".
	Format string `json:"format"`
	// Disk is the raw disk image: the source itself for a local .img,
	// otherwise the decompressed copy in the cache.
	Disk string `json:"disk"`
	// Size is Disk's size in bytes.
	Size int64 `json:"size"`
}

// ImageFormatError says a file is not an image socbox can read.
type ImageFormatError struct {
	File string
	What string // what is wrong
	Fix  string // what to do
}

func (e *ImageFormatError) Error() string {
	s := e.File + ": " + e.What
	if e.Fix != "" {
		s += "; " + e.Fix
	}
	return s
}

// ErrChecksumMismatch is wrapped by Acquire when a source's digest is not
// the expected one.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// Formats are the packings Acquire reads, by file name suffix.
var Formats = []string{".img", ".img.xz", ".img.gz", ".zip", ".qcow2"}

var (
	magicXZ    = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}
	magicGzip  = []byte{0x1F, 0x8B}
	magicZip   = []byte{'P', 'K', 0x03, 0x04}
	magicQcow2 = []byte{'Q', 'F', 'I', 0xFB}
)

// Acquire fetches (for a URL), verifies and unpacks a user image into the
// cache, keyed by the source's SHA-256. Decompression streams with progress
// lines; results are written atomically. The source file is only read.
func Acquire(ctx context.Context, src Source) (*Acquired, error) {
	logf := src.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	want := strings.ToLower(strings.TrimSpace(src.SHA256))
	if want != "" && !isHexDigest(want) {
		return nil, fmt.Errorf("acquire %s: expected sha256 %q is not 64 hex digits", src.Location, src.SHA256)
	}
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	srcDir := filepath.Join(root, "byo", "sources")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return nil, err
	}

	file := src.Location
	name := src.Location
	if strings.HasPrefix(src.Location, "http://") {
		return nil, fmt.Errorf("acquire %s: plain http is refused; use https:// (or download the file and pass its path)", src.Location)
	}
	if strings.HasPrefix(src.Location, "https://") {
		if want == "" {
			return nil, fmt.Errorf("acquire %s: a URL needs the expected sha256 (the image's published checksum)", src.Location)
		}
		name = path.Base(strings.SplitN(src.Location, "?", 2)[0])
		file, err = download(ctx, src, want, srcDir, name, logf)
		if err != nil {
			return nil, err
		}
	} else {
		st, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("acquire %s: %w", file, err)
		}
		if !st.Mode().IsRegular() {
			return nil, &ImageFormatError{File: file, What: "not a regular file", Fix: "pass the image file itself (" + strings.Join(Formats, ", ") + ")"}
		}
	}

	format, err := detectFormat(file, name)
	if err != nil {
		return nil, err
	}
	sum := want
	if !strings.HasPrefix(src.Location, "https://") {
		logf("image: checking the sha256 of %s", file)
		got, err := fileSHA256(file)
		if err != nil {
			return nil, fmt.Errorf("acquire %s: %w", file, err)
		}
		if want != "" && got != want {
			return nil, fmt.Errorf("acquire %s: %w: the file's sha256 is %s, expected %s; the file is damaged or not the one published: download it again",
				file, ErrChecksumMismatch, got, want)
		}
		sum = got
	}
	acq := &Acquired{Source: src.Location, SHA256: sum, Format: format}
	if format == "img" && !strings.HasPrefix(src.Location, "https://") {
		// A local raw image is read in place: no copy of a multi-GiB file.
		acq.Disk = file
	} else if format == "img" {
		acq.Disk = file // the verified download is the raw image
	} else {
		dst := filepath.Join(srcDir, sum+".img")
		if _, err := os.Stat(dst); err != nil {
			unlock, err := cachefs.Lock(dst+".lock", func() { logf("image: waiting for another process unpacking %s", name) })
			if err != nil {
				return nil, err
			}
			defer unlock()
			if _, err := os.Stat(dst); err != nil {
				if err := unpack(ctx, file, format, dst, logf); err != nil {
					return nil, err
				}
			}
		}
		acq.Disk = dst
	}
	st, err := os.Stat(acq.Disk)
	if err != nil {
		return nil, err
	}
	acq.Size = st.Size()
	return acq, nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// detectFormat trusts the file's magic bytes over its name, and uses the
// name only where raw images have no magic.
func detectFormat(file, name string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	lower := strings.ToLower(name)
	supported := "socbox reads " + strings.Join(Formats, ", ")
	switch {
	case n == 0:
		return "", &ImageFormatError{File: file, What: "the file is empty", Fix: "download it again"}
	case bytes.HasPrefix(head, magicXZ):
		return "xz", nil
	case bytes.HasPrefix(head, magicGzip):
		return "gz", nil
	case bytes.HasPrefix(head, magicZip):
		return "zip", nil
	case bytes.HasPrefix(head, magicQcow2):
		return "qcow2", nil
	}
	for _, ext := range []string{".xz", ".gz", ".zip", ".qcow2"} {
		if strings.HasSuffix(lower, ext) {
			return "", &ImageFormatError{File: file, What: "named " + ext + " but its content is not " + strings.TrimPrefix(ext, "."),
				Fix: "the download is truncated or corrupt: fetch it again"}
		}
	}
	for _, ext := range []string{".7z", ".bz2", ".zst", ".tar", ".iso", ".vmdk", ".vdi", ".lz4", ".rar"} {
		if strings.HasSuffix(lower, ext) {
			return "", &ImageFormatError{File: file, What: "unsupported format " + ext, Fix: supported + "; unpack it to a .img first"}
		}
	}
	if strings.HasSuffix(lower, ".img") || strings.HasSuffix(lower, ".raw") || strings.HasSuffix(lower, ".bin") ||
		(n == 512 && head[510] == 0x55 && head[511] == 0xAA) {
		return "img", nil
	}
	return "", &ImageFormatError{File: file, What: "not a disk image socbox recognises (no partition table signature, unknown name)", Fix: supported}
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download fetches url into dir/<sha256>.<name>, verifying the digest while
// it streams; a cached verified download is reused.
func download(ctx context.Context, src Source, want, dir, name string, logf func(string, ...any)) (string, error) {
	dst := filepath.Join(dir, want+"-"+safeName(name))
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	unlock, err := cachefs.Lock(dst+".lock", func() { logf("image: waiting for another process downloading %s", name) })
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	client := src.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	idle := src.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	reqCtx, guard := idleread.WithTimeout(ctx, idle)
	defer guard.Stop()
	stalled := func(err error) error {
		if stall := guard.Err(); stall != nil && ctx.Err() == nil {
			return fmt.Errorf("acquire %s: %w; try again, or download the file yourself and pass its path", src.Location, stall)
		}
		return fmt.Errorf("acquire %s: %w", src.Location, err)
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, src.Location, nil)
	if err != nil {
		return "", fmt.Errorf("acquire %s: %w", src.Location, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", stalled(err)
	}
	body := guard.Body(resp.Body)
	defer body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("acquire %s: HTTP %s", src.Location, resp.Status)
	}
	h := sha256.New()
	err = cachefs.WriteFunc(dst, 0o444, func(f *os.File) error {
		pr := newProgress(body, resp.ContentLength, "downloading "+name, logf)
		_, err := io.Copy(io.MultiWriter(f, h), pr)
		return err
	}, func(string) error {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("%w: the download's sha256 is %s, expected %s; the server sent another file or the transfer broke: check the URL and the checksum",
				ErrChecksumMismatch, got, want)
		}
		return nil
	})
	if err != nil {
		return "", stalled(err)
	}
	return dst, nil
}

func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return "image"
	}
	return s
}

// unpack decompresses file (xz, gz, zip, qcow2) into a sparse raw image at
// dst, atomically.
func unpack(ctx context.Context, file, format, dst string, logf func(string, ...any)) error {
	if format == "qcow2" {
		if err := checkQcow2(file); err != nil {
			return err
		}
		src, err := qemuImgSource(file)
		if err != nil {
			return err
		}
		tmp := dst + ".tmp"
		_ = os.Remove(tmp)
		// qemu-img convert reads past the end of a truncated qcow2 as
		// zeros; check first. Exit 3 is only leaked clusters: harmless.
		if out, err := proc.CombinedOutput(proc.CommandContext(ctx, "qemu-img", "check", "-U", src)); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				return &ImageFormatError{File: file, What: fmt.Sprintf("qemu-img cannot read it as qcow2: %s", lastLines(string(out), 4)),
					Fix: "the file is truncated or corrupt: fetch it again (and check that qemu-utils is installed)"}
			}
		}
		logf("image: converting %s from qcow2 to raw", filepath.Base(file))
		// -U: read without taking qemu's lock, so a running VM's base works.
		out, err := proc.CombinedOutput(proc.CommandContext(ctx, "qemu-img", "convert", "-U", "-O", "raw", src, tmp))
		if err != nil {
			_ = os.Remove(tmp)
			return &ImageFormatError{File: file, What: fmt.Sprintf("qemu-img cannot read it as qcow2: %v: %s", err, strings.TrimSpace(string(out))),
				Fix: "the file is truncated or corrupt: fetch it again (and check that qemu-utils is installed)"}
		}
		_ = os.Chmod(tmp, 0o444)
		return os.Rename(tmp, dst)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var r io.Reader
	var total int64 = -1
	label := "unpacking " + filepath.Base(file)
	switch format {
	case "xz":
		if xzBin, err := exec.LookPath("xz"); err == nil {
			xr, wait, err := xzCommand(ctx, xzBin, newProgress(f, st.Size(), label, logf))
			if err != nil {
				return err
			}
			defer wait()
			r = xr
			break
		}
		xr, err := xz.NewReader(newProgress(f, st.Size(), label, logf))
		if err != nil {
			return corrupt(file, "xz", err)
		}
		r = xr
	case "gz":
		gr, err := gzip.NewReader(newProgress(f, st.Size(), label, logf))
		if err != nil {
			return corrupt(file, "gzip", err)
		}
		defer gr.Close()
		r = gr
	case "zip":
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return corrupt(file, "zip", err)
		}
		var pick *zip.File
		var names []string
		for _, zf := range zr.File {
			names = append(names, zf.Name)
			if pick == nil && strings.HasSuffix(strings.ToLower(zf.Name), ".img") && !zf.FileInfo().IsDir() {
				pick = zf
			}
		}
		if pick == nil {
			return &ImageFormatError{File: file, What: fmt.Sprintf("the zip holds no .img file (it has: %s)", strings.Join(names, ", ")),
				Fix: "pass the zip the image was published in, or the .img itself"}
		}
		rc, err := pick.Open()
		if err != nil {
			return corrupt(file, "zip", err)
		}
		defer rc.Close()
		total = int64(pick.UncompressedSize64)
		r = newProgress(rc, total, label+" ("+pick.Name+")", logf)
	default:
		return fmt.Errorf("unpack %s: unknown format %q", file, format)
	}
	err = cachefs.WriteFunc(dst, 0o444, func(f *os.File) error {
		return copySparse(ctx, f, r)
	}, nil)
	if err != nil {
		var fe *ImageFormatError
		if errors.As(err, &fe) || ctx.Err() != nil {
			return err
		}
		return corrupt(file, format, err)
	}
	return nil
}

// xzCommand decompresses in with the xz program, which is several times
// faster than the Go decoder on a Raspberry Pi OS image (measured: a
// 135 MiB .img.xz took ~100 s in Go). Its reader returns xz's complaint,
// not a clean end of file, when the stream is corrupt or truncated; wait
// reaps the process.
func xzCommand(ctx context.Context, bin string, in io.Reader) (io.Reader, func(), error) {
	cmd := proc.CommandContext(ctx, bin, "--decompress", "--stdout", "--threads=0")
	cmd.Stdin = in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := proc.Start(cmd); err != nil {
		return nil, nil, err
	}
	done := false
	var werr error
	wait := func() {
		if !done {
			done = true
			_ = out.Close()
			werr = cmd.Wait()
		}
	}
	return &xzReader{out: out, finish: func() error {
		wait()
		if werr != nil {
			return fmt.Errorf("xz: %s", strings.TrimSpace(stderr.String()))
		}
		return nil
	}}, wait, nil
}

type xzReader struct {
	out    io.Reader
	finish func() error
}

func (x *xzReader) Read(p []byte) (int, error) {
	n, err := x.out.Read(p)
	if errors.Is(err, io.EOF) {
		if ferr := x.finish(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

func corrupt(file, format string, err error) error {
	return &ImageFormatError{File: file, What: fmt.Sprintf("the %s archive is truncated or corrupt: %v", format, err),
		Fix: "download it again and check its sha256"}
}

// copySparse copies r to f, seeking over all-zero blocks so the result is
// sparse: an SD card image is mostly empty space.
func copySparse(ctx context.Context, f *os.File, r io.Reader) error {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := fill(r, buf)
		if n > 0 {
			if !isZero(buf[:n]) {
				if _, werr := f.WriteAt(buf[:n], off); werr != nil {
					return werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return f.Truncate(off)
}

// fill reads until buf is full or r ends. Unlike io.ReadFull it passes a
// reader's own io.ErrUnexpectedEOF through: that is how a truncated xz or
// gzip stream ends, and it must not pass for the end of the image.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// progress logs how far a long read has got, every few seconds.
type progress struct {
	r     io.Reader
	total int64
	done  int64
	label string
	logf  func(string, ...any)
	last  time.Time
	start time.Time
}

func newProgress(r io.Reader, total int64, label string, logf func(string, ...any)) io.Reader {
	now := time.Now()
	return &progress{r: r, total: total, label: label, logf: logf, last: now, start: now}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if time.Since(p.last) >= 5*time.Second || (err == io.EOF && time.Since(p.start) >= 5*time.Second) {
		p.last = time.Now()
		if p.total > 0 {
			p.logf("image: %s: %d of %d MiB (%d%%)", p.label, p.done>>20, p.total>>20, p.done*100/p.total)
		} else {
			p.logf("image: %s: %d MiB", p.label, p.done>>20)
		}
	}
	return n, err
}
