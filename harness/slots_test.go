package harness

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimitBoards(t *testing.T) {
	t.Cleanup(func() { require.NoError(t, LimitBoards(MaxBoards())) })
	nolog := func(string, ...any) {}
	require.ErrorContains(t, LimitBoards(0), "give at least 1")

	require.NoError(t, LimitBoards(1))
	release, err := acquireSlot(t.Context(), nolog)
	require.NoError(t, err)
	// The second board waits for the first.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	var said []string
	_, err = acquireSlot(ctx, func(f string, a ...any) { said = append(said, f) })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, said, 1, "it says it waits")
	// The bound cannot change under a running board.
	require.ErrorContains(t, LimitBoards(2), "1 board(s) run already, with 1 at once")
	require.NoError(t, LimitBoards(1), "the same bound is no change")
	release()
	release() // twice is once

	require.NoError(t, LimitBoards(2))
	r1, err := acquireSlot(t.Context(), nolog)
	require.NoError(t, err)
	r2, err := acquireSlot(t.Context(), nolog)
	require.NoError(t, err, "two boards at once")
	r1()
	r2()
}
