package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/plan"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
)

// fourScenarios is a scenario file: two tagged basics, one network, one
// for armhf boards only.
func fourScenarios(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "checks.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`
- {name: arch, tags: [basics], container: {cmd: [uname, -m]}}
- {name: env, tags: [basics], container: {cmd: [env]}}
- {name: bridge, tags: [network, slow], container: {cmd: ["true"]}}
- {name: armhf-only, boards: [linux/arm/v7], container: {cmd: ["true"]}}
`), 0o644))
	return p
}

func TestShardPlanBootsOnlyTheBoardsOfItsShard(t *testing.T) {
	list := []scenario.Scenario{{Name: "a"}, {Name: "b"}}
	boardPlans, err := planRun([]string{"raspi4b", "raspi3b", "raspi3b-fast"}, list)
	require.NoError(t, err)
	var all []plan.Unit
	for k := 1; k <= 3; k++ {
		p, kept := shardPlan(boardPlans, "debian-trixie", plan.Shard{K: k, N: 3}, "", "")
		require.Len(t, p.Units, 6, "every shard records the whole plan")
		require.Len(t, kept, 1, "shard %d boots one board of the three", k)
		for _, s := range kept[0].scenarios {
			all = append(all, plan.Unit{Board: kept[0].slug, Image: "debian-trixie", Scenario: s.Name})
		}
	}
	require.ElementsMatch(t, plan.Sorted(all), all, "no unit twice")
	require.Len(t, all, 6, "every unit once")

	// More shards than units: one is empty, and boots nothing.
	_, kept := shardPlan(boardPlans, "debian-trixie", plan.Shard{K: 1, N: 7}, "", "")
	require.Empty(t, kept)
}

func TestRunRecordsItsPlanBeforeBooting(t *testing.T) {
	checks := fourScenarios(t)
	out := filepath.Join(t.TempDir(), "out")
	// Cancelled: the plan is written, then the run stops before the first board.
	_, stderr, err := socbox(t, cancelled(), "run", "--board", "raspi4b,beaglebone-black", "--skip", "^tag:slow$", "--shard", "2/2", "--out", out, checks)
	require.Equal(t, exitCode(1), err, stderr)
	run, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Empty(t, run.Boards)
	require.Equal(t, &plan.Plan{Shard: plan.Shard{K: 2, N: 2}, Skip: "^tag:slow$", Units: []plan.Unit{
		{Board: "beaglebone-black", Image: "debian-trixie", Scenario: "arch"},
		{Board: "beaglebone-black", Image: "debian-trixie", Scenario: "armhf-only"},
		{Board: "beaglebone-black", Image: "debian-trixie", Scenario: "env"},
		{Board: "raspi4b", Image: "debian-trixie", Scenario: "arch"},
		{Board: "raspi4b", Image: "debian-trixie", Scenario: "env"},
	}}, run.Plan)

	// --crun and --suite make other units of the same scenarios.
	_, _, err = socbox(t, cancelled(), "run", "--board", "raspi4b", "--suite", "bookworm", "--crun", "--run", "^arch$", "--out", out, checks)
	require.Equal(t, exitCode(1), err)
	run, err = report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Equal(t, []plan.Unit{{Board: "raspi4b", Image: "debian-bookworm+crun", Scenario: "arch"}}, run.Plan.Units)
	require.True(t, run.Plan.Shard.Whole())
}

func TestRunOfAnEmptyShardBootsNothingAndPasses(t *testing.T) {
	// Belt and braces: no QEMU to be found, no image in the cache.
	t.Setenv("PATH", "")
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	checks := fourScenarios(t)
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := socbox(t, context.Background(), "run", "--board", "raspi4b", "--shard", "1/5", "--out", out, checks)
	require.NoError(t, err, stderr)
	require.Contains(t, stdout, "shard 1/5: 0 of the 3 units planned, on 0 board(s)")
	require.Contains(t, stdout, "0 passed, 0 failed, 0 errors")
	run, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Len(t, run.Plan.Units, 3)
	require.Empty(t, run.Boards)
}

func TestRunRejectsBadShardsAndSelections(t *testing.T) {
	checks := fourScenarios(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--shard", "0/3"}, "--shard: shard 0/3: K must be from 1 to N (3); shards are counted from 1"},
		{[]string{"--shard", "4/3"}, "--shard: shard 4/3: K must be from 1 to N"},
		{[]string{"--shard", "3"}, "want K/N, e.g. 2/3"},
		{[]string{"--shard", "1/0"}, "N must be from 1 to 1000"},
		{[]string{"--run", "("}, `--run "(" is not a regular expression`},
		{[]string{"--skip", "[x"}, `--skip "[x" is not a regular expression`},
		{[]string{"--run", "^nothing$"}, `--run "^nothing$" selects none of the scenarios (arch, env, bridge, armhf-only, tag:basics, tag:network, tag:slow)`},
		{[]string{"--skip", "."}, `selects none of the scenarios`},
		{[]string{"--target", "ssh://root@board.example", "--shard", "1/2"}, "--shard does not apply to --target"},
		{[]string{"--target", "ssh://root@board.example", "--run", "("}, `--run "(" is not a regular expression`},
	} {
		out := filepath.Join(t.TempDir(), "out")
		_, stderr, err := socbox(t, cancelled(), append([]string{"run", "--out", out, checks}, tc.args...)...)
		require.Equal(t, exitCode(2), err, tc.args)
		require.Contains(t, stderr, tc.want, tc.args)
		require.NoDirExists(t, out, "nothing written")
	}
}

// writeShard writes what socbox run --shard k/n on board... leaves: the
// plan, a board per board of its units with each scenario passed, and a
// console log beside results.json.
func writeShard(t *testing.T, dir string, all []plan.Unit, sh plan.Shard) string {
	r := &report.Run{Host: report.Host{Hostname: fmt.Sprintf("runner-%d", sh.K)}, Plan: &plan.Plan{Shard: sh, Units: plan.Sorted(all)}}
	var b *report.Board
	for _, u := range sh.Of(all) {
		if b == nil || b.Board != u.Board {
			log := filepath.Join(dir, u.Board, "serial0.log")
			require.NoError(t, os.MkdirAll(filepath.Dir(log), 0o755))
			require.NoError(t, os.WriteFile(log, []byte("console of "+u.Board+" on shard "+sh.String()+"\n"), 0o644))
			// Recorded as the runner saw it, somewhere else.
			b = &report.Board{Board: u.Board, ImageID: u.Image, ConsoleLogs: []string{filepath.Join("results", u.Board, "serial0.log")}}
			r.Boards = append(r.Boards, b)
		}
		b.Scenarios = append(b.Scenarios, &report.Scenario{Name: u.Scenario, Passed: true})
	}
	_, err := r.WriteJSON(dir)
	require.NoError(t, err)
	return filepath.Join(dir, "results.json")
}

func TestReportMerge(t *testing.T) {
	var all []plan.Unit
	for _, b := range []string{"raspi4b", "raspi3b", "beaglebone-black"} {
		for _, s := range []string{"arch", "env"} {
			all = append(all, plan.Unit{Board: b, Image: "debian-trixie", Scenario: s})
		}
	}
	root := t.TempDir()
	var shards []string
	for k := 1; k <= 3; k++ {
		shards = append(shards, writeShard(t, filepath.Join(root, fmt.Sprintf("results-%d", k)), all, plan.Shard{K: k, N: 3}))
	}

	out := filepath.Join(root, "merged")
	// A directory stands for its results.json.
	stdout, stderr, err := socbox(t, cancelled(), "report", "merge", "-o", out, shards[0], filepath.Dir(shards[1]), shards[2])
	require.NoError(t, err, stderr)
	require.Contains(t, stdout, "merged 3 results: 6 units planned, 3 boards; 6 passed, 0 failed, 0 errors")
	require.Contains(t, stdout, shards[1]+" (shard 2/3): 2 results")
	merged, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.True(t, merged.Merge.Complete())
	require.Equal(t, plan.Sorted(all), merged.Plan.Units)
	for _, f := range []string{"junit.xml", "report.html"} {
		require.FileExists(t, filepath.Join(out, f))
	}
	// The logs are copied in, and the merged results point at the copies.
	log := filepath.Join(out, "results-2", "raspi3b", "serial0.log")
	require.Equal(t, []string{log}, merged.Boards[1].ConsoleLogs)
	data, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Equal(t, "console of raspi3b on shard 2/3\n", string(data))
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), `href="./results-2/raspi3b/serial0.log"`)

	// A shard missing: its units are listed, and the status is 1.
	stdout, _, err = socbox(t, cancelled(), "report", "merge", "-o", filepath.Join(root, "m2"), shards[0], shards[2])
	require.Equal(t, exitCode(1), err)
	require.Contains(t, stdout, "MISSING: 2 planned units are in none of the results:\n  raspi3b/debian-trixie/arch\n  raspi3b/debian-trixie/env\n")
	require.Contains(t, stdout, "note: no results for shard 2/3 (2 units)")
	junit, err := os.ReadFile(filepath.Join(root, "m2", "junit.xml"))
	require.NoError(t, err)
	require.Contains(t, string(junit), `type="UnitMissing"`)

	// A shard given twice: duplicated, status 1.
	stdout, _, err = socbox(t, cancelled(), "report", "merge", "-o", filepath.Join(root, "m3"), shards[0], shards[1], shards[2], shards[1])
	require.Equal(t, exitCode(1), err)
	require.Contains(t, stdout, "DUPLICATED: 2 units have more than one result:\n  raspi3b/debian-trixie/arch: "+shards[1]+", "+shards[1]+"\n")

	// A directory without results.json (a job that died before its plan)
	// is passed over, and said so.
	empty := filepath.Join(root, "died")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	stdout, stderr, err = socbox(t, cancelled(), "report", "merge", "-o", filepath.Join(root, "m6"), shards[0], shards[1], shards[2], empty)
	require.NoError(t, err, stderr)
	require.Contains(t, stdout, "note: "+empty+" has no results.json")
	_, stderr, err = socbox(t, cancelled(), "report", "merge", "-o", filepath.Join(root, "m7"), empty)
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "no results.json in "+empty)

	// Merged results merge again with what came late.
	_, stderr, err = socbox(t, cancelled(), "report", "merge", "-o", filepath.Join(root, "m4"), filepath.Join(root, "m2"), shards[1])
	require.NoError(t, err, stderr)

	// Bad arguments, and results that cannot be read: 2, nothing written.
	bad := filepath.Join(root, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"plan": {"shard": "4/3"}}`), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{shards[0]}, "give the directory to write to with -o DIR"},
		{[]string{"-o", filepath.Join(root, "m5")}, "give the results.json files"},
		{[]string{"-o", filepath.Dir(shards[0]), shards[0]}, "merge into a directory of its own"},
		{[]string{"-o", filepath.Join(root, "m5"), shards[0], bad}, "bad.json: read " + bad + ": shard 4/3: K must be from 1 to N"},
		{[]string{"-o", filepath.Join(root, "m5"), filepath.Join(root, "none.json")}, "no such file or directory"},
	} {
		_, stderr, err := socbox(t, cancelled(), append([]string{"report", "merge"}, tc.args...)...)
		require.Equal(t, exitCode(2), err, tc.args)
		require.Contains(t, stderr, tc.want)
	}
	require.NoDirExists(t, filepath.Join(root, "m5"))

	// socbox report with several files says how to merge them.
	_, stderr, err = socbox(t, cancelled(), "report", shards[0], shards[1])
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "give one results.json; to merge several, socbox report merge -o DIR")
}

func TestLogLabels(t *testing.T) {
	used := map[string]bool{}
	var got []string
	for i, dir := range []string{"/a/results-1", "/b/results-1", "/", "/c/we ird\n", "/d/.."} {
		got = append(got, logLabel(dir, i, used))
	}
	require.Equal(t, []string{"results-1", "input-2", "_", "we_ird_", "input-5"}, got)
	require.False(t, strings.Contains(strings.Join(got, ""), "/"))
}
