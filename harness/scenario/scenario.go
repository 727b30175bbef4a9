// Package scenario is what socbox checks on a board: a Scenario (a
// container, the services beside it, what it must do), the YAML files
// scenarios are written in, the checks of a result (pure functions), and
// Run, which carries a scenario out on anything that implements Runner (a
// harness.Board does). It boots nothing itself, so all of it is tested in
// the unit step.
package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
)

// Scenario is one check run as a container on a board, with, optionally,
// services running beside it on a network of its own.
type Scenario struct {
	Name        string
	Description string
	// Boards limits the scenario to these board slugs or guest platforms
	// ("raspi4b-fast", "linux/arm/v7"); empty means every board.
	Boards []string
	// Tags group scenarios for selection: --run and --skip (and
	// SOCBOX_RUN, SOCBOX_SKIP) match "tag:NAME" as well as the name.
	Tags []string
	// Needs are what the scenario needs of the board beyond a container
	// runtime (NeedNetwork); on a board without it the scenario is
	// reported as not applicable rather than run.
	Needs []string
	// Network is "bridge" to put the scenario's containers on a bridge
	// network made for it (they reach each other by name), or empty for a
	// network namespace of their own each (loopback only) unless they ask
	// for the host's.
	Network string
	// Services start first, in order, run in the background while the
	// Container runs, and are stopped after. A service with Ports is
	// waited for until each accepts connections.
	Services []ctrd.Container
	// Container is the check itself. It may be left empty (no Cmd) when
	// Services and Expect.HTTP say everything.
	Container ctrd.Container
	Expect    Expect
	// File and Line say where the scenario was defined, for messages; empty
	// for scenarios written in Go.
	File string
	Line int
}

// NetworkBridge is Scenario.Network for a bridge network of the scenario's
// own.
const NetworkBridge = "bridge"

// AppliesTo reports whether the scenario runs on board p: when it names no
// boards, or names p's slug or platform.
func (s Scenario) AppliesTo(p boards.Profile) bool {
	if len(s.Boards) == 0 {
		return true
	}
	for _, b := range s.Boards {
		if b == p.Slug || b == p.Platform.String() {
			return true
		}
	}
	return false
}

// NeedNetwork is Scenario.Needs for a network interface in the guest
// besides loopback (a board without a NIC, raspi4b, has none).
const NeedNetwork = "network"

// KnownNeeds are the values Scenario.Needs may hold.
var KnownNeeds = []string{NeedNetwork}

// Unmet says why board p cannot give the scenario what it needs, or ""
// when it can.
func (s Scenario) Unmet(p boards.Profile) string {
	return s.unmet(p.Slug, p.HasNetwork())
}

func (s Scenario) unmet(slug string, hasNetwork bool) string {
	for _, n := range s.Needs {
		if n == NeedNetwork && !hasNetwork {
			return fmt.Sprintf("needs a network interface; %s has none (see `socbox boards`)", slug)
		}
	}
	return ""
}

// Where is "file:line" for a scenario loaded from a file, else "".
func (s Scenario) Where() string {
	if s.File == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// Expect is what a scenario's container must do. Strings may use ${UNAME_M}
// (what `uname -m` prints on the board), ${BOARD} and ${PLATFORM}.
type Expect struct {
	ExitCode     int
	Stdout       *string // exact, when set
	StdoutRegex  string
	StderrRegex  string
	Stderr       *string // exact, when set
	StdoutSHA256 string
	MaxDuration  time.Duration
	// OOMKilled, when set, is whether the OOM killer must have ended the
	// container (see ContainerResult.OOMKilled).
	OOMKilled *bool
	// Files are files the container must leave in its root filesystem,
	// by absolute path.
	Files map[string]FileExpect
	// HTTP are requests made from this machine to services' forwarded
	// ports while the services run.
	HTTP []HTTPCheck
}

// FileExpect is what a file the container leaves must hold: any of exact
// content, a regular expression, a sha256; just being there if none.
type FileExpect struct {
	Content *string
	Regex   string
	SHA256  string
}

// HTTPCheck is a GET from this machine to a service's port, through the
// forward the Runner's StartService makes.
type HTTPCheck struct {
	Service string
	Port    int
	// Path defaults to "/".
	Path string
	// Status defaults to 200.
	Status    int
	BodyRegex string
}

// Str is a helper for Expect's optional exact strings.
func Str(s string) *string { return &s }

// Bool is a helper for Expect's optional yes-or-no expectations.
func Bool(b bool) *bool { return &b }

// Runner is what a scenario runs on: a board with containerd ready.
type Runner interface {
	// Env is what the checks need to know of the board.
	Env() Env
	// CreateNetwork makes a bridge network the scenario's containers
	// join by name.
	CreateNetwork(ctx context.Context, name string) (*ctrd.Network, error)
	// StartService starts a container in the background and returns once
	// its ports accept connections, each forwarded to this machine.
	StartService(ctx context.Context, c ctrd.Container) (Service, error)
	// Run runs a container to its end.
	Run(ctx context.Context, c ctrd.Container) (ctrd.ContainerResult, error)
}

// Env is what a scenario needs to know of the board it runs on.
type Env struct {
	Profile boards.Profile
	// HasNetwork says the guest has a network interface besides loopback.
	HasNetwork bool
	// DefaultImage is the image a container with no Image runs, for the
	// report.
	DefaultImage string
}

// Service is a container a Runner started in the background.
type Service interface {
	// Endpoint is where this machine reaches the service's port, or "".
	Endpoint(port int) string
	// IP is the service's address on its network, or "".
	IP() string
	// Stop ends it and says what it did.
	Stop(ctx context.Context) (ctrd.ContainerResult, error)
}
