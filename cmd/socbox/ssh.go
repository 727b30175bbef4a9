package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/cachefs"
)

// bootState is what `socbox boot` leaves for `socbox ssh` while a board is
// up: where it listens and how to log in. It is written into the run
// directory and, as a pointer others can find, into
// <cache>/boards/<slug>-<pid>.json; both go when boot ends.
type bootState struct {
	Board      string    `json:"board"`
	PID        int       `json:"pid"`
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	User       string    `json:"user"`
	Key        string    `json:"key"`
	KnownHosts string    `json:"known_hosts"`
	RunDir     string    `json:"run_dir"`
	StartedAt  time.Time `json:"started_at"`

	path string // the pointer file it was read from
}

func (s bootState) describe() string {
	return fmt.Sprintf("%s (pid %d, %s@%s:%d)", s.Board, s.PID, s.User, s.Host, s.Port)
}

// bootStateDir is where the pointers to running boards live.
func bootStateDir() (string, error) {
	cache, err := images.CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "boards"), nil
}

// writeBootState records a ready board (slug, reached at ep with key, run
// in runDir) for `socbox ssh` and returns the function that removes the
// record.
func writeBootState(slug string, ep sshx.Endpoint, key, runDir string) (func(), error) {
	st := bootState{
		Board: slug, PID: os.Getpid(), Host: ep.Host, Port: ep.Port, User: ep.User,
		Key: key, KnownHosts: filepath.Join(runDir, "known_hosts"), RunDir: runDir, StartedAt: time.Now().UTC(),
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	dir, err := bootStateDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record the board for socbox ssh: %w", err)
	}
	pointer := filepath.Join(dir, fmt.Sprintf("%s-%d.json", st.Board, st.PID))
	local := filepath.Join(runDir, "board.json")
	// Whole or not at all: `socbox ssh` in another shell may read it now.
	for _, p := range []string{local, pointer} {
		if err := cachefs.WriteFile(p, append(data, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("record the board for socbox ssh: %w", err)
		}
	}
	return func() { _ = os.Remove(pointer); _ = os.Remove(local) }, nil
}

// processAlive reports whether pid names a running process (one of
// another user's counts too).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// findBoard picks the running board `socbox ssh` should log in to: the
// only one up, or the one --board (and --pid) name. Records of boot
// processes that are gone are removed, and said so.
func findBoard(slug string, pid int, stderr io.Writer) (bootState, error) {
	dir, err := bootStateDir()
	if err != nil {
		return bootState{}, err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return bootState{}, err
	}
	sort.Strings(paths)
	var up, gone []bootState
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile by the boot that ended
		}
		var st bootState
		if err := json.Unmarshal(data, &st); err != nil || st.Board == "" || st.Port == 0 {
			fmt.Fprintf(stderr, "socbox ssh: ignoring %s: not a board record (delete it)\n", p)
			continue
		}
		st.path = p
		if !processAlive(st.PID) {
			gone = append(gone, st)
			continue
		}
		up = append(up, st)
	}
	matches := func(st bootState) bool {
		return (slug == "" || st.Board == slug) && (pid == 0 || st.PID == pid)
	}
	var goneMatching []string
	for _, st := range gone {
		// The boot was killed before it could clean up: its board went
		// with it.
		_ = os.Remove(st.path)
		if matches(st) {
			goneMatching = append(goneMatching, st.describe())
		}
	}
	var picked []bootState
	for _, st := range up {
		if matches(st) {
			picked = append(picked, st)
		}
	}
	want := "board"
	if slug != "" {
		want = slug
	}
	if pid != 0 {
		want += fmt.Sprintf(" of pid %d", pid)
	}
	switch {
	case len(picked) == 1:
		return picked[0], nil
	case len(picked) > 1:
		var list []string
		for _, st := range picked {
			list = append(list, st.describe())
		}
		flagHint := "--board SLUG"
		if slug != "" {
			flagHint = "--pid PID"
		}
		return bootState{}, fmt.Errorf("%d boards are up: %s: pick one with %s", len(picked), strings.Join(list, ", "), flagHint)
	case len(goneMatching) > 0:
		start := "socbox boot"
		if slug != "" {
			start += " --board " + slug
		}
		return bootState{}, fmt.Errorf("no %s is up: the socbox boot of %s is gone without cleaning up (its record was removed); start one again with %s",
			want, strings.Join(goneMatching, ", "), start)
	case len(up) > 0:
		var list []string
		for _, st := range up {
			list = append(list, st.describe())
		}
		return bootState{}, fmt.Errorf("no %s is up; up: %s: pick one with --board", want, strings.Join(list, ", "))
	}
	start := "socbox boot"
	if slug != "" {
		start += " --board " + slug
	}
	return bootState{}, fmt.Errorf("no %s is up: start one with `%s` in another terminal (it stays up until Ctrl-C), then run socbox ssh again", want, start)
}

// sshArgs is the ssh command line that logs in to st: socbox's key only,
// the board's pinned host keys only.
func sshArgs(st bootState, command []string) []string {
	args := []string{"ssh", "-i", st.Key, "-p", strconv.Itoa(st.Port),
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + st.KnownHosts,
		"-o", "StrictHostKeyChecking=yes",
		// "--" ends ssh's options: the command's own flags stay the command's.
		"--", st.User + "@" + st.Host}
	return append(args, command...)
}

// execSSH replaces socbox with ssh, so that the terminal, signals and exit
// status are ssh's own. Tests replace it.
var execSSH = func(path string, argv []string) error {
	return syscall.Exec(path, argv, os.Environ())
}

// lookSSH finds the system's ssh client. Tests replace it.
var lookSSH = func() (string, error) { return exec.LookPath("ssh") }

func cmdSSH(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "ssh", args: "[-- COMMAND...]",
		synopsis: "Log in to a board that `socbox boot` keeps up, or run a command on it, with socbox's key and the\n" +
			"board's pinned host keys (ssh's StrictHostKeyChecking=yes). With one board up it needs no flags;\n" +
			"with several, --board (and --pid) pick one. Uses the system's ssh client, or a built-in one when\n" +
			"there is none. The exit status is the command's.",
		examples: `  socbox boot --board raspi4b-fast &      # or in another terminal
  socbox ssh                          # a shell on the only board up
  socbox ssh --board raspi4b-fast -- uname -a
  socbox ssh -- journalctl -u containerd --no-pager
  socbox ssh --board raspi4b-fast --pid 4242
`}, stderr)
	slug := fs.String("board", "", "the `BOARD` to log in to, when several are up (see socbox boards)")
	pid := fs.Int("pid", 0, "the `PID` of the socbox boot whose board to log in to, when several of one board are up")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := findBoard(*slug, *pid, stderr)
	if err != nil {
		return err
	}
	command := fs.Args()
	if path, err := lookSSH(); err == nil {
		return execSSH(path, sshArgs(st, command))
	}
	fmt.Fprintln(stderr, "socbox ssh: no ssh client on this host (apt-get install openssh-client): using socbox's own")
	return builtinSSH(ctx, st, command, os.Stdin, stdout, stderr)
}

// builtinSSH logs in through x/crypto/ssh for hosts without an ssh client:
// a shell (with a terminal when stdin is one) or the command, with the
// same key and the same strict host key check as ssh.
func builtinSSH(ctx context.Context, st bootState, command []string, stdin io.Reader, stdout, stderr io.Writer) error {
	data, err := os.ReadFile(st.Key)
	if err != nil {
		return fmt.Errorf("ssh %s: %w", st.Board, err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return fmt.Errorf("ssh %s: key %s: %w", st.Board, st.Key, err)
	}
	kh := &sshx.KnownHosts{Path: st.KnownHosts}
	addr := net.JoinHostPort(st.Host, strconv.Itoa(st.Port))
	conn, err := (&net.Dialer{Timeout: sshx.DefaultTimeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ssh %s: %w (is the board still up?)", st.describe(), err)
	}
	_ = conn.SetDeadline(time.Now().Add(sshx.DefaultTimeout)) // for the handshake only
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: st.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: kh.Callback(), HostKeyAlgorithms: kh.Algorithms(addr),
	})
	if err != nil {
		conn.Close()
		return fmt.Errorf("ssh %s: %w", st.describe(), err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := ssh.NewClient(cc, chans, reqs)
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: %w", st.describe(), err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if f, ok := stdin.(*os.File); ok && len(command) == 0 {
		if restore, err := rawTerminal(sess, int(f.Fd())); err == nil {
			defer restore()
		}
	}
	if len(command) == 0 {
		err = sess.Shell()
		if err == nil {
			err = sess.Wait()
		}
	} else {
		err = sess.Run(strings.Join(command, " "))
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		return exitCode(exit.ExitStatus())
	}
	if err != nil {
		return fmt.Errorf("ssh %s: %w", st.Board, err)
	}
	return nil
}

// rawTerminal asks for a terminal on the board the size of ours, puts ours
// in raw mode (keys go to the board as typed) and follows its resizes.
func rawTerminal(sess *ssh.Session, fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err // not a terminal
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return nil, err
	}
	term := os.Getenv("TERM")
	if term == "" {
		term = "vt100"
	}
	if err := sess.RequestPty(term, int(ws.Row), int(ws.Col), ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
				_ = sess.WindowChange(int(ws.Row), int(ws.Col))
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(winch)
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}, nil
}
