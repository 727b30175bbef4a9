package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

// recordBoard writes a board record as socbox boot would, for pid.
func recordBoard(t *testing.T, slug string, pid, port int) bootState {
	t.Helper()
	dir, err := bootStateDir()
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	st := bootState{Board: slug, PID: pid, Host: "127.0.0.1", Port: port, User: "root", Key: "/cache/ssh/id_ed25519",
		KnownHosts: "/tmp/run/known_hosts", RunDir: "/tmp/run"}
	data, err := json.Marshal(st)
	require.NoError(t, err)
	st.path = filepath.Join(dir, fmt.Sprintf("%s-%d.json", slug, pid))
	require.NoError(t, os.WriteFile(st.path, data, 0o600))
	return st
}

// deadPID is the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return cmd.Process.Pid
}

func TestFindBoard(t *testing.T) {
	me := os.Getpid()
	parent := os.Getppid()

	t.Run("none up", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		_, err := findBoard("", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, "no board is up: start one with `socbox boot` in another terminal")
		_, err = findBoard("raspi3b", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, "no raspi3b is up: start one with `socbox boot --board raspi3b`")
	})
	t.Run("the only one", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		want := recordBoard(t, "raspi4b-fast", me, 40001)
		st, err := findBoard("", 0, new(bytes.Buffer))
		require.NoError(t, err)
		require.Equal(t, want, st)
	})
	t.Run("several", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		recordBoard(t, "raspi4b-fast", me, 40001)
		recordBoard(t, "raspi3b", parent, 40002)
		_, err := findBoard("", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, "2 boards are up: ")
		require.ErrorContains(t, err, fmt.Sprintf("raspi4b-fast (pid %d, root@127.0.0.1:40001)", me))
		require.ErrorContains(t, err, "pick one with --board SLUG")
		st, err := findBoard("raspi3b", 0, new(bytes.Buffer))
		require.NoError(t, err)
		require.Equal(t, 40002, st.Port)
		_, err = findBoard("beaglebone-black", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, "no beaglebone-black is up; up: ")
	})
	t.Run("several of one board", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		recordBoard(t, "raspi4b-fast", me, 40001)
		recordBoard(t, "raspi4b-fast", parent, 40002)
		_, err := findBoard("raspi4b-fast", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, "pick one with --pid PID")
		st, err := findBoard("raspi4b-fast", parent, new(bytes.Buffer))
		require.NoError(t, err)
		require.Equal(t, 40002, st.Port)
	})
	t.Run("stale", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		gone := recordBoard(t, "raspi4b-fast", deadPID(t), 40001)
		_, err := findBoard("", 0, new(bytes.Buffer))
		require.ErrorContains(t, err, fmt.Sprintf("no board is up: the socbox boot of raspi4b-fast (pid %d, root@127.0.0.1:40001) is gone without cleaning up", gone.PID))
		require.ErrorContains(t, err, "start one again with socbox boot")
		require.NoFileExists(t, gone.path)
	})
	t.Run("stale beside a live one", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		gone := recordBoard(t, "raspi3b", deadPID(t), 40001)
		recordBoard(t, "raspi4b-fast", me, 40002)
		st, err := findBoard("", 0, new(bytes.Buffer))
		require.NoError(t, err)
		require.Equal(t, "raspi4b-fast", st.Board)
		require.NoFileExists(t, gone.path)
	})
	t.Run("not a record", func(t *testing.T) {
		t.Setenv("SOCBOX_CACHE", t.TempDir())
		recordBoard(t, "raspi4b-fast", me, 40001)
		dir, _ := bootStateDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "junk.json"), []byte("{"), 0o600))
		var stderr bytes.Buffer
		_, err := findBoard("", 0, &stderr)
		require.NoError(t, err)
		require.Contains(t, stderr.String(), "junk.json: not a board record (delete it)")
	})
}

func TestBootStateIsWrittenAndForgotten(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	prof, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	run := t.TempDir()
	forget, err := writeBootState(prof.Slug, sshx.Endpoint{Host: "127.0.0.1", Port: 40123, User: "root"}, "/cache/ssh/id_ed25519", run)
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(run, "board.json"))

	st, err := findBoard("raspi4b-fast", 0, new(bytes.Buffer))
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), st.PID)
	require.Equal(t, 40123, st.Port)
	require.Equal(t, filepath.Join(run, "known_hosts"), st.KnownHosts)
	require.Equal(t, "/cache/ssh/id_ed25519", st.Key)

	forget()
	require.NoFileExists(t, filepath.Join(run, "board.json"))
	_, err = findBoard("", 0, new(bytes.Buffer))
	require.ErrorContains(t, err, "no board is up")
}

func TestSSHExecsTheSystemClientStrictly(t *testing.T) {
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	st := recordBoard(t, "raspi4b-fast", os.Getpid(), 40001)
	var gotPath string
	var gotArgv []string
	oldLook, oldExec := lookSSH, execSSH
	t.Cleanup(func() { lookSSH, execSSH = oldLook, oldExec })
	lookSSH = func() (string, error) { return "/usr/bin/ssh", nil }
	execSSH = func(path string, argv []string) error { gotPath, gotArgv = path, argv; return nil }

	_, _, err := socbox(t, cancelled(), "ssh", "--", "ls", "-l", "/")
	require.NoError(t, err)
	require.Equal(t, "/usr/bin/ssh", gotPath)
	require.Equal(t, []string{"ssh", "-i", st.Key, "-p", "40001", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + st.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"--", "root@127.0.0.1", "ls", "-l", "/"}, gotArgv)

	_, _, err = socbox(t, cancelled(), "ssh", "--board", "raspi3b")
	require.ErrorContains(t, err, "no raspi3b is up")
}

func TestSSHHelpHasExamples(t *testing.T) {
	_, errOut, err := socbox(t, cancelled(), "ssh", "--help")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, errOut, "Usage: socbox ssh [flags] [-- COMMAND...]")
	require.Contains(t, errOut, "Examples:\n  socbox boot")
	require.Contains(t, errOut, "--board raspi4b-fast -- uname -a")
}

// builtinBoard is a board record for a test SSH server that lets in
// socbox's key, with the server's key pinned as boot pins it.
func builtinBoard(t *testing.T) (bootState, *sshtest.Server) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	signer, err := sshx.LoadOrCreateKey(key)
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(signer.PublicKey()))
	ep := srv.Endpoint()
	st := bootState{Board: "raspi4b-fast", PID: os.Getpid(), Host: ep.Host, Port: ep.Port, User: ep.User, Key: key,
		KnownHosts: filepath.Join(dir, "known_hosts"), RunDir: dir}
	require.NoError(t, os.WriteFile(st.KnownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(ep.Addr())}, srv.HostKey())+"\n"), 0o644))
	return st, srv
}

func TestBuiltinSSHRunsACommand(t *testing.T) {
	st, _ := builtinBoard(t)
	var stdout, stderr bytes.Buffer
	err := builtinSSH(t.Context(), st, []string{"echo", "hello;", "echo", "oops", ">&2;", "exit", "3"}, bytes.NewReader(nil), &stdout, &stderr)
	require.Equal(t, exitCode(3), err)
	require.Equal(t, "hello\n", stdout.String())
	require.Equal(t, "oops\n", stderr.String())

	err = builtinSSH(t.Context(), st, []string{"true"}, bytes.NewReader(nil), &stdout, &stderr)
	require.NoError(t, err)
}

func TestBuiltinSSHChecksTheHostKey(t *testing.T) {
	st, _ := builtinBoard(t)
	other, _ := builtinBoard(t)
	st.KnownHosts = other.KnownHosts // pins another server's key
	err := builtinSSH(t.Context(), st, []string{"true"}, bytes.NewReader(nil), new(bytes.Buffer), new(bytes.Buffer))
	require.ErrorIs(t, err, sshx.ErrUnknownHostKey)
}

func TestRunTargetFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "pi@raspberrypi.local"}, `--target: target "pi@raspberrypi.local": not an ssh:// URL`},
		{[]string{"--target", "ssh://raspberrypi.local"}, "no user: write ssh://USER@raspberrypi.local"},
		{[]string{"--target", "ssh://root@rpi.local", "--image", "x.img"}, "--image does not apply to --target"},
		{[]string{"--target", "ssh://root@rpi.local", "--suite", "bookworm"}, "--suite does not apply to --target"},
		{[]string{"--target", "ssh://root@rpi.local", "--board", "all"}, `--board "all": with --target it names the one profile`},
		{[]string{"--target", "ssh://root@rpi.local", "--board", "raspi5"}, `unknown board "raspi5"`},
		{[]string{"--target", "ssh://root@rpi.local", "--containerd", "docker"}, `--containerd "docker": use auto, bundle or apt`},
		{[]string{"-i", "key"}, "--i goes with --target"},
		{[]string{"--accept-new-host-key"}, "--accept-new-host-key goes with --target"},
	} {
		_, errOut, err := socbox(t, cancelled(), append([]string{"run"}, c.args...)...)
		require.Equal(t, exitCode(2), err, "%v", c.args)
		require.Contains(t, errOut, c.want, "%v", c.args)
	}
}

func TestRunTargetWritesTheReportOfAFailedAttach(t *testing.T) {
	// The test server runs this host's commands: the target gets as far as
	// login, and then no profile fits an x86 host (or the named one does
	// not), which fails the run after login with the target in the report.
	st, srv := builtinBoard(t)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	out := t.TempDir()
	target := fmt.Sprintf("ssh://%s@127.0.0.1:%d", sshtest.User, srv.Endpoint().Port)
	stdout, _, err := socbox(t, t.Context(), "run", "--target", target, "--board", "raspi4b-fast", "-i", st.Key,
		"--known-hosts", st.KnownHosts, "--out", out)
	t.Log(stdout)
	require.Equal(t, exitCode(1), err, stdout)
	require.Contains(t, stdout, "FAILED at ssh: ")
	require.Contains(t, stdout, "ERROR arch")

	run, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Len(t, run.Boards, 1)
	b := run.Boards[0]
	require.Equal(t, target, b.Board, "no profile was picked: the board is named by its address")
	require.Equal(t, "real", b.Tier)
	require.Equal(t, "ssh", b.FailedStage)
	require.NotNil(t, b.Target)
	require.Equal(t, srv.Endpoint().String(), b.Target.Address)
	require.NotEmpty(t, b.Target.Kernel)
	require.Equal(t, st.Key, b.Target.Identity)
	require.FileExists(t, filepath.Join(out, "junit.xml"))
	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "on "+srv.Endpoint().String())
}
