package harness

import "testing"

// Boot returns a booted, containerd-ready board for a test, or fails the
// test with the stage that went wrong. Cleanup is registered on t before
// the error is checked, so a half-started board is always stopped. The
// harness's progress goes to t.Logf.
//
//	b := harness.Boot(t, "raspi4b-fast")
//	res, err := b.Run(ctx, harness.Container{Cmd: []string{"uname", "-m"}})
func Boot(t testing.TB, board string, opts ...Option) *Board {
	t.Helper()
	all := append([]Option{WithBoard(board), WithLogf(t.Logf)}, opts...)
	b, err := Start(t.Context(), all...)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("socbox cleanup: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("socbox: %v", err)
	}
	return b
}
