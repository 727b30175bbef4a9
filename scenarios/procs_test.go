package scenarios

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// childPIDs are the PIDs of parent's child processes whose command name
// (/proc's comm, cut at 15 bytes) starts with name.
func childPIDs(parent int, name string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	ppid := strconv.Itoa(parent)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) > 1 && fields[1] == ppid && strings.HasPrefix(s[open+1:end], name) {
			pids = append(pids, pid)
		}
	}
	return pids
}
