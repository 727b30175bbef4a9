package ctrd

import (
	"bufio"
	"context"
	"path"
	"strconv"
	"strings"

	"github.com/socbox/socbox/harness/shell"
)

// cgroupRoot is where the guest mounts the cgroup v2 hierarchy.
const cgroupRoot = "/sys/fs/cgroup"

// oomKilled reports whether the OOM killer has killed a process in the
// container's cgroup, from the oom_kill count in its memory.events. Ask
// while the task exists: the cgroup goes with it.
//
// containerd 1.6 and 1.7 publish a /tasks/oom event as well, but only to
// subscribers that were listening when it happened, over a stream that
// would have to be opened before every run; the cgroup's own counter is
// there to be read afterwards. A guest without cgroup v2 (or a systemd
// cgroup path, "slice:prefix:name") has no such file: the answer is then
// false, and the exit code (137) is all there is to go on.
func (r *Runtime) oomKilled(ctx context.Context, cgroupsPath string) bool {
	if cgroupsPath == "" || strings.Contains(cgroupsPath, ":") {
		return false
	}
	file := path.Join(cgroupRoot, path.Clean("/"+cgroupsPath), "memory.events")
	res, err := r.sh.Run(ctx, shell.Join("cat", file))
	if err != nil || res.ExitCode != 0 {
		return false
	}
	return oomKills(string(res.Stdout)) > 0
}

// oomKills reads the oom_kill count from a cgroup v2 memory.events file:
//
//	low 0
//	high 0
//	max 12
//	oom 1
//	oom_kill 1
func oomKills(memoryEvents string) int {
	sc := bufio.NewScanner(strings.NewReader(memoryEvents))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok && key == "oom_kill" {
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err == nil {
				return n
			}
		}
	}
	return 0
}
