package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"

	"github.com/socbox/socbox/harness/proc"
	"github.com/socbox/socbox/harness/shell"
)

// Logf receives the machine's progress and QEMU's own output, line by line.
type Logf func(format string, args ...any)

// Machine is one running QEMU process. It owns power (start, stop) and the
// console (serial logs); it knows nothing about SSH or containers.
type Machine struct {
	cfg  Config
	exe  string
	args []string
	cmd  *exec.Cmd
	logf Logf

	// mon is the QMP monitor; raw sends go-qemu's typed commands over
	// it. Tests drive a Machine through go-qemu's qmptest fake.
	mon   qmp.Monitor
	raw   *raw.Monitor
	monMu sync.Mutex

	done     chan struct{} // closed when the process has exited
	waitErr  error
	started  time.Time
	exitedAt time.Time

	outMu   sync.Mutex
	outTail []string // QEMU's last stdout/stderr lines
}

var (
	// ErrExited is wrapped by errors about a QEMU process that is gone.
	ErrExited = errors.New("qemu exited")
	// ErrPortTaken: QEMU could not bind a port forward, which another
	// process took between its choosing and QEMU's start; another port
	// will do.
	ErrPortTaken = errors.New("a forwarded port was taken")
)

// Start launches QEMU for cfg in its own process group, with a parent-death
// signal so that a killed test process does not leave it running, and
// connects to its QMP socket.
func Start(ctx context.Context, cfg Config, logf Logf) (*Machine, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	exe, args, err := Cmdline(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(exe); err != nil {
		return nil, fmt.Errorf("start %s: %s not found: install QEMU (Debian/Ubuntu: apt-get install qemu-system-arm qemu-utils) or run `socbox doctor`: %w",
			cfg.Board.Slug, exe, err)
	}
	m := &Machine{cfg: cfg, exe: exe, args: args, logf: logf, done: make(chan struct{})}
	cmd := exec.Command(exe, args...)
	cmd.Dir = cfg.RunDir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Its own process group and a parent-death signal: see proc.Start.
	if err := proc.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	m.cmd = cmd
	m.started = time.Now()
	var pipes sync.WaitGroup
	pipes.Add(2)
	go m.pipe(&pipes, "qemu: ", stdout)
	go m.pipe(&pipes, "qemu: ", stderr)
	go func() {
		pipes.Wait()
		m.waitErr = cmd.Wait()
		m.exitedAt = time.Now()
		close(m.done)
	}()
	logf("qemu: started pid %d: %s", cmd.Process.Pid, m.CommandLine())

	if err := m.connectQMP(ctx); err != nil {
		m.kill()
		// QEMU says so only in words ("Could not set up host forwarding
		// rule"): this is the one place they are read.
		if m.saidEarly("host forwarding rule") {
			err = fmt.Errorf("%w: %w", ErrPortTaken, err)
		}
		return nil, err
	}
	return m, nil
}

func (m *Machine) pipe(wg *sync.WaitGroup, prefix string, r io.Reader) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	runs := repeats{emit: func(line string) { m.logf("%s%s", prefix, line) }}
	defer runs.end()
	for sc.Scan() {
		line := sc.Text()
		if m.cfg.SerialSSH != "" && strings.HasSuffix(line, "warning: netdev net0 has no peer") {
			continue // by design: the NIC is plugged in once the state is saved or loaded
		}
		if !runs.line(line) {
			continue
		}
		m.outMu.Lock()
		m.outTail = append(m.outTail, line)
		if len(m.outTail) > 40 {
			m.outTail = m.outTail[len(m.outTail)-40:]
		}
		m.outMu.Unlock()
	}
}

// repeats passes lines on to emit, a run of one line once: QEMU may say
// the same thing hundreds of times (slirp's "Failed to send packet" while
// a guest's NIC is down). When the run ends, one line says how many more
// times it came.
type repeats struct {
	emit func(string)
	last string
	seen bool
	more int
}

// line passes l on unless it repeats the line before; it reports whether
// l was new.
func (r *repeats) line(l string) bool {
	if r.seen && l == r.last {
		r.more++
		return false
	}
	r.end()
	r.last, r.seen = l, true
	r.emit(l)
	return true
}

// end says how many times the last line came again, if it did.
func (r *repeats) end() {
	switch {
	case r.more == 1:
		r.emit("(the line above came once more)")
	case r.more > 1:
		r.emit(fmt.Sprintf("(the line above came %d more times)", r.more))
	}
	r.more = 0
}

// saidEarly reports whether QEMU's own output so far has a line with s.
func (m *Machine) saidEarly(s string) bool {
	<-m.done // its output is complete once it has exited
	m.outMu.Lock()
	defer m.outMu.Unlock()
	for _, l := range m.outTail {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func (m *Machine) connectQMP(ctx context.Context) error {
	sock := QMPSocket(m.cfg.RunDir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := m.Alive(); err != nil {
			return fmt.Errorf("start %s: %w", m.cfg.Board.Slug, err)
		}
		mon, err := qmp.NewSocketMonitor("unix", sock, 2*time.Second)
		if err == nil {
			if err = mon.Connect(); err == nil {
				m.setMonitor(mon)
				return nil
			}
			_ = mon.Disconnect()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("start %s: connect to QMP socket %s: %w", m.cfg.Board.Slug, sock, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: connect to QMP: %w", m.cfg.Board.Slug, ctx.Err())
		case <-m.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Alive returns nil while QEMU runs, and otherwise an error wrapping
// ErrExited with its exit status and last output lines; when it died within
// a second of starting it says so, since that is almost always a bad
// command line or a missing file.
func (m *Machine) Alive() error {
	select {
	case <-m.done:
	default:
		return nil
	}
	m.outMu.Lock()
	tail := strings.Join(m.outTail, "\n")
	m.outMu.Unlock()
	status := "exited"
	if m.waitErr != nil {
		status = m.waitErr.Error()
	}
	when := ""
	if m.exitedAt.Sub(m.started) < 2*time.Second {
		when = " within a second of starting (check the command line and the files it names)"
	}
	if tail == "" {
		tail = "(no output)"
	}
	return fmt.Errorf("%w%s: %s; its output:\n%s", ErrExited, when, status, tail)
}

// Done is closed when the QEMU process has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// PID is QEMU's process id, 0 for a machine without one (NewMachine).
func (m *Machine) PID() int {
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Config is the configuration the machine was started with.
func (m *Machine) Config() Config { return m.cfg }

// CommandLine is the exact QEMU command, quoted for a shell.
func (m *Machine) CommandLine() string { return shell.Join(append([]string{m.exe}, m.args...)...) }

// NewMachine is a Machine over a QMP monitor that is connected already,
// with no QEMU process of its own: what the unit tests drive with go-qemu's
// qmptest fake. It counts as exited once it is told to quit.
func NewMachine(cfg Config, mon qmp.Monitor, logf Logf) *Machine {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	m := &Machine{cfg: cfg, logf: logf, done: make(chan struct{}), started: time.Now()}
	m.setMonitor(mon)
	return m
}

func (m *Machine) setMonitor(mon qmp.Monitor) {
	m.monMu.Lock()
	m.mon, m.raw = mon, raw.NewMonitor(mon)
	m.monMu.Unlock()
}

// qmp runs one exchange with QEMU through fn, giving up when ctx ends or
// QEMU exits meanwhile. what names it in errors.
func (m *Machine) qmp(ctx context.Context, what string, fn func(*raw.Monitor) error) error {
	m.monMu.Lock()
	mon := m.raw
	m.monMu.Unlock()
	if mon == nil {
		return fmt.Errorf("qmp %s: not connected", what)
	}
	if err := m.Alive(); err != nil {
		return fmt.Errorf("qmp %s: %w", what, err)
	}
	ch := make(chan error, 1)
	go func() { ch <- fn(mon) }()
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("qmp %s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", what, ctx.Err())
	case <-m.done:
		return fmt.Errorf("qmp %s: %w", what, m.Alive())
	}
}

// Status is QEMU's run state, e.g. "running" or "paused".
func (m *Machine) Status(ctx context.Context) (string, error) {
	var st raw.StatusInfo
	err := m.qmp(ctx, "query-status", func(r *raw.Monitor) (err error) {
		st, err = r.QueryStatus()
		return err
	})
	if err != nil {
		return "", err
	}
	return st.Status.String(), nil
}

// Pause stops the guest's CPUs; Resume lets them go on.
func (m *Machine) Pause(ctx context.Context) error {
	return m.qmp(ctx, "stop", func(r *raw.Monitor) error { return r.Stop() })
}

// Stop ends the machine in steps: if graceful, ask the guest to power down
// and wait up to powerdownWait; then QMP `quit`; then kill the process
// group. Errors of every step that mattered are joined.
func (m *Machine) Stop(ctx context.Context, graceful bool, powerdownWait time.Duration) error {
	if m == nil {
		return nil
	}
	var errs []error
	if graceful && m.Alive() == nil {
		if err := m.qmp(ctx, "system_powerdown", func(r *raw.Monitor) error { return r.SystemPowerdown() }); err != nil {
			errs = append(errs, err)
		} else {
			select {
			case <-m.done:
			case <-time.After(powerdownWait):
			case <-ctx.Done():
			}
		}
	}
	if m.Alive() == nil {
		qctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := m.qmp(qctx, "quit", func(r *raw.Monitor) error { return r.Quit() })
		cancel()
		if err == nil && m.cmd == nil {
			m.exited() // no process of its own (NewMachine): gone once told
		}
		if err != nil && m.Alive() == nil {
			errs = append(errs, err)
		}
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
		}
	}
	if m.Alive() == nil && m.cmd != nil {
		m.kill()
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("qemu pid %d did not exit after SIGKILL", m.PID()))
		}
	}
	m.monMu.Lock()
	if m.mon != nil {
		_ = m.mon.Disconnect()
		m.mon = nil
	}
	m.monMu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("stop %s: %w", m.cfg.Board.Slug, errors.Join(errs...))
	}
	return nil
}

// exited marks a machine without a process of its own as gone.
func (m *Machine) exited() {
	select {
	case <-m.done:
	default:
		m.exitedAt = time.Now()
		close(m.done)
	}
}

func (m *Machine) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	// The whole process group: QEMU may have helpers.
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	_ = m.cmd.Process.Kill()
}

// ConsoleTail returns the last n lines of serial port i's log.
func (m *Machine) ConsoleTail(i, n int) []string {
	return TailFile(SerialLog(m.cfg.RunDir, i), n)
}

// TailFile returns the last n lines of a file (at most the last 64 KiB).
func TailFile(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 64 * 1024
	if st, err := f.Stat(); err == nil && st.Size() > window {
		_, _ = f.Seek(st.Size()-window, io.SeekStart)
	}
	// The guest may still be writing: read the window, not what it grew to.
	b, _ := io.ReadAll(io.LimitReader(f, window))
	s := strings.ReplaceAll(string(b), "\r", "")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines
}

// LineWith returns the first line of text that contains any of the
// strings, without its line ending, or "".
func LineWith(text string, any ...string) string {
	for line := range strings.Lines(text) {
		for _, s := range any {
			if strings.Contains(line, s) {
				return strings.TrimRight(line, "\r\n")
			}
		}
	}
	return ""
}

// HeadContains reports whether the first limit bytes of a file contain any
// of the strings.
func HeadContains(path string, limit int64, any ...string) bool {
	head := Head(path, limit)
	for _, s := range any {
		if strings.Contains(head, s) {
			return true
		}
	}
	return false
}

// Head is the first limit bytes of the file at path, "" when it cannot be
// read.
func Head(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, limit))
	return string(b)
}
