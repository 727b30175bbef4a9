package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

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
	base := defaultOptions()
	base.board = "" // detected unless WithBoard names one
	o, err := newOptions(base, opts)
	if err != nil {
		return nil, err
	}
	if o.image != nil {
		return nil, fmt.Errorf("attach %s: WithImage does not apply to a real board, which runs the OS it has", targetURL(ep))
	}
	if o.knownHostsPath() == "" {
		return nil, fmt.Errorf("attach %s: no home directory for ~/.ssh/known_hosts: name the file with WithKnownHosts (--known-hosts)", targetURL(ep))
	}
	t := &Target{machine.Real{URL: targetURL(ep), SSH: ep, KnownHosts: o.knownHostsPath()}}
	a := &attachment{t: t}
	b := &Board{opts: o, Machine: t, life: newLifecycle(t.URL, o, prefixedLogf(o.logf, ep.String()))}
	a.b = b
	b.life.hint = a.hint
	b.cleanup.Push(closeGuest(b))
	if err := a.attach(ctx); err != nil {
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

// attachment brings a real board to containerd-ready.
type attachment struct {
	b *Board
	t *Target
	// selfExplained is set when the login failed with an error that says
	// what to do itself (keys, host key, profile): no generic hint then.
	selfExplained bool
}

func (a *attachment) attach(ctx context.Context) error {
	b := a.b
	cache, err := images.CacheDir()
	if err != nil {
		return b.life.fail(StageSSH, err, "")
	}
	if err := b.life.step(ctx, StageSSH, a.login); err != nil {
		return err
	}
	if b.opts.noContainerd {
		return nil
	}
	if err := b.life.step(ctx, StageContainerd, func(ctx context.Context) error {
		if err := a.needRoot(ctx); err != nil {
			return err
		}
		// The bundle installer and the busybox image fetch Debian packages
		// for the board's own suite and architecture, cached like an
		// emulated board's.
		archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: b.life.logf}
		return containerdSetup{b: b, archive: archive}.ready(ctx)
	}); err != nil {
		return err
	}
	b.life.setStage(StageReady)
	return nil
}

// hint says what to check when a target's stage fails.
func (a *attachment) hint(stage Stage) string {
	ep := a.t.SSH
	switch stage {
	case StageSSH:
		if a.selfExplained {
			return ""
		}
		return fmt.Sprintf("check that the board is on, reachable and runs sshd, and that you can log in by hand: ssh -p %d %s@%s",
			ep.Port, ep.User, ep.Host)
	case StageContainerd:
		return "containerd did not come up on the board: try the other strategy (--containerd apt uses the board's own package sources), and read journalctl -u containerd on it"
	}
	return ""
}

// login logs in, reads what the board is and picks its profile. It does
// not set the board's clock, unlike an emulated board's: a real board keeps
// its own time.
func (a *attachment) login(ctx context.Context) error {
	b, t := a.b, a.t
	a.selfExplained = true // until the failures that the hint is about
	signers, identity, closeAgent, err := loginKeys(b.opts.attach.identity, t)
	if err != nil {
		return err
	}
	defer closeAgent()
	t.Identity = identity
	if identity != "ssh-agent" {
		b.KeyPath = identity
	}
	kh := &sshx.KnownHosts{Path: t.KnownHosts, AcceptNew: b.opts.attach.acceptNew, Logf: b.life.logf}
	c, err := sshx.Dial(ctx, t.Endpoint().Config(sshx.Config{Signers: signers, KnownHosts: kh}))
	a.selfExplained = errors.Is(err, sshx.ErrUnknownHostKey) || errors.Is(err, sshx.ErrHostKeyMismatch)
	switch {
	case errors.Is(err, sshx.ErrUnknownHostKey):
		return fmt.Errorf("%w; or, once you trust it, let socbox pin it in %s: --accept-new-host-key (harness.WithAcceptNewHostKey())", err, t.KnownHosts)
	case errors.Is(err, sshx.ErrAuth):
		a.selfExplained = true
		return fmt.Errorf("%w: the board did not accept %s; authorize the key on it (ssh-copy-id %s-p %d %s@%s) or pick another with --identity",
			err, identity, copyIDKey(identity), t.SSH.Port, t.SSH.User, t.SSH.Host)
	case err != nil:
		return err
	}
	b.SSH = c
	a.selfExplained = true
	f, err := guest.ReadFacts(ctx, c)
	if err != nil {
		return err
	}
	t.Facts = f
	prof, how, err := detectProfile(b.opts.board, f)
	if err != nil {
		return err
	}
	b.Profile, t.ProfileFrom = prof, how
	b.life.logf("ssh: logged in with %s: %s (%s), kernel %s %s, uid %d; compared against %s (%s)",
		identity, t.Hostname, t.OS, t.Kernel, t.Machine, t.UID, prof.Slug, how)
	return nil
}

func copyIDKey(identity string) string {
	if identity == "ssh-agent" {
		return ""
	}
	return "-i " + shell.Quote(identity) + " "
}

// needRoot refuses a login that is not root's, saying how to log in as
// root instead.
//
// containerd's API socket is root's (mode 0660, group root) and the
// containerd client reaches it through SSH's own socket forwarding, which
// sshd runs as the login user. A non-root login would need a privileged
// relay on the board (socat, nc or python, none of which every image has)
// or looser socket permissions, which would change the board beyond
// installing containerd; and access to that socket is root in all but
// name anyway. So a non-root login is refused here, rather than
// half-installing through sudo.
func (a *attachment) needRoot(ctx context.Context) error {
	t := a.t
	if t.UID == 0 {
		return nil
	}
	ep := t.SSH
	how := fmt.Sprintf("on the board, as root: install -d -m 700 /root/.ssh && cat ~%s/.ssh/authorized_keys >> /root/.ssh/authorized_keys", ep.User)
	if guest.PasswordlessSudo(ctx, a.b.SSH) {
		how = fmt.Sprintf("ssh -p %d %s@%s 'sudo -n install -d -m 700 /root/.ssh && sudo -n tee -a /root/.ssh/authorized_keys < ~/.ssh/authorized_keys >/dev/null'",
			ep.Port, ep.User, ep.Host)
	} else {
		how += fmt.Sprintf(" (%s has no passwordless sudo, so socbox cannot do it for you)", ep.User)
	}
	return fmt.Errorf("%s logs in as uid %d, but installing containerd and reaching its socket (%s, root's only) need root: "+
		"let your key log in as root (%s; Debian's sshd allows root with a key: PermitRootLogin prohibit-password), then attach to ssh://root@%s",
		t.URL, t.UID, ctrd.DefaultSocket, how, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
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
		t.URL, why, t.SSH.Port, t.SSH.User, t.SSH.Host)
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
