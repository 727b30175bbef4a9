package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/socbox/socbox/harness/proc"
)

// Version is a QEMU release, as `qemu-system-* --version` prints it.
type Version struct {
	Major, Minor, Micro int
	// Line is the whole first line ("QEMU emulator version 7.2.22 (Debian
	// 1:7.2+dfsg-7+deb12u18)"): a state saved by one build is not loaded by
	// another, so snapshot keys use all of it.
	Line string
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// AtLeast says whether v is min ("9.0") or newer. An empty min is always met.
func (v Version) AtLeast(min string) bool {
	if min == "" {
		return true
	}
	want, err := ParseVersion("QEMU emulator version " + min)
	if err != nil {
		return false
	}
	if v.Major != want.Major {
		return v.Major > want.Major
	}
	if v.Minor != want.Minor {
		return v.Minor > want.Minor
	}
	return v.Micro >= want.Micro
}

var versionRE = regexp.MustCompile(`version (\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the output of `qemu-system-* --version`.
func ParseVersion(out string) (Version, error) {
	line := strings.TrimSpace(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0])
	m := versionRE.FindStringSubmatch(line)
	if m == nil {
		return Version{}, fmt.Errorf("no QEMU version in %q", line)
	}
	v := Version{Line: line}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Micro, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

var (
	versionsMu sync.Mutex
	versions   = map[string]Version{}
)

// ExeVersion asks a QEMU binary for its version, once per process.
func ExeVersion(ctx context.Context, exe string) (Version, error) {
	versionsMu.Lock()
	defer versionsMu.Unlock()
	if v, ok := versions[exe]; ok {
		return v, nil
	}
	out, err := proc.Output(proc.CommandContext(ctx, exe, "--version"))
	if err != nil {
		return Version{}, fmt.Errorf("%s --version: %w (install QEMU: apt-get install qemu-system-arm, or run `socbox doctor`)", exe, err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, fmt.Errorf("%s --version: %w", exe, err)
	}
	versions[exe] = v
	return v, nil
}
