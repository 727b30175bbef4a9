package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// progress prints what a run is doing, one line per event: the time of
// day, the seconds since the board started and the board ("[1/2]
// raspi4b-fast:"), so that the lines of boards running at once can be told
// apart and grepped. On a terminal a status block at the bottom has a line
// per running board, saying what it waits for and counting the seconds
// (a boot waits for ssh for a minute or more), redrawn in place; anywhere
// else nothing but the event lines is written, without a control
// character.
type progress struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	width func() int // of the terminal, in columns

	mu      sync.Mutex
	running []*boardProgress // in the status block, in the order they started
	shown   int              // lines of the status block on the screen
	done    chan struct{}
	once    sync.Once
}

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, now: time.Now, width: terminalWidth(w), done: make(chan struct{})}
	if tty {
		go p.tick()
	}
	return p
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// terminalWidth asks the terminal behind w for its width each time (it
// may be resized); 80 when it cannot tell.
func terminalWidth(w io.Writer) func() int {
	return func() int {
		if f, ok := w.(*os.File); ok {
			if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
				return int(ws.Col)
			}
		}
		return 80
	}
}

func (p *progress) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			p.clearBlock()
			p.drawBlock()
			p.mu.Unlock()
		}
	}
}

// boardProgress is one board's part of the run's progress: its events
// carry its prefix, and while it runs it has a line in the status block.
type boardProgress struct {
	p      *progress
	prefix string // "[1/2] raspi4b-fast"
	slug   string
	start  time.Time

	// Guarded by p.mu.
	status string    // "booting", "scenario 2 of 4: env"
	wait   string    // what a boot waits for now: "ssh"
	since  time.Time // when the status or the wait began
}

// Board starts the i-th of n boards: its events are prefixed from now on,
// and it has a line in the status block until Done.
func (p *progress) Board(i, n int, slug string) *boardProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	b := &boardProgress{p: p, prefix: fmt.Sprintf("[%d/%d] %s", i, n, slug), slug: slug, start: now, status: "starting", since: now}
	p.running = append(p.running, b)
	p.clearBlock()
	p.drawBlock()
	return b
}

// Done takes the board's line out of the status block.
func (b *boardProgress) Done() {
	p := b.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBlock()
	for i, r := range p.running {
		if r == b {
			p.running = append(p.running[:i:i], p.running[i+1:]...)
			break
		}
	}
	p.drawBlock()
}

// Status says what the board is doing now: "booting", "scenario 2 of 4:
// env". It is printed as an event too.
func (b *boardProgress) Status(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.p.mu.Lock()
	b.status, b.wait, b.since = msg, "", b.p.now()
	b.p.mu.Unlock()
	b.Logf("%s", msg)
}

// bootStageDone matches the harness's "kernel ready after 3.1s", which
// ends a boot stage.
var bootStageDone = regexp.MustCompile(`^([a-z]+) ready after `)

// waitAfter is what a booting board waits for once a stage is done (see
// harness.Stage): what the status block says while nothing happens.
var waitAfter = map[string]string{
	"image":      "QEMU",
	"qemu":       "the kernel",
	"kernel":     "ssh",
	"restore":    "ssh",
	"ssh":        "containerd",
	"containerd": "the board to be ready",
	"snapshot":   "the board to be ready",
}

// Logf prints an event of the board. It is safe from any goroutine; the
// harness calls it as the board's logger.
func (b *boardProgress) Logf(format string, args ...any) {
	// The harness starts its lines with the board's name; the prefix
	// has it already.
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), b.slug+": ")
	p := b.p
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if m := bootStageDone.FindStringSubmatch(msg); m != nil && waitAfter[m[1]] != "" {
		b.wait, b.since = waitAfter[m[1]], now
	}
	p.printLocked(now, fmt.Sprintf(" %7s %s:", fmt.Sprintf("+%.1fs", now.Sub(b.start).Seconds()), b.prefix), msg)
}

// Logf prints an event of the run as a whole (no board).
func (p *progress) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printLocked(p.now(), "", fmt.Sprintf(format, args...))
}

// printLocked writes msg as event lines (one per line of msg) under the
// status block's feet: the block is cleared, the lines written, the block
// drawn again below them.
func (p *progress) printLocked(now time.Time, prefix, msg string) {
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		out.WriteString(now.Format("15:04:05") + prefix + " " + printable(line) + "\n")
	}
	p.clearBlock()
	io.WriteString(p.w, out.String())
	p.drawBlock()
}

// printable replaces control characters (an escape sequence in QEMU's or
// a guest's output, a carriage return) so that a line is one line, and a
// log file or CI page gets no terminal control from it.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

// blockLines are the status block's lines: one per running board, cut to
// the terminal's width so that none wraps (a wrapped line would throw
// the redraw off).
func (p *progress) blockLines() []string {
	now := p.now()
	width := p.width()
	var lines []string
	for _, b := range p.running {
		what := b.status
		if b.wait != "" {
			what += ": waiting for " + b.wait
		}
		line := fmt.Sprintf("%s: %s … %s", b.prefix, printable(what), now.Sub(b.since).Round(time.Second))
		lines = append(lines, clipRunes(line, width-1))
	}
	return lines
}

func clipRunes(s string, n int) string {
	if n < 1 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// clearBlock takes the status block off the screen: the cursor is at the
// end of its last line; it goes to the start of the first and clears to
// the end of the screen.
func (p *progress) clearBlock() {
	if !p.tty || p.shown == 0 {
		return
	}
	s := "\r"
	if p.shown > 1 {
		s += fmt.Sprintf("\x1b[%dA", p.shown-1)
	}
	io.WriteString(p.w, s+"\x1b[J")
	p.shown = 0
}

// drawBlock writes the status block where the cursor is (the start of a
// line), leaving the cursor at the end of its last line.
func (p *progress) drawBlock() {
	if !p.tty || len(p.running) == 0 {
		return
	}
	lines := p.blockLines()
	io.WriteString(p.w, strings.Join(lines, "\n"))
	p.shown = len(lines)
}

// Close stops the status block and leaves the cursor on a clean line.
func (p *progress) Close() {
	p.once.Do(func() { close(p.done) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBlock()
	p.running = nil
}
