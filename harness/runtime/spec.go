package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
