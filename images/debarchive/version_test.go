package debarchive

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0~~", "1.0~", -1},
		{"1.0", "1.0+b1", -1},
		{"1.0-1", "1.0-2", -1},
		{"1.0-10", "1.0-9", 1},
		{"1:1.0", "2.0", 1},
		{"0:1.0", "1.0", 0},
		{"1.0a", "1.0", 1},
		{"1.0a", "1.0+", -1},
		{"1.001", "1.1", 0},
		{"6.12.117-1", "6.12.107-1", 1},
		{"1.7.24~ds1-6+deb13u1", "1.7.24~ds1-6", 1},
		{"1:1.37.0-6+b9", "1:1.37.0-6", 1},
		{"2.41-12+deb13u5", "2.41-12", 1},
	} {
		require.Equal(t, tc.want, CompareVersions(tc.a, tc.b), "%s vs %s", tc.a, tc.b)
		require.Equal(t, -tc.want, CompareVersions(tc.b, tc.a), "%s vs %s", tc.b, tc.a)
	}
}

func TestSatisfies(t *testing.T) {
	require.True(t, satisfies("2.41-12", ">=", "2.34"))
	require.False(t, satisfies("2.41-12", "<<", "2.34"))
	require.True(t, satisfies("1.0", "=", "1.0"))
	require.True(t, satisfies("1.0", "<=", "1.0"))
	require.True(t, satisfies("1.1", ">>", "1.0"))
	require.True(t, satisfies("1.1", ">", "1.1"), "the obsolete > means >=")
	require.True(t, satisfies("anything", "", ""))
}
