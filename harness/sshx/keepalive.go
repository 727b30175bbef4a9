package sshx

import (
	"errors"
	"fmt"
	"time"
)

// ErrLost: an SSH connection that was up ended without Close: the board
// stopped answering (its kernel panicked, it hung, or the link to it went
// silent) and the client closed the connection, or the board closed it.
var ErrLost = errors.New("the SSH connection to the board is lost")

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
			c.lost = fmt.Errorf("%w: no reply to an SSH keepalive within %s (the guest hung, or its kernel panicked)", ErrLost, keepaliveTimeout)
			c.lostMu.Unlock()
			_ = c.ssh.Close()
			return
		}
	}
}

// watchClose records why the connection ended when it ended without
// Close: the board closed it (its sshd was killed, the session dropped) or
// keepAlive did.
func (c *Client) watchClose() {
	err := c.ssh.Wait()
	select {
	case <-c.closed:
		return // closed on purpose
	default:
	}
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	if c.lost == nil {
		c.lost = fmt.Errorf("%w: the board closed it (%v)", ErrLost, err)
	}
}

// Lost says why the connection ended other than by Close (errors.Is
// ErrLost): the board stopped answering, or closed it. Nil while it is up,
// and after Close.
func (c *Client) Lost() error {
	if c == nil {
		return nil
	}
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	return c.lost
}
