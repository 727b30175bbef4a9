package sshx

import (
	"errors"
	"fmt"
	"time"
)

// ErrLost: the board stopped answering on an SSH connection that was up
// (its kernel panicked, it hung, or the link to it went silent), and the
// client closed the connection.
var ErrLost = errors.New("the board stopped answering")

// A board that stops answering (a kernel panic, a hung guest, a forward
// that no longer carries anything) closes nothing: without a probe every
// call on the connection would wait for it forever. The client asks the
// guest's sshd for a reply every keepaliveInterval and closes the
// connection when none comes within keepaliveTimeout, which makes every
// call on it fail at once. The timeout is generous: an emulated guest on a
// loaded host is slow, and a serial link may be busy with a transfer.
var (
	keepaliveInterval = 10 * time.Second
	keepaliveTimeout  = 30 * time.Second
)

// keepAlive probes the connection until it closes; see keepaliveInterval.
func (c *Client) keepAlive() {
	tick := time.NewTicker(keepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-tick.C:
		}
		replied := make(chan error, 1)
		go func() {
			// OpenSSH answers a request it does not know with a
			// failure: a reply all the same.
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		timer := time.NewTimer(keepaliveTimeout)
		select {
		case <-c.closed:
			timer.Stop()
			return
		case err := <-replied:
			timer.Stop()
			if err != nil {
				return // the connection is gone already
			}
		case <-timer.C:
			c.lostMu.Lock()
			c.lost = fmt.Errorf("%w: no reply to an SSH keepalive within %s", ErrLost, keepaliveTimeout)
			c.lostMu.Unlock()
			_ = c.ssh.Close()
			return
		}
	}
}

// Lost says why the client closed the connection itself (errors.Is
// ErrLost), or nil: the connection is up, or was closed by Close or by
// the other end.
func (c *Client) Lost() error {
	if c == nil {
		return nil
	}
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	return c.lost
}
