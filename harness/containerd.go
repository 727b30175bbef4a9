package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// GuestInfo is what an installer needs to know about the guest's OS.
type GuestInfo = guest.OS

// ContainerdInstaller puts containerd and runc into a guest.
type ContainerdInstaller interface {
	Name() string
	Install(ctx context.Context, sh *sshx.Client, g GuestInfo, logf func(string, ...any)) error
}

// AptInstaller installs containerd with apt-get in the guest, which reaches
// Debian's archive through QEMU's user network.
type AptInstaller struct {
	// Extra packages to install with containerd and runc (crun).
	Extra []string
}

func (AptInstaller) Name() string { return "apt" }

func (ai AptInstaller) Install(ctx context.Context, sh *sshx.Client, g GuestInfo, logf func(string, ...any)) error {
	logf("containerd: apt-get install in the guest (Debian %s %s)", g.Suite, g.Arch)
	if err := guest.AptInstall(ctx, sh, append([]string{"containerd", "runc"}, ai.Extra...)...); err != nil {
		var exit *guest.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("%w (does the guest reach Debian's archive? is its clock right?)", err)
		}
		return err
	}
	return nil
}

// BundleInstaller fetches containerd, runc and whatever they need that the
// guest lacks, for the guest's own suite and architecture, verified against
// the archive's signed indexes and cached on the host; pushes them over SSH
// and installs them with dpkg. The guest needs no network.
type BundleInstaller struct {
	Archive *debarchive.Client
	// Extra packages to install with containerd and runc (crun).
	Extra []string
}

func (BundleInstaller) Name() string { return "bundle" }

// bundleDir is where the bundle's packages wait in the guest.
const bundleDir = "/var/cache/socbox/debs"

func (bi BundleInstaller) Install(ctx context.Context, sh *sshx.Client, g GuestInfo, logf func(string, ...any)) error {
	want := append([]string{"containerd", "runc"}, bi.Extra...)
	debs, err := bi.Archive.FetchDebs(ctx, g.Suite, g.Arch, want, g.Installed)
	if err != nil {
		return fmt.Errorf("fetch containerd for Debian %s %s: %w", g.Suite, g.Arch, err)
	}
	if len(debs) == 0 {
		// Installed, but not answering yet: a board booting its
		// provisioned disk, whose containerd is still starting.
		logf("containerd: installed already (%s), waiting for it to start", strings.Join(want, ", "))
		return nil
	}
	var names, remote []string
	for _, d := range debs {
		names = append(names, debDisplayName(d))
		dst := path.Join(bundleDir, filepath.Base(d))
		if err := uploadFile(ctx, sh, d, dst); err != nil {
			return fmt.Errorf("push %s: %w", filepath.Base(d), err)
		}
		remote = append(remote, dst)
	}
	logf("containerd: installing %s with dpkg", strings.Join(names, ", "))
	return guest.DpkgInstall(ctx, sh, bundleDir, remote...)
}

// debDisplayName drops the cache's content-address prefix from a .deb path.
func debDisplayName(p string) string {
	base := filepath.Base(p)
	if i := strings.IndexByte(base, '_'); i == 64 {
		return base[i+1:]
	}
	return base
}

func uploadFile(ctx context.Context, sh *sshx.Client, local, remote string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	return sh.Upload(ctx, f, remote, 0o644)
}

// crunPath is where Debian's crun package puts the binary.
const crunPath = "/usr/bin/crun"

// containerdSetup brings containerd up in a board that is logged in to.
type containerdSetup struct {
	b       *Board
	archive *debarchive.Client
}

func (c containerdSetup) logf(format string, args ...any) { c.b.life.logf(format, args...) }

func (c containerdSetup) installer() ContainerdInstaller {
	var extra []string
	if c.b.opts.crun {
		extra = append(extra, "crun")
	}
	switch c.b.opts.containerd {
	case ContainerdApt:
		return AptInstaller{Extra: extra}
	default:
		return BundleInstaller{Archive: c.archive, Extra: extra}
	}
}

// connect dials the guest's containerd through SSH and checks it answers.
func (c containerdSetup) connect(ctx context.Context) (*ctrd.Runtime, string, error) {
	var opts []ctrd.Option
	if c.b.opts.crun {
		opts = append(opts, ctrd.WithOCIRuntime(crunPath))
	}
	if c.b.Machine.Shared() {
		// A real board: other sessions may be using it right now.
		opts = append(opts, ctrd.WithSharedGuest())
	}
	rt, err := ctrd.Connect(ctx, c.b.SSH, opts...)
	if err != nil {
		return nil, "", err
	}
	return rt, rt.DaemonVersion(), nil
}

// ready installs containerd where it is missing, connects to it, imports
// the busybox image and warms the shim.
func (c containerdSetup) ready(ctx context.Context) error {
	b := c.b
	// Skip the install when containerd already answers (a provisioned or
	// real board). sshd itself opens the socket: no process starts in the
	// guest for the check.
	if conn, err := b.SSH.DialUnix(ctx, ctrd.DefaultSocket); err == nil {
		conn.Close()
		rt, v, err := c.connect(ctx)
		if err == nil && c.crunMissing(ctx) {
			_ = rt.Close()
			err = errors.New("crun is missing")
		}
		if err == nil {
			c.logf("containerd %s already running", v)
			b.Runtime = rt
			if err := c.importBusybox(ctx, nil); err != nil {
				return err
			}
			c.warmShim(ctx)
			return nil
		}
	}
	g, err := guest.ReadOS(ctx, b.SSH)
	if err != nil {
		return err
	}
	inst := c.installer()
	start := time.Now()
	if err := inst.Install(ctx, b.SSH, g, c.logf); err != nil {
		return fmt.Errorf("install containerd (%s): %w", inst.Name(), err)
	}
	c.logf("containerd: installed with %s in %.1fs", inst.Name(), time.Since(start).Seconds())
	var rt *ctrd.Runtime
	var version string
	err = poll(ctx, requirement{
		desc: "containerd to answer", interval: 500 * time.Millisecond, alive: b.Machine.Alive,
		check: func(ctx context.Context) error {
			if err := guest.StartUnitUnlessSocket(ctx, b.SSH, "containerd", ctrd.DefaultSocket); err != nil {
				return err
			}
			var err error
			rt, version, err = c.connect(ctx)
			return err
		},
	})
	if err != nil {
		return err
	}
	c.logf("containerd %s answers", version)
	b.Runtime = rt
	if err := c.importBusybox(ctx, &g); err != nil {
		return err
	}
	c.warmShim(ctx)
	return nil
}

// connectRestored connects to the containerd of a board restored from its
// saved state, which has the busybox image (the store's key says so).
func (c containerdSetup) connectRestored(ctx context.Context) error {
	rt, version, err := c.connect(ctx)
	if err != nil {
		return err
	}
	c.logf("containerd %s answers", version)
	c.b.Runtime = rt
	c.b.BusyboxImage = BusyboxRef
	c.warmShim(ctx)
	return nil
}

// crunMissing says whether WithCrun asks for crun and the guest lacks it;
// a board with containerd but without crun goes through the install. (A
// restored board never asks: the store's key has crun in it.)
func (c containerdSetup) crunMissing(ctx context.Context) bool {
	return c.b.opts.crun && !guest.Executable(ctx, c.b.SSH, crunPath)
}

// warmShim starts the shim keeper (see ctrd.KeepShimWarm); a board
// without it only runs each container a little slower.
func (c containerdSetup) warmShim(ctx context.Context) {
	start := time.Now()
	if err := c.b.Runtime.KeepShimWarm(ctx, c.b.BusyboxImage); err != nil {
		c.logf("containerd: %v (containers will start their own shim)", err)
		return
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		c.logf("containerd: shim kept warm (%.1fs)", d.Seconds())
	}
}

// importBusybox builds the busybox image for the guest's platform from
// Debian's busybox-static (of the guest's suite) and imports it. g is the
// guest's OS when the caller has read it already; nil reads it.
func (c containerdSetup) importBusybox(ctx context.Context, g *GuestInfo) error {
	b := c.b
	if b.Runtime.HasImage(ctx, BusyboxRef) {
		b.BusyboxImage = BusyboxRef // restored from a snapshot
		return nil
	}
	if g == nil {
		info, err := guest.ReadOS(ctx, b.SSH)
		if err != nil {
			return err
		}
		g = &info
	}
	bb, err := images.BusyboxBinary(ctx, c.archive, g.Suite, g.Arch)
	if err != nil {
		return err
	}
	name, err := importBusyboxImage(ctx, b.Runtime, bb, b.Profile.Platform)
	if err != nil {
		return err
	}
	b.BusyboxImage = name
	return nil
}

// importBusyboxImage imports socbox's busybox image, built from the
// busybox binary for platform p, under BusyboxRef.
func importBusyboxImage(ctx context.Context, rt *ctrd.Runtime, busybox string, p boards.Platform) (string, error) {
	img, err := ociimage.Busybox(busybox, p)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ociimage.WriteArchive(pw, img, BusyboxRef)) }()
	name, err := rt.Import(ctx, pr, p)
	pr.CloseWithError(err)
	if err != nil {
		return "", fmt.Errorf("import busybox image: %w", err)
	}
	return name, nil
}
