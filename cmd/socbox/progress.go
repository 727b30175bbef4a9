package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress prints what a run is doing, one line per event, each with the
// time of day and the seconds since the current board started. On a
// terminal a status line at the bottom also counts the seconds while
// nothing else happens (a boot waits for ssh for a minute or more).
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu     sync.Mutex
	start  time.Time // of the current board
	prefix string    // "[1/2] raspi4b-fast"
	status string    // what is going on now, for the status line
	shown  bool      // a status line is on the screen
	done   chan struct{}
	once   sync.Once
}

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, now: time.Now, done: make(chan struct{})}
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

func (p *progress) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawStatus()
			p.mu.Unlock()
		}
	}
}

// Board starts counting for the i-th of n boards.
func (p *progress) Board(i, n int, slug string) {
	p.mu.Lock()
	p.start, p.prefix, p.status = p.now(), fmt.Sprintf("[%d/%d] %s", i, n, slug), "booting"
	p.mu.Unlock()
}

// Status says what the board is doing now: "booting", "scenario 2 of 4:
// env". It is printed as an event too.
func (p *progress) Status(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.status = msg
	p.mu.Unlock()
	p.Logf("%s", msg)
}

// Logf prints an event. It is safe from any goroutine; the harness calls it
// as its logger.
func (p *progress) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var b strings.Builder
	b.WriteString(now.Format("15:04:05"))
	if !p.start.IsZero() {
		fmt.Fprintf(&b, " %7s", fmt.Sprintf("+%.1fs", now.Sub(p.start).Seconds()))
	}
	if p.prefix != "" {
		b.WriteString(" " + p.prefix + ":")
	}
	b.WriteString(" " + strings.TrimPrefix(msg, p.slug()+": "))
	p.clearStatus()
	fmt.Fprintln(p.w, b.String())
	p.drawStatus()
}

// slug is the board's name in the prefix; the harness starts its lines
// with it, and the prefix has it already.
func (p *progress) slug() string {
	if i := strings.LastIndexByte(p.prefix, ' '); i >= 0 {
		return p.prefix[i+1:]
	}
	return p.prefix
}

func (p *progress) clearStatus() {
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

func (p *progress) drawStatus() {
	if !p.tty || p.status == "" || p.start.IsZero() {
		return
	}
	line := fmt.Sprintf("%s: %s … %s", p.prefix, p.status, p.now().Sub(p.start).Round(time.Second))
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	p.shown = true
}

// Close stops the status line and leaves the cursor on a clean line.
func (p *progress) Close() {
	p.once.Do(func() { close(p.done) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearStatus()
	p.status = ""
}
