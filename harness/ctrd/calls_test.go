package ctrd

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// callCounter is a Shell whose containerd connections are read as they
// go: every gRPC call the client opens is one HEADERS frame with its
// method as :path. Under emulation each is a round trip through SSH into
// a slow guest, so how many a container costs is worth a test.
type callCounter struct {
	localShell
	mu    sync.Mutex
	calls []string
}

func (c *callCounter) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.localShell.DialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go c.read(pr)
	return &countedConn{Conn: conn, w: pw}, nil
}

// read decodes what the client writes: the HTTP/2 preface, then frames.
func (c *callCounter) read(r io.Reader) {
	if _, err := io.ReadFull(r, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	fr := http2.NewFramer(io.Discard, r)
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			_, _ = io.Copy(io.Discard, r)
			return
		}
		h, ok := f.(*http2.HeadersFrame)
		if !ok {
			continue
		}
		fields, err := dec.DecodeFull(h.HeaderBlockFragment())
		if err != nil {
			continue
		}
		for _, hf := range fields {
			if hf.Name == ":path" {
				c.mu.Lock()
				c.calls = append(c.calls, hf.Value)
				c.mu.Unlock()
			}
		}
	}
}

// take returns the calls seen so far and forgets them.
func (c *callCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

type countedConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	_, _ = c.w.Write(p[:n])
	return n, err
}

func (c *countedConn) Close() error {
	c.w.Close()
	return c.Conn.Close()
}

// counted is a runtime on a containerd of the test's own (d), with the
// busybox image of platform p imported as image, whose calls sh counts.
type counted struct {
	r     *Runtime
	sh    *callCounter
	image string
	d     *testDaemon
	p     boards.Platform
}

func countedRuntime(ctx context.Context, t *testing.T) counted {
	t.Helper()
	c := counted{p: hostPlatform(t), d: startContainerd(t), sh: &callCounter{}}
	archive := busyboxArchive(t, c.p, busyboxRef, nil)
	var err error
	c.r, err = Connect(ctx, c.sh, WithSocket(c.d.socket), WithStateDir(c.d.dir+"/guest"))
	t.Cleanup(func() { c.r.Close() })
	require.NoError(t, err)
	c.image, err = c.r.Import(ctx, bytes.NewReader(archive), c.p)
	require.NoError(t, err)
	return c
}

// TestContainerCalls: a container on a warm runtime costs the calls its
// life needs and no more. The client's NewContainer, NewTask and Delete
// and the cleanup's task lookup made it 28: the image's manifest and
// config read twice, the snapshotter's capabilities, the container record
// four times and the task's status twice.
func TestContainerCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := countedRuntime(ctx, t)
	r, sh, name := c.r, c.sh, c.image
	res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"true"}}) // the image is checked once
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode)
	time.Sleep(100 * time.Millisecond) // the frames of the last call reach the counter
	sh.take()

	res, err = r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo hi"}})
	require.NoError(t, err)
	require.Equal(t, "hi\n", string(res.Stdout))
	time.Sleep(100 * time.Millisecond)
	calls := sh.take()
	t.Logf("%d calls: %s", len(calls), strings.Join(calls, " "))
	// Each is needed: the lease keeps the new snapshot from the garbage
	// collector until the record names it; Tasks/Get is the client's
	// handle for Start, Wait and Delete.
	want := []string{
		"leases.v1.Leases/Create", "images.v1.Images/Get", "snapshots.v1.Snapshots/Prepare", "containers.v1.Containers/Create",
		"tasks.v1.Tasks/Create", "tasks.v1.Tasks/Get", "tasks.v1.Tasks/Start", "tasks.v1.Tasks/Wait", "leases.v1.Leases/Delete",
		"tasks.v1.Tasks/Delete", "containers.v1.Containers/Delete", "snapshots.v1.Snapshots/Remove",
	}
	var got []string
	for _, c := range calls {
		got = append(got, strings.TrimPrefix(c, "/containerd.services."))
	}
	require.ElementsMatch(t, want, got)
}

// TestRestoredKeeperCalls: on a restored board the shim keeper runs
// already, and one call finds it so; the client's way took three.
func TestRestoredKeeperCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := countedRuntime(ctx, t)
	r, sh, name := c.r, c.sh, c.image
	require.NoError(t, r.KeepShimWarm(ctx, name))
	t.Cleanup(func() { _ = r.StopShimKeeper(context.Background()) })
	time.Sleep(100 * time.Millisecond)
	sh.take()

	r2, err := Connect(ctx, sh, WithSocket(c.d.socket), WithStateDir(c.d.dir+"/guest"), WithPlatform(c.p))
	t.Cleanup(func() { r2.Close() })
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	sh.take()
	require.NoError(t, r2.KeepShimWarm(ctx, name))
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, []string{"/containerd.services.tasks.v1.Tasks/Get"}, sh.take())
	require.Equal(t, KeeperID, r2.shimSandbox())
}
