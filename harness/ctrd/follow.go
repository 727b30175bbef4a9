package ctrd

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

// maxLineBytes is the longest line handed on whole: a longer one is handed
// on in pieces of this size, so that output without newlines never grows
// without bound on this side.
const maxLineBytes = 4096

// followStopWait is how long stopping a follower waits for its tails to
// end. What they had not passed on yet is taken from the captured output
// instead, so nothing is lost by not waiting longer.
const followStopWait = 2 * time.Second

// follower passes on each line a container writes while it runs. The shim
// writes the container's output into files in the guest (see guestOutput),
// which Wait reads once the task is gone; a follower reads them as they
// grow, with tail -f in sessions of its own, and never touches them, so the
// captured output, and its limit, are as they would be without it.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{}
	lines  [2]*lineSplitter // stdout, stderr
}

// follow starts following out's files; emit gets every line, one call at
// a time, with "stdout" or "stderr".
func follow(ctx context.Context, sh Shell, out guestOutput, emit func(stream, line string)) *follower {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &follower{cancel: cancel, done: make(chan struct{})}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, stream := range []string{"stdout", "stderr"} {
		f.lines[i] = newLineSplitter(func(line string) {
			mu.Lock()
			defer mu.Unlock()
			emit(stream, line)
		})
		path := []string{out.stdout, out.stderr}[i]
		ls := f.lines[i]
		wg.Go(func() {
			// -c +1: from the first byte, so that what was passed on is a
			// count of bytes of the file. Nothing of it is kept here.
			_, _ = sh.Run(ctx, shell.Join("tail", "-c", "+1", "-f", "--", path), sshx.WithStdout(ls), sshx.WithOutputLimit(0))
		})
	}
	go func() {
		wg.Wait()
		close(f.done)
	}()
	return f
}

// stop ends the tails. Call it before the files are emptied.
func (f *follower) stop() {
	if f == nil {
		return
	}
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(followStopWait):
	}
}

// finish passes on what the tails had not, from the captured heads of
// stdout and stderr, and the last lines without a newline. Nothing is
// passed on after it.
func (f *follower) finish(stdout, stderr []byte) {
	if f == nil {
		return
	}
	f.stop()
	f.lines[0].finish(stdout)
	f.lines[1].finish(stderr)
}

// lineSplitter is an io.Writer that hands on whole lines, without their
// newline, made safe to print (no control characters, valid UTF-8). It
// counts what it was written, so that finish can pass on the rest of a
// stream from a copy captured elsewhere.
type lineSplitter struct {
	emit func(string)

	mu      sync.Mutex
	partial []byte
	written int
	closed  bool
}

func newLineSplitter(emit func(string)) *lineSplitter { return &lineSplitter{emit: emit} }

func (l *lineSplitter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	l.written += len(p)
	l.split(p)
	return len(p), nil
}

// split hands on the whole lines of partial+p and keeps the rest. l.mu is
// held.
func (l *lineSplitter) split(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineBytes - len(l.partial)
			if len(p) < room {
				l.partial = append(l.partial, p...)
				return
			}
			l.partial = append(l.partial, p[:room]...)
			p = p[room:]
			l.flush()
			continue
		}
		if len(l.partial)+i > maxLineBytes {
			room := maxLineBytes - len(l.partial)
			l.partial = append(l.partial, p[:room]...)
			p = p[room:]
			l.flush()
			continue
		}
		l.partial = append(l.partial, p[:i]...)
		p = p[i+1:]
		l.flush()
	}
}

// flush hands on partial as a line. l.mu is held.
func (l *lineSplitter) flush() {
	line := strings.TrimSuffix(string(l.partial), "\r")
	l.partial = l.partial[:0]
	l.emit(printable(line))
}

// finish passes on what of captured it was not written, and the last
// line even without its newline; later writes are dropped.
func (l *lineSplitter) finish(captured []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.written < len(captured) {
		l.split(captured[l.written:])
	}
	if len(l.partial) > 0 {
		l.flush()
	}
	l.closed = true
}

// printable replaces what a terminal or a log would act on (escape
// sequences, carriage returns, invalid UTF-8) with U+FFFD; tabs stay.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\t' && (unicode.IsControl(r) || r == unicode.ReplacementChar) {
			return unicode.ReplacementChar
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
