package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/images/cachefs"
)

// GuestLogLimit is how much of each of the guest's logs a failed scenario
// keeps: the journal's last guest.LogLines lines of its window, at most
// this many bytes of them.
const GuestLogLimit = 1 << 20

// guestLogSlack widens a scenario's window on either side: the guest's
// clock, set from this machine's at boot, may drift by a moment under
// emulation, and what led to a failure may be logged just before it.
const guestLogSlack = 5 * time.Second

// guestLogsTimeout bounds reading them: a guest that does not answer
// must not hold the run.
const guestLogsTimeout = time.Minute

// saveGuestLogs reads the guest's journal, kernel log and containerd's
// log over res's window and saves them in the board's artifacts directory
// (its run directory without one), under the scenario's name, recording
// the files in res. It is for a scenario that failed; what goes wrong
// reading them is said in res, never a failure of its own.
func (b *Board) saveGuestLogs(ctx context.Context, res *report.Scenario) {
	if b.SSH == nil || res.StartedAt.IsZero() {
		return
	}
	base := b.opts.artifactsDir
	if base == "" {
		base = b.RunDir()
	}
	if base == "" {
		b.life.logf("%s: the guest's logs are not saved: a real board has no run directory (give it WithArtifactsDir)", res.Name)
		return
	}
	dir := filepath.Join(base, fileName(res.Name))
	start := res.StartedAt
	end := start.Add(time.Duration(res.Seconds * float64(time.Second)))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), guestLogsTimeout)
	defer cancel()
	logs, err := guest.ReadLogs(ctx, b.SSH, start.Add(-guestLogSlack), end.Add(guestLogSlack), GuestLogLimit)
	if err != nil {
		b.life.logf("%s: guest logs: %v", res.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.life.logf("%s: guest logs: %v", res.Name, err)
		return
	}
	for _, l := range logs {
		gl := report.GuestLog{Name: l.Name, Path: filepath.Join(dir, l.Name+".log"), Bytes: l.Size, Truncated: l.Truncated()}
		if l.Err != nil {
			gl.Error = l.Err.Error()
		}
		if err := cachefs.WriteFile(gl.Path, guestLogFile(l, start, end), 0o644); err != nil {
			b.life.logf("%s: save the guest's %s log: %v", res.Name, l.Name, err)
			continue
		}
		res.GuestLogs = append(res.GuestLogs, gl)
	}
	if len(res.GuestLogs) > 0 {
		b.life.logf("%s: guest logs in %s", res.Name, dir)
	}
}

// guestLogFile is a log's file: a line saying what was read, the log,
// and what was cut or went wrong.
func guestLogFile(l guest.Log, start, end time.Time) []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "# socbox: %s (the scenario ran %s to %s, this machine's clock)\n",
		l.Command, start.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano))
	w.Write(l.Data)
	if len(l.Data) > 0 && l.Data[len(l.Data)-1] != '\n' {
		w.WriteByte('\n')
	}
	if l.Truncated() {
		fmt.Fprintf(&w, "# socbox: cut at %d of %d bytes\n", len(l.Data), l.Size)
	}
	if l.Err != nil {
		fmt.Fprintf(&w, "# socbox: %v\n", l.Err)
	}
	return []byte(w.String())
}

// fileName makes a scenario's name, which comes from a YAML file, a safe
// name for a directory: one path element of letters, digits and . _ -,
// never "." or "..".
func fileName(name string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
	if len(s) > 100 {
		s = s[:100]
	}
	if strings.Trim(s, ".") == "" {
		s = "scenario" + strings.ReplaceAll(s, ".", "_")
	}
	return s
}
