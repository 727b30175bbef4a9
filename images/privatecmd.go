package images

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"

	"github.com/socbox/socbox/harness/proc"
)

// privateMountCommand runs name in a mount namespace of its own, in its own
// process group. Whatever it mounts (mmdebstrap mounts /proc, /sys and
// /dev/pts inside the root it builds) is never seen by this host's mount
// table, and goes when its last process does: a build killed half way
// leaves a plain directory that can be deleted, not mount points that a
// recursive delete would walk into. Cancelling ctx kills the whole group,
// so no dpkg or maintainer script outlives the build and keeps the
// namespace alive; so does this process's death, when it is started with
// proc.Start (which ties the parent-death signal to a thread that lives as
// long as the child).
func privateMountCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := groupCommand(ctx, name, args...)
	// Go makes / private (recursively) in the new namespace, so nothing
	// mounted there propagates back.
	cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	return cmd
}

// noPrivateMounts says whether err, from starting a privateMountCommand,
// means this process cannot have a mount namespace of its own with a
// private /: in a chroot whose / is not a mount point (a build root, a
// container made with chroot), making / private fails with EINVAL.
func noPrivateMounts(err error) bool { return errors.Is(err, syscall.EINVAL) }

// groupCommand runs name in its own process group, killed with it when ctx
// is cancelled; start it with proc.Start, which gives it a parent-death
// signal too.
func groupCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	// proc's cancellation kills the group: mmdebstrap's children (apt,
	// dpkg, qemu-user) too.
	cmd := proc.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
