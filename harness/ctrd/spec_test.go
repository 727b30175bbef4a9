package ctrd

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

func TestNumericUser(t *testing.T) {
	for _, tc := range []struct {
		user     string
		uid, gid uint32
		err      string
	}{
		{"", 0, 0, ""}, {"root", 0, 0, ""}, {"1000", 1000, 1000, ""}, {"1000:50", 1000, 50, ""},
		{"nobody", 0, 0, "numeric"}, {"1000:staff", 0, 0, "group must be numeric"},
	} {
		uid, gid, err := numericUser(tc.user)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.user)
			continue
		}
		require.NoError(t, err, tc.user)
		require.Equal(t, [2]uint32{tc.uid, tc.gid}, [2]uint32{uid, gid}, tc.user)
	}
}

func TestMergeEnv(t *testing.T) {
	require.Equal(t, []string{"PATH=/x", "A=2", "B=3"}, mergeEnv([]string{"PATH=/x", "A=1"}, []string{"A=2", "B=3"}))
}

func TestContainerSpecOpts(t *testing.T) {
	c := Container{
		Mounts: []Mount{
			{Source: "/srv/data", Target: "/data", ReadOnly: true},
			{Source: "/tmp", Target: "/scratch"},
		},
		Privileged:  true,
		MemoryLimit: 32 << 20,
		HostNetwork: true,
	}
	ctx := namespaces.WithNamespace(context.Background(), "socbox")
	var cgroupsPath string
	// The first option is the image's config, which needs an image.
	hostNet := &attachment{hosts: "/run/socbox/host-network/hosts", resolvConf: "/run/socbox/host-network/resolv.conf"}
	opts := append(containerSpecOpts(nil, c, boards.LinuxARM64, hostNet)[1:], recordCgroupsPath(&cgroupsPath))
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c1"}, opts...)
	require.NoError(t, err)

	require.Contains(t, s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}})
	require.Contains(t, s.Mounts, specs.Mount{Destination: "/scratch", Type: "bind", Source: "/tmp", Options: []string{"rbind", "rw"}})
	// Copies socbox made, not the guest's own files, which an image may
	// lack: runc cannot bind-mount a file that is not there.
	require.Contains(t, s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hostNet.hosts, Options: []string{"rbind", "ro"}})
	require.Contains(t, s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: hostNet.resolvConf, Options: []string{"rbind", "ro"}})

	require.Equal(t, int64(32<<20), *s.Linux.Resources.Memory.Limit)
	require.Equal(t, int64(32<<20), *s.Linux.Resources.Memory.Swap, "no swap on top of the limit")

	for _, ns := range s.Linux.Namespaces {
		require.NotEqual(t, specs.NetworkNamespace, ns.Type, "host network: no network namespace of its own")
	}
	require.Contains(t, s.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
	require.Empty(t, s.Linux.MaskedPaths)
	require.Nil(t, s.Linux.Seccomp)
	require.Equal(t, "/socbox/c1", cgroupsPath)

	plain, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c2"}, containerSpecOpts(nil, Container{}, boards.LinuxARM64, nil)[1:]...)
	require.NoError(t, err)
	require.NotContains(t, plain.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
	require.NotEmpty(t, plain.Linux.MaskedPaths)
	require.Nil(t, plain.Linux.Resources.Memory)
	var netns bool
	for _, ns := range plain.Linux.Namespaces {
		netns = netns || ns.Type == specs.NetworkNamespace
	}
	require.True(t, netns, "a network namespace of its own by default")
	require.NotNil(t, plain.Linux.Seccomp, "the default seccomp profile unless privileged")

	att := &attachment{netns: "/run/netns/web-1", hosts: "/run/socbox/networks/n/web-1.hosts"}
	onNet, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c3"},
		containerSpecOpts(nil, Container{Name: "web", SeccompUnconfined: true}, boards.LinuxARM64, att)[1:]...)
	require.NoError(t, err)
	require.Contains(t, onNet.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/web-1"})
	require.Equal(t, "web", onNet.Hostname)
	require.Contains(t, onNet.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: att.hosts, Options: []string{"rbind", "ro"}})
	require.Nil(t, onNet.Linux.Seccomp)
}

// The default profile must be made for the board, whatever the host: an
// x86 host's profile lists x86 architectures and lacks ARM's set_tls.
func TestSeccompProfileForTheBoard(t *testing.T) {
	allowed := func(p *specs.LinuxSeccomp, name string) bool {
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && slices.Contains(sc.Names, name) {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		p      boards.Platform
		arches []specs.Arch
		has    string
		hasNot string
	}{
		{boards.LinuxARM64, []specs.Arch{specs.ArchAARCH64, specs.ArchARM}, "set_tls", "arch_prctl"},
		{boards.LinuxARMv7, []specs.Arch{specs.ArchARM}, "cacheflush", "modify_ldt"},
		{boards.Platform{OS: "linux", Architecture: "amd64"}, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}, "arch_prctl", "set_tls"},
	} {
		t.Run(tc.p.String(), func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
			p := seccompProfile(seccomp.DefaultProfile(s), tc.p)
			require.Equal(t, tc.arches, p.Architectures)
			require.True(t, allowed(p, tc.has), tc.has)
			require.False(t, allowed(p, tc.hasNot), tc.hasNot)
			require.True(t, allowed(p, "read"))
			require.Equal(t, specs.ActErrno, p.DefaultAction)
		})
	}
}

func TestContainerValidate(t *testing.T) {
	require.NoError(t, Container{Mounts: []Mount{{Source: "/a", Target: "/b"}}}.validate())
	require.ErrorContains(t, Container{Mounts: []Mount{{Source: "a", Target: "/b"}}}.validate(), "absolute")
	require.ErrorContains(t, Container{Mounts: []Mount{{Source: "/a", Target: "b"}}}.validate(), "absolute")
	require.ErrorContains(t, Container{MemoryLimit: -1}.validate(), "negative")
}

func TestOOMKills(t *testing.T) {
	require.Equal(t, 1, oomKills("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"))
	require.Equal(t, 0, oomKills("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"))
	require.Equal(t, 0, oomKills(""))
	require.Equal(t, 0, oomKills("oom_group_kill 3\n"))
}
