package scenarios

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/scenario"
)

func TestShippedScenarioFilesParse(t *testing.T) {
	names, err := fs.Glob(bundledFS, "bundled/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	for _, name := range names {
		data, err := bundledFS.ReadFile(name)
		require.NoError(t, err)
		list, err := scenario.Parse(path.Join("scenarios", name), data)
		require.NoError(t, err, name)
		require.NotEmpty(t, list, name)
	}

	list := Bundled()
	var got []string
	for _, s := range list {
		got = append(got, s.Name)
		require.True(t, strings.HasPrefix(s.File, "scenarios/bundled/"), s.File)
		require.Positive(t, s.Line)
		require.NotEmpty(t, s.Description, s.Name)
		if len(s.Services) == 0 {
			require.NotEmpty(t, s.Container.Cmd, s.Name)
		}
	}
	require.Equal(t, []string{"arch", "exit-code", "output-intact", "env",
		"kernel-features", "memory-limit", "memory-limit-set", "privileged", "seccomp",
		"loopback-network", "host-network", "bridge-network", "port-forward",
		"files-in-and-out", "restart-keeps-writes"}, got)
	byName := map[string]scenario.Scenario{}
	for _, s := range list {
		byName[s.Name] = s
	}
	require.Equal(t, "${UNAME_M}\n", *byName["arch"].Expect.Stdout)
	require.Equal(t, 3, byName["exit-code"].Expect.ExitCode)
	require.Equal(t, []string{"GREETING=hello"}, byName["env"].Container.Env)
	require.Equal(t, []ctrd.Mount{{Source: "/sys/fs/cgroup", Target: "/guest-cgroup", ReadOnly: true}}, byName["kernel-features"].Container.Mounts)
	require.Equal(t, int64(32<<20), byName["memory-limit"].Container.MemoryLimit)
	require.Equal(t, scenario.Bool(true), byName["memory-limit"].Expect.OOMKilled)
	require.True(t, byName["privileged"].Container.Privileged)
	require.False(t, byName["loopback-network"].Container.HostNetwork)
	require.True(t, byName["host-network"].Container.HostNetwork)
	require.Equal(t, scenario.NetworkBridge, byName["bridge-network"].Network)
	require.Equal(t, []int{8080}, byName["bridge-network"].Services[0].Ports)
	require.Equal(t, []scenario.HTTPCheck{{Service: "web", Port: 80, Path: "/index.html", Status: 200, BodyRegex: `^hello from the board\n$`}},
		byName["port-forward"].Expect.HTTP)
	require.Equal(t, []ctrd.File{{Path: "/input/data.txt", Content: []byte("socbox\n")}}, byName["files-in-and-out"].Container.Files)
	require.Equal(t, "SOCBOX\n", *byName["files-in-and-out"].Expect.Files["/output/result.txt"].Content)
	require.Equal(t, 1, byName["restart-keeps-writes"].Container.Restarts)
}

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func TestOutputIntactHashIsSeqOutput(t *testing.T) {
	for _, s := range Bundled() {
		if s.Name != "output-intact" {
			continue
		}
		require.Contains(t, strings.Join(s.Container.Cmd, " "), "seq 1 100000;")
		sum := sha256.Sum256([]byte(seqOutput(100000)))
		require.Equal(t, hex.EncodeToString(sum[:]), s.Expect.StdoutSHA256)
		return
	}
	t.Fatal("no output-intact scenario")
}
