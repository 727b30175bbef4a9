package plan

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// units is every board × image × scenario of a small matrix: boards with
// different numbers of scenarios, two images on one board.
func units() []Unit {
	var out []Unit
	for _, b := range []struct {
		board  string
		images []string
		n      int
	}{
		{"raspi4b", []string{"debian-trixie", "debian-bookworm", "debian-trixie+crun"}, 5},
		{"raspi3b", []string{"debian-trixie"}, 4},
		{"beaglebone-black", []string{"debian-trixie"}, 3},
		{"raspi3b-fast", []string{"2025-05-13-raspios-bookworm-arm64-lite.img.xz"}, 2},
	} {
		for _, im := range b.images {
			for i := range b.n {
				out = append(out, Unit{Board: b.board, Image: im, Scenario: fmt.Sprintf("s%02d", i)})
			}
		}
	}
	return out
}

func TestSplitRunsEveryUnitOnceInEvenShards(t *testing.T) {
	all := units()
	for _, m := range []int{0, 1, 2, 5, 6, len(all)} {
		for n := 1; n <= 7; n++ {
			t.Run(fmt.Sprintf("%d units in %d shards", m, n), func(t *testing.T) {
				in := all[:m]
				parts := Split(in, n)
				require.Len(t, parts, n)
				seen := map[Unit]int{}
				minSize, maxSize := m, 0
				for k, part := range parts {
					minSize, maxSize = min(minSize, len(part)), max(maxSize, len(part))
					for _, u := range part {
						require.Zero(t, seen[u], "%s is in shard %d and in shard %d", u, seen[u], k+1)
						seen[u] = k + 1
					}
					// Shard.Of gives the same units as Split.
					require.Equal(t, part, Shard{K: k + 1, N: n}.Of(in))
				}
				require.Len(t, seen, m, "every unit is in a shard")
				for _, u := range in {
					require.NotZero(t, seen[u], "%s is in no shard", u)
				}
				require.LessOrEqual(t, maxSize-minSize, 1, "shard sizes differ by at most one")
				require.Equal(t, seen, Owners(in, n))
			})
		}
	}
}

func TestSplitIsTheSameWhateverTheInputOrder(t *testing.T) {
	all := units()
	want := Split(all, 4)
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(all)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		require.Equal(t, want, Split(shuffled, 4))
	}
	// A duplicate is one unit, not two.
	require.Equal(t, want, Split(append(slices.Clone(all), all[3], all[0]), 4))
}

func TestSplitKeepsABoardsScenariosTogether(t *testing.T) {
	// 4 boards × 6 scenarios in 4 shards: each shard boots one board.
	var in []Unit
	for _, b := range []string{"d", "c", "b", "a"} {
		for i := range 6 {
			in = append(in, Unit{Board: b, Image: "debian-trixie", Scenario: fmt.Sprint(i)})
		}
	}
	for k, part := range Split(in, 4) {
		boardsIn := map[string]bool{}
		for _, u := range part {
			boardsIn[u.Board] = true
		}
		require.Len(t, boardsIn, 1, "shard %d", k+1)
	}
}

func TestSortedOrdersByBoardImageScenario(t *testing.T) {
	in := []Unit{{"b", "x", "1"}, {"a", "y", "1"}, {"a", "x", "2"}, {"a", "x", "1"}, {"a", "x", "1"}}
	require.Equal(t, []Unit{{"a", "x", "1"}, {"a", "x", "2"}, {"a", "y", "1"}, {"b", "x", "1"}}, Sorted(in))
	// Field by field, not the joined string: "a/b" + "c" and "a" + "b/c"
	// are two units.
	require.Len(t, Sorted([]Unit{{"a/b", "c", "s"}, {"a", "b/c", "s"}}), 2)
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  string
	}{
		{in: "1/1", want: Shard{1, 1}},
		{in: "2/3", want: Shard{2, 3}},
		{in: " 3/3 ", want: Shard{3, 3}},
		{in: "1000/1000", want: Shard{1000, 1000}},
		{in: "0/3", err: "K must be from 1 to N (3); shards are counted from 1"},
		{in: "4/3", err: "K must be from 1 to N (3)"},
		{in: "1/0", err: "N must be from 1 to 1000"},
		{in: "0/0", err: "N must be from 1 to 1000"},
		{in: "1/1001", err: "N must be from 1 to 1000"},
		{in: "-1/3", err: "K must be from 1 to N"},
		{in: "3", err: "want K/N, e.g. 2/3"},
		{in: "", err: "want K/N"},
		{in: "a/b", err: "whole numbers"},
		{in: "1/2/3", err: "whole numbers"},
		{in: "1.5/3", err: "whole numbers"},
	} {
		got, err := ParseShard(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
}

func TestShardInJSON(t *testing.T) {
	p := Plan{Shard: Shard{2, 3}, Units: []Unit{{"raspi4b", "debian-trixie", "arch"}}}
	data, err := json.Marshal(p)
	require.NoError(t, err)
	require.JSONEq(t, `{"shard":"2/3","units":[{"board":"raspi4b","image":"debian-trixie","scenario":"arch"}]}`, string(data))
	var back Plan
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, p, back)

	// Unsharded: no shard at all.
	data, err = json.Marshal(Plan{Units: []Unit{}})
	require.NoError(t, err)
	require.JSONEq(t, `{"units":[]}`, string(data))
	require.Error(t, json.Unmarshal([]byte(`{"shard":"4/3"}`), &back))
}

func TestSelection(t *testing.T) {
	type sc struct {
		name string
		tags []string
	}
	list := []sc{{"arch", []string{"basics"}}, {"exit-code", []string{"basics"}}, {"bridge", []string{"network", "slow"}}, {"overlay", nil}}
	names := func(run, skip string) []string {
		sel, err := ParseSelection(run, skip)
		require.NoError(t, err)
		var out []string
		for _, s := range list {
			if sel.Match(s.name, s.tags) {
				out = append(out, s.name)
			}
		}
		return out
	}
	require.Equal(t, []string{"arch", "exit-code", "bridge", "overlay"}, names("", ""))
	require.Equal(t, []string{"arch", "exit-code"}, names("^(arch|exit-code)$", ""))
	require.Equal(t, []string{"exit-code", "bridge"}, names("e", "^arch$|overlay"), "not anchored, like go test -run")
	require.Equal(t, []string{"arch", "exit-code"}, names("tag:basics", ""))
	require.Equal(t, []string{"arch", "exit-code", "overlay"}, names("", "^tag:slow$"))
	require.Equal(t, []string{"exit-code"}, names("tag:basics", "arch"), "skip wins over run")
	require.Equal(t, []string{"overlay"}, names("", "tag:"), "a tagged scenario matches tag:")

	_, err := ParseSelection("(", "[")
	require.ErrorContains(t, err, `--run "(" is not a regular expression`)
	require.ErrorContains(t, err, `--skip "[" is not a regular expression`)
	sel, err := ParseSelection("a", "b")
	require.NoError(t, err)
	require.Equal(t, `--run "a" --skip "b"`, sel.String())
	require.True(t, Selection{}.Empty())
}

func TestImageNames(t *testing.T) {
	require.Equal(t, "debian-trixie", ImageID(DefaultImage("trixie"), false))
	require.Equal(t, "debian-bookworm+crun", ImageID(DefaultImage("bookworm"), true))
	for in, want := range map[string]string{
		"./2025-05-13-raspios-bookworm-arm64-lite.img.xz":                          "2025-05-13-raspios-bookworm-arm64-lite.img.xz",
		"/srv/images/bbb.img":                                                      "bbb.img",
		"https://example.org/raspios/raspios-arm64-lite.img.xz?token=abc#fragment": "raspios-arm64-lite.img.xz",
		"bbb.img": "bbb.img",
	} {
		require.Equal(t, want, UserImage(in), in)
	}
}

// FuzzParseShard: whatever --shard or SOCBOX_SHARD says, ParseShard either
// refuses it or returns a shard that checks out and reads back the same.
func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"1/1", "2/3", "0/3", "4/3", "1/1001", "a/b", "", "/", "9999999999999999999/1", "+1/+2", " 1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			return
		}
		require.NoError(t, sh.Check())
		require.True(t, sh.K >= 1 && sh.K <= sh.N && sh.N <= MaxShards)
		back, err := ParseShard(sh.String())
		require.NoError(t, err)
		require.Equal(t, sh, back)
	})
}
