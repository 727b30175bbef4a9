package guest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// readOSRelease sources the guest's os-release: /etc/os-release, or
// /usr/lib/os-release where an image lacks the first (os-release(5) names
// both). Sourcing a missing file would end the shell.
const readOSRelease = `if [ -r /etc/os-release ]; then . /etc/os-release; elif [ -r /usr/lib/os-release ]; then . /usr/lib/os-release; fi`

// OS is what an installer needs to know about the guest's OS.
type OS struct {
	Suite     string          // Debian codename from os-release
	Arch      string          // dpkg architecture
	Installed map[string]bool // packages dpkg has installed
}

// ReadOS reads the guest's Debian suite, architecture and installed
// packages.
func ReadOS(ctx context.Context, sh Shell) (OS, error) {
	res, err := script(ctx, sh, "read the guest's OS", readOSRelease+`; echo "${VERSION_CODENAME}"; dpkg --print-architecture; `+
		`dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n'`)
	if err != nil {
		return OS{}, err
	}
	return parseOS(string(res.Stdout))
}

func parseOS(out string) (OS, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || lines[0] == "" {
		return OS{}, errors.New("read the guest's OS: no VERSION_CODENAME in /etc/os-release or /usr/lib/os-release (is this a Debian-based image?)")
	}
	g := OS{Suite: strings.TrimSpace(lines[0]), Arch: strings.TrimSpace(lines[1]), Installed: map[string]bool{}}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], "ii") {
			g.Installed[strings.SplitN(f[1], ":", 2)[0]] = true
		}
	}
	return g, nil
}

// Facts are what a board says it is after login: what a report shows of a
// real board and what picks its profile. Each may be empty on a board
// without it (no dpkg, no device tree).
type Facts struct {
	Kernel, Machine, Hostname, OS, Suite, Arch, Model string
	UID                                               int
}

// factsScript prints them one key=value a line.
const factsScript = `echo "kernel=$(uname -r)"; echo "machine=$(uname -m)"; ` +
	`echo "hostname=$(cat /proc/sys/kernel/hostname)"; echo "uid=$(id -u)"; ` +
	`(` + readOSRelease + `; echo "os=$PRETTY_NAME"; echo "suite=$VERSION_CODENAME"); ` +
	`echo "arch=$(dpkg --print-architecture 2>/dev/null)"; ` +
	`echo "model=$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"`

// ReadFacts asks the board what it is.
func ReadFacts(ctx context.Context, sh Shell) (Facts, error) {
	res, err := script(ctx, sh, "read what the board is", factsScript)
	if err != nil {
		return Facts{}, err
	}
	return ParseFacts(string(res.Stdout))
}

// ParseFacts reads factsScript's output.
func ParseFacts(out string) (Facts, error) {
	var f Facts
	uid := ""
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "kernel":
			f.Kernel = v
		case "machine":
			f.Machine = v
		case "hostname":
			f.Hostname = v
		case "uid":
			uid = v
		case "os":
			f.OS = v
		case "suite":
			f.Suite = v
		case "arch":
			f.Arch = v
		case "model":
			f.Model = v
		}
	}
	n, err := strconv.Atoi(uid)
	if err != nil || f.Machine == "" {
		return f, fmt.Errorf("read what the board is: unexpected answer %q (does it have a POSIX shell, uname and id?)", strings.TrimSpace(out))
	}
	f.UID = n
	return f, nil
}

// DebianArch is the userland architecture: dpkg's when there is dpkg, else
// guessed from the kernel's machine name.
func (f Facts) DebianArch() string {
	if f.Arch != "" {
		return f.Arch
	}
	switch {
	case f.Machine == "aarch64" || f.Machine == "arm64":
		return "arm64"
	case strings.HasPrefix(f.Machine, "armv7") || f.Machine == "armv8l":
		return "armhf"
	case f.Machine == "x86_64":
		return "amd64"
	}
	return f.Machine
}

// SetClock sets the guest's clock to t. Boards without an RTC boot in the
// past, and apt then rejects Debian's Release files as "not valid yet"; a
// restored guest's clock stood still since its state was saved.
func SetClock(ctx context.Context, sh Shell, t time.Time) error {
	t = t.UTC()
	_, err := run(ctx, sh, "set the guest's clock", "date", "-u", "-s", fmt.Sprintf("@%d.%09d", t.Unix(), t.Nanosecond()))
	return err
}

// stalledCPUs prints each CPU on which a short sleep does not end: each
// CPU's sleep is watched by a timeout that runs on another CPU, all CPUs
// at once. The limit is generous: on a loaded host an emulated board can
// take seconds to start the sixteen processes, and a stalled CPU's sleep
// never ends at all.
const stalledCPUs = `n=$(nproc --all); i=0; while [ "$i" -lt "$n" ]; do ` +
	`w=0; [ "$i" = 0 ] && w=1; [ "$w" -ge "$n" ] && w=0; ` +
	`{ taskset -c "$w" timeout -s KILL 10 taskset -c "$i" sleep 0.01 || echo "$i"; } & i=$((i+1)); done; wait`

// StalledCPUs lists the guest's CPUs whose timer does not fire: a short
// sleep pinned to each must end within ten seconds. A restored raspi3b can
// come back with one (see boards.Profile.TimerLostOnRestore): the kernel
// waits for a timer interrupt that QEMU's state no longer holds, and
// nothing a process does makes it program the timer again.
func StalledCPUs(ctx context.Context, sh Shell) ([]int, error) {
	res, err := script(ctx, sh, "check each of the guest's CPUs gets its timer", stalledCPUs)
	if err != nil {
		return nil, err
	}
	var cpus []int
	for _, f := range strings.Fields(string(res.Stdout)) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 4096 {
			return nil, fmt.Errorf("check each of the guest's CPUs gets its timer: unexpected output %q", tail(res, 200))
		}
		cpus = append(cpus, n)
	}
	return cpus, nil
}

// Sync flushes the guest's file system caches to its disk.
func Sync(ctx context.Context, sh Shell) error {
	_, err := run(ctx, sh, "sync the guest's disk", "sync")
	return err
}

// Executable reports whether path is an executable file in the guest.
func Executable(ctx context.Context, sh Shell, path string) bool {
	_, err := run(ctx, sh, "look for "+path, "test", "-x", path)
	return err == nil
}

// PasswordlessSudo reports whether the login user may sudo without a
// password.
func PasswordlessSudo(ctx context.Context, sh Shell) bool {
	_, err := run(ctx, sh, "try sudo", "sudo", "-n", "true")
	return err == nil
}
