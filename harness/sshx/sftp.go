package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/shell"
)

// ReadAndTruncate returns the head of each file in paths, in order, at
// most limit bytes of each (with the file's whole size), and then empties
// them. Nothing is emptied unless every file was
// read; a file written to meanwhile may lose what was written between its
// read and its truncation, so call it once the writers are gone. When ctx
// ends first, the error wraps its cause, and the files may or may not have
// been emptied.
//
// It goes through the connection's SFTP subsystem, started on the first call
// and kept: in an emulated guest every process started costs time, and one
// sftp-server per connection is cheaper than a shell and its commands per
// call. When the server has no sftp subsystem, it runs one shell command
// instead (and, for this Client, from then on).
func (c *Client) ReadAndTruncate(ctx context.Context, limit int64, paths ...string) ([]Head, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ssh %s: read and truncate %s: %w", c.endpoint, strings.Join(paths, " "), context.Cause(ctx))
	}
	if !c.noSFTP {
		out, err := c.readAndTruncateSFTP(ctx, limit, paths)
		if !errors.Is(err, errNoSFTP) {
			return out, err
		}
		c.noSFTP = true
	}
	return c.readAndTruncateShell(ctx, limit, paths)
}

// errNoSFTP says the server has no sftp subsystem: it refused the request,
// or ended the session before the SFTP handshake (as dropbear does when its
// sftp-server is not installed).
var errNoSFTP = errors.New("no sftp subsystem")

// readAndTruncateSFTP does ReadAndTruncate's work with the kept SFTP
// session, starting one if needed. c.sftpMu must be held.
func (c *Client) readAndTruncateSFTP(ctx context.Context, limit int64, paths []string) ([]Head, error) {
	type result struct {
		s   *sftpSession
		out []Head
		err error
	}
	s := c.sftp
	done := make(chan result, 1)
	go func() {
		r := result{s: s}
		if r.s == nil {
			r.s, r.err = c.startSFTP()
			if r.err == nil && ctx.Err() != nil {
				r.err = context.Cause(ctx) // abandoned while starting
			}
		}
		if r.err == nil {
			r.out, r.err = r.s.readAndTruncate(limit, paths)
		}
		done <- r
	}()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// SFTP calls take no context. Close the session under them, which
		// ends them once the guest answers, but do not wait for a guest
		// that may never answer.
		c.sftp = nil
		go func() {
			if s != nil {
				s.close()
			}
			if r := <-done; r.s != nil {
				r.s.close()
			}
		}()
		return nil, fmt.Errorf("ssh %s: read and truncate %s: %w", c.endpoint, strings.Join(paths, " "), context.Cause(ctx))
	}

	switch {
	case errors.Is(r.err, errNoSFTP):
		return nil, r.err
	case r.s == nil:
		return nil, fmt.Errorf("ssh %s: start sftp: %w", c.endpoint, r.err)
	case r.err != nil && !serverRefused(r.err):
		// The session broke: the next call starts a new one.
		go r.s.close()
		c.sftp = nil
	default:
		c.sftp = r.s
	}
	if r.err != nil {
		return nil, fmt.Errorf("ssh %s: read and truncate: %w", c.endpoint, r.err)
	}
	return r.out, nil
}

// serverRefused reports whether err is the SFTP server's answer to one
// request (a missing file, say), which leaves the session usable.
func serverRefused(err error) bool {
	var status *sftp.StatusError
	return errors.As(err, &status) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission)
}

// sftpSession is an SFTP client on a session of its own.
type sftpSession struct {
	sess      *ssh.Session
	client    *sftp.Client
	closeOnce sync.Once
}

// startSFTP opens a session and starts the sftp subsystem on it.
func (c *Client) startSFTP() (*sftpSession, error) {
	sess, err := c.ssh.NewSession()
	if err != nil {
		return nil, err
	}
	// The pipes cannot fail on a session not yet started.
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	stderr, _ := sess.StderrPipe()
	ok, err := sess.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
	if err == nil && !ok {
		err = errNoSFTP
	}
	if err != nil {
		sess.Close()
		return nil, err
	}
	// Unread, what sftp-server says on stderr would stall the session.
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	client, err := sftp.NewClientPipe(stdout, stdin)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errNoSFTP
	}
	if err != nil {
		sess.Close()
		return nil, err
	}
	return &sftpSession{sess: sess, client: client}, nil
}

// close ends the session, then waits for the client's reader, which ends
// once the guest has closed its side.
func (s *sftpSession) close() {
	s.closeOnce.Do(func() {
		s.sess.Close()
		s.client.Close()
	})
}

// readAndTruncate opens every file first, so that a missing one fails the
// call before anything is emptied.
func (s *sftpSession) readAndTruncate(limit int64, paths []string) ([]Head, error) {
	files := make([]*sftp.File, 0, len(paths))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, p := range paths {
		f, err := s.client.OpenFile(p, os.O_RDWR)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		files = append(files, f)
	}
	out := make([]Head, len(files))
	for i, f := range files {
		// One byte past the limit tells whether there is more; the size
		// the guest reports is only believed when it is larger.
		b, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: paths[i], Err: err}
		}
		out[i] = Head{Data: b, Size: int64(len(b))}
		if int64(len(b)) > limit {
			out[i].Data = b[:limit:limit]
			if fi, err := f.Stat(); err == nil && fi.Size() > out[i].Size {
				out[i].Size = fi.Size()
			}
		}
	}
	for i, f := range files {
		if err := f.Truncate(0); err != nil {
			return nil, &os.PathError{Op: "truncate", Path: paths[i], Err: err}
		}
	}
	return out, nil
}

// readAndTruncateShell does ReadAndTruncate's work in one command, for a
// server without SFTP: for each file, its size on a line of its own and then
// its first limit bytes; then, if all were read, it empties them.
func (c *Client) readAndTruncateShell(ctx context.Context, limit int64, paths []string) ([]Head, error) {
	steps := make([]string, 0, 2*len(paths))
	for _, p := range paths {
		steps = append(steps, fmt.Sprintf("wc -c < %[1]s && head -c %[2]d -- %[1]s", shell.Quote(p), limit))
	}
	for _, p := range paths {
		steps = append(steps, ": > "+shell.Quote(p))
	}
	// Room for each file's head and its size line, and no more.
	res, err := c.Run(ctx, strings.Join(steps, " && "), WithOutputLimit(int64(len(paths))*(limit+32)))
	if err == nil && res.ExitCode != 0 {
		err = &CommandError{Endpoint: c.endpoint, Result: res}
	}
	if err == nil {
		var out []Head
		if out, err = splitSized(res.Stdout, len(paths), limit); err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("read and truncate %s: %w", strings.Join(paths, " "), err)
}

// splitSized splits b into n parts, each given as its size in decimal on a
// line of its own followed by that many bytes, or by limit bytes when the
// size is larger.
func splitSized(b []byte, n int, limit int64) ([]Head, error) {
	out := make([]Head, 0, n)
	rest := b
	for range n {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 10, 64)
		take := min(size, limit)
		if !ok || err != nil || size < 0 || take > int64(len(after)) {
			return nil, fmt.Errorf("unexpected output %q", clip(b))
		}
		out = append(out, Head{Data: after[:take:take], Size: size})
		rest = after[take:]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected output %q", clip(b))
	}
	return out, nil
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
