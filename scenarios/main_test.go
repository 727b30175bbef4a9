package scenarios

import (
	"os"
	"testing"
)

// TestMain removes what the tests built for themselves (the socbox
// command); the results directory stays, for the reader of the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if socboxBinDir != "" {
		_ = os.RemoveAll(socboxBinDir)
	}
	os.Exit(code)
}
