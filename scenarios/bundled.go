// Package scenarios holds the scenarios socbox runs on every board, and the
// Go tests that boot real boards to run them (`go test ./scenarios/...`).
//
// Scenarios are YAML files (see scenario.Parse for the format); the bundled ones are
// in bundled/ and are compiled into socbox.
package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/socbox/socbox/harness/scenario"
)

//go:embed bundled/*.yaml
var bundledFS embed.FS

// bundledPrefix names the embedded files by their place in the repository,
// so messages point at a file a person can open.
const bundledPrefix = "scenarios/"

// Bundled returns the scenarios every board image must pass, in file order.
// The files are checked by the unit tests, so a parse error here is a bug
// in socbox and panics.
func Bundled() []scenario.Scenario {
	list, err := loadBundled()
	if err != nil {
		panic(fmt.Sprintf("bundled scenarios: %v", err))
	}
	return list
}

func loadBundled() ([]scenario.Scenario, error) {
	names, err := fs.Glob(bundledFS, "bundled/*.yaml")
	if err != nil {
		return nil, err
	}
	var all []scenario.Scenario
	for _, name := range names { // fs.Glob sorts
		data, err := bundledFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		list, err := scenario.Parse(path.Join(bundledPrefix, name), data)
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	if err := scenario.Unique(all); err != nil {
		return nil, err
	}
	return all, nil
}
