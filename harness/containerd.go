package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// GuestInfo is what an installer needs to know about the guest's OS.
type GuestInfo struct {
	Suite     string          // Debian codename from /etc/os-release
	Arch      string          // dpkg architecture
	Installed map[string]bool // packages dpkg has installed
}

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
	cmd := "export DEBIAN_FRONTEND=noninteractive; " +
		"apt-get -q -o Acquire::Retries=3 update && " +
		"apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends " + strings.Join(append([]string{"containerd", "runc"}, ai.Extra...), " ")
	res, err := sh.Run(ctx, cmd)
	if err != nil {
		return fmt.Errorf("apt-get install containerd: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("apt-get install containerd exited %d: %s (does the guest reach Debian's archive? is its clock right?)",
			res.ExitCode, tailString(res.Stderr, 800))
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

func (bi BundleInstaller) Install(ctx context.Context, sh *sshx.Client, g GuestInfo, logf func(string, ...any)) error {
	debs, err := bi.Archive.FetchDebs(ctx, g.Suite, g.Arch, append([]string{"containerd", "runc"}, bi.Extra...), g.Installed)
	if err != nil {
		return fmt.Errorf("fetch containerd for Debian %s %s: %w", g.Suite, g.Arch, err)
	}
	if len(debs) == 0 {
		// Installed, but not answering yet: a board booting its
		// provisioned disk, whose containerd is still starting.
		logf("containerd: installed already (%s), waiting for it to start", strings.Join(append([]string{"containerd", "runc"}, bi.Extra...), ", "))
		return nil
	}
	var names []string
	remote := make([]string, 0, len(debs))
	for _, d := range debs {
		names = append(names, debDisplayName(d))
		dst := "/var/cache/socbox/debs/" + filepath.Base(d)
		if err := uploadFile(ctx, sh, d, dst); err != nil {
			return fmt.Errorf("push %s: %w", filepath.Base(d), err)
		}
		remote = append(remote, shell.Quote(dst))
	}
	logf("containerd: installing %s with dpkg", strings.Join(names, ", "))
	res, err := sh.Run(ctx, "DEBIAN_FRONTEND=noninteractive dpkg -i "+strings.Join(remote, " ")+
		" && rm -rf /var/cache/socbox/debs")
	if err != nil {
		return fmt.Errorf("dpkg -i: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("dpkg -i exited %d: %s", res.ExitCode, tailString(append(res.Stdout, res.Stderr...), 1200))
	}
	return nil
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

func tailString(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// readOSRelease sources the guest's os-release: /etc/os-release, or
// /usr/lib/os-release where an image lacks the first (os-release(5) names
// both). Sourcing a missing file would end the shell.
const readOSRelease = `if [ -r /etc/os-release ]; then . /etc/os-release; elif [ -r /usr/lib/os-release ]; then . /usr/lib/os-release; fi`

// guestInfo reads the guest's Debian suite, architecture and installed
// packages.
func guestInfo(ctx context.Context, sh *sshx.Client) (GuestInfo, error) {
	out, err := sh.Output(ctx, readOSRelease+`; echo "${VERSION_CODENAME}"; dpkg --print-architecture; `+
		`dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n'`)
	if err != nil {
		return GuestInfo{}, fmt.Errorf("read guest OS: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || lines[0] == "" {
		return GuestInfo{}, fmt.Errorf("read guest OS: no VERSION_CODENAME in /etc/os-release or /usr/lib/os-release (is this a Debian-based image?)")
	}
	g := GuestInfo{Suite: strings.TrimSpace(lines[0]), Arch: strings.TrimSpace(lines[1]), Installed: map[string]bool{}}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], "ii") {
			g.Installed[strings.SplitN(f[1], ":", 2)[0]] = true
		}
	}
	return g, nil
}

func (b *Board) installer() ContainerdInstaller {
	var extra []string
	if b.opts.crun {
		extra = append(extra, "crun")
	}
	switch b.opts.containerd {
	case ContainerdApt:
		return AptInstaller{Extra: extra}
	default:
		return BundleInstaller{Archive: b.archive, Extra: extra}
	}
}

// crunPath is where Debian's crun package puts the binary.
const crunPath = "/usr/bin/crun"

// connectContainerd dials the guest's containerd through SSH and checks it
// answers.
func (b *Board) connectContainerd(ctx context.Context) (*ctrd.Runtime, string, error) {
	var opts []ctrd.Option
	if b.opts.crun {
		opts = append(opts, ctrd.WithOCIRuntime(crunPath))
	}
	if b.Target != nil {
		// A real board: other sessions may be using it right now.
		opts = append(opts, ctrd.WithSharedGuest())
	}
	rt, err := ctrd.Connect(ctx, b.SSH, opts...)
	if err != nil {
		return nil, "", err
	}
	return rt, rt.DaemonVersion(), nil
}

func (b *Board) readyContainerd(ctx context.Context) error {
	// Skip the install when containerd already answers (a provisioned or
	// real board). sshd itself opens the socket: no process starts in the
	// guest for the check.
	if conn, err := b.SSH.DialUnix(ctx, ctrd.DefaultSocket); err == nil {
		conn.Close()
		rt, v, err := b.connectContainerd(ctx)
		if err == nil && !b.hasCrunIfAsked(ctx) {
			_ = rt.Close()
			err = errors.New("crun is missing")
		}
		if err == nil {
			b.logf("containerd %s already running", v)
			b.Runtime = rt
			if err := b.importBusybox(ctx, nil); err != nil {
				return err
			}
			b.warmShim(ctx)
			return nil
		}
	}
	g, err := guestInfo(ctx, b.SSH)
	if err != nil {
		return err
	}
	inst := b.installer()
	start := time.Now()
	if err := inst.Install(ctx, b.SSH, g, b.logf); err != nil {
		return fmt.Errorf("install containerd (%s): %w", inst.Name(), err)
	}
	b.logf("containerd: installed with %s in %.1fs", inst.Name(), time.Since(start).Seconds())
	var rt *ctrd.Runtime
	var version string
	err = poll(ctx, requirement{
		desc: "containerd to answer", interval: 500 * time.Millisecond, alive: b.alive,
		check: func(ctx context.Context) error {
			if _, err := b.SSH.Output(ctx, "test -S /run/containerd/containerd.sock || systemctl start containerd"); err != nil {
				return err
			}
			var err error
			rt, version, err = b.connectContainerd(ctx)
			return err
		},
	})
	if err != nil {
		return err
	}
	b.logf("containerd %s answers", version)
	b.Runtime = rt
	if err := b.importBusybox(ctx, &g); err != nil {
		return err
	}
	b.warmShim(ctx)
	return nil
}

// hasCrunIfAsked reports whether crun is there when WithCrun asks for it;
// a board with containerd but without crun goes through the install.
func (b *Board) hasCrunIfAsked(ctx context.Context) bool {
	if !b.opts.crun {
		return true
	}
	// (A restored board never asks: readyRestored trusts the snapshot's
	// key, which has crun in it.)
	res, err := b.SSH.Run(ctx, "test -x "+crunPath)
	return err == nil && res.ExitCode == 0
}

// warmShim starts the shim keeper (see ctrd.KeepShimWarm); a board
// without it only runs each container a little slower.
func (b *Board) warmShim(ctx context.Context) {
	start := time.Now()
	if err := b.Runtime.KeepShimWarm(ctx, b.BusyboxImage); err != nil {
		b.logf("containerd: %v (containers will start their own shim)", err)
		return
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		b.logf("containerd: shim kept warm (%.1fs)", d.Seconds())
	}
}

// importBusybox builds the busybox image for the guest's platform from
// Debian's busybox-static (of the guest's suite) and imports it. g is the
// guest's OS when the caller has read it already; nil reads it.
func (b *Board) importBusybox(ctx context.Context, g *GuestInfo) error {
	if b.Runtime.HasImage(ctx, BusyboxRef) {
		b.BusyboxImage = BusyboxRef // restored from a snapshot
		return nil
	}
	if g == nil {
		info, err := guestInfo(ctx, b.SSH)
		if err != nil {
			return err
		}
		g = &info
	}
	bb, err := images.BusyboxBinary(ctx, b.archive, g.Suite, g.Arch)
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

// readyRestored makes a board restored from its snapshot ready: its clock
// set (it stood still since the save) and, on a board saved without its
// NIC, the NIC's address awaited, while containerd is connected. What the
// snapshot's key guarantees is not checked again: containerd runs, the
// busybox image is there, crun too when asked for.
func (b *Board) readyRestored(ctx context.Context) error {
	guest := make(chan error, 1)
	go func() {
		start := time.Now()
		err := b.SyncClock(ctx)
		if err == nil {
			b.logf("ssh: clock set in %.2fs", time.Since(start).Seconds())
		}
		if err == nil && b.nicUnplugged() {
			err = b.waitNetwork(ctx)
		}
		guest <- err
	}()
	rt, version, err := b.connectContainerd(ctx)
	if err == nil {
		b.logf("containerd %s answers", version)
		b.Runtime = rt
		b.BusyboxImage = BusyboxRef
		b.warmShim(ctx)
	}
	return errors.Join(err, <-guest)
}
