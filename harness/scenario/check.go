package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
)

// Vars are the values of the variables an Expect's strings may use.
type Vars struct {
	UnameM, Board, Platform string
}

// VarsOf are the variables of board profile p.
func VarsOf(p boards.Profile) Vars {
	return Vars{UnameM: p.Platform.UnameMachine(), Board: p.Slug, Platform: p.Platform.String()}
}

func (v Vars) expand(s string) string {
	return strings.NewReplacer("${UNAME_M}", v.UnameM, "${BOARD}", v.Board, "${PLATFORM}", v.Platform).Replace(s)
}

// Check compares what a container did with what e expects and lists every
// expectation it missed; none means it passed.
func Check(e Expect, res ctrd.ContainerResult, v Vars) []string {
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
	if e.Stdout != nil && string(res.Stdout) != v.expand(*e.Stdout) {
		f = append(f, fmt.Sprintf("stdout %q, want %q", clip(res.Stdout), v.expand(*e.Stdout)))
	}
	if e.Stderr != nil && string(res.Stderr) != v.expand(*e.Stderr) {
		f = append(f, fmt.Sprintf("stderr %q, want %q", clip(res.Stderr), v.expand(*e.Stderr)))
	}
	for _, rc := range []struct {
		name, re string
		got      []byte
	}{{"stdout", e.StdoutRegex, res.Stdout}, {"stderr", e.StderrRegex, res.Stderr}} {
		if rc.re == "" {
			continue
		}
		re, err := regexp.Compile(v.expand(rc.re))
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
		case fe.Content != nil && string(got) != v.expand(*fe.Content):
			f = append(f, fmt.Sprintf("file %s holds %q, want %q", p, clip(got), v.expand(*fe.Content)))
		case fe.SHA256 != "" && sha256Hex(got) != fe.SHA256:
			f = append(f, fmt.Sprintf("file %s (%d bytes) has sha256 %s, want %s", p, len(got), sha256Hex(got), fe.SHA256))
		}
		if ok && fe.Regex != "" {
			re, err := regexp.Compile(v.expand(fe.Regex))
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
func truncatedData(res ctrd.ContainerResult, what string) []byte {
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

// clip shortens what a failure quotes.
func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
