package ctrd

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/socbox/socbox/boards"
)

const defaultEnvPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// withImageConfig applies an image's config (entrypoint, cmd, env, working
// dir, numeric user) to the spec without mounting the image.
//
// containerd's own oci.WithImageConfigArgs mounts the container's snapshot
// on the *client's* filesystem to read /etc/passwd and /etc/group. The
// client here is on the host and the snapshot is in the guest, so that
// mount fails ("snapshots/N/fs: no such file or directory"). A user given
// by name would need that lookup: such images get a clear error instead.
func withImageConfig(image interface {
	Config(ctx context.Context) (ocispec.Descriptor, error)
	ContentStore() content.Store
}, args []string) oci.SpecOpts {
	return func(ctx context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		desc, err := image.Config(ctx)
		if err != nil {
			return err
		}
		if !images.IsConfigType(desc.MediaType) {
			return fmt.Errorf("unknown image config media type %s", desc.MediaType)
		}
		blob, err := content.ReadBlob(ctx, image.ContentStore(), desc)
		if err != nil {
			return err
		}
		var img ocispec.Image
		if err := json.Unmarshal(blob, &img); err != nil {
			return fmt.Errorf("read image config: %w", err)
		}
		cfg := img.Config
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		env := cfg.Env
		if len(env) == 0 {
			env = []string{defaultEnvPath}
		}
		s.Process.Env = mergeEnv(env, s.Process.Env)
		cmd := cfg.Cmd
		if len(args) > 0 {
			cmd = args
		}
		s.Process.Args = append(append([]string(nil), cfg.Entrypoint...), cmd...)
		if len(s.Process.Args) == 0 {
			return fmt.Errorf("the image has no entrypoint or cmd, and the container gives no command")
		}
		s.Process.Cwd = cfg.WorkingDir
		if s.Process.Cwd == "" {
			s.Process.Cwd = "/"
		}
		uid, gid, err := numericUser(cfg.User)
		if err != nil {
			return err
		}
		s.Process.User.UID, s.Process.User.GID = uid, gid
		return nil
	}
}

// numericUser parses an image's User field: "", "root", "uid" or "uid:gid".
func numericUser(user string) (uint32, uint32, error) {
	if user == "" || user == "root" || user == "0" || user == "root:root" {
		return 0, 0, nil
	}
	u, g, hasGID := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("image user %q: socbox runs images whose user is numeric (uid or uid:gid); names need the image's /etc/passwd, which lives in the guest", user)
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			return 0, 0, fmt.Errorf("image user %q: group must be numeric", user)
		}
	}
	return uint32(uid), uint32(gid), nil
}

// mergeEnv returns defaults with overrides applied by variable name.
func mergeEnv(defaults, overrides []string) []string {
	out := append([]string(nil), defaults...)
	for _, o := range overrides {
		name, _, _ := strings.Cut(o, "=")
		replaced := false
		for i, d := range out {
			if dn, _, _ := strings.Cut(d, "="); dn == name {
				out[i], replaced = o, true
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

// containerSpecOpts turns c into spec options. None of them may read the
// image's root filesystem or anything else on the client's side: the
// client is on the host, the container in the guest.
func containerSpecOpts(image interface {
	Config(ctx context.Context) (ocispec.Descriptor, error)
	ContentStore() content.Store
}, c Container, p boards.Platform, att *attachment) []oci.SpecOpts {
	opts := []oci.SpecOpts{withImageConfig(image, c.Cmd), oci.WithAnnotations(map[string]string{shimGroupAnnotation: shimGroup})}
	if len(c.Env) > 0 {
		opts = append(opts, oci.WithEnv(c.Env))
	}
	if c.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(c.WorkingDir))
	}
	if len(c.Mounts) > 0 {
		opts = append(opts, oci.WithMounts(bindMounts(c.Mounts)))
	}
	if c.Privileged {
		opts = append(opts, withPrivileged)
	} else if !c.SeccompUnconfined {
		opts = append(opts, withDefaultSeccomp(p))
	}
	if c.MemoryLimit > 0 {
		// Swap equal to the limit means no swap on top of it (cgroup v2's
		// memory.swap.max = 0), so going over the limit is an OOM kill,
		// not a slow crawl through swap.
		opts = append(opts, oci.WithMemoryLimit(uint64(c.MemoryLimit)), oci.WithMemorySwap(c.MemoryLimit))
	}
	if c.HostNetwork {
		// As ctr run --net-host does, less its HOSTNAME variable, which
		// ctr takes from the client's machine: here the container keeps
		// its own UTS namespace, which starts with the guest's hostname.
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	} else if att != nil {
		// The namespace made for the network, with the container's name
		// as its host name, which the other containers' /etc/hosts know.
		opts = append(opts,
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: att.netns}),
			oci.WithHostname(c.Name))
	}
	if att != nil {
		// Files socbox wrote, never the guest's own: a board image may
		// lack them, and runc cannot bind-mount a file that is not there.
		mounts := []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: att.hosts, Options: []string{"rbind", "ro"}}}
		if att.resolvConf != "" {
			mounts = append(mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: att.resolvConf, Options: []string{"rbind", "ro"}})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	return opts
}

// withPrivileged is oci.WithPrivileged plus access to every device, as ctr
// run --privileged gives, with two changes for a client that is not on the
// container's machine: the capabilities are every one the library knows
// rather than those of the client process, and the guest's devices are not
// added to the spec (oci.WithHostDevices would list the host's /dev).
func withPrivileged(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
	return oci.Compose(
		oci.WithAllKnownCapabilities,
		oci.WithMaskedPaths(nil),
		oci.WithReadonlyPaths(nil),
		oci.WithWriteableSysfs,
		oci.WithWriteableCgroupfs,
		oci.WithSelinuxLabel(""),
		oci.WithApparmorProfile(""),
		oci.WithSeccompUnconfined,
		oci.WithAllDevicesAllowed,
	)(ctx, client, c, s)
}

func bindMounts(ms []Mount) []specs.Mount {
	out := make([]specs.Mount, 0, len(ms))
	for _, m := range ms {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: []string{"rbind", mode}})
	}
	return out
}

// recordCgroupsPath saves the cgroup path the spec ends up with; it must
// come after every option that may set it.
func recordCgroupsPath(dst *string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux != nil {
			*dst = s.Linux.CgroupsPath
		}
		return nil
	}
}

// validate checks what the daemon would otherwise reject with a less
// helpful message.
func (c Container) validate() error {
	for _, m := range c.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return fmt.Errorf("mount %s -> %s: source and target must be absolute paths", m.Source, m.Target)
		}
	}
	if c.HostNetwork && c.Network != nil {
		return fmt.Errorf("host network and a bridge network (%s) at once: pick one", c.Network.Name)
	}
	if len(c.Ports) > 0 && !c.HostNetwork && c.Network == nil {
		return fmt.Errorf("ports %v: a container with only loopback cannot be reached: put it on a network or the host network", c.Ports)
	}
	for _, port := range c.Ports {
		if port < 1 || port > 65535 {
			return fmt.Errorf("port %d: must be 1-65535", port)
		}
	}
	if c.Network != nil && c.Name == "" {
		return fmt.Errorf("a container on network %s needs a Name: it is its host name there", c.Network.Name)
	}
	if c.Restarts < 0 {
		return fmt.Errorf("negative restarts %d", c.Restarts)
	}
	for _, f := range c.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) == "/" {
			return fmt.Errorf("file %q: must be an absolute path to a file", f.Path)
		}
	}
	for _, p := range c.Collect {
		if !path.IsAbs(p) || path.Clean(p) == "/" {
			return fmt.Errorf("collect %q: must be an absolute path to a file", p)
		}
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("negative memory limit %d", c.MemoryLimit)
	}
	return nil
}
