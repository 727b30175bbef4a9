// Package scenarios holds the scenarios socbox runs on every board, and the
// Go tests that boot real boards to run them (`go test ./scenarios/...`).
package scenarios

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/socbox/socbox/harness"
)

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Bundled returns the scenarios every board image must pass.
func Bundled() []harness.Scenario {
	const lines = 100000 // ~590 KB of output
	return []harness.Scenario{
		{
			Name:        "arch",
			Description: "the container runs on the board's architecture",
			Container:   harness.Container{Cmd: []string{"uname", "-m"}},
			Expect:      harness.Expect{Stdout: harness.Str("${UNAME_M}\n")},
		},
		{
			Name:        "exit-code",
			Description: "a command's exit status reaches the harness unchanged",
			Container:   harness.Container{Cmd: []string{"sh", "-c", "echo about to fail; exit 3"}},
			Expect:      harness.Expect{ExitCode: 3, Stdout: harness.Str("about to fail\n")},
		},
		{
			Name:        "output-intact",
			Description: "large stdout arrives byte for byte, and stderr separately",
			Container:   harness.Container{Cmd: []string{"sh", "-c", fmt.Sprintf("seq 1 %d; echo done >&2", lines)}},
			Expect:      harness.Expect{StdoutSHA256: sha256Hex(seqOutput(lines)), Stderr: harness.Str("done\n")},
		},
		{
			Name:        "env",
			Description: "environment variables reach the container",
			Container:   harness.Container{Cmd: []string{"sh", "-c", "echo $GREETING from $(hostname)"}, Env: []string{"GREETING=hello"}},
			Expect:      harness.Expect{StdoutRegex: `^hello from \S+\n$`},
		},
	}
}
