package harness

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

func TestScenarioNeedsNetwork(t *testing.T) {
	withNIC, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	noNIC, err := boards.Lookup("raspi4b")
	require.NoError(t, err)

	s := Scenario{Name: "host-network", Needs: []string{NeedNetwork}}
	require.Empty(t, s.Unmet(withNIC))
	require.Equal(t, "needs a network interface; raspi4b has none (see `socbox boards`)", s.Unmet(noNIC))
	require.Empty(t, Scenario{Name: "arch"}.Unmet(noNIC), "a scenario that needs nothing runs everywhere")

	// Not run, and not a failure either.
	b := &Board{Profile: noNIC}
	res := b.RunScenario(t.Context(), s)
	require.Equal(t, "n/a", res.Status())
	require.Contains(t, res.NotApplicable, "raspi4b has none")
}
