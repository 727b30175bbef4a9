package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/socbox/socbox/harness/report"
)

func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "report", args: "RESULTS.json",
		synopsis: "Render junit.xml and report.html again from a results.json, next to it: after an upgrade of socbox,\n" +
			"or for results copied from another machine. results.json itself is not changed.",
		examples: "  socbox report socbox-results/20261128-135034/results.json\n"}, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
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
