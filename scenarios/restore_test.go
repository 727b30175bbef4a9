package scenarios

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
)

// TestRestore checks that every selected board comes back from its
// provisioned snapshot, not from a boot, and runs containers with its
// network there. raspi3b is the board this is about: QEMU cannot save its
// usb-net, so its state is saved without the NIC, SSH goes over its serial
// port and the NIC is plugged back after the restore. A board without a
// snapshot yet is provisioned first (raspi3b twice: its disk, then its
// state), which the later tests then restore.
func TestRestore(t *testing.T) {
	bootsVM(t)
	for _, slug := range selectedBoards(t) {
		t.Run(slug, func(t *testing.T) {
			skipUnlessQEMUHasMachine(t, slug)
			restored := func(b *harness.Board) bool {
				for _, st := range b.Timings() {
					if st.Stage == harness.StageRestore {
						return true
					}
				}
				return false
			}
			for range 2 {
				b, err := harness.Start(t.Context(), append(suiteOption(), harness.WithBoard(slug), harness.WithLogf(t.Logf))...)
				if b != nil {
					defer b.Close()
				}
				require.NoError(t, err)
				was := restored(b)
				require.NoError(t, b.Close())
				if was {
					break
				}
			}
			b := harness.Boot(t, slug, suiteOption()...)
			require.True(t, restored(b), "%s booted instead of restoring its snapshot: stages %v", slug, b.Timings())
			for _, s := range Bundled() {
				if s.Name != "host-network" && s.Name != "arch" || !s.AppliesTo(b.Profile) {
					continue
				}
				res := b.RunScenario(context.Background(), s)
				require.Empty(t, res.Failures, "scenario %s on a restored %s (stdout %q, stderr %q)", s.Name, slug, clip(res.Stdout), clip(res.Stderr))
			}
		})
	}
}
