package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// cancelGrace is how long Run waits, after cancelling a command, for the
// guest to confirm that the session is closed before returning anyway. A
// hung guest must not hang the caller.
const cancelGrace = 5 * time.Second

// RunOption adjusts one Run.
type RunOption func(*runOptions)

type runOptions struct {
	stdin           io.Reader
	stdout, stderr  io.Writer
	noStdoutCapture bool
	limit           int64
}

// WithStdin feeds r to the command's standard input; without it the command
// reads end of file at once.
func WithStdin(r io.Reader) RunOption {
	return func(o *runOptions) { o.stdin = r }
}

// StdinOf returns the reader a WithStdin among opts gave, or nil: for
// implementations of a Run-shaped interface other than Client.
func StdinOf(opts ...RunOption) io.Reader {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.stdin
}

// WithStdout streams the command's standard output to w as it arrives, in
// addition to capturing it in Result.Stdout. Writes to the WithStdout and
// WithStderr writers never overlap, so both may be the same writer, and none
// happen after Run has returned.
func WithStdout(w io.Writer) RunOption {
	return func(o *runOptions) { o.stdout = w }
}

// WithStderr streams the command's standard error to w, like WithStdout.
func WithStderr(w io.Writer) RunOption {
	return func(o *runOptions) { o.stderr = w }
}

// WithOutputLimit keeps at most n bytes of each of Result.Stdout and
// Result.Stderr instead of DefaultOutputLimit; the rest is counted in
// StdoutSize and StderrSize and dropped. Streams to WithStdout and
// WithStderr writers are not cut.
func WithOutputLimit(n int64) RunOption {
	return func(o *runOptions) { o.limit = n }
}

// withoutStdoutCapture leaves Result.Stdout empty, for transfers that stream
// to a writer and must not also be held in memory.
func withoutStdoutCapture() RunOption {
	return func(o *runOptions) { o.noStdoutCapture = true }
}

// Run runs cmd in a new session and waits for it to end. A command that runs
// and exits with a non-zero status is not an error: its status is in
// Result.ExitCode (128+n for a command killed by signal n). Errors are kept
// for transport failures, for a session that ends without an exit status,
// and for cancellation: when ctx ends, the command is sent SIGKILL, the
// session closed, and the error wraps ctx's cause; the Result then holds what
// was captured so far.
func (c *Client) Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error) {
	o := runOptions{limit: DefaultOutputLimit}
	for _, opt := range opts {
		opt(&o)
	}
	res := Result{Command: cmd}
	start := time.Now()
	fail := func(err error) (Result, error) {
		res.Duration = time.Since(start)
		return res, fmt.Errorf("ssh %s: run %q: %w", c.endpoint, cmd, err)
	}

	sess, err := c.newSession(ctx)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()

	stdout, stderr := headBuffer{limit: o.limit}, headBuffer{limit: o.limit}
	out := &gate{}
	sess.Stdin = o.stdin
	sess.Stdout = out.writer(tee(&stdout, o.stdout, o.noStdoutCapture))
	sess.Stderr = out.writer(tee(&stderr, o.stderr, false))
	// collect stops the writers, so that the buffers can be read safely
	// even if the session's copy goroutines are still running.
	collect := func() {
		out.close()
		res.Stdout, res.StdoutSize = stdout.buf.Bytes(), stdout.total
		res.Stderr, res.StderrSize = stderr.buf.Bytes(), stderr.total
		res.Duration = time.Since(start)
	}

	if err := sess.Start(cmd); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		collect()
		return res, fmt.Errorf("ssh %s: run %q: %w", c.endpoint, cmd, context.Cause(ctx))
	}
	collect()

	var exitErr *ssh.ExitError
	var missingErr *ssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
	case errors.As(err, &missingErr):
		return res, fmt.Errorf("ssh %s: run %q: session ended without an exit status (guest shell killed or sshd restarted?): %w",
			c.endpoint, cmd, err)
	default:
		return res, fmt.Errorf("ssh %s: run %q: %w", c.endpoint, cmd, err)
	}
	return res, nil
}

// Output runs cmd and returns its standard output, treating a non-zero exit
// status as an error (a *CommandError naming the status and the end of
// stderr). The output is returned as is, trailing newline included.
func (c *Client) Output(ctx context.Context, cmd string) (string, error) {
	res, err := c.Run(ctx, cmd)
	if err != nil {
		return string(res.Stdout), err
	}
	if res.ExitCode != 0 {
		return string(res.Stdout), &CommandError{Endpoint: c.endpoint, Result: res}
	}
	return string(res.Stdout), nil
}

// CommandError reports a command that ran but exited with a non-zero status.
type CommandError struct {
	Endpoint Endpoint
	Result   Result
}

// tailBytes is how much of a failed command's output goes into its error.
const tailBytes = 2048

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("ssh %s: %q exited with status %d", e.Endpoint, e.Result.Command, e.Result.ExitCode)
	if t := tail(e.Result.Stderr); t != "" {
		return msg + ": stderr: " + t
	}
	if t := tail(e.Result.Stdout); t != "" {
		return msg + " (no stderr): stdout: " + t
	}
	return msg + " (no output)"
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "…" + strings.ToValidUTF8(string(b), "")
	}
	return string(b)
}

// newSession opens a session, giving up when ctx ends: opening a channel
// waits for the guest's answer, which a hung guest never sends.
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	type opened struct {
		sess *ssh.Session
		err  error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		return o.sess, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.sess != nil {
				o.sess.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

func tee(capture *headBuffer, stream io.Writer, noCapture bool) io.Writer {
	switch {
	case noCapture && stream == nil:
		return io.Discard
	case noCapture:
		return stream
	case stream == nil:
		return capture
	default:
		return io.MultiWriter(capture, stream)
	}
}

// gate serialises writes to a command's output writers and cuts them off
// when Run returns.
type gate struct {
	mu     sync.Mutex
	closed bool
}

var errRunReturned = errors.New("run has returned")

func (g *gate) writer(w io.Writer) io.Writer {
	return gateWriter{g: g, w: w}
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

type gateWriter struct {
	g *gate
	w io.Writer
}

func (gw gateWriter) Write(p []byte) (int, error) {
	gw.g.mu.Lock()
	defer gw.g.mu.Unlock()
	if gw.g.closed {
		return 0, errRunReturned
	}
	return gw.w.Write(p)
}
