package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/socbox/socbox/harness/report"
)

func cmdReport(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "merge" {
		return cmdReportMerge(args[1:], stdout, stderr)
	}
	fs := newFlags(command{name: "report", args: "RESULTS.json",
		synopsis: "Render junit.xml and report.html again from a results.json, next to it: after an upgrade of socbox,\n" +
			"or for results copied from another machine. results.json itself is not changed.\n" +
			"'socbox report merge' merges the results of several shards (see socbox report merge --help).",
		examples: "  socbox report socbox-results/20261128-135034/results.json\n" +
			"  socbox report merge -o merged shard-1/results.json shard-2/results.json shard-3/results.json\n"}, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError(fs, stderr, "give one results.json; to merge several, socbox report merge -o DIR %s", strings.Join(fs.Args(), " "))
	}
	if fs.NArg() != 1 {
		return usageError(fs, stderr, "give one results.json")
	}
	path := fs.Arg(0)
	run, err := report.ReadJSON(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	junit, err := run.WriteJUnit(dir)
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	html, err := run.WriteHTML(dir)
	if err != nil {
		return fmt.Errorf("write html: %w", err)
	}
	c := run.Counts()
	fmt.Fprintf(stdout, "%d board(s): %d passed, %d failed, %d errors\njunit:  %s\nreport: %s\n",
		len(run.Boards), c.Passed, c.Failed, c.Errors, junit, html)
	return nil
}

var reportMergeCommand = command{name: "report merge", args: "RESULTS.json|DIR ...",
	synopsis: `Merge the results of several runs — the shards of one suite (socbox run --shard K/N), or the jobs
of a CI matrix — into one results.json, junit.xml and report.html in --out. A DIR stands for
DIR/results.json. The console logs each results.json names are copied from beside it into
--out, so the merged directory can be published as a whole.

Every results.json records the units (board × image × scenario) its run planned over all shards.
The merge lists the units that no input has a result for (a shard that did not run, or died) and
those that several have (a shard given twice); junit.xml has an error for each.

Exit status: 0 when every planned unit has exactly one result, whether it passed or not (the
shards' own exit status says that); 1 when units are missing or duplicated; 2 on bad arguments or
an unreadable results.json.`,
	examples: `  socbox report merge -o merged shard-1/results.json shard-2/results.json shard-3/results.json
  socbox report merge -o merged shards/*/     # a directory stands for DIR/results.json
  socbox report merge -o merged merged/results.json late-shard/results.json
`}

func cmdReportMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(reportMergeCommand, stderr)
	var out string
	fs.StringVar(&out, "out", "", "`DIR` to write the merged results.json, junit.xml, report.html and console logs to (required)")
	fs.StringVar(&out, "o", "", "short for --out `DIR`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if out == "" {
		return usageError(fs, stderr, "give the directory to write to with -o DIR")
	}
	if fs.NArg() == 0 {
		return usageError(fs, stderr, "give the results.json files (or their directories) to merge")
	}
	outDir, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	type input struct {
		path, dir string
		run       *report.Run
	}
	var ins []input
	var errs []error
	var skipped []string
	for _, arg := range fs.Args() {
		p := arg
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			p = filepath.Join(p, "results.json")
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				// A CI job that died before its run planned anything
				// may still have uploaded its logs.
				skipped = append(skipped, arg)
				continue
			}
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if filepath.Dir(abs) == outDir {
			return usageError(fs, stderr, "%s is in --out %s: merge into a directory of its own", arg, out)
		}
		run, err := report.ReadJSON(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", arg, err))
			continue
		}
		ins = append(ins, input{path: p, dir: filepath.Dir(abs), run: run})
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "socbox report merge: nothing was merged:\n%v\n", err)
		return exitCode(2)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("report merge: %w", err)
	}
	labels := map[string]bool{}
	var merge []report.MergeInput
	for i, in := range ins {
		label := logLabel(in.dir, i, labels)
		if err := in.run.CopyLogs(in.dir, outDir, label); err != nil {
			return fmt.Errorf("report merge: %s: %w", in.path, err)
		}
		merge = append(merge, report.MergeInput{Name: in.path, Run: in.run})
	}
	if len(merge) == 0 {
		fmt.Fprintf(stderr, "socbox report merge: no results.json in %s\n", strings.Join(skipped, ", "))
		return exitCode(2)
	}
	run := report.MergeRuns(merge)
	for _, s := range skipped {
		run.Merge.Notes = append(run.Merge.Notes, fmt.Sprintf("%s has no results.json (a run that stopped before it planned anything): passed over", s))
	}
	if err := writeReports(run, outDir); err != nil {
		return fmt.Errorf("report merge: write results: %w", err)
	}
	printMerge(stdout, run, outDir)
	if !run.Merge.Complete() {
		return exitCode(1)
	}
	return nil
}

// logLabel names the directory in --out that an input's console logs are
// copied to: its own directory's name when that is a plain, unused one.
func logLabel(dir string, i int, used map[string]bool) string {
	label := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, filepath.Base(dir))
	if label == "" || strings.Trim(label, ".") == "" || used[label] {
		label = fmt.Sprintf("input-%d", i+1)
	}
	for n := 2; used[label]; n++ {
		label = fmt.Sprintf("input-%d-%d", i+1, n)
	}
	used[label] = true
	return label
}

func printMerge(w io.Writer, run *report.Run, dir string) {
	m := run.Merge
	c := run.Counts()
	fmt.Fprintf(w, "merged %d results: %d units planned, %d boards; %d passed, %d failed, %d errors",
		len(m.From), len(run.Plan.Units), len(run.Boards), c.Passed, c.Failed, c.Errors)
	if c.NotApplicable > 0 {
		fmt.Fprintf(w, ", %d not applicable", c.NotApplicable)
	}
	fmt.Fprintln(w)
	for _, f := range m.From {
		shard := ""
		if s := f.Shard.String(); s != "" {
			shard = " (shard " + s + ")"
		}
		fmt.Fprintf(w, "  %s%s: %d results\n", f.Name, shard, f.Results)
	}
	if len(m.Missing) > 0 {
		fmt.Fprintf(w, "\nMISSING: %d planned units are in none of the results:\n", len(m.Missing))
		for _, u := range m.Missing {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	if len(m.Duplicated) > 0 {
		fmt.Fprintf(w, "\nDUPLICATED: %d units have more than one result:\n", len(m.Duplicated))
		for _, d := range m.Duplicated {
			fmt.Fprintf(w, "  %s: %s\n", d.Unit, strings.Join(d.In, ", "))
		}
	}
	for _, n := range m.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\nresults: %s\nreport:  %s\njunit:   %s\n",
		filepath.Join(dir, "results.json"), filepath.Join(dir, "report.html"), filepath.Join(dir, "junit.xml"))
}
