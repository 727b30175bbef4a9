package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx/serial"
)

// DefaultTimeout bounds one connection attempt (TCP connect or serial
// session, and SSH handshake) when Config.Timeout is zero. A QEMU port
// forward accepts TCP connections before the guest's sshd is up and may then
// sit silent, so an attempt must give up on its own for DialRetry to try
// again.
const DefaultTimeout = 30 * time.Second

// DefaultRetryInterval is DialRetry's pause between attempts when none is
// given.
const DefaultRetryInterval = 500 * time.Millisecond

// ErrAuth: the board accepted none of the keys offered.
var ErrAuth = errors.New("the board refused the keys offered")

// Config says how to reach and log in to a board.
type Config struct {
	Endpoint Endpoint
	// Signer is the client key; password authentication is never offered.
	Signer ssh.Signer
	// Signers, when not empty, are offered in order instead of Signer: a
	// user's ssh-agent may hold several keys for a real board.
	Signers []ssh.Signer
	// HostKeys holds the board's pinned host keys. Required unless
	// KnownHosts is set: use NewHostKeys() to trust the first key seen.
	HostKeys *HostKeys
	// KnownHosts, when set, checks the host key against a known_hosts file
	// instead of HostKeys: for a real board reached by its name.
	KnownHosts *KnownHosts
	// Timeout bounds one connection attempt; zero means DefaultTimeout.
	Timeout time.Duration
	// Serial, when set, is the unix socket that carries the board's serial
	// port (a QEMU socket chardev) with socbox-serial-sshd on the guest's
	// end: SSH then goes through it (see package serial) instead of to
	// Endpoint, which still gives the user and the name the host key is
	// checked under.
	Serial string
}

// Client is an authenticated SSH connection to a board.
type Client struct {
	ssh      *ssh.Client
	endpoint Endpoint

	// sftpMu guards the SFTP session ReadAndTruncate keeps (see sftp.go).
	sftpMu sync.Mutex
	sftp   *sftpSession // nil until first needed, and after it broke
	noSFTP bool         // the server has no sftp subsystem: use the shell

	// closed is closed by Close; lost is set when keepAlive closed the
	// connection on a board that stopped answering.
	closed    chan struct{}
	closeOnce sync.Once
	lostMu    sync.Mutex
	lost      error
}

// Dial connects to cfg.Endpoint (or through cfg.Serial) and logs in with
// cfg.Signer. Cancelling ctx aborts the connect and the handshake; once Dial
// has returned, ctx no longer affects the connection.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	c, err := dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.target(), err)
	}
	return c, nil
}

// target names where cfg connects, for error messages.
func (cfg Config) target() string {
	if cfg.Serial != "" {
		return cfg.Endpoint.String() + " over serial " + cfg.Serial
	}
	return cfg.Endpoint.String()
}

func (cfg Config) validate() error {
	if cfg.Signer == nil && len(cfg.Signers) == 0 {
		return errors.New("no client key in config (see LoadOrCreateKey)")
	}
	if cfg.HostKeys == nil && cfg.KnownHosts == nil {
		return errors.New("no host keys in config (NewHostKeys() trusts the first key seen)")
	}
	return nil
}

// auth offers the client's keys, and nothing else.
func (cfg Config) auth() []ssh.AuthMethod {
	if len(cfg.Signers) > 0 {
		return []ssh.AuthMethod{ssh.PublicKeys(cfg.Signers...)}
	}
	return []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)}
}

// hostKeyCheck is the check and the algorithm preference for addr.
func (cfg Config) hostKeyCheck(addr string) (ssh.HostKeyCallback, []string) {
	if cfg.KnownHosts != nil {
		return cfg.KnownHosts.Callback(), cfg.KnownHosts.Algorithms(addr)
	}
	return cfg.HostKeys.Callback(), cfg.HostKeys.algorithms()
}

func dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cause := fmt.Errorf("no SSH handshake within %s (is sshd up yet?): %w", timeout, context.DeadlineExceeded)
	if cfg.Serial != "" {
		// serial.Dial's errors say which step of its session timed out.
		cause = fmt.Errorf("no SSH handshake within %s: %w", timeout, context.DeadlineExceeded)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, cause)
	defer cancel()

	addr := cfg.Endpoint.Addr()
	conn, err := cfg.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	// x/crypto's handshake knows nothing of contexts: close the connection
	// under it when ctx ends (by cancellation or by the attempt's timeout).
	stop := context.AfterFunc(ctx, func() { conn.Close() })

	hostKeyCallback, hostKeyAlgorithms := cfg.hostKeyCheck(addr)
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              cfg.Endpoint.User,
		Auth:              cfg.auth(),
		HostKeyCallback:   hostKeyCallback,
		HostKeyAlgorithms: hostKeyAlgorithms,
	})
	if !stop() && err == nil {
		// ctx ended just as the handshake finished; the connection is
		// being closed under us.
		sshConn.Close()
		err = net.ErrClosed
	}
	if err != nil {
		if ctx.Err() != nil {
			// The connection was closed or timed out under the handshake:
			// what the handshake says is noise, the reason is ctx.
			return nil, context.Cause(ctx)
		}
		// x/crypto says so only in words; this is the one place they are
		// read.
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%w: %w", ErrAuth, err)
		}
		return nil, err
	}
	c := &Client{ssh: ssh.NewClient(sshConn, chans, reqs), endpoint: cfg.Endpoint, closed: make(chan struct{})}
	go c.keepAlive()
	go c.watchClose()
	return c, nil
}

// connect opens the connection SSH runs on: TCP to addr, or a session on
// cfg.Serial.
func (cfg Config) connect(ctx context.Context, addr string) (net.Conn, error) {
	if cfg.Serial != "" {
		conn, err := serial.Dial(ctx, cfg.Serial)
		if err != nil {
			// Dial and DialRetry name the socket already; serial.Dial's
			// error under its prefix says which step failed, and wraps
			// ctx's cause.
			if step := errors.Unwrap(err); step != nil {
				err = step
			}
			return nil, err
		}
		return conn, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil && ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return conn, err
}

// DialRetry calls Dial every interval until it succeeds or ctx ends, for
// waiting on a board that is still booting. Before each attempt it calls
// alive (if not nil) and returns its error at once: that is how a wait on a
// QEMU guest stops as soon as QEMU has died. A host key mismatch, or a host
// known_hosts does not list, is returned at once too, since retrying cannot
// fix it. Failed logins are retried: a board may install its authorized key
// late in its first boot. A non-positive interval means
// DefaultRetryInterval.
func DialRetry(ctx context.Context, cfg Config, interval time.Duration, alive func() error) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.target(), err)
	}
	if interval <= 0 {
		interval = DefaultRetryInterval
	}
	start := time.Now()
	var lastErr error
	for attempt := 1; ; attempt++ {
		if alive != nil {
			if err := alive(); err != nil {
				return nil, fmt.Errorf("ssh %s: %w", cfg.target(), err)
			}
		}
		c, err := dial(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) || errors.Is(err, ErrUnknownHostKey) {
			return nil, fmt.Errorf("ssh %s: %w", cfg.target(), err)
		}
		if lastErr == nil || ctx.Err() == nil {
			// An attempt cut short by ctx says less than the one before.
			lastErr = err
		}
		if ctx.Err() == nil {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		return nil, fmt.Errorf("ssh %s: gave up after %d attempts in %s: %w (last error: %w)",
			cfg.target(), attempt, time.Since(start).Round(time.Millisecond), context.Cause(ctx), lastErr)
	}
}

// Endpoint returns the endpoint the client is connected to.
func (c *Client) Endpoint() Endpoint { return c.endpoint }

// Close closes the connection and every session and forwarded socket on it.
func (c *Client) Close() error {
	if c == nil || c.ssh == nil {
		return nil
	}
	if c.closed != nil {
		c.closeOnce.Do(func() { close(c.closed) })
	}
	// The connection first: with it gone, the SFTP client's close cannot
	// wait on a guest that does not answer.
	err := c.ssh.Close()
	c.sftpMu.Lock()
	if c.sftp != nil {
		c.sftp.close()
		c.sftp = nil
	}
	c.sftpMu.Unlock()
	return err
}

// DialUnix connects to a unix socket in the guest through the SSH connection
// (OpenSSH's direct-streamlocal), e.g. /run/containerd/containerd.sock for
// the containerd client. ctx bounds only the dial, not the connection.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: dial unix %s: %w", c.endpoint, path, err)
	}
	return conn, nil
}
