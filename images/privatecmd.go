package images

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// privateMountCommand runs name in a mount namespace of its own, in its own
// process group. Whatever it mounts (mmdebstrap mounts /proc, /sys and
// /dev/pts inside the root it builds) is never seen by this host's mount
// table, and goes when its last process does: a build killed half way
// leaves a plain directory that can be deleted, not mount points that a
// recursive delete would walk into. Cancelling ctx kills the whole group,
// so no dpkg or maintainer script outlives the build and keeps the
// namespace alive; so does this process's death.
func privateMountCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Go makes / private (recursively) in the new namespace, so
		// nothing mounted there propagates back.
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	cmd.Cancel = func() error {
		// The group: mmdebstrap's children (apt, dpkg, qemu-user) too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
