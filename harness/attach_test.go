package harness

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
	"github.com/socbox/socbox/images"
)

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]sshx.Endpoint{
		"ssh://pi@raspberrypi.local":       {Host: "raspberrypi.local", Port: 22, User: "pi"},
		"ssh://root@192.168.1.50:2222":     {Host: "192.168.1.50", Port: 2222, User: "root"},
		"ssh://root@[fe80::1]:22/":         {Host: "fe80::1", Port: 22, User: "root"},
		"ssh://debian@beaglebone.lan:8022": {Host: "beaglebone.lan", Port: 8022, User: "debian"},
	} {
		got, err := ParseTarget(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

func TestParseTargetErrorsNameTheInputAndTheFix(t *testing.T) {
	for in, want := range map[string]string{
		"pi@raspberrypi.local":          "not an ssh:// URL: write ssh://USER@HOST[:PORT], e.g. ssh://pi@raspberrypi.local",
		"http://pi@raspberrypi.local":   `scheme "http": socbox reaches real boards over SSH only`,
		"ssh://raspberrypi.local":       "no user: write ssh://USER@raspberrypi.local",
		"ssh://pi:raspberry@rpi.local":  "a password in the URL is never used: socbox logs in with keys only",
		"ssh://pi@":                     "no host",
		"ssh://pi@rpi.local:0":          `port "0": must be 1 to 65535`,
		"ssh://pi@rpi.local:70000":      `port "70000": must be 1 to 65535`,
		"ssh://pi@rpi.local:ssh":        "invalid port",
		"ssh://pi@rpi.local/home/pi":    `unexpected path or query "/home/pi"`,
		"ssh://pi@rpi.local?identity=x": "unexpected path or query",
	} {
		_, err := ParseTarget(in)
		require.ErrorContains(t, err, fmt.Sprintf("target %q: ", in), in)
		require.ErrorContains(t, err, want, in)
	}
}

func TestParseFacts(t *testing.T) {
	f, err := guest.ParseFacts("kernel=6.12.25+rpt-rpi-v8\nmachine=aarch64\nhostname=raspberrypi\nuid=0\n" +
		"os=Debian GNU/Linux 12 (bookworm)\nsuite=bookworm\narch=arm64\nmodel=Raspberry Pi 4 Model B Rev 1.4\n")
	require.NoError(t, err)
	require.Equal(t, guest.Facts{Kernel: "6.12.25+rpt-rpi-v8", Machine: "aarch64", Hostname: "raspberrypi",
		OS: "Debian GNU/Linux 12 (bookworm)", Suite: "bookworm", Arch: "arm64", Model: "Raspberry Pi 4 Model B Rev 1.4"}, f)

	_, err = guest.ParseFacts("sh: 1: uname: not found\n")
	require.ErrorContains(t, err, "unexpected answer")
}

func TestDetectProfile(t *testing.T) {
	rpi4 := guest.Facts{Machine: "aarch64", Arch: "arm64", Model: "Raspberry Pi 4 Model B Rev 1.4"}
	rpi3 := guest.Facts{Machine: "aarch64", Arch: "arm64", Model: "Raspberry Pi 3 Model B Rev 1.2"}
	bbb := guest.Facts{Machine: "armv7l", Arch: "armhf", Model: "TI AM335x BeagleBone Black"}
	virt := guest.Facts{Machine: "aarch64", Arch: "arm64", Model: "linux,dummy-virt"}
	for _, c := range []struct {
		name   string
		named  string
		facts  guest.Facts
		slug   string
		how    string
		errHas []string
	}{
		{name: "pi 4 by model", facts: rpi4, slug: "raspi4b", how: `detected from the device tree model "Raspberry Pi 4 Model B Rev 1.4"`},
		{name: "pi 3 by model: the faithful profile", facts: rpi3, slug: "raspi3b", how: "detected from the device tree model"},
		{name: "beaglebone by model", facts: bbb, slug: "beaglebone-black", how: "detected from the device tree model"},
		{name: "named", named: "raspi3b-fast", facts: rpi4, slug: "raspi3b-fast", how: "named with --board"},
		{name: "no dpkg: from uname -m", facts: guest.Facts{Machine: "armv7l", Model: "TI AM335x BeagleBone Black"}, slug: "beaglebone-black"},
		{name: "ambiguous", facts: virt, errHas: []string{"cannot tell which board profile", "raspi3b, raspi3b-fast, raspi4b, raspi4b-fast", "--board", `model "linux,dummy-virt"`}},
		{name: "named with the wrong architecture", named: "raspi4b-fast", facts: bbb,
			errHas: []string{"board raspi4b-fast is linux/arm64 (arm64), but the target runs armhf userland, uname -m armv7l", "beaglebone-black, beaglebone-black-fast"}},
		{name: "32-bit userland on a 64-bit kernel", facts: guest.Facts{Machine: "aarch64", Arch: "armhf", Model: "Raspberry Pi 4 Model B Rev 1.4"},
			errHas: []string{"cannot tell which board profile", "armhf userland, uname -m aarch64"}},
		{name: "unknown named", named: "raspi5", facts: rpi4, errHas: []string{`unknown board "raspi5"`}},
		{name: "no profile for the arch", facts: guest.Facts{Machine: "x86_64", Arch: "amd64"}, errHas: []string{"no board profile runs what the target runs (amd64 userland, uname -m x86_64)", "linux/arm64 (arm64)"}},
		{name: "armv6", facts: guest.Facts{Machine: "armv6l", Arch: "armhf", Model: "Raspberry Pi Zero W Rev 1.1"}, errHas: []string{"ARMv6 CPU"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, how, err := detectProfile(c.named, c.facts)
			if len(c.errHas) > 0 {
				for _, s := range c.errHas {
					require.ErrorContains(t, err, s)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.slug, p.Slug)
			require.Contains(t, how, c.how)
		})
	}
}

// attachEnv is a test SSH server and a user whose home, cache and agent
// are the test's own.
type attachEnv struct {
	srv        *sshtest.Server
	key        string // authorized private key file
	knownHosts string
	target     string
	home       string
}

func newAttachEnv(t *testing.T) attachEnv {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	keyPath := filepath.Join(t.TempDir(), "id_ed25519")
	signer, err := sshx.LoadOrCreateKey(keyPath)
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(signer.PublicKey()))
	return attachEnv{srv: srv, key: keyPath, knownHosts: filepath.Join(home, ".ssh", "known_hosts"),
		target: fmt.Sprintf("ssh://%s@127.0.0.1:%d", sshtest.User, srv.Endpoint().Port), home: home}
}

func (e attachEnv) pin(t *testing.T, key ssh.PublicKey) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(e.knownHosts), 0o700))
	require.NoError(t, os.WriteFile(e.knownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(e.srv.Endpoint().Addr())}, key)+"\n"), 0o600))
}

func attachCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requireLoggedIn checks that Attach got past login. The test server runs
// the host's own commands, so the board is this host: on an x86 host no
// profile fits, and that is the error Attach must stop at.
func requireLoggedIn(t *testing.T, b *Board, err error) {
	t.Helper()
	require.NotErrorIs(t, err, sshx.ErrUnknownHostKey)
	require.NotErrorIs(t, err, sshx.ErrHostKeyMismatch)
	tgt, ok := b.Target()
	require.True(t, ok)
	require.NotEmpty(t, tgt.Kernel, "the board's facts were read")
	t.Log(err)
	if runtime.GOARCH == "amd64" {
		require.ErrorContains(t, err, "no board profile runs what the target runs")
	}
}

func TestAttachRefusesUnknownHostWithFingerprintAndFix(t *testing.T) {
	e := newAttachEnv(t)
	b, err := Attach(attachCtx(t), e.target, WithIdentity(e.key), WithoutContainerd(), WithLogf(t.Logf))
	t.Log(err)
	require.ErrorIs(t, err, sshx.ErrUnknownHostKey)
	var se *StageError
	require.ErrorAs(t, err, &se)
	require.Equal(t, StageSSH, se.Stage)
	require.Equal(t, e.target, se.Board)
	msg := err.Error()
	require.Contains(t, msg, ssh.FingerprintSHA256(e.srv.HostKey()))
	require.Contains(t, msg, fmt.Sprintf("ssh-keyscan -p %d -t ed25519 127.0.0.1 >> %s", e.srv.Endpoint().Port, e.knownHosts))
	require.Contains(t, msg, "--accept-new-host-key")
	require.Equal(t, StageFailed, b.Stage())
	require.NoFileExists(t, e.knownHosts)
}

func TestAttachAcceptNewHostKeyPinsIt(t *testing.T) {
	e := newAttachEnv(t)
	b, err := Attach(attachCtx(t), e.target, WithIdentity(e.key), WithAcceptNewHostKey(), WithoutContainerd(), WithLogf(t.Logf))
	requireLoggedIn(t, b, err)
	data, rerr := os.ReadFile(e.knownHosts)
	require.NoError(t, rerr)
	require.Equal(t, knownhosts.Line([]string{knownhosts.Normalize(e.srv.Endpoint().Addr())}, e.srv.HostKey())+"\n", string(data))

	// Pinned: the next attach needs no flag.
	b, err = Attach(attachCtx(t), e.target, WithIdentity(e.key), WithoutContainerd(), WithLogf(t.Logf))
	requireLoggedIn(t, b, err)
}

func TestAttachRefusesChangedHostKey(t *testing.T) {
	e := newAttachEnv(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	old, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	e.pin(t, old.PublicKey())
	_, err = Attach(attachCtx(t), e.target, WithIdentity(e.key), WithAcceptNewHostKey(), WithoutContainerd(), WithLogf(t.Logf))
	require.ErrorIs(t, err, sshx.ErrHostKeyMismatch)
	require.ErrorContains(t, err, ssh.FingerprintSHA256(old.PublicKey()))
	require.ErrorContains(t, err, "ssh-keygen -R")
}

func TestAttachWithWrongBoardSaysWhatTheTargetRuns(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test board is this host, which must not be arm64")
	}
	e := newAttachEnv(t)
	e.pin(t, e.srv.HostKey())
	_, err := Attach(attachCtx(t), e.target, WithIdentity(e.key), WithBoard("raspi4b-fast"), WithoutContainerd(), WithLogf(t.Logf))
	require.ErrorContains(t, err, "board raspi4b-fast is linux/arm64 (arm64), but the target runs amd64 userland, uname -m x86_64")
}

func TestAttachKeyErrors(t *testing.T) {
	e := newAttachEnv(t)
	e.pin(t, e.srv.HostKey())
	ctx := attachCtx(t)

	t.Run("no key anywhere", func(t *testing.T) {
		_, err := Attach(ctx, e.target, WithoutContainerd(), WithLogf(t.Logf))
		require.ErrorContains(t, err, "no SSH key")
		require.ErrorContains(t, err, "--identity")
		require.ErrorContains(t, err, "ssh-keygen -t ed25519")
	})
	t.Run("key not authorized", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other")
		_, err := sshx.LoadOrCreateKey(other)
		require.NoError(t, err)
		_, err = Attach(ctx, e.target, WithIdentity(other), WithoutContainerd(), WithLogf(t.Logf))
		require.ErrorContains(t, err, "the board did not accept "+other)
		require.ErrorContains(t, err, fmt.Sprintf("ssh-copy-id -i %s -p %d", other, e.srv.Endpoint().Port))
	})
	t.Run("public key given", func(t *testing.T) {
		_, err := Attach(ctx, e.target, WithIdentity(e.key+".pub"), WithoutContainerd(), WithLogf(t.Logf))
		require.ErrorContains(t, err, "is a public key: pass the private key")
	})
	t.Run("passphrase", func(t *testing.T) {
		locked := lockedKey(t, "")
		_, err := Attach(ctx, e.target, WithIdentity(locked), WithoutContainerd(), WithLogf(t.Logf))
		require.ErrorContains(t, err, "needs a passphrase")
		require.ErrorContains(t, err, "ssh-add "+locked)
	})
	t.Run("default key file", func(t *testing.T) {
		data, err := os.ReadFile(e.key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(e.home, ".ssh", "id_ed25519"), data, 0o600))
		t.Cleanup(func() { os.Remove(filepath.Join(e.home, ".ssh", "id_ed25519")) })
		b, err := Attach(ctx, e.target, WithoutContainerd(), WithLogf(t.Logf))
		requireLoggedIn(t, b, err)
		require.Equal(t, filepath.Join(e.home, ".ssh", "id_ed25519"), identity(t, b))
	})
}

// lockedKey writes a passphrase-protected copy of a new key and returns
// its path; when agentSock is not empty the agent there gets the key.
func lockedKey(t *testing.T, agentSock string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "id_locked")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(block), 0o600))
	if agentSock != "" {
		conn, err := net.Dial("unix", agentSock)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: priv}))
	}
	return p
}

// startAgent serves an in-memory ssh-agent on a unix socket and points
// SSH_AUTH_SOCK at it.
func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	keyring := agent.NewKeyring()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = agent.ServeAgent(keyring, c) }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	return sock
}

func TestAttachUsesTheSSHAgent(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	sock := startAgent(t)
	// The key is only in the agent, and (locked) in a file the agent
	// unlocks: both ways must log in.
	locked := lockedKey(t, sock)
	data, err := os.ReadFile(locked)
	require.NoError(t, err)
	_, err = ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	require.True(t, errors.As(err, &pm))
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(pm.PublicKey))
	target := fmt.Sprintf("ssh://%s@127.0.0.1:%d", sshtest.User, srv.Endpoint().Port)
	kh := filepath.Join(home, "kh")
	require.NoError(t, os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Endpoint().Addr())}, srv.HostKey())+"\n"), 0o600))

	b, err := Attach(attachCtx(t), target, WithKnownHosts(kh), WithoutContainerd(), WithLogf(t.Logf))
	requireLoggedIn(t, b, err)
	require.Equal(t, "ssh-agent", identity(t, b))

	b, err = Attach(attachCtx(t), target, WithIdentity(locked), WithKnownHosts(kh), WithoutContainerd(), WithLogf(t.Logf))
	requireLoggedIn(t, b, err)
	require.Equal(t, locked, identity(t, b))
}

func TestAttachRejectsOptionsThatDoNotApply(t *testing.T) {
	_, err := Attach(t.Context(), "ssh://root@rpi.local", WithImage(&images.Image{Name: "x"}))
	require.ErrorContains(t, err, "WithImage does not apply to a real board")
	_, err = Attach(t.Context(), "root@rpi.local")
	require.ErrorContains(t, err, "not an ssh:// URL")
	_, err = Attach(t.Context(), "ssh://root@rpi.local", WithIdentity(""))
	require.ErrorContains(t, err, "WithIdentity: empty key path")
}

func TestTargetNeedsRootForContainerd(t *testing.T) {
	e := newAttachEnv(t)
	signer, err := sshx.LoadOrCreateKey(e.key)
	require.NoError(t, err)
	c, err := sshx.Dial(attachCtx(t), sshx.Config{Endpoint: e.srv.Endpoint(), Signer: signer, HostKeys: sshx.NewHostKeys(e.srv.HostKey())})
	require.NoError(t, err)
	defer c.Close()
	ep := e.srv.Endpoint()
	tgt := &Target{machine.Real{URL: targetURL(ep), SSH: ep, Facts: guest.Facts{UID: 1000}}}
	a := &attachment{b: &Board{SSH: c, Machine: tgt}, t: tgt}
	err = a.needRoot(attachCtx(t))
	require.ErrorContains(t, err, "logs in as uid 1000, but installing containerd and reaching its socket")
	require.ErrorContains(t, err, "/root/.ssh/authorized_keys")
	require.ErrorContains(t, err, fmt.Sprintf("then attach to ssh://root@127.0.0.1:%d", ep.Port))
}

func TestTargetReportAndSSHCommand(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	prof, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	ep := sshx.Endpoint{Host: "raspberrypi.local", Port: 22, User: "root"}
	tgt := &Target{machine.Real{URL: targetURL(ep), SSH: ep, KnownHosts: filepath.Join(home, ".ssh", "known_hosts"), Identity: "/keys/pi key",
		Facts: guest.Facts{Hostname: "raspberrypi", OS: "Debian GNU/Linux 13 (trixie)", Suite: "trixie", Kernel: "6.12.47+rpt-rpi-v8",
			Machine: "aarch64", Model: "Raspberry Pi 4 Model B Rev 1.4"}, ProfileFrom: "named with --board"}}
	b := &Board{Profile: prof, KeyPath: "/keys/pi key", opts: defaultOptions(), Machine: tgt, life: newLifecycle(tgt.URL, defaultOptions(), t.Logf)}
	b.cleanup.Push(closeGuest(b))
	require.Equal(t, "ssh -i '/keys/pi key' root@raspberrypi.local", b.SSHCommand())
	tgt.KnownHosts = "/tmp/kh"
	tgt.SSH.Port = 2222
	b.KeyPath = ""
	require.Equal(t, "ssh -p 2222 -o UserKnownHostsFile=/tmp/kh root@raspberrypi.local", b.SSHCommand())

	r := b.Report()
	require.Equal(t, "raspi4b-fast", r.Board)
	require.Equal(t, "real", r.Tier)
	require.Equal(t, "trixie", r.Suite)
	require.Equal(t, "6.12.47+rpt-rpi-v8", r.KernelVersion)
	require.Empty(t, r.QEMUCommand)
	require.Equal(t, &report.Target{Address: "root@raspberrypi.local:2222", Hostname: "raspberrypi", OS: "Debian GNU/Linux 13 (trixie)",
		Kernel: "6.12.47+rpt-rpi-v8", Machine: "aarch64", Model: "Raspberry Pi 4 Model B Rev 1.4", Identity: "/keys/pi key",
		ProfileFrom: "named with --board"}, r.Target)
	require.NoError(t, b.Close(), "a board without a machine closes cleanly")
}

func TestParseTargetRefusesNamesThatAreNotNames(t *testing.T) {
	for _, in := range []string{
		"ssh://-oProxyCommand=touch%20x@rpi.local", // an option to ssh, not a user
		"ssh://pi@-oProxyCommand=x",
		"ssh://pi%0A@rpi.local",
		"ssh://pi;reboot@rpi.local",
		"ssh://pi@rpi.local%0A",
		"ssh://pi@rpi$(id).local",
	} {
		_, err := ParseTarget(in)
		require.Error(t, err, in)
		require.ErrorContains(t, err, "target ", in)
	}
}

// FuzzParseTarget: a target that parses is a plain user and host that a
// shell or ssh's command line cannot take for anything else, and its
// canonical URL parses back to the same endpoint.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"ssh://pi@raspberrypi.local", "ssh://root@192.168.1.50:2222", "ssh://root@[fe80::1]:22/",
		"ssh://root@[fe80::1%25eth0]:22", "ssh://pi:pw@h", "pi@h", "ssh://pi@h/x?y#z", "ssh://%2d@h", "ssh://pi@h:65536",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ep, err := ParseTarget(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "target ") {
				t.Fatalf("error %q does not name the target", err)
			}
			return
		}
		for _, s := range []string{ep.User, ep.Host} {
			if s == "" || strings.HasPrefix(s, "-") || strings.ContainsFunc(s, func(r rune) bool {
				return r <= ' ' || r >= 0x7f || strings.ContainsRune("'\"`$;&|<>()\\*?!{}[]~#", r)
			}) {
				t.Fatalf("%q parsed to %+v", in, ep)
			}
		}
		back, err := ParseTarget(targetURL(ep))
		if err != nil || back != ep {
			t.Fatalf("%q: %s parses back to %+v, %v", in, targetURL(ep), back, err)
		}
	})
}

// identity is the key a target session logged in with.
func identity(t *testing.T, b *Board) string {
	tgt, ok := b.Target()
	require.True(t, ok, "%T", b.Machine)
	return tgt.Identity
}
