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
	script := shell.Script(`set -e
mkdir -p "$1"
{ cat "$2" 2>/dev/null || printf "$6" "$(cat /proc/sys/kernel/hostname)"; } > "$4.tmp"
{ cat "$3" 2>/dev/null || true; } > "$5.tmp"
chmod 0644 "$4.tmp" "$5.tmp"
mv -f "$4.tmp" "$4"
mv -f "$5.tmp" "$5"`,
		dir, path.Join(r.etcDir, "hosts"), path.Join(r.etcDir, "resolv.conf"), a.hosts, a.resolvConf, defaultHosts)
	if err := runOK(ctx, r.sh, script); err != nil {
		return attachment{}, fmt.Errorf("write /etc/hosts and /etc/resolv.conf for the host network: %w", err)
	}
	r.mu.Lock()
	r.hostFiles = a
	r.mu.Unlock()
	return a, nil
}
