package scenarios

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
)

// attachToEmulated attaches to an emulated board the way `socbox run
// --target` reaches a flashed one: over SSH by address (its port forward),
// with a key file and a known_hosts file (the board's pinned host keys), and
// no access to the machine behind it.
func attachToEmulated(t *testing.T, vm *harness.Board, opts ...harness.Option) *harness.Board {
	t.Helper()
	ep := vm.Machine.Endpoint().SSH
	target := fmt.Sprintf("ssh://%s@%s:%d", ep.User, ep.Host, ep.Port)
	all := append([]harness.Option{
		harness.WithBoard(vm.Profile.Slug), // QEMU's virt machine has no board model to detect
		harness.WithIdentity(vm.KeyPath),
		harness.WithKnownHosts(filepath.Join(vm.RunDir(), "known_hosts")),
		harness.WithLogf(t.Logf),
	}, opts...)
	b, err := harness.Attach(t.Context(), target, all...)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close target: %v", err)
		}
	})
	require.NoError(t, err)
	require.Equal(t, harness.StageReady, b.Stage())
	tgt, ok := b.Target()
	require.True(t, ok, "the board's driver is a real board's: %T", b.Machine)
	require.Equal(t, vm.Profile.Platform.UnameMachine(), tgt.Machine)
	require.Equal(t, "named with --board", tgt.ProfileFrom)
	return b
}

func targetBoard(t *testing.T) string {
	if sel := selectedBoards(t); len(sel) == 1 {
		return sel[0]
	}
	return "raspi4b-fast"
}

// TestTarget runs the bundled scenarios through a target: a board booted
// here (restored from its snapshot, containerd running) and attached to as
// if it were real. Every scenario must pass as it does on the emulated
// board itself.
func TestTarget(t *testing.T) {
	bootsVM(t)
	slug := targetBoard(t)
	vm := harness.Boot(t, slug, suiteOption()...)
	b := attachToEmulated(t, vm)
	rb := b.Report()
	require.Equal(t, "real", rb.Tier)
	require.NotNil(t, rb.Target)
	defer record(t, rb)
	tgt, _ := b.Target()
	runScenarios(t, b, rb, "target "+tgt.URL)
}

// TestTargetInstallsContainerd attaches to a board that has no containerd
// (booted cold WithoutContainerd: the default image does not ship it), so
// Attach must install it and import busybox before a scenario can run.
func TestTargetInstallsContainerd(t *testing.T) {
	bootsVM(t)
	slug := targetBoard(t)
	vm := harness.Boot(t, slug, append(suiteOption(), harness.WithoutContainerd())...)
	res, err := vm.SSH.Run(t.Context(), "command -v containerd || test -S /run/containerd/containerd.sock")
	require.NoError(t, err)
	require.NotEqual(t, 0, res.ExitCode, "the board must start without containerd: %s", res.Stdout)

	b := attachToEmulated(t, vm)
	tgt, _ := b.Target()
	stages := b.Timings()
	require.True(t, slices.ContainsFunc(stages, func(s harness.StageTiming) bool { return s.Stage == harness.StageContainerd }))
	for _, s := range Bundled() {
		if s.Name != "arch" && s.Name != "exit-code" {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			res := b.RunScenario(t.Context(), s)
			require.Empty(t, res.Failures, "scenario %s on target %s (stdout %q, stderr %q)", s.Name, tgt.URL, clip(res.Stdout), clip(res.Stderr))
		})
	}
}
