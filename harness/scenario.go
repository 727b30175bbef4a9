package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/report"
)

// Scenario is one check run as a container on a board.
type Scenario struct {
	Name        string
	Description string
	// Boards limits the scenario to these board slugs or guest platforms
	// ("raspi4b", "linux/arm/v7"); empty means every board.
	Boards    []string
	Container Container
	Expect    Expect
	// File and Line say where the scenario was defined, for messages; empty
	// for scenarios written in Go.
	File string
	Line int
}

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
	start := time.Now()
	out.StartedAt = start.UTC()
	res, err := b.Run(ctx, s.Container)
	out.Seconds = time.Since(start).Seconds()
	if err != nil {
		out.Error = err.Error()
		out.Failures = []string{"container did not run: " + err.Error()}
		return out
	}
	out.ExitCode, out.Stdout, out.Stderr = res.ExitCode, string(res.Stdout), string(res.Stderr)
	out.Failures = b.check(s.Expect, res)
	out.Passed = len(out.Failures) == 0
	return out
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
		sum := sha256.Sum256(res.Stdout)
		if got := hex.EncodeToString(sum[:]); got != e.StdoutSHA256 {
			f = append(f, fmt.Sprintf("stdout (%d bytes) has sha256 %s, want %s: output was altered on its way", len(res.Stdout), got, e.StdoutSHA256))
		}
	}
	if e.MaxDuration > 0 && res.Duration > e.MaxDuration {
		f = append(f, fmt.Sprintf("took %s, at most %s allowed", res.Duration.Round(time.Millisecond), e.MaxDuration))
	}
	return f
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
		r.QEMUCommand = b.Machine.CommandLine()
		r.Overlay = b.Machine.Config().Disk
		r.SSHCommand = b.SSHCommand()
		r.ConsoleLogs = b.ConsoleLogs()
	}
	return r
}
