package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/proc"
)

// ErrQEMUTooOld matches (errors.Is) the error about a board whose machine
// this host's QEMU does not have.
var ErrQEMUTooOld = errors.New("QEMU too old for this board")

// tooOldError says which QEMU the board needs and what to use instead.
type tooOldError struct{ msg string }

func (e *tooOldError) Error() string        { return e.msg }
func (e *tooOldError) Is(target error) bool { return target == ErrQEMUTooOld }

// CheckVersion says whether v can run board b, and what to use instead when
// it cannot.
func CheckVersion(b boards.Profile, v Version) error {
	if v.AtLeast(b.MinQEMU) {
		return nil
	}
	msg := fmt.Sprintf("board %s needs QEMU %s or newer for its %s machine; this host has %s (%s)",
		b.Slug, b.MinQEMU, b.Machine, v, b.QEMUBinary)
	if alt := b.FastSlug(); alt != "" {
		msg += fmt.Sprintf(": use --board %s, or a host with a newer QEMU (Debian 13 has 10.0)", alt)
	}
	return &tooOldError{msg}
}

// Probe starts QEMU with board b's machine, CPU, memory, disk bus and NIC,
// paused and without a kernel, and quits it through QMP: what the real
// boot would refuse (an unknown machine or CPU, a device QEMU lacks, an
// option ROM that is not installed) fails here in a fraction of a second.
func Probe(ctx context.Context, b boards.Profile) (Version, error) {
	v, err := ExeVersion(ctx, b.QEMUBinary)
	if err != nil {
		return Version{}, err
	}
	if err := CheckVersion(b, v); err != nil {
		return v, err
	}
	exe, args, err := Cmdline(Config{Board: b, Probe: true, Forwards: nil})
	if err != nil {
		return v, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := proc.CommandContext(ctx, exe, args...)
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := proc.Run(cmd); err != nil {
		return v, fmt.Errorf("%s refused board %s: %v: %s", exe, b.Slug, err, qemuComplaint(out.String()))
	}
	return v, nil
}

// qemuComplaint is what QEMU said, without the QMP chatter on stdout.
func qemuComplaint(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "{") {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return "no message"
	}
	return strings.Join(lines, "; ")
}
