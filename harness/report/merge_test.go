package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/plan"
)

// planned is 3 boards × 4 scenarios on the default image.
func planned() []plan.Unit {
	var out []plan.Unit
	for _, b := range []string{"raspi4b", "raspi3b", "beaglebone-black"} {
		for _, s := range []string{"arch", "env", "exit-code", "seccomp"} {
			out = append(out, plan.Unit{Board: b, Image: "debian-trixie", Scenario: s})
		}
	}
	return out
}

// shardRun is what socbox run --shard K/N writes: the whole plan, and a
// board for each board of its shard with a passed result for each unit.
func shardRun(all []plan.Unit, sh plan.Shard, host string) *Run {
	t0 := time.Date(2026, 11, 30, 2, 0, sh.K, 0, time.UTC)
	r := &Run{StartedAt: t0, FinishedAt: t0.Add(time.Duration(sh.K) * time.Minute), Host: Host{OS: "linux", Hostname: host},
		Plan: &plan.Plan{Shard: sh, Units: plan.Sorted(all)}}
	var b *Board
	for _, u := range sh.Of(all) {
		if b == nil || b.Board != u.Board || b.ImageID != u.Image {
			b = &Board{Board: u.Board, ImageID: u.Image, ConsoleLogs: []string{filepath.Join("out", u.Board, "serial0.log")}}
			r.Boards = append(r.Boards, b)
		}
		b.Scenarios = append(b.Scenarios, &Scenario{Name: u.Scenario, Passed: true, Seconds: 1})
	}
	return r
}

func inputs(all []plan.Unit, n int, ks ...int) []MergeInput {
	var out []MergeInput
	for _, k := range ks {
		out = append(out, MergeInput{Name: fmt.Sprintf("shard-%d/results.json", k), Run: shardRun(all, plan.Shard{K: k, N: n}, fmt.Sprintf("runner-%d", k))})
	}
	return out
}

func mergedUnits(r *Run) []plan.Unit {
	var out []plan.Unit
	for _, b := range r.Boards {
		for _, s := range b.Scenarios {
			out = append(out, b.Unit(s))
		}
	}
	return out
}

func TestMergeOfEveryShardIsTheWholePlan(t *testing.T) {
	all := planned()
	for n := 1; n <= 5; n++ {
		ks := make([]int, n)
		for i := range ks {
			ks[i] = n - i // any order
		}
		m := MergeRuns(inputs(all, n, ks...))
		require.True(t, m.Merge.Complete(), "n=%d: %+v", n, m.Merge)
		require.Empty(t, m.Merge.Notes)
		require.ElementsMatch(t, all, mergedUnits(m))
		require.Equal(t, plan.Sorted(all), m.Plan.Units)
		require.True(t, m.Plan.Shard.Whole(), "the merge is the whole plan")
		require.True(t, m.Passed())
		require.Len(t, m.Merge.From, n)
		require.Equal(t, time.Date(2026, 11, 30, 2, 0, 1, 0, time.UTC), m.StartedAt, "the earliest start")
	}
}

func TestPageOfAShardSaysWhichShard(t *testing.T) {
	page, err := shardRun(planned(), plan.Shard{K: 2, N: 3}, "r").HTML(t.TempDir())
	require.NoError(t, err)
	require.Contains(t, string(page), "<span>shard 2/3: 4 of the 12 units planned</span>")
}

func TestMergeSaysWhichUnitsAreMissing(t *testing.T) {
	all := planned()
	m := MergeRuns(inputs(all, 3, 1, 3))
	require.False(t, m.Merge.Complete())
	require.False(t, m.Passed(), "a merge with units missing has not passed")
	require.Equal(t, plan.Shard{K: 2, N: 3}.Of(all), m.Merge.Missing)
	require.Len(t, m.Merge.Notes, 1)
	require.Contains(t, m.Merge.Notes[0], "no results for shard 2/3 (4 units)")
	require.Contains(t, m.Merge.Notes[0], "shard-1/results.json, shard-3/results.json")

	// junit.xml has an error for each missing unit.
	data, err := m.JUnit()
	require.NoError(t, err)
	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got))
	last := got.Suites[len(got.Suites)-1]
	require.Equal(t, "socbox merge", last.Name)
	require.Equal(t, 4, last.Errors)
	require.Equal(t, 4, got.Errors)
	require.Contains(t, last.Cases[0].Error.Message, "not run: "+m.Merge.Missing[0].String()+" is in the plan but in none of the merged results")

	// So does the page.
	page, err := m.HTML(t.TempDir())
	require.NoError(t, err)
	require.Contains(t, string(page), "Merged from 2 results</strong>: 4 units missing, 0 duplicated")
	require.Contains(t, string(page), "<code>"+m.Merge.Missing[0].String()+"</code>")
}

func TestMergeSaysWhichUnitsAreDuplicated(t *testing.T) {
	all := planned()
	in := inputs(all, 2, 1, 2)
	again := inputs(all, 2, 2)
	again[0].Name = "retry/results.json"
	m := MergeRuns(append(in, again...))
	require.Empty(t, m.Merge.Missing)
	require.Len(t, m.Merge.Duplicated, 6)
	require.Equal(t, Duplicate{Unit: plan.Shard{K: 2, N: 2}.Of(all)[0], In: []string{"shard-2/results.json", "retry/results.json"}}, m.Merge.Duplicated[0])
	require.False(t, m.Passed())
	data, err := m.JUnit()
	require.NoError(t, err)
	require.Contains(t, string(data), `type="UnitDuplicated"`)
}

func TestMergeOfABoardMatrix(t *testing.T) {
	// Each job of a board matrix plans its own board, cut into 2 shards.
	var in []MergeInput
	for _, board := range []string{"raspi4b", "raspi3b"} {
		var units []plan.Unit
		for _, u := range planned() {
			if u.Board == board {
				units = append(units, u)
			}
		}
		for k := 1; k <= 2; k++ {
			in = append(in, MergeInput{Name: board + "-" + fmt.Sprint(k), Run: shardRun(units, plan.Shard{K: k, N: 2}, "r")})
		}
	}
	m := MergeRuns(in)
	require.True(t, m.Merge.Complete(), "%+v", m.Merge)
	require.Len(t, m.Plan.Units, 8)
	// Dropping one job is noticed: its units are in its sibling's plan.
	m = MergeRuns(in[1:])
	require.Len(t, m.Merge.Missing, 2)
}

func TestMergeMarksShardsAndHosts(t *testing.T) {
	all := planned()
	m := MergeRuns(inputs(all, 2, 1, 2))
	require.Equal(t, "runner-1", m.Host.Hostname)
	for _, b := range m.Boards {
		require.False(t, b.Shard.Whole())
		if b.Shard.K == 1 {
			require.Nil(t, b.Host, "same host as the merged run's")
		} else {
			require.Equal(t, "runner-2", b.Host.Hostname)
		}
	}
	data, err := m.JUnit()
	require.NoError(t, err)
	require.Contains(t, string(data), `hostname="runner-2"`)
	require.Contains(t, string(data), `<property name="shard" value="2/2">`)

	// The inputs are left as they were.
	in := inputs(all, 2, 1, 2)
	MergeRuns(in)
	require.Zero(t, in[1].Run.Boards[0].Shard)
	require.Nil(t, in[1].Run.Boards[0].Host)
}

func TestMergeAgainAndOldResults(t *testing.T) {
	all := planned()
	first := MergeRuns(inputs(all, 3, 1, 2))
	// Merged results survive results.json and can be merged again with
	// the shard that came late.
	data, err := json.Marshal(first)
	require.NoError(t, err)
	var back Run
	require.NoError(t, json.Unmarshal(data, &back))
	again := MergeRuns(append([]MergeInput{{Name: "merged/results.json", Run: &back}}, inputs(all, 3, 3)...))
	require.True(t, again.Merge.Complete(), "%+v", again.Merge)
	require.Len(t, again.Merge.From, 3, "where each part came from")

	// Results from before plans were recorded merge as what they hold.
	old := shardRun(all, plan.Shard{}, "old")
	old.Plan = nil
	m := MergeRuns([]MergeInput{{Name: "old.json", Run: old}})
	require.True(t, m.Merge.Complete())
	require.Len(t, m.Plan.Units, len(all))
}

func TestCopyLogsTakesOnlyLogsInTheResultsDirectory(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(in, "raspi4b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(in, "raspi4b", "serial0.log"), []byte("booted\n"), 0o644))
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("no"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(in, "evil"), 0o755))
	require.NoError(t, os.Symlink(secret, filepath.Join(in, "evil", "serial0.log")))

	// Where the shard's runner wrote them: a path that means nothing here.
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	r := &Run{Boards: []*Board{
		{Board: "raspi4b", ConsoleLogs: []string{filepath.Join(elsewhere, "raspi4b", "serial0.log"), filepath.Join(elsewhere, "raspi4b", "missing.log")}},
		{Board: "evil", ConsoleLogs: []string{filepath.Join(elsewhere, "evil", "serial0.log"), "../../../etc/passwd", secret, "..", ""}},
	}}
	require.NoError(t, r.CopyLogs(in, out, "shard-1"))
	copied := filepath.Join(out, "shard-1", "raspi4b", "serial0.log")
	require.Equal(t, []string{copied, filepath.Join(elsewhere, "raspi4b", "missing.log")}, r.Boards[0].ConsoleLogs)
	data, err := os.ReadFile(copied)
	require.NoError(t, err)
	require.Equal(t, "booted\n", string(data))
	require.Equal(t, []string{filepath.Join(elsewhere, "evil", "serial0.log"), "../../../etc/passwd", secret, "..", ""}, r.Boards[1].ConsoleLogs, "nothing outside the directory, no symlink")
	require.NoFileExists(t, filepath.Join(out, "shard-1", "evil", "serial0.log"))

	for _, label := range []string{"", "..", "a/b", "x\n"} {
		require.Error(t, r.CopyLogs(in, out, label), label)
	}
}

// FuzzMergeResults: results.json files come from other machines; whatever
// they hold, reading and merging them neither panics nor loses a result,
// and what it writes reads back.
func FuzzMergeResults(f *testing.F) {
	all := planned()
	for _, r := range []*Run{shardRun(all, plan.Shard{K: 1, N: 2}, "a"), shardRun(all, plan.Shard{K: 2, N: 2}, "b")} {
		data, err := json.Marshal(r)
		require.NoError(f, err)
		f.Add(data, []byte(`{"plan":{"shard":"2/3","units":[{"board":"b","image":"i","scenario":"s"}]},"boards":[{"board":"b","scenarios":[{"name":"t"}]}]}`))
	}
	f.Add([]byte(`{"boards":[null,{"scenarios":[null]}]}`), []byte(`{"plan":{"shard":"0/0"}}`))
	f.Add([]byte(`{"merge":{"from":[{"name":"x"}]},"plan":null}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var runs []MergeInput
		results := 0
		for i, data := range [][]byte{a, b} {
			r, err := parseResults(fmt.Sprint(i), data)
			if err != nil {
				return
			}
			for _, bd := range r.Boards {
				results += len(bd.Scenarios)
			}
			runs = append(runs, MergeInput{Name: fmt.Sprint(i), Run: r})
		}
		m := MergeRuns(runs)
		require.Len(t, mergedUnits(m), results)
		_, err := m.JUnit()
		require.NoError(t, err)
		_, err = m.HTML(t.TempDir())
		require.NoError(t, err)
		out, err := json.Marshal(m)
		require.NoError(t, err)
		_, err = parseResults("merged", out)
		require.NoError(t, err, "%s", strings.TrimSpace(string(out)))
	})
}
