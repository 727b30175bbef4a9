package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

const (
	// announcement is the line the guest's loop sends while it waits for a
	// session; hello is the host's answer that starts sshd.
	announcement = "socbox-ssh?"
	hello        = "socbox-ssh!\n"

	// pokeInterval is how long Dial waits for an announcement before poking
	// again: a stale sshd using a block cipher may want more than one poke
	// before it sees a whole (bad) packet length.
	pokeInterval = 2 * time.Second

	// maxLine bounds how much of one line Dial keeps while it looks for the
	// announcement or the banner (at most 255 bytes by RFC 4253); longer
	// lines are a stale sshd's output.
	maxLine = 1024
)

// poke wakes the guest's loop and ends a stale sshd. Newlines only: the
// loop takes each as an empty line and announces itself again.
var poke = []byte("\n\n\n\n\n\n\n\n")

// Dial connects to the unix socket that carries a board's serial port and
// agrees on a session with the guest's serial sshd (see the package
// comment). The returned connection yields sshd's banner first, ready for an
// SSH client. Dial does not wait for socketPath to appear: the caller
// retries. Cancelling ctx aborts Dial; once Dial has returned, ctx no longer
// affects the connection.
//
// Errors read "serial <socketPath>: <step>: …" and wrap the step's error
// directly, so a caller that names the socket itself may unwrap once.
func Dial(ctx context.Context, socketPath string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr.Err // "connect: …", without repeating the path
		}
		return nil, fmt.Errorf("serial %s: %w", socketPath, err)
	}
	c, err := handshake(ctx, conn, pokeInterval)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("serial %s: %w", socketPath, err)
	}
	return c, nil
}

// handshake pokes the guest, answers its announcement and waits for sshd's
// banner on conn, poking again every pokeEvery until the guest announces.
func handshake(ctx context.Context, conn net.Conn, pokeEvery time.Duration) (net.Conn, error) {
	start := time.Now()
	// Reads block with no regard for ctx: close conn under them when ctx
	// ends. The error they then return is noise; the reason is ctx.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := lineReader{conn: conn}

	if err := awaitAnnouncement(conn, &r, pokeEvery); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no announcement from the guest's serial sshd within %s (is socbox-serial-sshd running in the guest?): %w",
				since(start), context.Cause(ctx))
		}
		return nil, err
	}
	helloSent := time.Now()
	banner, err := awaitBanner(conn, &r)
	if !stop() && err == nil {
		err = net.ErrClosed // ctx ended just as the banner came: conn is being closed
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no ssh banner within %s of the hello (does sshd start in the guest?): %w",
				since(helloSent), context.Cause(ctx))
		}
		return nil, err
	}
	return &bannerConn{Conn: conn, pending: banner}, nil
}

// awaitAnnouncement pokes the guest until it announces itself, ignoring
// everything else it sends.
func awaitAnnouncement(conn net.Conn, r *lineReader, pokeEvery time.Duration) error {
	for {
		if err := conn.SetReadDeadline(time.Now().Add(pokeEvery)); err != nil {
			return fmt.Errorf("poke: %w", err)
		}
		if _, err := conn.Write(poke); err != nil {
			return fmt.Errorf("poke: %w", err)
		}
		for {
			line, _, err := r.readLine()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // poke again
			}
			if err != nil {
				return fmt.Errorf("wait for announcement: %w", err)
			}
			if isAnnouncement(line) {
				if err := conn.SetReadDeadline(time.Time{}); err != nil {
					return fmt.Errorf("wait for announcement: %w", err)
				}
				return nil
			}
		}
	}
}

// isAnnouncement accepts a line that ends with the announcement: output a
// stale sshd wrote just before it exited may lack a line break of its own.
func isAnnouncement(line []byte) bool {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	return bytes.HasSuffix(line, []byte(announcement))
}

// awaitBanner sends the hello and returns sshd's banner line, ending
// included, with everything received after it. The hello is never repeated:
// a second one would reach sshd as garbage before the client's version.
// More announcements may arrive before the banner (the loop announces after
// each newline of the poke) and are ignored.
func awaitBanner(conn net.Conn, r *lineReader) ([]byte, error) {
	if _, err := conn.Write([]byte(hello)); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	for {
		line, whole, err := r.readLine()
		if err != nil {
			return nil, fmt.Errorf("wait for ssh banner: %w", err)
		}
		if whole && bytes.HasPrefix(line, []byte("SSH-")) {
			return append(bytes.Clone(line), r.buf...), nil
		}
	}
}

func since(t time.Time) time.Duration {
	return time.Since(t).Round(10 * time.Millisecond)
}

// lineReader splits what conn receives into lines, keeping what follows the
// last line for the next call.
type lineReader struct {
	conn  net.Conn
	buf   []byte // received, not yet returned
	cut   bool   // buf starts inside a line whose head was dropped
	chunk [512]byte
}

// readLine returns the next line, its newline included. whole is false for
// the tail of a line longer than maxLine, whose head was dropped. A read
// error is returned only when no whole line is buffered.
func (r *lineReader) readLine() (line []byte, whole bool, err error) {
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			line, whole = r.buf[:i+1], !r.cut
			r.buf, r.cut = r.buf[i+1:], false
			return line, whole, nil
		}
		if len(r.buf) > maxLine {
			// Keep the tail, in which an announcement may have begun.
			r.buf = bytes.Clone(r.buf[len(r.buf)-len(announcement):])
			r.cut = true
		}
		n, err := r.conn.Read(r.chunk[:])
		r.buf = append(r.buf, r.chunk[:n]...)
		if err != nil && n == 0 {
			return nil, false, err
		}
	}
}

// bannerConn is the serial connection as an SSH client sees it: reads yield
// the banner and what came with it before reading the socket again.
type bannerConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func (c *bannerConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.pending = nil
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// WaitIdle connects to the serial port and waits, sending nothing, until the
// guest's loop announces itself: no sshd is then running on the line. A
// board about to be saved waits so, after its session's sshd was told to
// exit, so that a restored board finds the loop waiting for a hello.
func WaitIdle(ctx context.Context, socketPath string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return fmt.Errorf("serial %s: %w", socketPath, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := lineReader{conn: conn}
	for {
		line, _, err := r.readLine()
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return fmt.Errorf("serial %s: wait for the serial sshd to be idle: %w", socketPath, err)
		}
		if isAnnouncement(line) {
			return nil
		}
	}
}
