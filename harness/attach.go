package harness

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// Target is a real board that Attach logged in to over SSH, as it described
// itself after login. Its Board has no QEMU machine: its stages are
// ssh → containerd → ready.
type Target struct {
	// URL is the target as ssh://user@host:port.
	URL      string
	Endpoint sshx.Endpoint
	// Identity is the key file socbox logged in with, or "ssh-agent".
	Identity string
	// KnownHosts is the known_hosts file the host key was checked against.
	KnownHosts string

	Hostname string // what the board calls itself
	OS       string // PRETTY_NAME from /etc/os-release
	Suite    string // VERSION_CODENAME from /etc/os-release
	Kernel   string // uname -r
	Machine  string // uname -m
	Arch     string // dpkg --print-architecture: what its userland is built for
	Model    string // the device tree's model, e.g. "Raspberry Pi 4 Model B Rev 1.4"
	UID      int    // of the login user
	// ProfileFrom says how the board profile the results are compared
	// against was chosen: named, or detected from what.
	ProfileFrom string

	// selfExplained is set when the login failed with an error that says
	// what to do itself (keys, host key, profile): no generic hint then.
	selfExplained bool
}

// attachOptions are the options only Attach reads.
type attachOptions struct {
	identity   string
	knownHosts string
	acceptNew  bool
}

// WithIdentity logs in to a target with the private key in path instead of
// the ssh-agent's keys or ~/.ssh/id_ed25519, id_ecdsa or id_rsa. A key
// protected by a passphrase must be in the ssh-agent (ssh-add it): socbox
// never asks.
func WithIdentity(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("WithIdentity: empty key path")
		}
		o.attach.identity = path
		return nil
	}
}

// WithKnownHosts checks a target's host key against path instead of
// ~/.ssh/known_hosts.
func WithKnownHosts(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("WithKnownHosts: empty path")
		}
		o.attach.knownHosts = path
		return nil
	}
}

// WithAcceptNewHostKey trusts a target that known_hosts does not list yet
// on first use, and writes its key there; later connections then check
// against it. A changed key is refused all the same.
func WithAcceptNewHostKey() Option {
	return func(o *options) error { o.attach.acceptNew = true; return nil }
}

// ParseTarget reads ssh://user@host[:port] (port 22 when left out). The user
// is required: the report says who ran the scenarios. A password in the URL
// is refused, since socbox logs in with keys only.
func ParseTarget(target string) (sshx.Endpoint, error) {
	bad := func(format string, args ...any) (sshx.Endpoint, error) {
		return sshx.Endpoint{}, fmt.Errorf("target %q: %s", target, fmt.Sprintf(format, args...))
	}
	if !strings.Contains(target, "://") {
		return bad("not an ssh:// URL: write ssh://USER@HOST[:PORT], e.g. ssh://%s", strings.TrimPrefix(target, "//"))
	}
	u, err := url.Parse(target)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("%v: write ssh://USER@HOST[:PORT]", err)
	}
	if u.Scheme != "ssh" {
		return bad("scheme %q: socbox reaches real boards over SSH only: write ssh://USER@HOST[:PORT]", u.Scheme)
	}
	if _, ok := u.User.Password(); ok {
		return bad("a password in the URL is never used: socbox logs in with keys only (--identity, ssh-agent or ~/.ssh/id_*); drop it")
	}
	if u.User.Username() == "" {
		return bad("no user: write ssh://USER@%s, e.g. ssh://pi@%s", u.Host, u.Host)
	}
	if !targetUser.MatchString(u.User.Username()) {
		return bad("user %q: use letters, digits and . _ - only, not starting with -", u.User.Username())
	}
	host := u.Hostname()
	if host == "" {
		return bad("no host: write ssh://%s@HOST[:PORT]", u.User.Username())
	}
	if _, err := netip.ParseAddr(host); !targetHost.MatchString(host) || strings.Contains(host, ":") && err != nil {
		return bad("host %q: write a host name or an IP address (IPv6 in brackets: ssh://USER@[fe80::1])", host)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		rest := u.EscapedPath()
		if u.RawQuery != "" {
			rest += "?" + u.RawQuery
		}
		if u.Fragment != "" {
			rest += "#" + u.EscapedFragment()
		}
		return bad("unexpected path or query %q: write ssh://USER@HOST[:PORT]", rest)
	}
	port := 22
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return bad("port %q: must be 1 to 65535", p)
		}
	}
	return sshx.Endpoint{Host: host, Port: port, User: u.User.Username()}, nil
}

// targetUser and targetHost are what a target's user and host may be. They
// end up on ssh command lines that socbox prints for people to paste, so
// nothing a shell or ssh would read as more than a name (an option's -, a
// space, a ; or a $) gets through.
var (
	targetUser = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)
	targetHost = regexp.MustCompile(`^[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*$`) // names, IPv4, IPv6 with a zone
)

// targetURL is the canonical form of an endpoint as a target.
func targetURL(ep sshx.Endpoint) string {
	u := url.URL{Scheme: "ssh", User: url.User(ep.User), Host: net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))}
	return u.String()
}

// Attach logs in to a real board over SSH and brings it to containerd-ready
// (or stops at SSH, WithoutContainerd), for running the same scenarios as on
// an emulated board:
//
//	b, err := harness.Attach(ctx, "ssh://root@raspberrypi.local", harness.WithBoard("raspi4b-fast"))
//	defer b.Close()
//
// Login is key-only (WithIdentity, else the ssh-agent, else ~/.ssh/id_ed25519,
// id_ecdsa or id_rsa) and the host key must be in ~/.ssh/known_hosts (WithKnownHosts,
// WithAcceptNewHostKey). containerd and runc are installed when missing, with
// the strategy of WithContainerd; that, the busybox image, and the
// containers' own files under /run/socbox are all socbox changes on the
// board (its clock is left alone). Installing and reaching containerd needs
// root: attach as root.
//
// The board profile the results are compared against is WithBoard's, else
// detected from the board's device tree model and architecture. Options
// about images, snapshots and QEMU do not apply. On error the returned Board
// is non-nil once anything was tried, so that it can be reported; Close is
// safe either way.
func Attach(ctx context.Context, target string, opts ...Option) (*Board, error) {
	ep, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	o.board = "" // detected unless WithBoard names one
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("socbox options: %w", err)
		}
	}
	if o.image != nil {
		return nil, fmt.Errorf("attach %s: WithImage does not apply to a real board, which runs the OS it has", targetURL(ep))
	}
	if o.knownHostsPath() == "" {
		return nil, fmt.Errorf("attach %s: no home directory for ~/.ssh/known_hosts: name the file with WithKnownHosts (--known-hosts)", targetURL(ep))
	}
	logf := o.logf
	if logf == nil {
		logf = log.New(os.Stderr, "", log.Ltime).Printf
	}
	b := &Board{opts: o, stage: StageOff, Endpoint: ep,
		Target: &Target{URL: targetURL(ep), Endpoint: ep, KnownHosts: o.knownHostsPath()}}
	b.logf = func(format string, args ...any) { logf(ep.String()+": "+format, args...) }
	if err := b.attach(ctx); err != nil {
		_ = b.Close()
		return b, err
	}
	return b, nil
}

// knownHostsPath is the known_hosts file to check a target against.
func (o options) knownHostsPath() string {
	if o.attach.knownHosts != "" {
		return o.attach.knownHosts
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".ssh", "known_hosts")
}

func (b *Board) attach(ctx context.Context) error {
	cache, err := images.CacheDir()
	if err != nil {
		return b.fail(StageSSH, err, "")
	}
	// The bundle installer and the busybox image fetch Debian packages for
	// the board's own suite and architecture, cached like an emulated
	// board's.
	b.archive = &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: b.logf}
	if err := b.step(ctx, StageSSH, b.loginTarget); err != nil {
		return err
	}
	if b.opts.noContainerd {
		return nil
	}
	if err := b.step(ctx, StageContainerd, b.readyTargetContainerd); err != nil {
		return err
	}
	b.setStage(StageReady)
	return nil
}

// loginTarget logs in, reads what the board is and picks its profile. It
// does not set the board's clock, unlike an emulated board's: a real board
// keeps its own time.
func (b *Board) loginTarget(ctx context.Context) error {
	t := b.Target
	t.selfExplained = true // until the failures that the hint is about
	signers, identity, closeAgent, err := loginKeys(b.opts.attach.identity, t)
	if err != nil {
		return err
	}
	defer closeAgent()
	t.Identity = identity
	if identity != "ssh-agent" {
		b.KeyPath = identity
	}
	kh := &sshx.KnownHosts{Path: t.KnownHosts, AcceptNew: b.opts.attach.acceptNew, Logf: b.logf}
	c, err := sshx.Dial(ctx, sshx.Config{Endpoint: b.Endpoint, Signers: signers, KnownHosts: kh})
	t.selfExplained = errors.Is(err, sshx.ErrUnknownHostKey) || errors.Is(err, sshx.ErrHostKeyMismatch)
	switch {
	case errors.Is(err, sshx.ErrUnknownHostKey):
		return fmt.Errorf("%w; or, once you trust it, let socbox pin it in %s: --accept-new-host-key (harness.WithAcceptNewHostKey())", err, t.KnownHosts)
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		t.selfExplained = true
		return fmt.Errorf("%w: the board did not accept %s; authorize the key on it (ssh-copy-id %s-p %d %s@%s) or pick another with --identity",
			err, identity, copyIDKey(identity), b.Endpoint.Port, b.Endpoint.User, b.Endpoint.Host)
	case err != nil:
		return err
	}
	b.SSH = c
	t.selfExplained = true
	out, err := c.Output(ctx, factsCommand)
	if err != nil {
		return fmt.Errorf("read what the board is: %w", err)
	}
	f, err := parseFacts(out)
	if err != nil {
		return err
	}
	t.Hostname, t.OS, t.Suite, t.Kernel, t.Machine, t.Arch, t.Model, t.UID =
		f.hostname, f.os, f.suite, f.kernel, f.machine, f.arch, f.model, f.uid
	prof, how, err := detectProfile(b.opts.board, f)
	if err != nil {
		return err
	}
	b.Profile, t.ProfileFrom = prof, how
	b.logf("ssh: logged in with %s: %s (%s), kernel %s %s, uid %d; compared against %s (%s)",
		identity, t.Hostname, t.OS, t.Kernel, t.Machine, t.UID, prof.Slug, how)
	return nil
}

func copyIDKey(identity string) string {
	if identity == "ssh-agent" {
		return ""
	}
	return "-i " + shell.Quote(identity) + " "
}

// readyTargetContainerd installs containerd when missing and connects to
// it, as root only.
//
// containerd's API socket is root's (mode 0660, group root) and the
// containerd client reaches it through SSH's own socket forwarding, which
// sshd runs as the login user. A non-root login would need a privileged
// relay on the board (socat, nc or python, none of which every image has)
// or looser socket permissions, which would change the board beyond
// installing containerd; and access to that socket is root in all but
// name anyway. So a non-root login is refused here with how to log in as
// root instead, rather than half-installing through sudo.
func (b *Board) readyTargetContainerd(ctx context.Context) error {
	t := b.Target
	if t.UID != 0 {
		how := fmt.Sprintf("on the board, as root: install -d -m 700 /root/.ssh && cat ~%s/.ssh/authorized_keys >> /root/.ssh/authorized_keys", t.Endpoint.User)
		if res, err := b.SSH.Run(ctx, "sudo -n true"); err == nil && res.ExitCode == 0 {
			how = fmt.Sprintf("ssh -p %d %s@%s 'sudo -n install -d -m 700 /root/.ssh && sudo -n tee -a /root/.ssh/authorized_keys < ~/.ssh/authorized_keys >/dev/null'",
				t.Endpoint.Port, t.Endpoint.User, t.Endpoint.Host)
		} else {
			how += fmt.Sprintf(" (%s has no passwordless sudo, so socbox cannot do it for you)", t.Endpoint.User)
		}
		return fmt.Errorf("%s logs in as uid %d, but installing containerd and reaching its socket (%s, root's only) need root: "+
			"let your key log in as root (%s; Debian's sshd allows root with a key: PermitRootLogin prohibit-password), then attach to ssh://root@%s",
			t.URL, t.UID, "/run/containerd/containerd.sock", how, net.JoinHostPort(t.Endpoint.Host, strconv.Itoa(t.Endpoint.Port)))
	}
	return b.readyContainerd(ctx)
}

// loginKeys finds the keys to log in with: the identity file when given,
// else the ssh-agent's keys, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa. It
// says which, and returns a function that closes the agent connection.
func loginKeys(identity string, t *Target) ([]ssh.Signer, string, func(), error) {
	agentSigners, closeAgent := sshAgent()
	if identity != "" {
		s, err := readIdentity(identity, agentSigners)
		if err != nil {
			closeAgent()
			return nil, "", nil, fmt.Errorf("log in to %s: %w", t.URL, err)
		}
		return []ssh.Signer{s}, identity, closeAgent, nil
	}
	if len(agentSigners) > 0 {
		return agentSigners, "ssh-agent", closeAgent, nil
	}
	closeAgent()
	home, _ := os.UserHomeDir()
	var locked []string
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(home, ".ssh", name)
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(data)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			locked = append(locked, p)
			continue
		}
		if err == nil {
			return []ssh.Signer{s}, p, func() {}, nil
		}
	}
	why := "no ssh-agent (SSH_AUTH_SOCK) with keys, and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa"
	if len(locked) > 0 {
		why = fmt.Sprintf("no ssh-agent (SSH_AUTH_SOCK) with keys, and %s need a passphrase (socbox never asks: ssh-add them)", strings.Join(locked, ", "))
	}
	return nil, "", nil, fmt.Errorf("log in to %s: no SSH key: %s; pass one with --identity (harness.WithIdentity), or make one (ssh-keygen -t ed25519) and authorize it on the board (ssh-copy-id -p %d %s@%s)",
		t.URL, why, t.Endpoint.Port, t.Endpoint.User, t.Endpoint.Host)
}

// readIdentity loads a private key file; a passphrase-protected one is
// used through the agent when the agent holds it.
func readIdentity(path string, agentSigners []ssh.Signer) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return s, nil
	case errors.As(err, &pm):
		if pm.PublicKey != nil {
			for _, as := range agentSigners {
				if string(as.PublicKey().Marshal()) == string(pm.PublicKey.Marshal()) {
					return as, nil
				}
			}
		}
		return nil, fmt.Errorf("identity %s needs a passphrase, and socbox never asks for one: add it to your ssh-agent (ssh-add %s) and run again", path, shell.Quote(path))
	}
	if _, _, _, _, perr := ssh.ParseAuthorizedKey(data); perr == nil {
		return nil, fmt.Errorf("identity %s is a public key: pass the private key (the file without .pub)", path)
	}
	return nil, fmt.Errorf("identity %s: not an SSH private key: %w", path, err)
}

// sshAgent returns the keys of the agent at SSH_AUTH_SOCK, if any, and a
// function that closes the connection (signing goes through it, so it stays
// open until the login is done).
func sshAgent() ([]ssh.Signer, func()) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, func() {}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, func() {}
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, func() {}
	}
	return signers, func() { conn.Close() }
}

// factsCommand prints, one key=value a line, what the report says about a
// target and what picks its board profile. Each part may be missing on a
// board without it (no dpkg, no device tree).
const factsCommand = `echo "kernel=$(uname -r)"; echo "machine=$(uname -m)"; ` +
	`echo "hostname=$(cat /proc/sys/kernel/hostname)"; echo "uid=$(id -u)"; ` +
	`(` + readOSRelease + `; echo "os=$PRETTY_NAME"; echo "suite=$VERSION_CODENAME"); ` +
	`echo "arch=$(dpkg --print-architecture 2>/dev/null)"; ` +
	`echo "model=$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"`

type targetFacts struct {
	kernel, machine, hostname, os, suite, arch, model string
	uid                                               int
}

func parseFacts(out string) (targetFacts, error) {
	var f targetFacts
	uid := ""
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "kernel":
			f.kernel = v
		case "machine":
			f.machine = v
		case "hostname":
			f.hostname = v
		case "uid":
			uid = v
		case "os":
			f.os = v
		case "suite":
			f.suite = v
		case "arch":
			f.arch = v
		case "model":
			f.model = v
		}
	}
	n, err := strconv.Atoi(uid)
	if err != nil || f.machine == "" {
		return f, fmt.Errorf("read what the board is: unexpected answer %q (does it have a POSIX shell, uname and id?)", strings.TrimSpace(out))
	}
	f.uid = n
	return f, nil
}

// debianArch is the userland architecture: dpkg's when there is dpkg, else
// guessed from the kernel's machine name.
func (f targetFacts) debianArch() string {
	if f.arch != "" {
		return f.arch
	}
	switch {
	case f.machine == "aarch64" || f.machine == "arm64":
		return "arm64"
	case strings.HasPrefix(f.machine, "armv7") || f.machine == "armv8l":
		return "armhf"
	case f.machine == "x86_64":
		return "amd64"
	}
	return f.machine
}

// detectProfile picks the board profile a target's results are compared
// against: the one named, else the one whose name the device tree's model
// starts with (the faithful one when a board has two), else the only one
// for the target's architecture. It says how it chose.
func detectProfile(named string, f targetFacts) (boards.Profile, string, error) {
	arch := f.debianArch()
	seen := fmt.Sprintf("%s userland, uname -m %s", arch, f.machine)
	if f.model != "" {
		seen += fmt.Sprintf(", model %q", f.model)
	}
	var forArch []boards.Profile
	var platforms []string
	for _, p := range boards.All() {
		if p.Platform.DebianArch() == arch {
			forArch = append(forArch, p)
		}
		if pl := p.Platform.String() + " (" + p.Platform.DebianArch() + ")"; !slices.Contains(platforms, pl) {
			platforms = append(platforms, pl)
		}
	}
	if strings.HasPrefix(f.machine, "armv6") {
		return boards.Profile{}, "", fmt.Errorf("the board has an ARMv6 CPU (%s): socbox's 32-bit profiles are ARMv7 (Debian armhf), whose packages do not run on it", seen)
	}
	if named != "" {
		p, err := boards.Lookup(named)
		if err != nil {
			return boards.Profile{}, "", err
		}
		if p.Platform.DebianArch() != arch {
			fix := fmt.Sprintf("name a board for %s (%s)", arch, slugs(forArch))
			if len(forArch) == 0 {
				fix = "no board profile runs that: socbox has " + strings.Join(platforms, ", ")
			}
			return boards.Profile{}, "", fmt.Errorf("board %s is %s (%s), but the target runs %s: %s",
				p.Slug, p.Platform, p.Platform.DebianArch(), seen, fix)
		}
		return p, "named with --board", nil
	}
	if len(forArch) == 0 {
		return boards.Profile{}, "", fmt.Errorf("no board profile runs what the target runs (%s): socbox has %s", seen, strings.Join(platforms, ", "))
	}
	var byModel []boards.Profile
	for _, p := range forArch {
		if f.model != "" && strings.Contains(strings.ToLower(f.model), strings.ToLower(p.Name)) {
			byModel = append(byModel, p)
		}
	}
	if len(byModel) > 1 {
		var faithful []boards.Profile
		for _, p := range byModel {
			if p.Tier == boards.Faithful {
				faithful = append(faithful, p)
			}
		}
		if len(faithful) == 1 {
			byModel = faithful
		}
	}
	switch {
	case len(byModel) == 1:
		return byModel[0], fmt.Sprintf("detected from the device tree model %q", f.model), nil
	case len(byModel) == 0 && len(forArch) == 1:
		return forArch[0], fmt.Sprintf("detected: the only profile for %s (uname -m %s)", arch, f.machine), nil
	}
	candidates := forArch
	if len(byModel) > 1 {
		candidates = byModel
	}
	return boards.Profile{}, "", fmt.Errorf("cannot tell which board profile to compare against (%s): %s all fit; name one with --board (harness.WithBoard)",
		seen, slugs(candidates))
}

func slugs(ps []boards.Profile) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Slug)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// sshCommand is how a person logs in to the target by hand.
func (t *Target) sshCommand(keyPath string) string {
	parts := []string{"ssh"}
	if keyPath != "" {
		parts = append(parts, "-i", shell.Quote(keyPath))
	}
	if t.Endpoint.Port != 22 {
		parts = append(parts, "-p", strconv.Itoa(t.Endpoint.Port))
	}
	if home, err := os.UserHomeDir(); err != nil || t.KnownHosts != filepath.Join(home, ".ssh", "known_hosts") {
		parts = append(parts, "-o", "UserKnownHostsFile="+shell.Quote(t.KnownHosts))
	}
	return strings.Join(append(parts, t.Endpoint.User+"@"+t.Endpoint.Host), " ")
}

// hint says what to check when a target's stage fails.
func (t *Target) hint(stage Stage) string {
	switch stage {
	case StageSSH:
		if t.selfExplained {
			return ""
		}
		return fmt.Sprintf("check that the board is on, reachable and runs sshd, and that you can log in by hand: ssh -p %d %s@%s",
			t.Endpoint.Port, t.Endpoint.User, t.Endpoint.Host)
	case StageContainerd:
		return "containerd did not come up on the board: try the other strategy (--containerd apt uses the board's own package sources), and read journalctl -u containerd on it"
	}
	return ""
}

// describeTarget fills in what a report says about a real board: which
// one, as who, and what it runs.
func (b *Board) describeTarget(r *report.Board) {
	t := b.Target
	if t == nil {
		return
	}
	if r.Board == "" {
		r.Board = t.URL
	}
	r.Tier = "real"
	if b.Profile.Slug == "" {
		r.Platform = "" // no profile was picked
	}
	r.Suite, r.KernelVersion = t.Suite, t.Kernel
	r.SSHCommand = b.SSHCommand()
	r.Target = &report.Target{
		Address: t.Endpoint.String(), Hostname: t.Hostname, OS: t.OS, Kernel: t.Kernel,
		Machine: t.Machine, Model: t.Model, UID: t.UID, Identity: t.Identity, ProfileFrom: t.ProfileFrom,
	}
}
