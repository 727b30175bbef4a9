// Package scenarios holds the scenarios socbox runs on every board, and the
// Go tests that boot real boards to run them (`go test ./scenarios/...`).
//
// Scenarios are YAML files (see Parse for the format); the bundled ones are
// in bundled/ and are compiled into socbox.
package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/socbox/socbox/harness"
)

//go:embed bundled/*.yaml
var bundledFS embed.FS

// bundledPrefix names the embedded files by their place in the repository,
// so messages point at a file a person can open.
const bundledPrefix = "scenarios/"

// Bundled returns the scenarios every board image must pass, in file order.
// The files are checked by the unit tests, so a parse error here is a bug
// in socbox and panics.
func Bundled() []harness.Scenario {
	list, err := loadBundled()
	if err != nil {
		panic(fmt.Sprintf("bundled scenarios: %v", err))
	}
	return list
}

func loadBundled() ([]harness.Scenario, error) {
	names, err := fs.Glob(bundledFS, "bundled/*.yaml")
	if err != nil {
		return nil, err
	}
	var all []harness.Scenario
	for _, name := range names { // fs.Glob sorts
		data, err := bundledFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		list, err := Parse(path.Join(bundledPrefix, name), data)
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	if errs := duplicates(all); len(errs) > 0 {
		return nil, errs[0]
	}
	return all, nil
}
