package serial

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeGuest plays the guest's end of a net.Pipe. Everything the host sends
// is recorded as it arrives; every send blocks until the host has read it,
// so what the guest sends in separate writes reaches the host in separate
// reads.
type fakeGuest struct {
	t       *testing.T
	conn    net.Conn
	arrived chan struct{} // signalled after each receipt
	done    chan struct{} // closed when the host's end is closed

	mu  sync.Mutex
	got []byte
}

// newFakeGuest returns the host's end of the pipe and the guest at the other.
func newFakeGuest(t *testing.T) (net.Conn, *fakeGuest) {
	host, guest := net.Pipe()
	g := &fakeGuest{t: t, conn: guest, arrived: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() { host.Close(); guest.Close() })
	go func() {
		defer close(g.done)
		buf := make([]byte, 256)
		for {
			n, err := guest.Read(buf)
			g.mu.Lock()
			g.got = append(g.got, buf[:n]...)
			g.mu.Unlock()
			select {
			case g.arrived <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return host, g
}

func (g *fakeGuest) send(s string) {
	if _, err := g.conn.Write([]byte(s)); err != nil {
		g.t.Errorf("guest: send %q: %v", s, err)
	}
}

func (g *fakeGuest) count(s string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return bytes.Count(g.got, []byte(s))
}

// await waits until the host has sent s n times.
func (g *fakeGuest) await(s string, n int) {
	timeout := time.After(5 * time.Second)
	for g.count(s) < n {
		select {
		case <-g.arrived:
		case <-timeout:
			g.t.Errorf("guest: the host did not send %q %d times", s, n)
			return
		}
	}
}

// received is all the host sent, once it has closed its end.
func (g *fakeGuest) received() string {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(g.got)
}

func testContext(t *testing.T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// readN reads exactly n bytes of what the host's SSH client would see.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	return string(buf)
}

func TestHandshakeIgnoresGarbageBeforeAnnouncement(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		for _, s := range []string{
			"\x00\xff\x1b[0m binary left by an earlier sshd\r\n",
			"[    1.234567] kernel: console line\n",
			"socbox-ssh? is not alone on this line\n",
			"socbox-ssh\n", // cut short
			"socbox-ssh",   // an announcement split across reads
		} {
			g.send(s)
			if g.count(hello) > 0 {
				g.t.Errorf("guest: hello answered %q, not an announcement", s)
			}
		}
		g.send("?\n")
		g.await(hello, 1)
		g.send("SSH-2.0-OpenSSH_9.6\r\n")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-OpenSSH_9.6\r\n", readN(t, c, len("SSH-2.0-OpenSSH_9.6\r\n")))
	require.NoError(t, c.Close())
	require.Equal(t, string(poke)+hello, g.received())
}

func TestHandshakeAcceptsAnnouncementAfterOverlongGarbage(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		// An sshd's output just before it exits has no line breaks.
		g.send(strings.Repeat("\x17", 5000) + "socbox-ssh?\n")
		g.await(hello, 1)
		// A banner's prefix deep inside garbage is not a banner.
		g.send(strings.Repeat("x", 3000) + "SSH-2.0-inside-garbage\r\n")
		g.send("SSH-2.0-real\r\n")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-real\r\n", readN(t, c, len("SSH-2.0-real\r\n")))
}

func TestHandshakeSendsHelloOnceDespiteRepeatedAnnouncements(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		// The loop announces after each newline of the poke, and again
		// after the hello until sshd has started.
		for range 3 {
			g.send("socbox-ssh?\n")
		}
		g.await(hello, 1)
		for range 3 {
			g.send("socbox-ssh?\n")
		}
		g.send("SSH-2.0-guest\r\n")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-guest\r\n", readN(t, c, len("SSH-2.0-guest\r\n")))
	require.NoError(t, c.Close())
	require.Equal(t, string(poke)+hello, g.received())
}

func TestHandshakeReassemblesSplitBanner(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		g.send("socbox-ssh?\n")
		g.await(hello, 1)
		for _, s := range []string{"S", "SH-2.", "0-split\r", "\n"} {
			g.send(s)
		}
		g.send("after the handshake")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.NoError(t, err)
	want := "SSH-2.0-split\r\nafter the handshake"
	require.Equal(t, want, readN(t, c, len(want)))
}

func TestHandshakeKeepsBytesAfterBanner(t *testing.T) {
	host, g := newFakeGuest(t)
	// sshd's first packet may arrive in the same read as its banner.
	firstPacket := "\x00\x00\x01\x2c\x0a\x14 key exchange init"
	go func() {
		g.await(string(poke), 1)
		g.send("socbox-ssh?\n")
		g.await(hello, 1)
		g.send("socbox-ssh?\nSSH-2.0-guest\r\n" + firstPacket)
		g.send("more")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.NoError(t, err)
	want := "SSH-2.0-guest\r\n" + firstPacket + "more"
	require.Equal(t, want, readN(t, c, len(want)))
}

func TestHandshakePokesAgainUntilAnnounced(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		// A guest that misses the first pokes (a stale sshd ate them).
		g.await(string(poke), 3)
		g.send("socbox-ssh?\n")
		g.await(hello, 1)
		g.send("SSH-2.0-guest\r\n")
	}()

	c, err := handshake(testContext(t, 10*time.Second), host, 20*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-guest\r\n", readN(t, c, len("SSH-2.0-guest\r\n")))
	require.NoError(t, c.Close())
	require.Equal(t, 1, strings.Count(g.received(), hello))
}

func TestHandshakeGivesUpWithoutAnnouncement(t *testing.T) {
	host, g := newFakeGuest(t)
	start := time.Now()
	_, err := handshake(testContext(t, 300*time.Millisecond), host, 50*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "no announcement from the guest's serial sshd within")
	require.ErrorContains(t, err, "is socbox-serial-sshd running in the guest?")
	require.Less(t, time.Since(start), 2*time.Second, "ctx must abort the blocked read")
	require.Greater(t, g.count(string(poke)), 1, "the host pokes again while it waits")
	require.Zero(t, g.count(hello))
}

func TestHandshakeGivesUpWithoutBanner(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		g.send("socbox-ssh?\n")
		g.await(hello, 1)
		g.send("socbox-ssh?\n") // sshd failed to start: the loop goes on
	}()

	_, err := handshake(testContext(t, 300*time.Millisecond), host, time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "no ssh banner within")
	require.Equal(t, string(poke)+hello, g.received(), "neither hello nor poke is repeated after the hello")
}

func TestHandshakeReportsGuestHangUp(t *testing.T) {
	host, g := newFakeGuest(t)
	go func() {
		g.await(string(poke), 1)
		g.conn.Close()
	}()
	_, err := handshake(testContext(t, 10*time.Second), host, time.Minute)
	require.ErrorIs(t, err, io.EOF)
	require.ErrorContains(t, err, "wait for announcement")
}

func TestDialNamesMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.sock")
	_, err := Dial(testContext(t, 10*time.Second), path)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "serial "+path+": connect: no such file or directory")
}

func TestScriptIsEmbedded(t *testing.T) {
	require.True(t, bytes.HasPrefix(Script, []byte("#!/bin/bash\n")))
	require.Contains(t, string(Script), announcement)
	require.Contains(t, string(Script), strings.TrimSuffix(hello, "\n"))
}
