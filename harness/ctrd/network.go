package ctrd

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

// Network is a bridge in the guest that containers join, as nerdctl's
// default bridge network: each container gets a network namespace of its
// own with a veth pair into the bridge, an address of the network's /24, a
// default route through the bridge (so the guest itself is reachable at
// Gateway) and an /etc/hosts naming every container on the network.
//
// It is made with iproute2 in the guest rather than CNI plugins: every
// Debian and Raspberry Pi OS image has `ip`, few have the plugins. What it
// does not do is NAT: containers reach each other and the guest, not the
// world beyond it.
type Network struct {
	Name    string
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr

	r   *Runtime
	mu  sync.Mutex
	ips map[string]netip.Addr // by container name
	nxt netip.Addr
}

var networkName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,10}$`)

// subnets hands out one /24 per network of a runtime, from a range QEMU's
// user networking (10.0.2.0/24) and common LANs do not use.
func (r *Runtime) nextSubnet() netip.Prefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.networks
	r.networks++
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(n % 256), 0}), 24)
}

// CreateNetwork makes a bridge network in the guest. name becomes part of
// the bridge's name: up to 11 lowercase letters, digits or dashes. Remove
// it when done; containers on it must be gone first.
func (r *Runtime) CreateNetwork(ctx context.Context, name string) (*Network, error) {
	if !networkName.MatchString(name) {
		return nil, fmt.Errorf("create network %q: use up to 11 lowercase letters, digits or dashes", name)
	}
	subnet := r.nextSubnet()
	n := &Network{
		Name: name, Bridge: "sb-" + name, Subnet: subnet, Gateway: subnet.Addr().Next(),
		r: r, ips: map[string]netip.Addr{},
	}
	n.nxt = n.Gateway.Next()
	// A bridge of the same name left by a crashed run goes first.
	script := shell.Script(`set -e
ip link del "$1" 2>/dev/null || true
ip link add "$1" type bridge
ip addr add "$2" dev "$1"
ip link set "$1" up
mkdir -p "$3"`, n.Bridge, fmt.Sprintf("%s/%d", n.Gateway, subnet.Bits()), n.dir())
	if err := runOK(ctx, r.sh, script); err != nil {
		return nil, fmt.Errorf("create network %s (bridge %s, %s) in the guest: %w (the guest needs iproute2 and the bridge and veth kernel modules)", name, n.Bridge, subnet, err)
	}
	return n, nil
}

func (n *Network) dir() string { return path.Join(n.r.stateDir, "networks", n.Name) }

// Remove deletes the bridge and what containers left of theirs.
func (n *Network) Remove(ctx context.Context) error {
	if n == nil {
		return nil
	}
	script := shell.Script(`ip link del "$1" 2>/dev/null; rm -rf -- "$2"; true`, n.Bridge, n.dir())
	if err := runOK(ctx, n.r.sh, script); err != nil {
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	return nil
}

// IP is the address of the named container on the network, if it has one.
func (n *Network) IP(container string) (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip, ok := n.ips[container]
	return ip, ok
}

// attachment is one container's place on a network: its namespace and the
// files to mount into it. For a host-network container netns is empty (the
// guest's own) and the files are copies of the guest's (see hostNetwork).
type attachment struct {
	netns, hosts, resolvConf string
	ip                       netip.Addr
}

// attach gives container id (named name) a namespace, a veth into the
// bridge and an address, and writes its /etc/hosts, in one SSH session.
func (n *Network) attach(ctx context.Context, id, name string) (attachment, error) {
	n.mu.Lock()
	if _, taken := n.ips[name]; taken {
		n.mu.Unlock()
		return attachment{}, fmt.Errorf("network %s already has a container named %s", n.Name, name)
	}
	ip := n.nxt
	if !n.Subnet.Contains(ip.Next()) {
		n.mu.Unlock()
		return attachment{}, fmt.Errorf("network %s is full", n.Name)
	}
	n.nxt = ip.Next()
	n.ips[name] = ip
	hosts := n.hostsFile()
	n.mu.Unlock()

	a := attachment{netns: "/run/netns/" + id, hosts: path.Join(n.dir(), id+".hosts"), ip: ip}
	// The host end's name must fit in 15 bytes and be unique: the ID's
	// random tail.
	veth := "sv" + id[max(0, len(id)-12):]
	script := shell.Script(`set -e
ip netns add "$1"
ip link add "$2" type veth peer name eth0 netns "$1"
ip link set "$2" master "$3" up
ip -n "$1" addr add "$4" dev eth0
ip -n "$1" link set lo up
ip -n "$1" link set eth0 up
ip -n "$1" route add default via "$5"
cat > "$6"`, id, veth, n.Bridge, fmt.Sprintf("%s/%d", ip, n.Subnet.Bits()), n.Gateway.String(), a.hosts)
	res, err := n.r.sh.Run(ctx, script, sshx.WithStdin(strings.NewReader(hosts)))
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit status %d: %s", res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	if err != nil {
		n.forget(name)
		_ = n.detach(context.WithoutCancel(ctx), id, name)
		return attachment{}, fmt.Errorf("attach %s to network %s: %w", name, n.Name, err)
	}
	return a, nil
}

// hostsFile lists localhost and every container named so far; callers
// hold n.mu. Containers started earlier do not learn of later ones.
func (n *Network) hostsFile() string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fmt.Fprintf(&b, "%s\tgateway\n", n.Gateway)
	names := make([]string, 0, len(n.ips))
	for name := range n.ips {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "%s\t%s\n", n.ips[name], name)
	}
	return b.String()
}

func (n *Network) forget(name string) {
	n.mu.Lock()
	delete(n.ips, name)
	n.mu.Unlock()
}

// detach deletes the namespace (which takes the veth pair with it) and
// the hosts file.
func (n *Network) detach(ctx context.Context, id, name string) error {
	n.forget(name)
	script := shell.Script(`ip netns del "$1" 2>/dev/null; rm -f -- "$2"; true`, id, path.Join(n.dir(), id+".hosts"))
	if err := runOK(ctx, n.r.sh, script); err != nil {
		return fmt.Errorf("detach %s from network %s: %w", name, n.Name, err)
	}
	return nil
}
