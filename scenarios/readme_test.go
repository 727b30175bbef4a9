package scenarios

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's two commands are what a new user runs and what CI runs
// (.ci/run reads the test command out of the README): each must be there,
// under its marker, and name a script that exists and can be run. .ci/run's
// own extraction is run too, so the two readings cannot drift apart.
func TestShippedREADMECommands(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	block := func(marker string) string {
		_, after, ok := strings.Cut(string(readme), "<!-- "+marker+" -->\n```sh\n")
		require.True(t, ok, "README.md has no ```sh block right under <!-- %s -->", marker)
		body, _, ok := strings.Cut(after, "```")
		require.True(t, ok)
		return strings.TrimSpace(body)
	}
	for _, marker := range []string{"demo-command", "test-command"} {
		cmd := block(marker)
		require.NotContains(t, cmd, "\n", "%s: one command", marker)
		script := strings.Fields(cmd)[0]
		st, err := os.Stat(filepath.Join(root, script))
		require.NoError(t, err, "%s names %s", marker, script)
		require.NotZero(t, st.Mode()&0o111, "%s is executable", script)
	}

	// What .ci/run would execute: its awk program, run on the README.
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	require.NoError(t, err)
	start := strings.Index(string(ci), "awk '")
	require.GreaterOrEqual(t, start, 0, ".ci/run reads the README with awk")
	prog, _, ok := strings.Cut(string(ci)[start+len("awk '"):], "'")
	require.True(t, ok)
	out, err := exec.Command("awk", prog, filepath.Join(root, "README.md")).Output()
	require.NoError(t, err)
	require.Equal(t, block("test-command"), strings.TrimSpace(string(out)))
}
