package harness

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScenarioChecksOOMKill(t *testing.T) {
	b := &Board{}
	oom := ContainerResult{ExitCode: 137, OOMKilled: true}
	require.Empty(t, b.check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, oom))
	require.Empty(t, b.check(Expect{ExitCode: 137}, oom), "not asked about")

	f := b.check(Expect{}, oom)
	require.Equal(t, []string{"exit code 137, want 0 (the OOM killer ended it: it went over its memory limit)"}, f,
		"an unexpected OOM kill says so")

	f = b.check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, ContainerResult{ExitCode: 137})
	require.Equal(t, []string{"not OOM-killed (exit code 137), want killed for going over its memory limit"}, f)

	f = b.check(Expect{ExitCode: 137, OOMKilled: Bool(false)}, oom)
	require.Equal(t, []string{"OOM-killed for going over its memory limit, want not"}, f)
}
