package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's two commands are what a new user runs and what CI runs
// (.ci/run runs the test command): each must be there, under its marker,
// and name a script that exists and can be run, and .ci/run must run the
// README's test command and nothing else.
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

	// .ci/run runs exactly the README's test command.
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	require.NoError(t, err)
	var last string
	for _, line := range strings.Split(strings.TrimSpace(string(ci)), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			last = line
		}
	}
	require.Equal(t, "exec "+block("test-command"), last, ".ci/run's last command is the README's test command")
}
