package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DialTCP connects to addr ("10.213.0.2:80") as seen from the guest, through
// the SSH connection (a direct-tcpip channel, as `ssh -L` opens). ctx bounds
// only the dial.
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: dial %s in the guest: %w", c.endpoint, addr, err)
	}
	return conn, nil
}

// Forward is a port forward from 127.0.0.1 on this machine to an address
// in the guest, carried by the SSH connection: nothing listens beyond
// loopback, and the guest needs no forward of its own.
type Forward struct {
	// Addr is where to connect on this machine, "127.0.0.1:port".
	Addr   string
	Remote string

	ln     net.Listener
	cancel context.CancelFunc // ends the dials in flight
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// forwardCloseWait bounds how long Close waits for the relays it ended. A
// guest that stopped answering leaves a relay blocked in a write to the
// SSH channel, which only ends when the SSH connection is closed: Close
// must not wait for it, or the teardown that calls it never reaches QEMU.
const forwardCloseWait = 2 * time.Second

// Forward listens on a free port of 127.0.0.1 and relays each connection to
// remote in the guest until Close.
func (c *Client) Forward(remote string) (*Forward, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("forward to %s: %w", remote, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forward{Addr: ln.Addr().String(), Remote: remote, ln: ln, cancel: cancel, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			local, err := ln.Accept()
			if err != nil {
				return // closed
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.relay(ctx, c, local)
			}()
		}
	}()
	return f, nil
}

func (f *Forward) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false // closed
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *Forward) relay(ctx context.Context, c *Client, local net.Conn) {
	defer local.Close()
	remote, err := c.ssh.DialContext(ctx, "tcp", f.Remote)
	if err != nil {
		return // the local side sees the connection closed
	}
	defer remote.Close()
	if !f.track(local, remote) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(remote, local)
	go pipe(local, remote)
	<-done
	<-done
	f.mu.Lock()
	delete(f.conns, local)
	delete(f.conns, remote)
	f.mu.Unlock()
}

// Close stops listening, ends the connections in flight and waits for
// them, for at most two seconds: a relay stuck on a guest that stopped
// answering ends when the SSH connection is closed.
func (f *Forward) Close() error {
	if f == nil {
		return nil
	}
	err := f.ln.Close()
	f.cancel()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(forwardCloseWait):
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
