package ctrd

import (
	"context"
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/socbox/socbox/boards"
)

// withDefaultSeccomp applies containerd's default seccomp profile (the one
// Docker and nerdctl apply), made for the guest's architecture.
//
// seccomp.DefaultProfile picks its architectures and arch-only syscalls by
// the *client's* GOARCH: built on an x86 host, the profile for an arm64
// board would list x86_64, allow arch_prctl and lack set_tls and
// cacheflush, which 32-bit ARM programs need. The profile is rebuilt here
// for the board's platform.
func withDefaultSeccomp(p boards.Platform) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		s.Linux.Seccomp = seccompProfile(seccomp.DefaultProfile(s), p)
		return nil
	}
}

// Syscalls that exist on one architecture family only; the default profile
// allows those of the client's.
var (
	x86OnlySyscalls = []string{"arch_prctl", "modify_ldt"}
	armOnlySyscalls = []string{"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"}
)

// seccompProfile rewrites a default profile made on any host for platform p.
func seccompProfile(prof *specs.LinuxSeccomp, p boards.Platform) *specs.LinuxSeccomp {
	var only []string
	switch p.Architecture {
	case "arm64":
		prof.Architectures = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
		only = armOnlySyscalls
	case "arm":
		prof.Architectures = []specs.Arch{specs.ArchARM}
		only = armOnlySyscalls
	case "amd64":
		prof.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
		only = x86OnlySyscalls
	default:
		return prof // as the library made it
	}
	foreign := append(slices.Clone(x86OnlySyscalls), armOnlySyscalls...)
	var out []specs.LinuxSyscall
	for _, sc := range prof.Syscalls {
		sc.Names = slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool { return slices.Contains(foreign, n) })
		if len(sc.Names) > 0 {
			out = append(out, sc)
		}
	}
	prof.Syscalls = append(out, specs.LinuxSyscall{Names: only, Action: specs.ActAllow})
	return prof
}
