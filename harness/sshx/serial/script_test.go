package serial_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/serial"
)

// fakeSSHDEnv makes the test binary act as `sshd -i` instead of running
// tests: the script starts it on the serial line.
const fakeSSHDEnv = "SOCBOX_SERIAL_TEST_FAKE_SSHD"

func TestMain(m *testing.M) {
	if os.Getenv(fakeSSHDEnv) != "" {
		os.Exit(fakeSSHD())
	}
	os.Exit(m.Run())
}

// Both ends know both keys, since the fake sshd runs in another process.
var (
	hostKey   = signerFromSeed(1)
	clientKey = signerFromSeed(2)
)

func signerFromSeed(b byte) ssh.Signer {
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return s
}

// fakeSSHD serves one SSH connection on stdin and stdout, like `sshd -i`
// (its arguments are ignored): it lets clientKey in and answers each "exec"
// with a line naming its pid and the command. Like sshd, it exits as soon as
// the transport fails, e.g. on the bad packet length of the host's poke.
func fakeSSHD() int {
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(key.Marshal(), clientKey.PublicKey().Marshal()) {
				return nil, errors.New("key not authorized")
			}
			return &ssh.Permissions{}, nil
		},
	}
	config.AddHostKey(hostKey)
	_, chans, reqs, err := ssh.NewServerConn(stdioConn{}, config)
	if err != nil {
		return 1
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "fake sshd: sessions only")
			continue
		}
		ch, reqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go serveExec(ch, reqs)
	}
	return 0
}

func serveExec(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		var exec struct{ Command string }
		if req.Type != "exec" || ssh.Unmarshal(req.Payload, &exec) != nil {
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		req.Reply(true, nil)
		fmt.Fprintf(ch, "fake sshd %d ran %q\n", os.Getpid(), exec.Command)
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
		return
	}
}

// stdioConn is the serial line as `sshd -i` has it: stdin and stdout.
type stdioConn struct{}

func (stdioConn) Read(p []byte) (int, error)       { return os.Stdin.Read(p) }
func (stdioConn) Write(p []byte) (int, error)      { return os.Stdout.Write(p) }
func (stdioConn) Close() error                     { return errors.Join(os.Stdin.Close(), os.Stdout.Close()) }
func (stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (stdioConn) SetDeadline(time.Time) error      { return nil }
func (stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }

// TestScriptServesSSHOverPTY runs the real script on a pseudo-terminal
// bridged to a unix socket, as QEMU bridges the guest's UART, and logs in
// through it twice: the second time while the first session's sshd still
// holds the line.
func TestScriptServesSSHOverPTY(t *testing.T) {
	for _, tool := range []string{"bash", "stty"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	master, slavePath := openPTY(t)
	// A UART never hangs up: keep the slave open, as reading the master
	// fails once no one holds it.
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { slave.Close() })

	dir := t.TempDir()
	pidfile := filepath.Join(dir, "sshd.pid")
	startScript(t, dir, slavePath, pidfile)
	socket := bridge(t, master, filepath.Join(dir, "serial.sock"))

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cfg := sshx.Config{
		Endpoint: sshx.Endpoint{Host: "raspi3b", Port: 22, User: "socbox"},
		Signer:   clientKey,
		HostKeys: sshx.NewHostKeys(hostKey.PublicKey()),
		Serial:   socket,
		Timeout:  10 * time.Second,
	}

	first, err := sshx.Dial(ctx, cfg)
	require.NoError(t, err)
	pid1 := runFake(t, ctx, first, "uname -a")
	pidInFile, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(pid1), strings.TrimSpace(string(pidInFile)),
		"the script records the running sshd in SOCBOX_SERIAL_PIDFILE")
	// Abandon the session: the first sshd still waits on the line.
	require.NoError(t, first.Close())
	require.NoError(t, syscall.Kill(pid1, 0), "the first sshd should outlive its client")

	second, err := sshx.Dial(ctx, cfg)
	require.NoError(t, err)
	defer second.Close()
	pid2 := runFake(t, ctx, second, "echo again")
	require.NotEqual(t, pid1, pid2, "a second login needs a fresh sshd")
	require.ErrorIs(t, syscall.Kill(pid1, 0), syscall.ESRCH, "the poke ends the first sshd")
}

// runFake runs cmd on the fake sshd and returns the sshd's pid.
func runFake(t *testing.T, ctx context.Context, c *sshx.Client, cmd string) int {
	t.Helper()
	out, err := c.Output(ctx, cmd)
	require.NoError(t, err)
	m := regexp.MustCompile(`^fake sshd (\d+) ran (".*")\n$`).FindStringSubmatch(out)
	require.NotNil(t, m, "output %q", out)
	require.Equal(t, strconv.Quote(cmd), m[2])
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return pid
}

// openPTY opens a pseudo-terminal and returns its master and the path of
// its slave, the guest's /dev/ttyAMA0 in this test.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	raw, err := master.SyscallConn()
	require.NoError(t, err)
	var n uint32
	var ioctlErr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	}))
	require.NoError(t, ioctlErr, "unlock pseudo-terminal")
	return master, fmt.Sprintf("/dev/pts/%d", n)
}

// startScript runs serial-sshd.sh on the device with this test binary as
// its sshd, and kills its process group (sshds included) at cleanup.
func startScript(t *testing.T, dir, device, pidfile string) {
	t.Helper()
	script := filepath.Join(dir, "serial-sshd.sh")
	require.NoError(t, os.WriteFile(script, serial.Script, 0o755))
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("bash", script, device, self)
	cmd.Env = append(os.Environ(), fakeSSHDEnv+"=1", "SOCBOX_SERIAL_PIDFILE="+pidfile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if s := stderr.String(); s != "" {
			t.Logf("serial-sshd.sh stderr:\n%s", s)
		}
	})
}

// bridge serves the master side of the pseudo-terminal on a unix socket as
// QEMU serves a UART (-chardev socket,server=on,wait=off): one client at a
// time, and what the guest writes while no client is connected is lost.
func bridge(t *testing.T, master *os.File, path string) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })

	var mu sync.Mutex
	var client net.Conn
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			c := client
			mu.Unlock()
			if c != nil && n > 0 {
				_, _ = c.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			client = c
			mu.Unlock()
			_, _ = io.Copy(master, c)
			mu.Lock()
			client = nil
			mu.Unlock()
			c.Close()
		}
	}()
	return path
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
