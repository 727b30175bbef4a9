package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/socbox/socbox/harness/plan"
	"github.com/socbox/socbox/harness/scenario"
)

// selectFlags are run's flags that pick what to run: --run, --skip and
// --shard.
type selectFlags struct {
	run, skip, shard string
}

func addSelectFlags(fs *flag.FlagSet, f *selectFlags) {
	fs.StringVar(&f.run, "run", "", "run only the scenarios whose name, or tag:NAME for one of their tags, matches this `REGEX` "+
		"(not anchored, as go test -run: '^arch$', 'tag:network')")
	fs.StringVar(&f.skip, "skip", "", "leave out the scenarios whose name, or tag:NAME for one of their tags, matches this `REGEX` "+
		"(after --run, as go test -skip: '^tag:slow$')")
	fs.StringVar(&f.shard, "shard", "", "run only shard `K/N` of the board × image × scenario units (2/3: the second of three): "+
		"N runs with the same arguments and 1/N … N/N run every unit once between them; merge their results with socbox report merge")
}

// parse checks the flags: a bad regular expression or shard is a usage
// error.
func (f selectFlags) parse() (plan.Shard, plan.Selection, error) {
	sel, err := plan.ParseSelection(f.run, f.skip)
	if err != nil {
		return plan.Shard{}, sel, err
	}
	var sh plan.Shard
	if f.shard != "" {
		if sh, err = plan.ParseShard(f.shard); err != nil {
			return plan.Shard{}, sel, fmt.Errorf("--shard: %w", err)
		}
	}
	return sh, sel, nil
}

// selectScenarios keeps the scenarios sel picks, in their order; none is
// an error that lists the names and tags there are.
func selectScenarios(list []scenario.Scenario, sel plan.Selection) ([]scenario.Scenario, error) {
	if sel.Empty() {
		return list, nil
	}
	var out []scenario.Scenario
	var names []string
	tags := map[string]bool{}
	var tagList []string
	for _, s := range list {
		if sel.Match(s.Name, s.Tags) {
			out = append(out, s)
		}
		names = append(names, s.Name)
		for _, t := range s.Tags {
			if !tags[t] {
				tags[t] = true
				tagList = append(tagList, "tag:"+t)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s selects none of the scenarios (%s)", sel, strings.Join(append(names, tagList...), ", "))
	}
	return out, nil
}

// imageID is what a plan calls the image the boards boot.
func (f bootFlags) imageID() string {
	base := plan.DefaultImage(f.suite)
	if f.image != "" {
		base = plan.UserImage(f.image)
	}
	return plan.ImageID(base, f.crun)
}

// shardPlan makes the plan of every board × image × scenario unit, and
// keeps of each board the scenarios of shard sh. Boards with none in the
// shard are left out: they are not booted at all.
func shardPlan(boardPlans []boardPlan, imageID string, sh plan.Shard, run, skip string) (*plan.Plan, []boardPlan) {
	var units []plan.Unit
	for _, bp := range boardPlans {
		for _, s := range bp.scenarios {
			units = append(units, plan.Unit{Board: bp.slug, Image: imageID, Scenario: s.Name})
		}
	}
	p := &plan.Plan{Shard: sh, Run: run, Skip: skip, Units: plan.Sorted(units)}
	mine := map[plan.Unit]bool{}
	for _, u := range p.Mine() {
		mine[u] = true
	}
	var out []boardPlan
	for _, bp := range boardPlans {
		kept := bp
		kept.scenarios = nil
		for _, s := range bp.scenarios {
			if mine[plan.Unit{Board: bp.slug, Image: imageID, Scenario: s.Name}] {
				kept.scenarios = append(kept.scenarios, s)
			}
		}
		if len(kept.scenarios) > 0 {
			out = append(out, kept)
		}
	}
	return p, out
}
