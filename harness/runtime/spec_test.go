package runtime

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNumericUser(t *testing.T) {
	for _, tc := range []struct {
		user     string
		uid, gid uint32
		err      string
	}{
		{"", 0, 0, ""}, {"root", 0, 0, ""}, {"1000", 1000, 1000, ""}, {"1000:50", 1000, 50, ""},
		{"nobody", 0, 0, "numeric"}, {"1000:staff", 0, 0, "group must be numeric"},
	} {
		uid, gid, err := numericUser(tc.user)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.user)
			continue
		}
		require.NoError(t, err, tc.user)
		require.Equal(t, [2]uint32{tc.uid, tc.gid}, [2]uint32{uid, gid}, tc.user)
	}
}

func TestMergeEnv(t *testing.T) {
	require.Equal(t, []string{"PATH=/x", "A=2", "B=3"}, mergeEnv([]string{"PATH=/x", "A=1"}, []string{"A=2", "B=3"}))
}
