package scenario

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fileLine is how every Parse error starts.
var fileLine = regexp.MustCompile(`^fuzz\.yaml:\d+: `)

// FuzzParse feeds Parse hostile YAML: it must not panic, must answer in
// bounded time and memory, and every error line must name file:line.
func FuzzParse(f *testing.F) {
	for _, src := range []string{
		"name: a\ncontainer: {cmd: [true]}\n",
		"- name: a\n  container:\n    cmd: [sh, -c, 'echo hi']\n    files: {/tmp/x: hi}\n  expect: {stdout: \"hi\\n\", exit_code: 0}\n",
		"- &s {name: a, container: {cmd: [true]}}\n- *s\n",
		"a: &a [x, x]\nb: &b [*a, *a]\n",
		"- <<: *undefined\n",
		"---\n---\nname: b\n",
		"name: a\ncontainer: {cmd: [true], memory_limit: 64Mi, ports: [80]}\nexpect: {http: [{port: 80, status: 301}]}\n",
		"{",
		strings.Repeat("[", 100),
		"name: !!binary aGk=\n",
	} {
		f.Add([]byte(src))
	}
	// The bundled files, as the seeds closest to what users write.
	bundled, _ := filepath.Glob("../../scenarios/bundled/*.yaml")
	for _, name := range bundled {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !fileLine.MatchString(line) {
					t.Fatalf("error line %q does not start with file:line", line)
				}
			}
			return
		}
		if len(list) == 0 {
			t.Fatal("no error and no scenarios")
		}
	})
}
