package main

// Bring your own image: `image inspect`, `image prepare`, and the --image
// flag of boot and run. The work is done by images.Acquire, Inspect and
// Prepare; this file turns flags into their inputs and their results into
// text.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// imageFlags name a user's board image and how to prepare it.
type imageFlags struct {
	image        string // path or https:// URL; "" for the default image
	sha256       string
	passwordHash string
}

const (
	sha256Help       = "expected `SHA256` of the image file (the download, not the image inside an archive); required for https:// URLs"
	passwordHashHelp = "crypt(3) `HASH` (e.g. from openssl passwd -6): the password of a Raspberry Pi OS image's first user (userconf.txt or cloud-init), for console logins; default: none is set"
)

// check rejects what Acquire would only reject after reading the file.
func (f imageFlags) check() error {
	if f.sha256 != "" && !isSHA256(f.sha256) {
		return fmt.Errorf("--sha256 %q is not 64 hex digits", f.sha256)
	}
	return nil
}

func isSHA256(s string) bool {
	s = strings.TrimSpace(s)
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil
}

// acquire verifies and unpacks a user image into the cache (a local .img
// is read in place). The source is never written.
func (f imageFlags) acquire(ctx context.Context, logf func(string, ...any)) (*images.Acquired, error) {
	acq, err := images.Acquire(ctx, images.Source{Location: f.image, SHA256: f.sha256, Logf: logf})
	if err == nil {
		markSourceUsed(acq.Disk)
	}
	return acq, err
}

// prepare makes the copy of an acquired image that board boots, with
// socbox's SSH key authorized.
func (f imageFlags) prepare(ctx context.Context, acq *images.Acquired, board boards.Profile, logf func(string, ...any)) (*images.Image, error) {
	cache, err := images.CacheDir()
	if err != nil {
		return nil, err
	}
	signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, "ssh", "id_ed25519"))
	if err != nil {
		return nil, err
	}
	return images.Prepare(ctx, images.PrepareSpec{
		Image: acq, Board: board, AuthorizedKey: sshx.AuthorizedKey(signer), PasswordHash: f.passwordHash,
		Archive: &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: logf}, Logf: logf,
	})
}

// badImage reports whether err is the user's image (or its name or
// checksum) being wrong, rather than this host failing.
func badImage(err error) bool {
	var fe *images.ImageFormatError
	return errors.As(err, &fe) || errors.Is(err, images.ErrChecksumMismatch) || errors.Is(err, iofs.ErrNotExist)
}

func cmdImagePrepare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "image prepare", args: "IMAGE",
		synopsis: `Make the copy of your own board image that socbox boots, and print its name and directory.
IMAGE is the file you would write to an SD card (` + strings.Join(images.Formats, ", ") + `), or an
https:// URL with --sha256. The copy, in the cache, has socbox's SSH key authorized for root and
the first user, sshd enabled, the root filesystem grown by 2 GiB (when it is the last partition),
and a kernel QEMU can boot on the board. IMAGE itself is never written; no root, loop device or mount is needed.
'socbox run --image' and 'socbox boot --image' prepare the image themselves; this is for doing it
ahead of time, or for seeing what goes wrong.`,
		examples: `  socbox image prepare --board raspi3b ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox image prepare --board raspi4b-fast --sha256 "$SHA256" https://example.org/raspios-arm64-lite.img.xz
  socbox image prepare --board raspi3b --password-hash "$(openssl passwd -6)" raspios-arm64-lite.img.xz
  socbox image prepare --board beaglebone-black bone-debian-12.7-iot-armhf.img.xz
`}, stderr)
	board := fs.String("board", "", "the `BOARD` to prepare the image for (see socbox boards); required")
	var f imageFlags
	fs.StringVar(&f.sha256, "sha256", "", sha256Help)
	fs.StringVar(&f.passwordHash, "password-hash", "", passwordHashHelp)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(fs, stderr, "give one image file or URL")
	}
	if *board == "" {
		return usageError(fs, stderr, "--board is required: an image is prepared for one board")
	}
	f.image = fs.Arg(0)
	if err := f.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	prof, err := boards.Lookup(*board)
	if err != nil {
		return usageError(fs, stderr, "--board: %v", err)
	}
	logf := lineLogger(stderr)
	start := time.Now()
	acq, err := f.acquire(ctx, logf)
	if err != nil {
		return err
	}
	im, err := f.prepare(ctx, acq, prof, logf)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\t%s\t(%.1fs)\n", im.Name, im.Dir, time.Since(start).Seconds())
	return nil
}

func cmdImageInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "image inspect", args: "IMAGE",
		synopsis: `Show what socbox finds in a board image, without writing it: the partition table and
partitions, the boot partition's files, the image family (which decides how socbox sets up
its first boot), the Debian release and architecture, the first user, the kernels and their
architecture, and the boards whose CPU runs it. A compressed image is unpacked into the cache
first, as 'image prepare' would.`,
		examples: `  socbox image inspect ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox image inspect --json bone-debian-12.7-iot-armhf.img | jq .image.family
`}, stderr)
	var f imageFlags
	fs.StringVar(&f.sha256, "sha256", "", sha256Help)
	asJSON := fs.Bool("json", false, "print everything found as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(fs, stderr, "give one image file or URL")
	}
	f.image = fs.Arg(0)
	if err := f.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	acq, err := f.acquire(ctx, lineLogger(stderr))
	if err != nil {
		return err
	}
	info, err := images.Inspect(ctx, acq.Disk)
	if err != nil {
		return err
	}
	out := inspection{Source: acq, Image: info, KernelArch: kernelArches(ctx, info), Boards: boardsFor(info.Arch)}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return out.print(stdout)
}

// inspection is what `image inspect` prints.
type inspection struct {
	Source *images.Acquired  `json:"source"`
	Image  *images.ImageInfo `json:"image"`
	// KernelArch is each kernel's architecture ("arm64", "arm"), by its
	// name in the image; "unknown" when it could not be read.
	KernelArch map[string]string `json:"kernel_arch"`
	// Boards are the boards whose CPU runs the image's userland.
	Boards []string `json:"boards"`
}

// familyHow says how Prepare sets up each family's first boot.
var familyHow = map[images.Family]string{
	images.FamilyRaspiOS:          "Raspberry Pi OS: ssh (and userconf.txt) on the boot partition enable sshd",
	images.FamilyRaspiOSCloudInit: "Raspberry Pi OS with cloud-init: user-data, meta-data, network-config on the boot partition",
	images.FamilyDebian:           "Debian: sshd enabled and the key written in the root filesystem",
}

func (o inspection) print(w io.Writer) error {
	info := o.Image
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-12s %s\n", k, fmt.Sprintf(format, args...)) }
	row("image:", "%s (%s, sha256 %s)", o.Source.Source, o.Source.Format, o.Source.SHA256)
	if o.Source.Disk != o.Source.Source {
		row("unpacked:", "%s", o.Source.Disk)
	}
	row("size:", "%s", humanSize(info.Layout.Size))
	if name := info.OSRelease["PRETTY_NAME"]; name != "" {
		row("os:", "%s", name)
	}
	row("family:", "%s (%s)", info.Family, familyHow[info.Family])
	row("suite:", "%s", orNone(info.Suite))
	row("arch:", "%s", orNone(info.Arch))
	if info.FirstUser != "" {
		row("first user:", "%s (uid %d, %s)", info.FirstUser, info.FirstUserUID, info.FirstUserHome)
	} else {
		row("first user:", "(none)")
	}
	row("table:", "%s, disk id %s", strings.ToUpper(info.Layout.Table), info.Layout.DiskID)
	if info.Boot != nil {
		row("boot files:", "%s", strings.Join(info.BootFiles, " "))
	}
	var kernels []string
	for _, k := range slices.Sorted(maps.Keys(o.KernelArch)) {
		kernels = append(kernels, fmt.Sprintf("%s (%s)", k, o.KernelArch[k]))
	}
	row("kernels:", "%s", orNone(strings.Join(kernels, ", ")))
	if len(info.ModuleVersions) > 0 {
		row("modules:", "%s", strings.Join(info.ModuleVersions, ", "))
	}
	if info.Cmdline != "" {
		row("cmdline.txt:", "%s", info.Cmdline)
	}
	row("boards:", "%s", orNone(strings.Join(o.Boards, ", ")))
	fmt.Fprintln(w, "partitions:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tROLE\tFS\tLABEL\tSTART\tSIZE\tTYPE\tPARTUUID")
	for _, p := range info.Layout.Partitions {
		role := "-"
		switch {
		case info.Boot != nil && p.Index == info.Boot.Index:
			role = "boot"
		case p.Index == info.Root.Index:
			role = "root"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Index, role, orDash(p.FS), orDash(p.FSLabel),
			humanSize(p.Start), humanSize(p.Size), p.TableType, p.PartUUID)
	}
	return tw.Flush()
}

// kernelArches reads each kernel the image carries: kernel*.img on the
// boot partition, and /boot/vmlinuz-<version> in the root filesystem for
// every version in /lib/modules.
func kernelArches(ctx context.Context, info *images.ImageInfo) map[string]string {
	out := map[string]string{}
	arch := func(data []byte, err error) string {
		if err != nil {
			return "unknown"
		}
		a, err := images.KernelArch(data)
		if err != nil {
			return "unknown"
		}
		return a
	}
	if info.Boot != nil && len(info.Kernels) > 0 {
		d, err := diskfs.Open(info.File, diskfs.WithOpenMode(diskfs.ReadOnly))
		if err == nil {
			fsys, err := d.GetFilesystem(info.Boot.Index)
			for _, k := range info.Kernels {
				if err != nil {
					out[k] = "unknown"
					continue
				}
				out[k] = arch(iofs.ReadFile(fsys, k))
			}
			d.Close()
		}
	}
	for _, v := range info.ModuleVersions {
		p := "/boot/vmlinuz-" + v
		// debugfs reads the ext4 root in place ("file?offset=N"); it
		// prints nothing to stdout for a missing file.
		data, err := exec.CommandContext(ctx, "debugfs", "-R", "cat "+p, fmt.Sprintf("%s?offset=%d", info.File, info.Root.Start)).Output()
		if err == nil && len(data) > 0 {
			out[p] = arch(data, nil)
		}
	}
	return out
}

// boardsFor lists the boards whose userland architecture is arch.
func boardsFor(arch string) []string {
	var out []string
	for _, b := range boards.All() {
		if b.Platform.DebianArch() == arch {
			out = append(out, b.Slug)
		}
	}
	return out
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
