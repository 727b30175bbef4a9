package ci

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return data
}

// runActionlint runs actionlint, as a library, on a workflow's content,
// with shellcheck on the run: scripts where this machine has it
// (apt-get install shellcheck).
func runActionlint(t *testing.T, data []byte) []string {
	t.Helper()
	var opts actionlint.LinterOptions
	if _, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = "shellcheck"
	} else {
		t.Log("shellcheck is not installed: the run: scripts are not checked")
	}
	var out bytes.Buffer
	l, err := actionlint.NewLinter(&out, &opts)
	require.NoError(t, err)
	errs, err := l.Lint("github/nightly.yml", data, nil)
	require.NoError(t, err)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("line %d: %s [%s]", e.Line, e.Message, e.Kind))
	}
	return msgs
}

func TestGitHubWorkflowPassesActionlint(t *testing.T) {
	require.Empty(t, runActionlint(t, read(t, "github/nightly.yml")))
}

// The linter is live: each of these breaks the workflow, and actionlint
// says so.
func TestActionlintCatchesBrokenWorkflows(t *testing.T) {
	good := string(read(t, "github/nightly.yml"))
	for _, tc := range []struct{ name, from, to, want string }{
		{"merge needs a job that is not there", "    needs: shard\n", "    needs: shards\n", `job "merge" needs job "shards" which does not exist in this workflow`},
		{"a matrix property misspelt", `--board "${{ matrix.board }}"`, `--board "${{ matrix.bord }}"`, `property "bord" is not defined`},
		{"an input the action does not have", "          pattern: socbox-*\n", "          patern: socbox-*\n", `input "patern" is not defined in action "actions/download-artifact@v4"`},
		{"a step output that does not exist", "hashFiles('.socbox/go.sum') }}-${{ steps.versions.outputs.image }}\n          restore-keys",
			"hashFiles('.socbox/go.sum') }}-${{ steps.version.outputs.image }}\n          restore-keys", `property "version" is not defined`},
		{"a bad schedule", `cron: "17 2 * * *"`, `cron: "17 25 * * *"`, "invalid CRON format"},
		{"an expression that does not parse", "if: always() && matrix.shard == 1", "if: always() && matrix.shard = 1", "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, 1, strings.Count(good, tc.from), "the workflow has %q once", tc.from)
			msgs := runActionlint(t, []byte(strings.Replace(good, tc.from, tc.to, 1)))
			require.NotEmpty(t, msgs)
			require.Contains(t, strings.Join(msgs, "\n"), tc.want)
		})
	}
}

// workflow is the part of the GitHub workflow that the shard contract is
// about.
type workflow struct {
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Needs    any `yaml:"needs"`
		If       string
		Strategy struct {
			Matrix map[string][]any `yaml:"matrix"`
		}
		Steps []struct {
			Name string
			Uses string
			Run  string
			With map[string]string
			If   string
		}
	}
}

// The matrix runs shards 1 to SHARDS of each board with the same
// arguments, the cache key names the QEMU version, socbox, the image and the board,
// and the final job merges whatever the shards left, even when one failed.
func TestGitHubWorkflowRunsEveryShardAndMergesThem(t *testing.T) {
	var wf workflow
	require.NoError(t, yaml.Unmarshal(read(t, "github/nightly.yml"), &wf))
	n, err := strconv.Atoi(wf.Env["SHARDS"])
	require.NoError(t, err)
	shard := wf.Jobs["shard"]
	var shards []int
	for _, s := range shard.Strategy.Matrix["shard"] {
		shards = append(shards, s.(int))
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	require.Equal(t, want, shards, "matrix.shard is 1 to SHARDS")
	require.NotEmpty(t, shard.Strategy.Matrix["board"])

	var run, restoreKey, saveKey string
	for _, st := range shard.Steps {
		switch {
		case strings.Contains(st.Run, " run "):
			run = st.Run
		case st.Uses == "actions/cache/restore@v4":
			restoreKey = st.With["key"]
			require.Equal(t, ".socbox-cache", st.With["path"])
		case st.Uses == "actions/cache/save@v4":
			saveKey = st.With["key"]
		case st.Uses == "actions/upload-artifact@v4":
			require.Equal(t, "always()", st.If, "results are uploaded when the run failed too")
		}
	}
	require.Contains(t, run, `--shard "${{ matrix.shard }}/$SHARDS"`)
	require.Contains(t, run, `--board "${{ matrix.board }}"`)
	require.Contains(t, run, "SOCBOX_CACHE=$SOCBOX_CACHE")
	require.Equal(t, restoreKey, saveKey)
	for _, part := range []string{"${{ matrix.board }}", "steps.versions.outputs.qemu", "steps.versions.outputs.socbox", "hashFiles('.socbox/go.sum')", "steps.versions.outputs.image"} {
		// A cache saved under a key is never replaced: whatever changes
		// what it holds is in the key.
		require.Contains(t, saveKey, part)
	}

	merge := wf.Jobs["merge"]
	require.Equal(t, "shard", merge.Needs)
	require.Equal(t, "always()", merge.If, "the shards' results are merged when one failed")
	var merged bool
	for _, st := range merge.Steps {
		if strings.Contains(st.Run, "report merge -o merged shards/*/") {
			merged = true
		}
	}
	require.True(t, merged)
}

func TestGitLabPipelinePassesItsChecks(t *testing.T) {
	data := read(t, "gitlab/.gitlab-ci.yml")
	require.Empty(t, CheckGitLabCI(data))

	// Shards 1 to SHARDS, with the same arguments.
	var doc struct {
		Variables map[string]string `yaml:"variables"`
		Nightly   struct {
			Script []string `yaml:"script"`
		} `yaml:"nightly"`
		Merge struct {
			Script []string `yaml:"script"`
		} `yaml:"merge"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc))
	n, err := strconv.Atoi(doc.Variables["SHARDS"])
	require.NoError(t, err)
	shards, err := MatrixValues(data, "nightly", "SHARD")
	require.NoError(t, err)
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, strconv.Itoa(i))
	}
	require.Equal(t, want, shards)
	require.Contains(t, strings.Join(doc.Nightly.Script, "\n"), `--shard "$SHARD/$SHARDS"`)
	require.Contains(t, strings.Join(doc.Merge.Script, "\n"), "socbox report merge -o merged results/*/")
}

// The checks are live: each of these breaks the pipeline, and they say so.
func TestGitLabChecksCatchBrokenPipelines(t *testing.T) {
	good := string(read(t, "gitlab/.gitlab-ci.yml"))
	for _, tc := range []struct{ name, from, to, want string }{
		{"not YAML", "stages: [test, report]", "stages: [test, report", "not YAML"},
		{"a stage that is not there", "  stage: report\n", "  stage: reports\n", `merge: stage "reports" is not in stages (.pre, test, report, .post)`},
		{"needs a job that is not there", "    - job: nightly\n", "    - job: nightlies\n", `merge: needs "nightlies", which is not a job in the file`},
		{"needs a later job", "stages: [test, report]", "stages: [report, test]", `merge: needs "nightly", which runs in a later stage`},
		{"an empty script", "    - socbox report merge -o merged results/*/\n", "", "merge: no script (nor trigger)"},
		{"no script at all", "  script:\n    - socbox report merge -o merged results/*/\n", "", "merge: no script (nor trigger)"},
		{"extends a template that is not there", "  extends: .socbox\n  stage: test", "  extends: .sockbox\n  stage: test", `nightly: extends ".sockbox", which is not in the file`},
		{"a keyword GitLab does not have", "  timeout: 2h 30m\n", "  time_limit: 2h 30m\n", `nightly: unknown keyword "time_limit"`},
		{"artifacts outside the project", "      - merged/\n", "      - ../merged/\n", `merge: artifacts:paths: "../merged/" leaves the project's directory`},
		{"an absolute report path", "      junit: merged/junit.xml\n", "      junit: /merged/junit.xml\n", `must be relative to the project's directory`},
		{"a cache path outside", "      - .socbox-cache/\n", "      - $CI_PROJECT_DIR/.socbox-cache/\n", "must be relative to the project's directory"},
		{"a bad when", "    when: always\n  script:", "    when: sometimes\n  script:", "cache:when sometimes"},
		{"a bad rule", `    - if: $CI_PIPELINE_SOURCE == "web"` + "\n  timeout", `    - iff: $CI_PIPELINE_SOURCE == "web"` + "\n  timeout", `nightly: rule 2: unknown keyword "iff"`},
		{"a matrix too large", `        SHARD: ["1", "2", "3"]`, `        SHARD: [` + strings.Repeat(`"x", `, 70) + `"1"]`, "parallel:matrix makes 213 jobs, more than GitLab's 200"},
		{"a job that is not a mapping", "merge:\n  extends", "merge: true\nmerge2:\n  extends", "merge: a job must be a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, 1, strings.Count(good, tc.from), "the pipeline has %q once", tc.from)
			errs := CheckGitLabCI([]byte(strings.Replace(good, tc.from, tc.to, 1)))
			require.NotEmpty(t, errs)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			require.Contains(t, strings.Join(msgs, "\n"), tc.want)
		})
	}
}

func TestGitLabChecksOnSmallPipelines(t *testing.T) {
	for src, want := range map[string]string{
		"":                                      "no jobs",
		"stages: [a]\n":                         "no jobs: every top-level key is a keyword or a hidden template",
		".t: {script: [x]}\nj: {extends: .t}\n": "",
		".a: {extends: .b}\n.b: {extends: .a}\nj: {extends: .a}\n": "extends goes round in a circle",
		"j: {trigger: other/project}\n":                            "",
		"j: {script: x, parallel: 201}\n":                          "parallel 201 is not from 1 to 200",
		"j: {script: x, dependencies: [k]}\nk: {script: y}\n":      `j: dependencies: "k" does not run in an earlier stage`,
		"j: {script: x, variables: {1X: y}}\n":                     `variable name "1X"`,
		"j: {script: [], stage: build}\n":                          "j: no script",
		"j: {script: x, artifacts: {when: always}}\n":              "artifacts has neither paths nor reports",
	} {
		errs := CheckGitLabCI([]byte(src))
		if want == "" {
			require.Empty(t, errs, src)
			continue
		}
		require.NotEmpty(t, errs, src)
		require.Contains(t, fmt.Sprint(errs), want, src)
	}
}

func TestKubernetesJobIndexesAreShards(t *testing.T) {
	var job struct {
		Kind string
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int
			Parallelism    int
			Template       struct {
				Spec struct {
					Containers []struct {
						Args []string
						Env  []struct{ Name, Value string }
					}
				}
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(read(t, "kubernetes/nightly-job.yaml"), &job))
	require.Equal(t, "Job", job.Kind)
	require.Equal(t, "Indexed", job.Spec.CompletionMode, "JOB_COMPLETION_INDEX is set only in an indexed Job")
	require.Len(t, job.Spec.Template.Spec.Containers, 1)
	c := job.Spec.Template.Spec.Containers[0]
	shards := ""
	for _, e := range c.Env {
		if e.Name == "SHARDS" {
			shards = e.Value
		}
	}
	require.Equal(t, strconv.Itoa(job.Spec.Completions), shards, "one pod per shard")
	require.Equal(t, job.Spec.Completions, job.Spec.Parallelism)
	require.Contains(t, strings.Join(c.Args, " "), `--shard "$((JOB_COMPLETION_INDEX + 1))/$SHARDS"`, "indexes count from 0, shards from 1")
}

// The README explains each of them.
func TestREADMENamesTheCIExamples(t *testing.T) {
	readme := string(read(t, filepath.Join("..", "..", "README.md")))
	for _, f := range []string{"scripts/ci/github/nightly.yml", "scripts/ci/gitlab/.gitlab-ci.yml", "scripts/ci/kubernetes/nightly-job.yaml"} {
		require.True(t, strings.Contains(readme, f), "README.md names %s", f)
		require.FileExists(t, filepath.Join("..", "..", f))
	}
}
