package scenarios

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/plan"
)

// The plan the boot tests follow, as SOCBOX_BOARDS, SOCBOX_RUN,
// SOCBOX_SKIP and SOCBOX_SHARD make it; nothing boots.
func TestPlanOfBundledScenarios(t *testing.T) {
	flags := []*string{boardFlag, suiteFlag, shardFlag}
	saved := []string{*boardFlag, *suiteFlag, *shardFlag}
	for _, f := range flags {
		*f = ""
	}
	reset := func() { planOnce, bundled, shardOwners = sync.Once{}, nil, nil }
	t.Cleanup(func() {
		for i, f := range flags {
			*f = saved[i]
		}
		reset()
	})
	t.Setenv("SOCBOX_SUITE", "")
	t.Setenv("SOCBOX_SUITES", "")
	t.Setenv("SOCBOX_BOARDS", "raspi4b-fast,raspi3b")
	t.Setenv("SOCBOX_RUN", "^(arch|env|tag:network)$")
	t.Setenv("SOCBOX_SKIP", "^tag:network$")
	t.Setenv("SOCBOX_SHARD", "2/3")
	reset()

	p, sel, owners := bundledPlan(t)
	require.False(t, sel.Match("bridge-network", []string{"network"}))
	unit := func(board, image, scenario string) plan.Unit {
		return plan.Unit{Board: board, Image: image, Scenario: scenario}
	}
	// TestBundledScenarios on both boards, TestBookworm and TestCrun on raspi4b-fast.
	require.Equal(t, []plan.Unit{
		unit("raspi3b", "debian-trixie", "arch"), unit("raspi3b", "debian-trixie", "env"),
		unit("raspi4b-fast", "debian-bookworm", "arch"), unit("raspi4b-fast", "debian-bookworm", "env"),
		unit("raspi4b-fast", "debian-trixie", "arch"), unit("raspi4b-fast", "debian-trixie", "env"),
		unit("raspi4b-fast", "debian-trixie+crun", "arch"), unit("raspi4b-fast", "debian-trixie+crun", "env"),
	}, p.Units)
	require.Equal(t, plan.Shard{K: 2, N: 3}, p.Shard)
	require.Equal(t, []plan.Unit{
		unit("raspi4b-fast", "debian-bookworm", "arch"), unit("raspi4b-fast", "debian-bookworm", "env"), unit("raspi4b-fast", "debian-trixie", "arch"),
	}, p.Mine())
	// raspi3b has nothing in shard 2: it is not booted.
	require.Empty(t, unitsHere(t, "raspi3b", "debian-trixie"))
	require.Empty(t, unitsHere(t, "raspi4b-fast", "debian-trixie+crun"))
	require.Len(t, unitsHere(t, "raspi4b-fast", "debian-trixie"), 1)
	// And a skipped subtest can say who runs the rest.
	require.Equal(t, 3, owners[unit("raspi4b-fast", "debian-trixie", "env")])
	require.Equal(t, 1, owners[unit("raspi3b", "debian-trixie", "arch")])

	// A suite chosen explicitly leaves out TestBookworm's units.
	t.Setenv("SOCBOX_SUITE", "bookworm")
	t.Setenv("SOCBOX_SHARD", "")
	reset()
	p, _, _ = bundledPlan(t)
	require.Len(t, p.Units, 6)
	require.True(t, p.Shard.Whole())
	require.Equal(t, "debian-bookworm", p.Units[0].Image)

	// A board this host's QEMU lacks the machine of is skipped, so it is
	// not in the plan either: a merge would call its units missing.
	t.Setenv("SOCBOX_BOARDS", "raspi4b,raspi3b")
	reset()
	p, _, _ = bundledPlan(t)
	lacks := qemuLacksMachine(t, "raspi4b") != nil
	for _, u := range p.Units {
		if u.Board == "raspi4b" {
			require.False(t, lacks, "raspi4b is planned though this QEMU lacks its machine")
		}
	}
}
