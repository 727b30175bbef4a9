// Package guest is what socbox does inside a guest's OS, as typed
// operations: read what the OS is, set its clock, start units, load
// modules, wait for an address, install the serial sshd, read its logs.
// Each builds its command from an argv with the one shell quoter (package
// shell), or runs a fixed script that takes its values as positional
// arguments, so nothing read from a board or a user ever becomes shell
// text. A command that fails is an *ExitError with its status: callers
// decide by the type and the status, never by the message.
package guest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

// Shell is what the operations need of a guest: *sshx.Client is one.
type Shell interface {
	Run(ctx context.Context, cmd string, opts ...sshx.RunOption) (sshx.Result, error)
	Upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error
}

// ExitError is a guest command that ran and exited with a non-zero status.
type ExitError struct {
	// Op is what socbox was doing, e.g. "set the guest's clock".
	Op     string
	Status int
	// Output is the end of what the command printed, stderr first.
	Output string
}

func (e *ExitError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: exited with status %d (no output)", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: exited with status %d: %s", e.Op, e.Status, e.Output)
}

// run runs argv in the guest; a non-zero exit is an *ExitError.
func run(ctx context.Context, sh Shell, op string, argv ...string) (sshx.Result, error) {
	return runLine(ctx, sh, op, shell.Join(argv...))
}

// runCapped is run keeping at most limit bytes of each output stream.
func runCapped(ctx context.Context, sh Shell, op string, limit int64, argv ...string) (sshx.Result, error) {
	return runLine(ctx, sh, op, shell.Join(argv...), sshx.WithOutputLimit(limit))
}

// script runs a fixed POSIX sh script with args as its positional
// parameters ($1, $2, …): the script's text never holds a value.
func script(ctx context.Context, sh Shell, op, text string, args ...string) (sshx.Result, error) {
	return run(ctx, sh, op, append([]string{"sh", "-c", text, "sh"}, args...)...)
}

func runLine(ctx context.Context, sh Shell, op, line string, opts ...sshx.RunOption) (sshx.Result, error) {
	res, err := sh.Run(ctx, line, opts...)
	if err != nil {
		return res, fmt.Errorf("%s: %w", op, err)
	}
	if res.ExitCode != 0 {
		return res, &ExitError{Op: op, Status: res.ExitCode, Output: tail(res, 1200)}
	}
	return res, nil
}

// tail is the end of a result's output, stderr first, for errors.
func tail(res sshx.Result, n int) string {
	s := strings.TrimSpace(string(res.Stderr))
	if out := strings.TrimSpace(string(res.Stdout)); out != "" {
		s = strings.TrimSpace(s + "\n" + out)
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
