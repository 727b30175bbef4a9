package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/shell"
)

// Target is a real board that Attach logged in to over SSH, as it described
// itself after login: the session's Machine, with no process or console of
// its own. Its stages are ssh → containerd → ready.
type Target struct {
	machine.Real
}

// sshCommand is how a person logs in to the target by hand.
func (t *Target) sshCommand(keyPath string) string {
	parts := []string{"ssh"}
	if keyPath != "" {
		parts = append(parts, "-i", shell.Quote(keyPath))
	}
	if t.SSH.Port != 22 {
		parts = append(parts, "-p", strconv.Itoa(t.SSH.Port))
	}
	if home, err := os.UserHomeDir(); err != nil || t.KnownHosts != filepath.Join(home, ".ssh", "known_hosts") {
		parts = append(parts, "-o", "UserKnownHostsFile="+shell.Quote(t.KnownHosts))
	}
	return strings.Join(append(parts, t.SSH.User+"@"+t.SSH.Host), " ")
}

// describe fills in what a report says about a real board: which one, as
// who, and what it runs; noProfile when no profile was picked.
func (t *Target) describe(r *report.Board, noProfile bool) {
	if r.Board == "" {
		r.Board = t.URL
	}
	r.Tier = "real"
	if noProfile {
		r.Platform = ""
	}
	r.Suite, r.KernelVersion = t.Suite, t.Kernel
	r.Target = &report.Target{
		Address: t.SSH.String(), Hostname: t.Hostname, OS: t.OS, Kernel: t.Kernel,
		Machine: t.Machine, Model: t.Model, UID: t.UID, Identity: t.Identity, ProfileFrom: t.ProfileFrom,
	}
}

// detectProfile picks the board profile a target's results are compared
// against: the one named, else the one whose name the device tree's model
// starts with (the faithful one when a board has two), else the only one
// for the target's architecture. It says how it chose.
func detectProfile(named string, f guest.Facts) (boards.Profile, string, error) {
	arch := f.DebianArch()
	seen := fmt.Sprintf("%s userland, uname -m %s", arch, f.Machine)
	if f.Model != "" {
		seen += fmt.Sprintf(", model %q", f.Model)
	}
	var forArch []boards.Profile
	var platforms []string
	for _, p := range boards.All() {
		if p.Platform.DebianArch() == arch {
			forArch = append(forArch, p)
		}
		if pl := p.Platform.String() + " (" + p.Platform.DebianArch() + ")"; !slices.Contains(platforms, pl) {
			platforms = append(platforms, pl)
		}
	}
	if strings.HasPrefix(f.Machine, "armv6") {
		return boards.Profile{}, "", fmt.Errorf("the board has an ARMv6 CPU (%s): socbox's 32-bit profiles are ARMv7 (Debian armhf), whose packages do not run on it", seen)
	}
	if named != "" {
		p, err := boards.Lookup(named)
		if err != nil {
			return boards.Profile{}, "", err
		}
		if p.Platform.DebianArch() != arch {
			fix := fmt.Sprintf("name a board for %s (%s)", arch, slugs(forArch))
			if len(forArch) == 0 {
				fix = "no board profile runs that: socbox has " + strings.Join(platforms, ", ")
			}
			return boards.Profile{}, "", fmt.Errorf("board %s is %s (%s), but the target runs %s: %s",
				p.Slug, p.Platform, p.Platform.DebianArch(), seen, fix)
		}
		return p, "named with --board", nil
	}
	if len(forArch) == 0 {
		return boards.Profile{}, "", fmt.Errorf("no board profile runs what the target runs (%s): socbox has %s", seen, strings.Join(platforms, ", "))
	}
	var byModel []boards.Profile
	for _, p := range forArch {
		if f.Model != "" && strings.Contains(strings.ToLower(f.Model), strings.ToLower(p.Name)) {
			byModel = append(byModel, p)
		}
	}
	if len(byModel) > 1 {
		var faithful []boards.Profile
		for _, p := range byModel {
			if p.Tier == boards.Faithful {
				faithful = append(faithful, p)
			}
		}
		if len(faithful) == 1 {
			byModel = faithful
		}
	}
	switch {
	case len(byModel) == 1:
		return byModel[0], fmt.Sprintf("detected from the device tree model %q", f.Model), nil
	case len(byModel) == 0 && len(forArch) == 1:
		return forArch[0], fmt.Sprintf("detected: the only profile for %s (uname -m %s)", arch, f.Machine), nil
	}
	candidates := forArch
	if len(byModel) > 1 {
		candidates = byModel
	}
	return boards.Profile{}, "", fmt.Errorf("cannot tell which board profile to compare against (%s): %s all fit; name one with --board (harness.WithBoard)",
		seen, slugs(candidates))
}

func slugs(ps []boards.Profile) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Slug)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
