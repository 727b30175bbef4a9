package ctrd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

// guestOutput is where a container's standard output and error go: two
// regular files in the guest, one per stream, read back over the Shell once
// the task is gone.
//
// cio's FIFOs would be made on the client's (the host's) filesystem, where
// the guest's shim cannot open them, and cio.LogFile merges both streams
// into one file. A plain path without a URI scheme is what the runc shim
// treats as a FIFO path; when the path is a regular file instead, its
// copyPipes opens it O_WRONLY|O_APPEND and copies the stream into it. The
// files must exist before the task is created: the shim does not create
// them.
type guestOutput struct {
	dir, stdout, stderr string
}

func newGuestOutput(stateDir, id string) guestOutput {
	dir := path.Join(stateDir, "containers", id)
	return guestOutput{dir: dir, stdout: path.Join(dir, "stdout"), stderr: path.Join(dir, "stderr")}
}

// create makes the directory and two empty files.
func (g guestOutput) create(ctx context.Context, sh Shell) error {
	return runOK(ctx, sh, shell.Script(`mkdir -p -m 0700 "$1" && : > "$2" && : > "$3"`, g.dir, g.stdout, g.stderr))
}

// takeOutput returns a pair of empty output files for a container: an
// earlier container's, emptied when it was read (see readAndReset), or new
// ones, at the cost of an SSH session.
func (r *Runtime) takeOutput(ctx context.Context) (guestOutput, error) {
	r.mu.Lock()
	if n := len(r.outputs); n > 0 {
		g := r.outputs[n-1]
		r.outputs = r.outputs[:n-1]
		r.mu.Unlock()
		return g, nil
	}
	r.mu.Unlock()
	g := newGuestOutput(r.stateDir, "out-"+randomSuffix())
	return g, g.create(ctx, r.sh)
}

// DropOutputs removes the output files made ahead of time, on a board that
// stays up when socbox is done with it.
func (r *Runtime) DropOutputs(ctx context.Context) error {
	r.mu.Lock()
	outs := r.outputs
	r.outputs = nil
	r.mu.Unlock()
	if len(outs) == 0 {
		return nil
	}
	argv := []string{"rm", "-rf", "--"}
	for _, g := range outs {
		argv = append(argv, g.dir)
	}
	return runOK(ctx, r.sh, shell.Join(argv...))
}

// config is the task's stdio: the two paths, no stdin. The shim does the
// copying, so there is nothing to wait for or close on this side.
func (g guestOutput) config() cio.Config {
	return cio.Config{Stdout: g.stdout, Stderr: g.stderr}
}

// readAndReset returns the head of what the container wrote, at most
// limit bytes of each stream, and empties the files for
// a later container. It goes through the Shell's ReadAndTruncate rather than
// a command: over SSH that is the connection's sftp-server, started once and
// kept, so no process starts in the guest for it, where every one costs time
// under emulation. Only call it once the task has been deleted: the runc
// shim answers Wait as soon as the process has exited, possibly before it
// has copied the last of the pipes into the files; its Delete waits for the
// copy (for up to two seconds, in case an orphan still holds a pipe open),
// and no writer is left after it.
func (g guestOutput) readAndReset(ctx context.Context, sh Shell, limit int64) (stdout, stderr sshx.Head, err error) {
	out, err := sh.ReadAndTruncate(ctx, limit, g.stdout, g.stderr)
	if err != nil {
		return sshx.Head{}, sshx.Head{}, err
	}
	return out[0], out[1], nil
}

func (g guestOutput) remove(ctx context.Context, sh Shell) error {
	return runOK(ctx, sh, shell.Join("rm", "-rf", "--", g.dir))
}

// runOK runs cmd and treats a non-zero exit as an error.
func runOK(ctx context.Context, sh Shell, cmd string) error {
	res, err := sh.Run(ctx, cmd)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%q exited with status %d: %s", cmd, res.ExitCode, bytes.TrimSpace(res.Stderr))
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
