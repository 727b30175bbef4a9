package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/socbox/socbox/harness/plan"
)

// Merge says what merged results were made from, and which units none or
// several of them ran.
type Merge struct {
	From []MergedRun `json:"from"`
	// Missing are units some run planned that no run has a result for.
	Missing []plan.Unit `json:"missing,omitempty"`
	// Duplicated are units with more than one result.
	Duplicated []Duplicate `json:"duplicated,omitempty"`
	// Notes name the shards of a plan that are absent.
	Notes []string `json:"notes,omitempty"`
}

// MergedRun is one of the results a merge was made from.
type MergedRun struct {
	Name       string     `json:"name"` // the results.json as given
	Shard      plan.Shard `json:"shard,omitzero"`
	Host       Host       `json:"host"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
	Results    int        `json:"results"` // scenario results it holds
	Planned    int        `json:"planned"` // units its plan has over all shards
}

// Duplicate is a unit that more than one result was given for.
type Duplicate struct {
	Unit plan.Unit `json:"unit"`
	In   []string  `json:"in"` // the results.json each came from, once per result
}

// Complete reports whether every planned unit has exactly one result.
func (m *Merge) Complete() bool { return len(m.Missing) == 0 && len(m.Duplicated) == 0 }

// MergeInput is one run's results to merge, and the name to call them by.
type MergeInput struct {
	Name string
	Run  *Run
}

// MergeRuns merges shards' results into one run: every board of every
// input, in the order given, each marked with its shard (and its host when
// the inputs came from several machines); the plan is every unit any input
// planned. Run.Merge says what is missing or duplicated. The inputs are not
// changed.
func MergeRuns(inputs []MergeInput) *Run {
	out := &Run{Merge: &Merge{}}
	if len(inputs) > 0 {
		out.Host = inputs[0].Run.Host
	}
	planned := map[plan.Unit]bool{}
	seen := map[plan.Unit][]string{}
	var order []plan.Unit // results in the order first met
	sameSelection := true
	for i, in := range inputs {
		r := in.Run
		if !r.StartedAt.IsZero() && (out.StartedAt.IsZero() || r.StartedAt.Before(out.StartedAt)) {
			out.StartedAt = r.StartedAt
		}
		if r.FinishedAt.After(out.FinishedAt) {
			out.FinishedAt = r.FinishedAt
		}
		var shard plan.Shard
		mr := MergedRun{Name: in.Name, Host: r.Host, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
		if r.Plan != nil {
			shard = r.Plan.Shard
			mr.Shard, mr.Planned = shard, len(r.Plan.Units)
			for _, u := range r.Plan.Units {
				planned[u] = true
			}
			if first := inputs[0].Run.Plan; i > 0 && (first == nil || first.Run != r.Plan.Run || first.Skip != r.Plan.Skip) {
				sameSelection = false
			}
		} else {
			sameSelection = false
		}
		for _, b := range r.Boards {
			nb := *b
			if nb.Shard == (plan.Shard{}) {
				nb.Shard = shard
			}
			if nb.Host == nil && r.Host != out.Host {
				h := r.Host
				nb.Host = &h
			}
			for _, sc := range b.Scenarios {
				u := b.Unit(sc)
				if seen[u] == nil {
					order = append(order, u)
				}
				seen[u] = append(seen[u], in.Name)
				planned[u] = true
				mr.Results++
			}
			out.Boards = append(out.Boards, &nb)
		}
		if r.Merge != nil {
			// Merged results merged again: say where they came from.
			out.Merge.From = append(out.Merge.From, r.Merge.From...)
		} else {
			out.Merge.From = append(out.Merge.From, mr)
		}
	}
	for u := range planned {
		if len(seen[u]) == 0 {
			out.Merge.Missing = append(out.Merge.Missing, u)
		}
	}
	slices.SortFunc(out.Merge.Missing, plan.Compare)
	for _, u := range order {
		if len(seen[u]) > 1 {
			out.Merge.Duplicated = append(out.Merge.Duplicated, Duplicate{Unit: u, In: seen[u]})
		}
	}
	slices.SortFunc(out.Merge.Duplicated, func(a, b Duplicate) int { return plan.Compare(a.Unit, b.Unit) })
	out.Merge.Notes = absentShards(inputs)

	all := make([]plan.Unit, 0, len(planned))
	for u := range planned {
		all = append(all, u)
	}
	out.Plan = &plan.Plan{Units: plan.Sorted(all)}
	if sameSelection && len(inputs) > 0 {
		out.Plan.Run, out.Plan.Skip = inputs[0].Run.Plan.Run, inputs[0].Run.Plan.Skip
	}
	return out
}

// absentShards names, for each plan the inputs were cut from, the shards
// that had units and are not among the inputs.
func absentShards(inputs []MergeInput) []string {
	type group struct {
		units []plan.Unit
		n     int
		have  map[int]bool
		names []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, in := range inputs {
		p := in.Run.Plan
		if p == nil || p.Shard.Whole() {
			continue
		}
		var key strings.Builder
		fmt.Fprintf(&key, "%d\x00", p.Shard.N)
		for _, u := range plan.Sorted(p.Units) {
			fmt.Fprintf(&key, "%s\x00%s\x00%s\x00", u.Board, u.Image, u.Scenario)
		}
		g := byKey[key.String()]
		if g == nil {
			g = &group{units: p.Units, n: p.Shard.N, have: map[int]bool{}}
			byKey[key.String()] = g
			groups = append(groups, g)
		}
		g.have[p.Shard.K] = true
		g.names = append(g.names, in.Name)
	}
	var notes []string
	for _, g := range groups {
		parts := plan.Split(g.units, g.n)
		for k := 1; k <= g.n; k++ {
			if !g.have[k] && len(parts[k-1]) > 0 {
				notes = append(notes, fmt.Sprintf("no results for shard %d/%d (%d units) of the plan that %s ran shards of",
					k, g.n, len(parts[k-1]), strings.Join(g.names, ", ")))
			}
		}
	}
	return notes
}

// CopyLogs copies the console logs of a run whose results.json is in
// inDir into outDir/label/, and points the run's boards at the copies, so
// that merged results can be published as one directory. The paths in
// results.json are only hints: a log is looked for as inDir/BOARD-DIR/FILE
// (where socbox run and the scenario suite put them), must be a regular
// file there, and keeps its recorded path when it is not found.
func (r *Run) CopyLogs(inDir, outDir, label string) error {
	if !safeName(label) {
		return fmt.Errorf("copy logs: label %q is not a plain file name", label)
	}
	for _, b := range r.Boards {
		logs := slices.Clone(b.ConsoleLogs)
		for i, recorded := range logs {
			boardDir, file := filepath.Base(filepath.Dir(recorded)), filepath.Base(recorded)
			if !safeName(boardDir) || !safeName(file) {
				continue
			}
			src := filepath.Join(inDir, boardDir, file)
			st, err := os.Lstat(src)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			dst := filepath.Join(outDir, label, boardDir, file)
			if err := copyFile(src, dst); err != nil {
				return fmt.Errorf("copy logs of %s: %w", b.Board, err)
			}
			logs[i] = dst
		}
		b.ConsoleLogs = logs
	}
	return nil
}

// safeName is a single path element of printable characters, not . or ..
func safeName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 255 || strings.ContainsAny(s, `/\`) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Unit is what the board's plan calls scenario sc on it.
func (b *Board) Unit(sc *Scenario) plan.Unit {
	return plan.Unit{Board: b.Board, Image: b.ImageID, Scenario: sc.Name}
}
