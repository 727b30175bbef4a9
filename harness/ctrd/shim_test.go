package ctrd

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A session removes only the keeper it started: `socbox boot` leaves its
// keeper running in the guest, and a `socbox run --target` against that
// board must not take it away when it ends.
func TestShimKeeperBelongsToItsSession(t *testing.T) {
	p := hostPlatform(t)
	archive := busyboxArchive(t, p, busyboxRef, nil)
	d := startContainerd(t)
	stateDir := filepath.Join(d.dir, "guest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func(opts ...Option) *Runtime {
		r, err := Connect(ctx, localShell{}, append([]Option{WithSocket(d.socket), WithStateDir(stateDir)}, opts...)...)
		t.Cleanup(func() { r.Close() })
		require.NoError(t, err)
		return r
	}

	boot := connect()
	name, err := boot.Import(ctx, bytes.NewReader(archive), p)
	require.NoError(t, err)
	require.NoError(t, boot.KeepShimWarm(ctx, name))
	require.True(t, boot.keeperRunning(ctx, KeeperID))

	// A session that finds the keeper running did not start it.
	again := connect()
	require.NoError(t, again.KeepShimWarm(ctx, name))
	require.NoError(t, again.StopShimKeeper(ctx))
	require.True(t, boot.keeperRunning(ctx, KeeperID), "another session's keeper was removed")

	// Sessions on a shared guest each run a keeper of their own, and
	// containers of one go on when another ends.
	target1, target2 := connect(WithSharedGuest()), connect(WithSharedGuest())
	require.NoError(t, target1.KeepShimWarm(ctx, name))
	require.NoError(t, target2.KeepShimWarm(ctx, name))
	k1, k2 := target1.shimSandbox(), target2.shimSandbox()
	require.NotEqual(t, KeeperID, k1)
	require.NotEqual(t, k1, k2)
	require.NoError(t, target1.StopShimKeeper(ctx))
	require.False(t, boot.keeperRunning(ctx, k1))
	require.True(t, boot.keeperRunning(ctx, k2))
	res, err := target2.Run(ctx, Container{Image: name, Cmd: []string{"echo", "still runs"}})
	require.NoError(t, err)
	require.Equal(t, "still runs\n", string(res.Stdout))
	require.NoError(t, target2.StopShimKeeper(ctx))
	require.False(t, boot.keeperRunning(ctx, k2))
	require.True(t, boot.keeperRunning(ctx, KeeperID), "the boot session's keeper outlives them all")

	require.NoError(t, boot.StopShimKeeper(ctx))
	require.False(t, boot.keeperRunning(ctx, KeeperID))
}
