package guest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/socbox/socbox/harness/shell"
)

// Log is one log the guest kept over a window of time.
type Log struct {
	// Name is what it is: "journal", "kernel" or "containerd".
	Name string
	// Command is the command that read it, as run in the guest.
	Command string
	// Data is the head of what it printed, at most the limit asked for.
	Data []byte
	// Size is how much it printed in all: more than len(Data) when cut.
	Size int64
	// Err is why it could not be read; Data then holds what the command
	// said, if anything.
	Err error
}

// Truncated reports whether the log was cut at the limit.
func (l Log) Truncated() bool { return l.Size > int64(len(l.Data)) }

// LogLines is how many lines of each log ReadLogs asks for at most: the
// last ones of the window, which is where a failure shows.
const LogLines = 5000

// journalctl is journalctl's argv for the window, printing the last
// LogLines entries with the guest's own precise timestamps.
func journalctl(since, until time.Time, which ...string) []string {
	argv := []string{"journalctl", "--no-pager", "-o", "short-iso-precise",
		"--since", "@" + strconv.FormatInt(since.Unix(), 10),
		"--until", "@" + strconv.FormatInt(until.Unix()+1, 10),
		"-n", strconv.Itoa(LogLines)}
	return append(argv, which...)
}

// dmesgTail prints the last lines of the kernel's ring buffer, for a board
// without systemd's journal: dmesg has no window on every version.
const dmesgTail = `dmesg | tail -n "$1"`

// ReadLogs reads what the guest logged between since and until (its clock
// and this machine's may differ by a moment: widen the window rather than
// narrow it): its journal, its kernel log (the journal's, or dmesg's last
// lines on a board without systemd) and containerd's. Each log keeps at
// most limit bytes; one that cannot be read has its Err set and does not
// stop the others. It fails only when ctx ends.
func ReadLogs(ctx context.Context, sh Shell, since, until time.Time, limit int64) ([]Log, error) {
	logs := []Log{
		readLog(ctx, sh, "journal", limit, journalctl(since, until)...),
		readLog(ctx, sh, "kernel", limit, journalctl(since, until, "-k")...),
		readLog(ctx, sh, "containerd", limit, journalctl(since, until, "-u", "containerd")...),
	}
	if k := &logs[1]; k.Err != nil && ctx.Err() == nil {
		if d := readLog(ctx, sh, "kernel", limit, "sh", "-c", dmesgTail, "sh", strconv.Itoa(LogLines)); d.Err == nil {
			*k = d
		}
	}
	if err := ctx.Err(); err != nil {
		return logs, fmt.Errorf("read the guest's logs: %w", context.Cause(ctx))
	}
	return logs, nil
}

func readLog(ctx context.Context, sh Shell, name string, limit int64, argv ...string) Log {
	l := Log{Name: name, Command: shell.Join(argv...)}
	res, err := runCapped(ctx, sh, "read the guest's "+name+" log", limit, argv...)
	l.Data, l.Size = res.Stdout, res.StdoutSize
	if err != nil {
		var exit *ExitError
		if errors.As(err, &exit) && len(l.Data) == 0 {
			l.Data, l.Size = res.Stderr, res.StderrSize
		}
		l.Err = err
	}
	return l
}
