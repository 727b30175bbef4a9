package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/socbox/socbox/harness/shell"
)

// cleanupTimeout bounds the removal of a failed upload's temporary file,
// which runs even when the upload failed because ctx ended.
const cleanupTimeout = 10 * time.Second

// Upload writes everything r yields to remotePath in the guest with the
// permission bits of mode (setuid, setgid and sticky are not applied),
// creating the parent directory if needed. The data goes to a temporary file
// beside remotePath that is renamed into place only once complete, so no
// process in the guest ever sees a partial file. It needs only a POSIX shell,
// mkdir, cat, chmod, mv and rm in the guest (busybox will do).
//
// Writing and renaming are two commands: if both were one script, a read
// error on r would still end the command's stdin with a plain end of file,
// and the script would rename the truncated file into place.
func (c *Client) Upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error {
	if err := c.upload(ctx, r, remotePath, mode); err != nil {
		return fmt.Errorf("upload %s: %w", remotePath, err)
	}
	return nil
}

func (c *Client) upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error {
	if remotePath == "" || strings.HasSuffix(remotePath, "/") {
		return errors.New("not a file path")
	}
	dir, name := path.Split(remotePath)
	if dir == "" {
		dir = "."
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := path.Join(dir, "."+name+".socbox-"+hex.EncodeToString(suffix[:]))

	// umask keeps the partial file private until chmod gives it its mode.
	src := &readErrRecorder{r: r}
	res, err := c.Run(ctx,
		fmt.Sprintf("mkdir -p -- %s && (umask 077 && cat > %s)", shell.Quote(dir), shell.Quote(tmp)),
		WithStdin(src))
	if readErr := src.Err(); err == nil && readErr != nil {
		err = fmt.Errorf("read local data: %w", readErr)
	}
	if err == nil && res.ExitCode != 0 {
		err = &CommandError{Endpoint: c.endpoint, Result: res}
	}
	if err != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_, _ = c.Run(rmCtx, "rm -f -- "+shell.Quote(tmp))
		return err
	}

	res, err = c.Run(ctx, fmt.Sprintf("chmod %04o %s && mv -f -- %s %s || { rc=$?; rm -f -- %s; exit $rc; }",
		mode.Perm(), shell.Quote(tmp), shell.Quote(tmp), shell.Quote(remotePath), shell.Quote(tmp)))
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return &CommandError{Endpoint: c.endpoint, Result: res}
	}
	return nil
}

// Download copies the guest file remotePath to w, streaming it rather than
// holding it in memory.
func (c *Client) Download(ctx context.Context, remotePath string, w io.Writer) error {
	res, err := c.Run(ctx, "cat -- "+shell.Quote(remotePath), WithStdout(w), withoutStdoutCapture())
	if err != nil {
		return fmt.Errorf("download %s: %w", remotePath, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("download %s: %w", remotePath, &CommandError{Endpoint: c.endpoint, Result: res})
	}
	return nil
}

// readErrRecorder remembers the first error, other than end of file, that
// reading the upload's source gave. The session reads in its own goroutine,
// which may outlive Run when the command exits before reading everything.
type readErrRecorder struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
	}
	return n, err
}

func (e *readErrRecorder) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
