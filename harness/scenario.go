package harness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/report"
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
	Services []Container
	// Container is the check itself. It may be left empty (no Cmd) when
	// Services and Expect.HTTP say everything.
	Container Container
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
	for _, n := range s.Needs {
		if n == NeedNetwork && !p.HasNetwork() {
			return fmt.Sprintf("needs a network interface; %s has none (see `socbox boards`)", p.Slug)
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
// forward Board.StartService makes.
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

func (b *Board) expand(s string) string {
	return strings.NewReplacer(
		"${UNAME_M}", b.Profile.Platform.UnameMachine(),
		"${BOARD}", b.Profile.Slug,
		"${PLATFORM}", b.Profile.Platform.String(),
	).Replace(s)
}

// RunScenario runs s and checks its expectations. Every failed expectation
// is listed; a container that could not run at all is an Error.
func (b *Board) RunScenario(ctx context.Context, s Scenario) *report.Scenario {
	out := &report.Scenario{Name: s.Name, Description: s.Description, Source: s.Where(),
		Image: s.Container.Image, Command: s.Container.Cmd}
	if out.Image == "" {
		out.Image = b.BusyboxImage
	}
	if reason := s.Unmet(b.Profile); reason != "" && b.Target == nil {
		// (A real board is reached over its network: it has one.)
		out.NotApplicable = reason
		return out
	}
	start := time.Now()
	out.StartedAt = start.UTC()
	defer func() { out.Seconds = time.Since(start).Seconds() }()
	fail := func(what string, err error) *report.Scenario {
		out.Error = err.Error()
		out.Failures = append(out.Failures, what+": "+err.Error())
		return out
	}

	var network *Network
	if s.Network == NetworkBridge {
		n, err := b.CreateNetwork(ctx, "s"+randomHex(4))
		if err != nil {
			return fail("network did not come up", err)
		}
		network = n
		defer func() {
			if err := n.Remove(context.WithoutCancel(ctx)); err != nil {
				out.Failures = append(out.Failures, "network not removed: "+err.Error())
			}
		}()
	} else if s.Network != "" {
		return fail("bad scenario", fmt.Errorf("network %q: only %q is known", s.Network, NetworkBridge))
	}

	services := map[string]*Service{}
	var started []*Service
	// Services stop after the check, in reverse order, and what they did
	// goes into the report.
	defer func() {
		for i := len(started) - 1; i >= 0; i-- {
			svc := started[i]
			res, err := svc.Stop(context.WithoutCancel(ctx))
			c := s.Services[i]
			rs := report.Service{Name: svc.Name, Image: c.Image, Command: c.Cmd, IP: svc.IP(),
				ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr), Truncated: res.Truncated}
			if rs.Image == "" {
				rs.Image = b.BusyboxImage
			}
			out.Services = append([]report.Service{rs}, out.Services...)
			if err != nil {
				out.Failures = append(out.Failures, fmt.Sprintf("service %s: %v", svc.Name, err))
			}
		}
		out.Passed = len(out.Failures) == 0 && out.Error == ""
	}()
	for _, c := range s.Services {
		c.Network = network
		svc, err := b.StartService(ctx, c)
		if err != nil {
			return fail("service "+c.Name+" did not start", err)
		}
		services[c.Name] = svc
		started = append(started, svc)
	}
	for _, h := range s.Expect.HTTP {
		out.Failures = append(out.Failures, b.checkHTTP(ctx, h, services)...)
	}
	if len(s.Container.Cmd) == 0 && len(s.Services) > 0 {
		return out // the services were the check
	}

	c := s.Container
	c.Network = network
	if c.Network != nil && c.Name == "" {
		c.Name = "check"
	}
	for p := range s.Expect.Files {
		c.Collect = append(c.Collect, p)
	}
	sort.Strings(c.Collect)
	res, err := b.Run(ctx, c)
	if err != nil {
		return fail("container did not run", err)
	}
	out.ExitCode, out.Stdout, out.Stderr = res.ExitCode, string(res.Stdout), string(res.Stderr)
	out.Truncated = res.Truncated
	out.Failures = append(out.Failures, b.check(s.Expect, res)...)
	if len(res.Files) > 0 {
		out.Files = map[string]string{}
		for p, content := range res.Files {
			out.Files[p] = clip(content)
		}
	}
	return out
}

// httpCheckTimeout bounds one expect.http request, body included.
var httpCheckTimeout = 30 * time.Second

// maxHTTPBody is how much of a response body an http check reads: what a
// body_regex can look at.
const maxHTTPBody = 1 << 20

// forwardClient is the HTTP client of an http check. The guest's service
// is untrusted: the client never follows a redirect (a 3xx is the answer
// the check looks at), never uses a proxy, and only ever dials addr, the
// service's forward on 127.0.0.1, whatever the URL says.
func forwardClient(addr string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: httpCheckTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
	}
}

// checkHTTP makes one request to a service's forwarded port.
func (b *Board) checkHTTP(ctx context.Context, h HTTPCheck, services map[string]*Service) []string {
	what := fmt.Sprintf("GET %s port %d%s", h.Service, h.Port, h.Path)
	svc := services[h.Service]
	if svc == nil {
		return []string{what + ": no such service in the scenario"}
	}
	addr := svc.Endpoint(h.Port)
	if addr == "" {
		return []string{fmt.Sprintf("%s: the service does not publish port %d (add it to its ports)", what, h.Port)}
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	status := h.Status
	if status == 0 {
		status = http.StatusOK
	}
	u, err := url.Parse(path)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return []string{fmt.Sprintf("%s: path %q must be a path on the service, like /health", what, path)}
	}
	u.Scheme, u.Host = "http", addr
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", what, err)}
	}
	resp, err := forwardClient(addr).Do(req)
	if err != nil {
		return []string{fmt.Sprintf("%s from this machine (forwarded %s): %v", what, addr, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if err != nil {
		return []string{fmt.Sprintf("%s from this machine (forwarded %s): read the body: %v", what, addr, err)}
	}
	var f []string
	if resp.StatusCode != status {
		f = append(f, fmt.Sprintf("%s: status %d, want %d", what, resp.StatusCode, status))
	}
	if h.BodyRegex != "" {
		re, err := regexp.Compile(b.expand(h.BodyRegex))
		if err != nil {
			f = append(f, fmt.Sprintf("%s: bad body regex %q: %v", what, h.BodyRegex, err))
		} else if !re.Match(body) {
			f = append(f, fmt.Sprintf("%s: body %q does not match %q", what, clip(body), h.BodyRegex))
		}
	}
	return f
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (b *Board) check(e Expect, res ContainerResult) []string {
	var f []string
	if res.ExitCode != e.ExitCode {
		msg := fmt.Sprintf("exit code %d, want %d", res.ExitCode, e.ExitCode)
		if res.OOMKilled {
			msg += " (the OOM killer ended it: it went over its memory limit)"
		}
		f = append(f, msg)
	}
	if e.OOMKilled != nil && res.OOMKilled != *e.OOMKilled {
		if *e.OOMKilled {
			f = append(f, fmt.Sprintf("not OOM-killed (exit code %d), want killed for going over its memory limit", res.ExitCode))
		} else {
			f = append(f, "OOM-killed for going over its memory limit, want not")
		}
	}
	if e.Stdout != nil && string(res.Stdout) != b.expand(*e.Stdout) {
		f = append(f, fmt.Sprintf("stdout %q, want %q", clip(res.Stdout), b.expand(*e.Stdout)))
	}
	if e.Stderr != nil && string(res.Stderr) != b.expand(*e.Stderr) {
		f = append(f, fmt.Sprintf("stderr %q, want %q", clip(res.Stderr), b.expand(*e.Stderr)))
	}
	for _, rc := range []struct {
		name, re string
		got      []byte
	}{{"stdout", e.StdoutRegex, res.Stdout}, {"stderr", e.StderrRegex, res.Stderr}} {
		if rc.re == "" {
			continue
		}
		re, err := regexp.Compile(b.expand(rc.re))
		if err != nil {
			f = append(f, fmt.Sprintf("bad %s regex %q: %v", rc.name, rc.re, err))
		} else if !re.Match(rc.got) {
			f = append(f, fmt.Sprintf("%s %q does not match %q", rc.name, clip(rc.got), rc.re))
		}
	}
	if e.StdoutSHA256 != "" {
		if got := sha256Hex(res.Stdout); got != e.StdoutSHA256 {
			f = append(f, fmt.Sprintf("stdout (%d bytes) has sha256 %s, want %s: output was altered on its way", len(res.Stdout), got, e.StdoutSHA256))
		}
	}
	paths := make([]string, 0, len(e.Files))
	for p := range e.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fe := e.Files[p]
		got, ok := res.Files[p]
		switch {
		case !ok:
			f = append(f, fmt.Sprintf("file %s was not left in the container (or is not a regular file)", p))
		case fe.Content != nil && string(got) != b.expand(*fe.Content):
			f = append(f, fmt.Sprintf("file %s holds %q, want %q", p, clip(got), b.expand(*fe.Content)))
		case fe.SHA256 != "" && sha256Hex(got) != fe.SHA256:
			f = append(f, fmt.Sprintf("file %s (%d bytes) has sha256 %s, want %s", p, len(got), sha256Hex(got), fe.SHA256))
		}
		if ok && fe.Regex != "" {
			re, err := regexp.Compile(b.expand(fe.Regex))
			if err != nil {
				f = append(f, fmt.Sprintf("bad regex for file %s %q: %v", p, fe.Regex, err))
			} else if !re.Match(got) {
				f = append(f, fmt.Sprintf("file %s %q does not match %q", p, clip(got), fe.Regex))
			}
		}
	}
	if e.MaxDuration > 0 && res.Duration > e.MaxDuration {
		f = append(f, fmt.Sprintf("took %s, at most %s allowed", res.Duration.Round(time.Millisecond), e.MaxDuration))
	}
	if len(f) > 0 {
		// What failed may have failed on a head only.
		for _, what := range slices.Sorted(maps.Keys(res.Truncated)) {
			f = append(f, fmt.Sprintf("%s was cut: %d bytes, of which the checks saw the first %d (raise Container.OutputLimit to see more)",
				what, res.Truncated[what], len(truncatedData(res, what))))
		}
	}
	return f
}

// truncatedData is what res holds of what, one of its Truncated keys.
func truncatedData(res ContainerResult, what string) []byte {
	switch what {
	case "stdout":
		return res.Stdout
	case "stderr":
		return res.Stderr
	}
	return res.Files[what]
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// Report describes the board for a results file: stages, image, and how to
// reproduce it.
func (b *Board) Report() *report.Board {
	r := &report.Board{
		Board: b.Profile.Slug, Tier: string(b.Profile.Tier), Platform: b.Profile.Platform.String(),
		Containerd: string(b.opts.containerd),
	}
	if b.Image != nil {
		r.Image, r.Suite, r.KernelVersion = b.Image.Name, b.Image.Suite, b.Image.KernelVersion
	}
	for _, t := range b.Timings() {
		r.Stages = append(r.Stages, report.Stage{Name: string(t.Stage), StartedAt: t.Start.UTC(), Seconds: t.Seconds})
	}
	if err := b.Err(); err != nil {
		r.Error = err.Error()
		if se, ok := err.(*StageError); ok {
			r.FailedStage = string(se.Stage)
		}
	}
	if b.Machine != nil {
		r.Accelerator = string(b.Machine.Config().Accelerator())
		r.QEMUCommand = b.Machine.CommandLine()
		r.Overlay = b.Machine.Config().Disk
		r.SSHCommand = b.SSHCommand()
		r.ConsoleLogs = b.ConsoleLogs()
	}
	b.describeTarget(r)
	return r
}
