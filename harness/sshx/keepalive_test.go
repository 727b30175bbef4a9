package sshx_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// freezableRelay relays TCP connections to target until freeze is called;
// from then on it carries nothing and closes nothing, as a guest whose
// kernel panicked behind QEMU's port forward.
type freezableRelay struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	frozen chan struct{}
}

func newFreezableRelay(t *testing.T, target string) *freezableRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &freezableRelay{ln: ln, frozen: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			t.Cleanup(func() { in.Close(); out.Close() })
			go r.pipe(out, in)
			go r.pipe(in, out)
		}
	}()
	return r
}

func (r *freezableRelay) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.frozen:
			<-make(chan struct{}) // hold everything, answer nothing
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *freezableRelay) freeze() { close(r.frozen) }

// drop closes every relayed connection, as a guest whose sshd session was
// killed.
func (r *freezableRelay) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

func TestClientClosesAConnectionThatStopsAnswering(t *testing.T) {
	sshx.SetKeepalive(t, 100*time.Millisecond, 500*time.Millisecond)
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	relay := newFreezableRelay(t, srv.Endpoint().Addr())
	ep := srv.Endpoint()
	ep.Port = relay.ln.Addr().(*net.TCPAddr).Port
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: ep, Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	// A live board answers its keepalives: the connection stays.
	time.Sleep(time.Second)
	require.NoError(t, c.Lost())
	res, err := c.Run(testContext(t), "echo up")
	require.NoError(t, err)
	require.Equal(t, "up\n", string(res.Stdout))

	relay.freeze()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := c.Run(testContext(t), "echo never"); done <- err }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("a call on a connection that stopped answering waited on")
	}
	t.Logf("the call failed %s after the board stopped answering", time.Since(start).Round(time.Millisecond))
	require.ErrorIs(t, c.Lost(), sshx.ErrLost)
	require.ErrorContains(t, c.Lost(), "no reply to an SSH keepalive within 500ms")
}

func TestClientSaysTheBoardClosedTheConnection(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	relay := newFreezableRelay(t, srv.Endpoint().Addr())
	ep := srv.Endpoint()
	ep.Port = relay.ln.Addr().(*net.TCPAddr).Port
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: ep, Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Lost())

	relay.drop()
	require.Eventually(t, func() bool { return c.Lost() != nil }, 5*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, c.Lost(), sshx.ErrLost)
	require.ErrorContains(t, c.Lost(), "the SSH connection to the board is lost: the board closed it")

	// A connection closed on purpose is not lost.
	_, c2 := connect(t)
	require.NoError(t, c2.Close())
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c2.Lost())
}
