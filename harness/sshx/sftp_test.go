package sshx_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// outputFiles writes the files ReadAndTruncate tests read: binary bytes, an
// empty file, a line without its newline, names the shell must quote, and
// more than one SFTP packet.
func outputFiles(t *testing.T) (paths []string, want [][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "it's a dir")
	require.NoError(t, os.Mkdir(dir, 0o755))
	large := make([]byte, 200<<10)
	_, err := rand.Read(large)
	require.NoError(t, err)
	want = [][]byte{
		{0, 1, 2, '\n', 0xff, 0xfe, '\r', '\n', '\n'},
		{},
		[]byte("no newline at the end"),
		[]byte("12\nlooks like a size\n"),
		large,
	}
	for i, name := range []string{"binary", "empty", "-no newline", "$(x) y", "large"} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, want[i], 0o600))
		paths = append(paths, p)
	}
	return paths, want
}

func requireEmptied(t *testing.T, paths []string) {
	t.Helper()
	for _, p := range paths {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Zero(t, fi.Size(), p)
	}
}

func TestReadAndTruncate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sshtest.Option
	}{
		{"sftp", nil},
		{"shell fallback", []sshtest.Option{sshtest.WithoutSFTP()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := connect(t, tc.opts...)
			ctx := testContext(t)
			paths, want := outputFiles(t)

			got, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, paths...)
			require.NoError(t, err)
			require.Len(t, got, len(want))
			for i := range want {
				require.Equal(t, want[i], got[i].Data, paths[i])
				require.EqualValues(t, len(want[i]), got[i].Size, paths[i])
			}
			requireEmptied(t, paths)

			// The emptied files are read again as empty, and can be reused.
			got, err = c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, paths...)
			require.NoError(t, err)
			require.Len(t, got, len(paths))
			for _, b := range got {
				require.Empty(t, b.Data)
				require.Zero(t, b.Size)
			}
			require.NoError(t, os.WriteFile(paths[0], []byte("again"), 0o600))
			got, err = c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, paths[0])
			require.NoError(t, err)
			require.Equal(t, "again", string(got[0].Data))
		})
	}
}

func TestReadAndTruncateMissingFileEmptiesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sshtest.Option
	}{
		{"sftp", nil},
		{"shell fallback", []sshtest.Option{sshtest.WithoutSFTP()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := connect(t, tc.opts...)
			ctx := testContext(t)
			dir := t.TempDir()
			present := filepath.Join(dir, "present")
			missing := filepath.Join(dir, "missing")
			require.NoError(t, os.WriteFile(present, []byte("kept"), 0o600))

			_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, present, missing)
			require.ErrorContains(t, err, missing)
			data, err := os.ReadFile(present)
			require.NoError(t, err)
			require.Equal(t, "kept", string(data), "nothing is emptied unless all were read")

			// The client still works after the error.
			got, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, present)
			require.NoError(t, err)
			require.Equal(t, "kept", string(got[0].Data))
		})
	}
}

func TestReadAndTruncateMissingFileIsNotExist(t *testing.T) {
	_, c := connect(t)
	_, err := c.ReadAndTruncate(testContext(t), sshx.DefaultOutputLimit, filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestReadAndTruncateKeepsItsSFTPSession(t *testing.T) {
	srv, c := connect(t)
	ctx := testContext(t)
	p := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))

	_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, p)
	require.NoError(t, err)
	require.Equal(t, 1, srv.Sessions())
	for range 3 {
		_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, p)
		require.NoError(t, err)
	}
	// Even a refused request leaves the session usable.
	_, err = c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, p+".missing")
	require.Error(t, err)
	_, err = c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, p)
	require.NoError(t, err)
	require.Equal(t, 1, srv.Sessions(), "one session for all calls")
}

func TestReadAndTruncateFallbackIsRemembered(t *testing.T) {
	srv, c := connect(t, sshtest.WithoutSFTP())
	ctx := testContext(t)
	p := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))

	for range 3 {
		_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, p)
		require.NoError(t, err)
	}
	// One refused sftp session, then one command per call.
	require.Equal(t, 1+3, srv.Sessions())
}

func TestReadAndTruncateHonoursContext(t *testing.T) {
	_, c := connect(t)
	cause := errors.New("test is done waiting")
	ctx, cancel := context.WithCancelCause(testContext(t))
	cancel(cause)
	_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, filepath.Join(t.TempDir(), "out"))
	require.ErrorIs(t, err, cause)
}

func TestReadAndTruncateDoesNotWaitForAHungGuest(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(key.PublicKey()))
	proxy := newStallingProxy(t, srv.Endpoint().Addr())
	ep := srv.Endpoint()
	ep.Port = proxy.port
	c, err := sshx.Dial(testContext(t), sshx.Config{Endpoint: ep, Signer: key, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(name), 0o600))
		return p
	}
	hung := func(name string) {
		t.Helper()
		cause := errors.New("guest hung")
		ctx, cancel := context.WithTimeoutCause(testContext(t), 100*time.Millisecond, cause)
		defer cancel()
		proxy.stall()
		defer proxy.resume()
		_, err := c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, write(name))
		require.ErrorIs(t, err, cause)
		require.ErrorContains(t, err, name)
	}
	works := func(name string) {
		t.Helper()
		got, err := c.ReadAndTruncate(testContext(t), sshx.DefaultOutputLimit, write(name))
		require.NoError(t, err)
		require.Equal(t, name, string(got[0].Data))
	}

	hung("while starting") // before the SFTP session exists
	works("after starting")
	hung("with a session")
	sessions := srv.Sessions()
	works("with a new session")
	require.Greater(t, srv.Sessions(), sessions, "the abandoned session is not reused")
}

// stallingProxy forwards one connection to addr and can hold back what
// comes from there, as a hung guest would.
type stallingProxy struct {
	port    int
	mu      sync.Mutex
	resumed chan struct{} // not nil while stalled
}

func newStallingProxy(t *testing.T, addr string) *stallingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	p := &stallingProxy{port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		client, err := l.Accept()
		if err != nil {
			return
		}
		defer client.Close()
		server, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer server.Close()
		go func() { _, _ = io.Copy(server, client) }()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			p.wait()
			if n > 0 {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *stallingProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resumed = make(chan struct{})
}

func (p *stallingProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.resumed)
	p.resumed = nil
}

func (p *stallingProxy) wait() {
	p.mu.Lock()
	resumed := p.resumed
	p.mu.Unlock()
	if resumed != nil {
		<-resumed
	}
}
