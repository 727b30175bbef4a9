package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/machine"
)

// stopCounter is a machine that counts its stops and checks that its run
// directory is still there when it is stopped (QEMU's QMP socket is in it).
type stopCounter struct {
	machine.Off
	t      *testing.T
	runDir string
	stops  int
}

func (m *stopCounter) Stop(context.Context) error {
	m.stops++
	_, err := os.Stat(m.runDir)
	require.NoError(m.t, err, "the machine stops before its run directory goes")
	return nil
}

// keepBoard is a board as prepareImage leaves it: Close stops its machine
// and removes its run directory.
func keepBoard(t *testing.T, opts ...Option) (*Board, *stopCounter) {
	o, err := newOptions(defaultOptions(), opts)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.Mkdir(dir, 0o700))
	o.runDir = dir
	m := &stopCounter{t: t, runDir: dir}
	b := &Board{opts: o, Machine: m, life: newLifecycle("raspi4b-fast", o, t.Logf)}
	b.cleanup.Push(b.removeRunDir(dir))
	b.cleanup.Push(b.stopMachine)
	return b, m
}

func TestKeepOnFailureKeepsAFailedBoardUntilRelease(t *testing.T) {
	b, m := keepBoard(t, WithKeepOnFailure())
	// What RunScenario does when a scenario fails.
	b.markFailed()
	require.True(t, b.Failed())
	require.NoError(t, b.Close())
	require.True(t, b.Kept())
	require.Zero(t, m.stops, "a kept board goes on running after Close")
	require.DirExists(t, b.RunDir())

	require.NoError(t, b.Release(t.Context()))
	require.Equal(t, 1, m.stops)
	require.NoDirExists(t, b.RunDir())
	require.False(t, b.Kept())
	require.NoError(t, b.Release(t.Context()), "once")
	require.Equal(t, 1, m.stops)
}

func TestKeepOnFailureKeepsABoardThatDidNotGetReady(t *testing.T) {
	b, m := keepBoard(t, WithKeepOnFailure())
	_ = b.life.fail(StageSSH, os.ErrDeadlineExceeded, "")
	require.NoError(t, b.Close())
	require.True(t, b.Kept())
	require.Zero(t, m.stops)
	require.NoError(t, b.Release(t.Context()))
	require.Equal(t, 1, m.stops)
}

func TestBoardsThatPassedOrAreNotKeptStopAtClose(t *testing.T) {
	for name, c := range map[string]struct {
		opts   []Option
		failed bool
	}{
		"passed, keep on failure": {opts: []Option{WithKeepOnFailure()}},
		"failed, not kept":        {failed: true},
	} {
		t.Run(name, func(t *testing.T) {
			b, m := keepBoard(t, c.opts...)
			if c.failed {
				b.markFailed()
			}
			require.NoError(t, b.Close())
			require.False(t, b.Kept())
			require.Equal(t, 1, m.stops)
			require.NoDirExists(t, b.RunDir())
			require.NoError(t, b.Release(t.Context()), "nothing to release")
			require.Equal(t, 1, m.stops)
		})
	}
}
