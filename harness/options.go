package harness

import (
	"fmt"
	"time"

	"github.com/socbox/socbox/images"
)

// ContainerdStrategy says how containerd gets into the guest.
type ContainerdStrategy string

const (
	// ContainerdAuto uses the bundle: no guest network needed, and the
	// packages are cached on the host.
	ContainerdAuto ContainerdStrategy = "auto"
	// ContainerdApt runs apt-get in the guest, through QEMU's user network.
	ContainerdApt ContainerdStrategy = "apt"
	// ContainerdBundle fetches containerd and runc for the guest's suite and
	// architecture on the host, verifies them and installs them with dpkg.
	ContainerdBundle ContainerdStrategy = "bundle"
)

// Option configures Start and Boot.
type Option func(*options) error

type options struct {
	board        string
	suite        string
	image        *images.Image
	containerd   ContainerdStrategy
	crun         bool
	noContainerd bool
	timeouts     map[Stage]time.Duration
	// timeoutSet: the stages whose timeout the user chose (WithTimeout).
	timeoutSet    map[Stage]bool
	keepOnFailure bool
	keepRunDir    bool
	runDir        string
	artifactsDir  string
	snapshots     bool
	smp           int
	logf          func(format string, args ...any)
	outputLines   bool
	attach        attachOptions // Attach only: how to reach and trust a real board
}

// defaultSSHTimeout bounds the wait for a login over a NIC; uartSSHTimeout
// one over a serial port (a restore's own login is bounded apart, see
// restoredLoginTimeout): raspi4b's first
// login over its PL011 took 80-154 s here, and over 4 min beside other
// VM work, as did raspi3b's provisioned disk (224 s).
const (
	defaultSSHTimeout = 4 * time.Minute
	uartSSHTimeout    = 10 * time.Minute
)

func defaultOptions() options {
	return options{
		board:      "raspi4b-fast",
		suite:      images.DefaultSuite,
		containerd: ContainerdAuto,
		snapshots:  true,
		timeouts: map[Stage]time.Duration{
			// A cold build of the default image runs Debian's package
			// scripts under qemu-user: 5.5 min on a quiet 2-core host,
			// over 12 on a fresh one that was busy with other work.
			StageImage:      45 * time.Minute,
			StageQEMU:       30 * time.Second,
			StageKernel:     60 * time.Second,
			StageSSH:        defaultSSHTimeout,
			StageContainerd: 10 * time.Minute,
			StageSnapshot:   2 * time.Minute,
			StageRestore:    1 * time.Minute,
			StageNetwork:    1 * time.Minute,
		},
	}
}

// WithBoard picks the board by slug (see `socbox boards`).
func WithBoard(slug string) Option {
	return func(o *options) error { o.board = slug; return nil }
}

// WithSuite picks the Debian release of the default image: "trixie"
// (default) or "bookworm".
func WithSuite(suite string) Option {
	return func(o *options) error {
		for _, s := range images.Suites {
			if s == suite {
				o.suite = suite
				return nil
			}
		}
		return fmt.Errorf("unknown Debian suite %q: socbox builds %v", suite, images.Suites)
	}
}

// WithImage boots a prepared image instead of the default one.
func WithImage(im *images.Image) Option {
	return func(o *options) error { o.image = im; return nil }
}

// WithContainerd picks how containerd is installed in the guest.
func WithContainerd(s ContainerdStrategy) Option {
	return func(o *options) error {
		switch s {
		case ContainerdAuto, ContainerdApt, ContainerdBundle:
			o.containerd = s
			return nil
		}
		return fmt.Errorf("unknown containerd strategy %q: use auto, apt or bundle", s)
	}
}

// WithCrun runs containers with crun instead of runc (installed beside
// containerd). crun is written in C: under emulation it starts in a
// fraction of the time runc, a Go program, takes, which makes each
// container markedly cheaper. Boards in the field usually run runc: keep
// the default to test what they run, use this to run many scenarios fast.
func WithCrun() Option {
	return func(o *options) error { o.crun = true; return nil }
}

// WithoutContainerd stops at SSH: the board is booted and logged in to.
func WithoutContainerd() Option {
	return func(o *options) error { o.noContainerd = true; return nil }
}

// WithTimeout sets how long a stage may take.
func WithTimeout(s Stage, d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout for stage %s must be positive, got %s", s, d)
		}
		o.timeouts[s] = d
		if o.timeoutSet == nil {
			o.timeoutSet = map[Stage]bool{}
		}
		o.timeoutSet[s] = true
		return nil
	}
}

// WithKeepOnFailure leaves a failed board running, with its run directory,
// so it can be looked into: one that did not get ready, one a scenario
// failed on (RunScenario), or, from Boot, one whose test failed. Close then
// stops nothing and logs the ssh command that reaches it; Release stops it.
// QEMU ends with the process that started it: a test binary that has
// finished takes its kept boards with it (socbox run --keep-failed waits
// for Ctrl-C instead).
func WithKeepOnFailure() Option {
	return func(o *options) error { o.keepOnFailure = true; return nil }
}

// WithKeepRunDir keeps the run directory (overlay, console logs) after Close.
func WithKeepRunDir() Option {
	return func(o *options) error { o.keepRunDir = true; return nil }
}

// WithRunDir puts the run directory at dir instead of a new temp dir.
func WithRunDir(dir string) Option {
	return func(o *options) error { o.runDir = dir; return nil }
}

// WithSMP overrides the number of vCPUs.
func WithSMP(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("smp must be at least 1, got %d", n)
		}
		o.smp = n
		return nil
	}
}

// WithLogf sends the harness's progress lines to logf (Boot uses t.Logf).
func WithLogf(logf func(format string, args ...any)) Option {
	return func(o *options) error { o.logf = logf; return nil }
}

// WithArtifactsDir copies the board's console logs and QEMU command line
// into dir when it is closed, so they outlive the run directory.
func WithArtifactsDir(dir string) Option {
	return func(o *options) error { o.artifactsDir = dir; return nil }
}

// WithoutSnapshot boots cold even when a provisioned snapshot exists, and
// saves none. By default the first board of a kind is saved right after it
// is containerd-ready and every later one restores that state in about a
// second instead of booting.
func WithoutSnapshot() Option {
	return func(o *options) error { o.snapshots = false; return nil }
}

// WithOutputLines passes each line a container writes on to the board's
// progress log while it runs (see WithLogf), after the board's name and
// the scenario's (or the container's) and the stream: "raspi4b-fast: arch
// stdout: aarch64", the first OutputLinesShown lines of each container.
// Boot sets it under go test -v; socbox run -v sets it.
// It costs a tail process in the guest per stream of each container; the
// results are the same with it as without.
func WithOutputLines() Option {
	return func(o *options) error { o.outputLines = true; return nil }
}
