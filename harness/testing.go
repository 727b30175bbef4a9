package harness

import "testing"

// Boot returns a booted, containerd-ready board for a test, or fails the
// test with the stage that went wrong. Cleanup is registered on t before
// the error is checked, so a half-started board is always stopped. The
// harness's progress goes to t.Logf, and under go test -v each container's
// output lines too, as they come (WithOutputLines).
//
//	b := harness.Boot(t, "raspi4b-fast")
//	res, err := b.Run(ctx, harness.Container{Cmd: []string{"uname", "-m"}})
func Boot(t testing.TB, board string, opts ...Option) *Board {
	t.Helper()
	all := []Option{WithBoard(board), WithLogf(t.Logf)}
	if testing.Verbose() {
		// Under -v, what each container writes shows up as it runs.
		all = append(all, WithOutputLines())
	}
	all = append(all, opts...)
	b, err := Start(t.Context(), all...)
	t.Cleanup(func() {
		if b != nil && t.Failed() {
			// WithKeepOnFailure keeps the board of a failed test.
			b.markFailed()
		}
		if err := b.Close(); err != nil {
			t.Errorf("socbox cleanup: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("socbox: %v", err)
	}
	return b
}
