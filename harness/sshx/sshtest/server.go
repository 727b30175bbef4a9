// Package sshtest runs an in-process SSH server for tests of code that talks
// to a board over SSH. It speaks the real protocol through
// golang.org/x/crypto/ssh and runs commands on the host with /bin/sh, so
// tests exercise the same code paths as against a guest's sshd, without a VM.
//
// The server accepts the user User with the keys given by WithAuthorizedKey
// and nothing else (no password), and serves what socbox uses: "exec"
// sessions with stdin, stdout, stderr, exit status and signals, the "sftp"
// subsystem on the host's filesystem, and "direct-streamlocal@openssh.com"
// channels to unix sockets.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/harness/sshx"
)

// User is the only user name the server lets in.
const User = "socbox"

// Option configures a Server.
type Option func(*options)

type options struct {
	authorized []ssh.PublicKey
	hostKey    ssh.Signer
	addr       string
	configure  []func(*ssh.ServerConfig)
	noSFTP     bool
}

// WithAuthorizedKey lets the holder of key's private half log in.
func WithAuthorizedKey(key ssh.PublicKey) Option {
	return func(o *options) { o.authorized = append(o.authorized, key) }
}

// WithHostKey makes the server present key instead of a freshly generated
// one, e.g. to restart "the same board".
func WithHostKey(key ssh.Signer) Option {
	return func(o *options) { o.hostKey = key }
}

// WithAddr listens on addr instead of 127.0.0.1:0, e.g. to bring a server
// up late on a port a client is already trying.
func WithAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

// WithoutSFTP makes the server refuse the sftp subsystem, as an sshd does
// whose sftp-server is not installed, e.g. to test a client's fallback.
func WithoutSFTP() Option {
	return func(o *options) { o.noSFTP = true }
}

// WithServerConfig lets f adjust the server's configuration after the
// defaults are set, e.g. to add a PasswordCallback that a key-only client
// must never use.
func WithServerConfig(f func(*ssh.ServerConfig)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Server is a running test SSH server. It is closed by t.Cleanup, which
// kills any command still running and closes all connections.
type Server struct {
	listener net.Listener
	hostKey  ssh.Signer
	config   *ssh.ServerConfig
	dir      string // working directory and HOME of commands
	noSFTP   bool

	sessions atomic.Int64 // session channels opened, for Sessions

	mu      sync.Mutex
	closers map[io.Closer]struct{}
	wg      sync.WaitGroup
}

// NewServer starts a server; it fails t if it cannot.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{addr: "127.0.0.1:0"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatalf("sshtest: generate host key: %v", err)
		}
		if o.hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			t.Fatalf("sshtest: host key: %v", err)
		}
	}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != User {
				return nil, fmt.Errorf("sshtest: unknown user %q", meta.User())
			}
			for _, k := range o.authorized {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("sshtest: key not authorized")
		},
	}
	config.AddHostKey(o.hostKey)
	for _, f := range o.configure {
		f(config)
	}

	l, err := net.Listen("tcp", o.addr)
	if err != nil {
		t.Fatalf("sshtest: listen: %v", err)
	}
	s := &Server{
		listener: l,
		hostKey:  o.hostKey,
		config:   config,
		dir:      t.TempDir(),
		noSFTP:   o.noSFTP,
		closers:  map[io.Closer]struct{}{},
	}
	t.Cleanup(s.close)
	s.wg.Add(1)
	go s.serve()
	return s
}

// Endpoint is where to reach the server, as User.
func (s *Server) Endpoint() sshx.Endpoint {
	addr := s.listener.Addr().(*net.TCPAddr)
	return sshx.Endpoint{Host: addr.IP.String(), Port: addr.Port, User: User}
}

// HostKey is the key the server presents.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// Sessions is how many session channels clients have opened so far (each
// command, and each sftp subsystem, is one), e.g. to check that a client
// reuses its SFTP session.
func (s *Server) Sessions() int { return int(s.sessions.Load()) }

func (s *Server) close() {
	s.listener.Close()
	s.mu.Lock()
	for c := range s.closers {
		c.Close()
	}
	s.closers = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// track registers c to be closed with the server; it reports false, having
// closed c, if the server is already closed.
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closers == nil {
		c.Close()
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.closers, c)
}

// goTracked runs f in a goroutine that close waits for.
func (s *Server) goTracked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.listener.Accept()
		if err != nil {
			return
		}
		if s.track(nc) {
			s.goTracked(func() { s.handleConn(nc) })
		}
	}
}

func (s *Server) handleConn(nc net.Conn) {
	defer s.untrack(nc)
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err != nil {
		return // failed handshake or refused login
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			s.goTracked(func() { s.session(nch) })
		case "direct-streamlocal@openssh.com":
			s.goTracked(func() { s.streamLocal(nch) })
		case "direct-tcpip":
			s.goTracked(func() { s.directTCP(nch) })
		default:
			nch.Reject(ssh.UnknownChannelType, "sshtest: unsupported channel type")
		}
	}
}

// session serves one session channel: a single "exec", and signals for it,
// or the sftp subsystem. Closing the channel kills the command, as when a
// client gives up on it.
func (s *Server) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	s.sessions.Add(1)
	defer ch.Close()
	var proc *process
	sftpStarted := false
	for req := range reqs {
		switch {
		case req.Type == "subsystem" && proc == nil && !sftpStarted && !s.noSFTP:
			var msg struct{ Name string }
			if ssh.Unmarshal(req.Payload, &msg) != nil || msg.Name != "sftp" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			sftpStarted = true
			s.goTracked(func() { s.serveSFTP(ch) })
		case req.Type == "exec" && proc == nil && !sftpStarted:
			var msg struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &msg); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			proc = s.start(ch, msg.Command)
		case req.Type == "signal" && proc != nil:
			var msg struct{ Signal string }
			if ssh.Unmarshal(req.Payload, &msg) == nil {
				if sig, ok := signals[ssh.Signal(msg.Signal)]; ok {
					proc.signal(sig)
				}
			}
		default:
			// env, pty-req, shell, other subsystems, keepalives: not
			// served.
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	if proc != nil {
		proc.signal(syscall.SIGKILL)
		<-proc.done
	}
}

// serveSFTP serves the SFTP protocol on ch, on the filesystem commands run
// on and with their working directory, until the client ends it; then it
// reports the end the way sshd does for a subsystem.
func (s *Server) serveSFTP(ch ssh.Channel) {
	status := 0
	gated := &sftpChannel{Channel: ch}
	srv, err := sftp.NewServer(gated, sftp.WithServerWorkingDirectory(s.dir))
	if err == nil {
		err = srv.Serve()
	}
	if err != nil {
		status = 1
	}
	gated.stop()
	exit(ch, status, "")
}

// sftpChannel cuts the SFTP server's writes off once it is done: Serve may
// return (on the client's end of file) while replies are still being
// written, and a channel's writes must not overlap its CloseWrite.
type sftpChannel struct {
	ssh.Channel
	mu      sync.Mutex
	stopped bool
}

func (c *sftpChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return 0, io.ErrClosedPipe
	}
	return c.Channel.Write(p)
}

func (c *sftpChannel) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
}

type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	done chan struct{} // closed once the command is reaped and reported
	dead bool
}

// signal signals the command's whole process group, so that `sh -c` does
// not leave its children behind.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dead {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// start runs command with /bin/sh -c, wired to ch; once it ends, its exit
// status is sent and ch closed.
func (s *Server) start(ch ssh.Channel, command string) *process {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "HOME="+s.dir)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Background children that keep stdout open must not stall the reply.
	cmd.WaitDelay = 2 * time.Second
	p := &process{cmd: cmd, done: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "sshtest: %v\n", err)
		p.dead = true
		go func() {
			defer close(p.done)
			exit(ch, 127, "")
		}()
		return p
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
		p.mu.Lock()
		p.dead = true
		p.mu.Unlock()
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			exit(ch, 0, signalName(ws.Signal()))
		} else {
			exit(ch, ws.ExitStatus(), "")
		}
	}()
	return p
}

// exit reports how the command ended, the way OpenSSH's sshd does, and
// closes the channel.
func exit(ch ssh.Channel, status int, signal string) {
	_ = ch.CloseWrite()
	if signal != "" {
		_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: signal}))
	} else {
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	}
	_ = ch.Close()
}

var signals = map[ssh.Signal]syscall.Signal{
	ssh.SIGABRT: syscall.SIGABRT,
	ssh.SIGALRM: syscall.SIGALRM,
	ssh.SIGFPE:  syscall.SIGFPE,
	ssh.SIGHUP:  syscall.SIGHUP,
	ssh.SIGILL:  syscall.SIGILL,
	ssh.SIGINT:  syscall.SIGINT,
	ssh.SIGKILL: syscall.SIGKILL,
	ssh.SIGPIPE: syscall.SIGPIPE,
	ssh.SIGQUIT: syscall.SIGQUIT,
	ssh.SIGSEGV: syscall.SIGSEGV,
	ssh.SIGTERM: syscall.SIGTERM,
	ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return string(name)
		}
	}
	return "KILL" // not in the protocol's list: report it as the nearest fit
}

// directTCP serves a direct-tcpip channel (a local port forward) by
// connecting it to the host and port the client named.
func (s *Server) directTCP(nch ssh.NewChannel) {
	var msg struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &msg); err != nil {
		nch.Reject(ssh.ConnectionFailed, "sshtest: malformed direct-tcpip request")
		return
	}
	s.relay(nch, "tcp", net.JoinHostPort(msg.Host, fmt.Sprint(msg.Port)))
}

// streamLocal serves a direct-streamlocal@openssh.com channel by connecting
// it to the unix socket the client named.
func (s *Server) streamLocal(nch ssh.NewChannel) {
	var msg struct {
		SocketPath string
		Reserved0  string
		Reserved1  uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &msg); err != nil {
		nch.Reject(ssh.ConnectionFailed, "sshtest: malformed direct-streamlocal request")
		return
	}
	s.relay(nch, "unix", msg.SocketPath)
}

// relay accepts nch once addr answers and copies both ways until both
// ends are done.
func (s *Server) relay(nch ssh.NewChannel, network, addr string) {
	uc, err := net.Dial(network, addr)
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		uc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	if !s.track(uc) {
		ch.Close()
		return
	}
	defer s.untrack(uc)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(uc, ch)
		if cw, ok := uc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, uc)
		_ = ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	uc.Close()
}
