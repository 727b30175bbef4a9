package ctrd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
)

// testDaemon is a containerd started for one test, in a directory of its own.
type testDaemon struct {
	dir    string
	socket string
	log    string
	// hostDirs are directories outside dir that the daemon's shims
	// create, which did not exist before: removed, if empty, at cleanup.
	hostDirs []string
}

// startContainerd runs a real containerd daemon on the host, for as long as
// the test. It skips the test where that cannot be done: not root, or no
// containerd or runc installed.
func startContainerd(t *testing.T) *testDaemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a containerd daemon")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: apt-get install -y --no-install-recommends containerd runc", bin)
		}
	}

	// A short directory: the socket path must fit in sun_path (108 bytes),
	// and t.TempDir's names are long.
	dir, err := os.MkdirTemp("", "ctd")
	require.NoError(t, err)
	d := &testDaemon{
		dir:    dir,
		socket: filepath.Join(dir, "c.sock"),
		log:    filepath.Join(dir, "containerd.log"),
	}
	// The runc shim keeps its sockets and runc's state under containerd's
	// default state directory, whatever the daemon's config says.
	base := filepath.Dir(DefaultSocket)
	for _, p := range []string{filepath.Join(base, "runc", DefaultNamespace), filepath.Join(base, "runc"), filepath.Join(base, "s"), base} {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			d.hostDirs = append(d.hostDirs, p)
		}
	}
	t.Cleanup(func() { d.cleanup(t) })

	// CRI and the snapshotters that cannot work here are left out: they
	// only slow startup. opt would otherwise create /opt/containerd.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.socket, filepath.Join(dir, "opt"))
	configPath := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(configPath, []byte(config), 0o644))

	logFile, err := os.Create(d.log)
	require.NoError(t, err)
	defer logFile.Close()
	cmd := exec.Command("containerd", "--config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	start := time.Now()
	for {
		conn, err := net.Dial("unix", d.socket)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("containerd exited at once (%v):\n%s", err, d.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("containerd did not answer on %s within 15s:\n%s", d.socket, d.logTail())
		}
	}
	t.Logf("containerd ready after %s", time.Since(start).Round(time.Millisecond))
	return d
}

// cleanup runs after the daemon is stopped (cleanups run in reverse): it
// stops shims the daemon left, unmounts what is left under its root (overlay
// mounts of a container that was not removed) and removes the directory.
func (d *testDaemon) cleanup(t *testing.T) {
	for _, pid := range d.shims() {
		t.Logf("killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range d.mounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
	if t.Failed() {
		t.Logf("containerd log:\n%s", d.logTail())
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("remove %s: %v", d.dir, err)
	}
	for _, p := range d.hostDirs {
		_ = os.Remove(p) // only if empty: another daemon may use it now
	}
}

// mounts lists mount points under the daemon's directory, deepest first.
func (d *testDaemon) mounts() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], d.dir+"/") {
			out = append(out, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// shims lists the shim processes serving this daemon: their command lines
// name its socket.
func (d *testDaemon) shims() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmdline, []byte{0})
		if len(args) > 0 && strings.HasSuffix(string(args[0]), "containerd-shim-runc-v2") &&
			bytes.Contains(cmdline, []byte(d.socket)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (d *testDaemon) logTail() string {
	f, err := os.Open(d.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// localShell is a Shell on this host: what a guest would do over SSH, done
// with os/exec, os and net. Of the RunOptions, only the standard input is
// used by the runtime.
type localShell struct{}

var _ Shell = localShell{}

func (localShell) Run(ctx context.Context, cmd string, opts ...sshx.RunOption) (sshx.Result, error) {
	start := time.Now()
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = sshx.StdinOf(opts...)
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	res := sshx.Result{Command: cmd, Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start)}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && ctx.Err() == nil {
		res.ExitCode = exitErr.ExitCode()
		return res, nil
	}
	return res, err
}

func (localShell) Upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(remotePath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(remotePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (localShell) Download(ctx context.Context, remotePath string, w io.Writer) error {
	f, err := os.Open(remotePath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func (localShell) ReadAndTruncate(ctx context.Context, limit int64, paths ...string) ([]sshx.Head, error) {
	out := make([]sshx.Head, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(f, limit))
		fi, serr := f.Stat()
		f.Close()
		if err = errors.Join(err, serr); err != nil {
			return nil, err
		}
		out[i] = sshx.Head{Data: b, Size: fi.Size()}
	}
	for _, p := range paths {
		if err := os.Truncate(p, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (localShell) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
