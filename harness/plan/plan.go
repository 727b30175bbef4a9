// Package plan decides which units of work a run does. A unit is one
// scenario on one board booted from one image; a run's plan is every unit
// its arguments ask for, narrowed by a Selection (--run, --skip) and split
// into shards (--shard K/N) so that N runners on N machines together run
// each unit exactly once.
//
// Everything here is a pure function of its inputs: every runner of a CI
// matrix computes the same plan from the same arguments, whatever order it
// found the boards and scenarios in.
package plan

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Unit is one scenario on one board booted from one image: what a shard
// runs, and what a merge of shards' results counts.
type Unit struct {
	// Board is the board's slug (raspi4b).
	Board string `json:"board"`
	// Image names what the board boots and runs containers with, the same
	// on every runner (see ImageID): debian-trixie for the default image,
	// a user image's file name, with +crun when crun runs the containers.
	Image string `json:"image"`
	// Scenario is the scenario's name, unique in a run.
	Scenario string `json:"scenario"`
}

// String is board/image/scenario, for messages.
func (u Unit) String() string { return u.Board + "/" + u.Image + "/" + u.Scenario }

// Compare orders units by board, then image, then scenario: the stable key
// every split starts from.
func Compare(a, b Unit) int {
	return cmp.Or(cmp.Compare(a.Board, b.Board), cmp.Compare(a.Image, b.Image), cmp.Compare(a.Scenario, b.Scenario))
}

// Sorted returns the units in Compare order, each once.
func Sorted(units []Unit) []Unit {
	out := slices.Clone(units)
	slices.SortFunc(out, Compare)
	return slices.Compact(out)
}

// ImageID is a unit's Image: base names the image (DefaultImage, or a user
// image's file name), and crun is set when containers run with crun rather
// than runc, which makes them different units of the same scenario.
func ImageID(base string, crun bool) string {
	if crun {
		return base + "+crun"
	}
	return base
}

// DefaultImage names socbox's default Debian image of suite: what a plan
// knows of it before it is built (the built image's name carries a hash
// that depends on what the archive serves).
func DefaultImage(suite string) string { return "debian-" + suite }

// UserImage names a user's board image, given as a path or an https URL,
// by its file name: the same on every runner wherever it was downloaded to.
func UserImage(location string) string {
	loc := location
	if i := strings.IndexAny(loc, "?#"); i >= 0 && strings.Contains(loc, "://") {
		loc = loc[:i]
	}
	loc = strings.TrimRight(loc, "/")
	if i := strings.LastIndexByte(loc, '/'); i >= 0 {
		loc = loc[i+1:]
	}
	if loc == "" {
		return location
	}
	return loc
}

// MaxShards bounds N in K/N: far more runners than any CI gives one job.
const MaxShards = 1000

// Shard is K of N (1 ≤ K ≤ N). The zero Shard is the whole plan, unsplit.
type Shard struct{ K, N int }

// ParseShard reads "K/N", as --shard and SOCBOX_SHARD take it.
func ParseShard(s string) (Shard, error) {
	k, n, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want K/N, e.g. 2/3 for the second of three shards", s)
	}
	ki, err1 := strconv.Atoi(k)
	ni, err2 := strconv.Atoi(n)
	if err := errors.Join(err1, err2); err != nil {
		return Shard{}, fmt.Errorf("shard %q: K and N must be whole numbers, e.g. 2/3", s)
	}
	sh := Shard{K: ki, N: ni}
	if err := sh.check(); err != nil {
		return Shard{}, err
	}
	return sh, nil
}

// Check says what is wrong with K/N, if anything; the zero Shard (the
// whole plan) is fine.
func (s Shard) Check() error {
	if s == (Shard{}) {
		return nil
	}
	return s.check()
}

func (s Shard) check() error {
	switch {
	case s.N < 1 || s.N > MaxShards:
		return fmt.Errorf("shard %d/%d: N must be from 1 to %d", s.K, s.N, MaxShards)
	case s.K < 1 || s.K > s.N:
		return fmt.Errorf("shard %d/%d: K must be from 1 to N (%d); shards are counted from 1", s.K, s.N, s.N)
	}
	return nil
}

// Whole reports whether the shard is the whole plan (the zero Shard, or 1/1).
func (s Shard) Whole() bool { return s.N <= 1 }

// String is "K/N", or "" for the zero Shard.
func (s Shard) String() string {
	if s == (Shard{}) {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

// MarshalText writes "K/N", so results.json reads "shard": "2/3".
func (s Shard) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *Shard) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = Shard{}
		return nil
	}
	sh, err := ParseShard(string(b))
	if err != nil {
		return err
	}
	*s = sh
	return nil
}

// Split sorts the units (Compare order, duplicates dropped) and cuts them
// into n runs of consecutive units whose sizes differ by at most one. Units
// that sort together (one board's scenarios) stay together as far as the
// sizes allow, so a shard boots as few boards as it can. Shards beyond the
// number of units are empty. n < 1 is taken as 1.
func Split(units []Unit, n int) [][]Unit {
	if n < 1 {
		n = 1
	}
	sorted := Sorted(units)
	out := make([][]Unit, n)
	for i := range n {
		// Shard i holds [i*M/n, (i+1)*M/n): sizes ⌊M/n⌋ or ⌈M/n⌉.
		lo, hi := i*len(sorted)/n, (i+1)*len(sorted)/n
		out[i] = sorted[lo:hi:hi]
	}
	return out
}

// Of returns the units of shard s, in Compare order; the zero Shard (or
// 1/1) has them all.
func (s Shard) Of(units []Unit) []Unit {
	if s.Whole() {
		return Sorted(units)
	}
	return Split(units, s.N)[s.K-1]
}

// Owners says which shard (1..n) runs each unit.
func Owners(units []Unit, n int) map[Unit]int {
	out := map[Unit]int{}
	for i, part := range Split(units, n) {
		for _, u := range part {
			out[u] = i + 1
		}
	}
	return out
}

// Plan is what a run set out to do: every unit its arguments select, and
// the shard of them it ran. results.json records it, so that a merge of
// shards' results can tell which units are missing.
type Plan struct {
	Shard Shard  `json:"shard,omitzero"`
	Run   string `json:"run,omitempty"`
	Skip  string `json:"skip,omitempty"`
	// Units are every unit selected, over all shards, in Compare order.
	Units []Unit `json:"units"`
}

// Mine is the plan's own shard of its units.
func (p *Plan) Mine() []Unit { return p.Shard.Of(p.Units) }

// Selection picks scenarios by name and tag, as --run and --skip do: like
// go test's -run and -skip, each is a regular expression matched, not
// anchored, against the scenario's name, and also against "tag:NAME" for
// each of its tags. A scenario runs when --run is empty or matches, and
// --skip is empty or does not match.
type Selection struct {
	Run, Skip *regexp.Regexp
}

// ParseSelection compiles --run and --skip; an empty one selects
// everything (run) or nothing (skip).
func ParseSelection(run, skip string) (Selection, error) {
	var sel Selection
	var errs []error
	for _, f := range []struct {
		flag, expr string
		dst        **regexp.Regexp
	}{{"run", run, &sel.Run}, {"skip", skip, &sel.Skip}} {
		if f.expr == "" {
			continue
		}
		re, err := regexp.Compile(f.expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q is not a regular expression: %w", f.flag, f.expr, err))
			continue
		}
		*f.dst = re
	}
	return sel, errors.Join(errs...)
}

// Empty reports whether the selection takes everything.
func (s Selection) Empty() bool { return s.Run == nil && s.Skip == nil }

// Match reports whether a scenario with this name and these tags is
// selected.
func (s Selection) Match(name string, tags []string) bool {
	if s.Run != nil && !matchAny(s.Run, name, tags) {
		return false
	}
	return s.Skip == nil || !matchAny(s.Skip, name, tags)
}

func matchAny(re *regexp.Regexp, name string, tags []string) bool {
	if re.MatchString(name) {
		return true
	}
	for _, t := range tags {
		if re.MatchString("tag:" + t) {
			return true
		}
	}
	return false
}

// String is what the selection was made from, for messages.
func (s Selection) String() string {
	var parts []string
	if s.Run != nil {
		parts = append(parts, "--run "+strconv.Quote(s.Run.String()))
	}
	if s.Skip != nil {
		parts = append(parts, "--skip "+strconv.Quote(s.Skip.String()))
	}
	return strings.Join(parts, " ")
}
