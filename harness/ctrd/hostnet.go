package ctrd

import (
	"context"
	"fmt"
	"path"

	"github.com/socbox/socbox/harness/shell"
)

// defaultHosts is the /etc/hosts a host-network container gets when the
// guest has none (a minimal Debian root made with debootstrap or
// mmdebstrap has none), as Docker writes one: localhost and the guest's
// host name.
const defaultHosts = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n`

// hostNetwork returns what a host-network container mounts: copies of the
// guest's /etc/hosts and /etc/resolv.conf, or, where the guest has none
// (or a dangling link, as a resolv.conf of a resolver that is not
// running), a default /etc/hosts and an empty resolv.conf. They are made
// once per Runtime, in the state directory.
func (r *Runtime) hostNetwork(ctx context.Context) (attachment, error) {
	r.mu.Lock()
	made := r.hostFiles
	r.mu.Unlock()
	if made.hosts != "" {
		return made, nil
	}
	dir := path.Join(r.stateDir, "host-network")
	a := attachment{hosts: path.Join(dir, "hosts"), resolvConf: path.Join(dir, "resolv.conf")}
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s
{ cat %[2]s 2>/dev/null || printf %[6]s "$(cat /proc/sys/kernel/hostname)"; } > %[4]s.tmp
{ cat %[3]s 2>/dev/null || true; } > %[5]s.tmp
chmod 0644 %[4]s.tmp %[5]s.tmp
mv -f %[4]s.tmp %[4]s
mv -f %[5]s.tmp %[5]s`,
		shell.Quote(dir), shell.Quote(path.Join(r.etcDir, "hosts")), shell.Quote(path.Join(r.etcDir, "resolv.conf")),
		shell.Quote(a.hosts), shell.Quote(a.resolvConf), shell.Quote(defaultHosts))
	if err := runOK(ctx, r.sh, script); err != nil {
		return attachment{}, fmt.Errorf("write /etc/hosts and /etc/resolv.conf for the host network: %w", err)
	}
	r.mu.Lock()
	r.hostFiles = a
	r.mu.Unlock()
	return a, nil
}
