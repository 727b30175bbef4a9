// Package ci holds CI configurations to copy — a GitHub Actions workflow
// (github/), a GitLab CI pipeline (gitlab/) and a Kubernetes indexed Job
// (kubernetes/) that run socbox's scenarios nightly in shards and merge the
// results — and the checks the unit tests run on them: actionlint for the
// workflow, CheckGitLabCI for the pipeline.
package ci

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// GitLab CI's keywords: those at the top of the file, and those of a job,
// as GitLab's CI/CD YAML reference lists them.
var (
	gitlabGlobal = []string{"default", "include", "stages", "variables", "workflow", "image", "services", "cache",
		"before_script", "after_script", "spec"}
	gitlabJob = []string{"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
		"dast_configuration", "dependencies", "environment", "extends", "hooks", "identity", "id_tokens", "image",
		"inherit", "interruptible", "manual_confirmation", "needs", "pages", "parallel", "release", "resource_group",
		"retry", "rules", "run", "script", "secrets", "services", "stage", "tags", "timeout", "trigger", "variables", "when"}
	gitlabDefaultStages = []string{".pre", "build", "test", "deploy", ".post"}
	gitlabWhen          = []string{"on_success", "on_failure", "always", "manual", "delayed", "never"}
	gitlabRuleKeys      = []string{"if", "changes", "exists", "when", "allow_failure", "variables", "needs", "interruptible", "start_in"}
	gitlabVariableName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// gitlabMaxParallel is the most jobs parallel: (or a matrix) may make.
const gitlabMaxParallel = 200

// CheckGitLabCI checks a .gitlab-ci.yml's structure, as far as it can be
// told without GitLab: the YAML parses; every key is a keyword GitLab
// knows; every job has a script (its own or through extends) or a
// trigger; stages exist; needs, dependencies and extends name jobs and
// templates that exist; artifact, report and cache paths stay inside the
// project; parallel and its matrix are within GitLab's limits. Every
// problem is reported.
func CheckGitLabCI(data []byte) []error {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{fmt.Errorf("not YAML: %w", err)}
	}
	if len(doc) == 0 {
		return []error{errors.New("no jobs")}
	}
	c := &gitlabChecker{doc: doc, jobs: map[string]map[string]any{}, templates: map[string]map[string]any{}}
	c.stagesOf()
	for _, name := range sortedKeys(doc) {
		if slices.Contains(gitlabGlobal, name) {
			continue
		}
		body, ok := doc[name].(map[string]any)
		if !ok {
			c.errorf("%s: a job must be a mapping of keywords", name)
			continue
		}
		if strings.HasPrefix(name, ".") {
			c.templates[name] = body
		} else {
			c.jobs[name] = body
		}
	}
	if len(c.jobs) == 0 {
		c.errorf("no jobs: every top-level key is a keyword or a hidden template")
	}
	for _, name := range sortedKeys(c.templates) {
		c.keywords(name, c.templates[name])
	}
	stageOf := map[string]int{}
	resolved := map[string]map[string]any{}
	for _, name := range sortedKeys(c.jobs) {
		c.keywords(name, c.jobs[name])
		job := c.resolve(name, c.jobs[name], nil)
		resolved[name] = job
		stage := "test"
		if s, ok := job["stage"]; ok {
			stage, _ = s.(string)
		}
		if i := slices.Index(c.stages, stage); i >= 0 {
			stageOf[name] = i
		} else {
			c.errorf("%s: stage %q is not in stages (%s)", name, stage, strings.Join(c.stages, ", "))
			stageOf[name] = -1
		}
	}
	for _, name := range sortedKeys(resolved) {
		c.job(name, resolved[name], stageOf)
	}
	return c.errs
}

type gitlabChecker struct {
	doc             map[string]any
	stages          []string
	jobs, templates map[string]map[string]any
	errs            []error
}

func (c *gitlabChecker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// stagesOf reads stages:, with .pre first and .post last as GitLab adds
// them.
func (c *gitlabChecker) stagesOf() {
	raw, ok := c.doc["stages"]
	if !ok {
		c.stages = gitlabDefaultStages
		return
	}
	list, ok := raw.([]any)
	if !ok || len(list) == 0 {
		c.errorf("stages must be a list of stage names")
		c.stages = gitlabDefaultStages
		return
	}
	c.stages = []string{".pre"}
	for _, s := range list {
		name, ok := s.(string)
		if !ok || name == "" {
			c.errorf("stages: %v is not a stage name", s)
			continue
		}
		if slices.Contains(c.stages, name) {
			c.errorf("stages: %q given twice", name)
			continue
		}
		c.stages = append(c.stages, name)
	}
	c.stages = append(c.stages, ".post")
}

func (c *gitlabChecker) keywords(name string, body map[string]any) {
	for _, k := range sortedKeys(body) {
		if !slices.Contains(gitlabJob, k) {
			c.errorf("%s: unknown keyword %q", name, k)
		}
	}
}

// resolve merges the templates a job extends under it, as GitLab does:
// mappings merged key by key, everything else replaced.
func (c *gitlabChecker) resolve(name string, body map[string]any, seen []string) map[string]any {
	if slices.Contains(seen, name) {
		c.errorf("%s: extends goes round in a circle: %s", seen[0], strings.Join(append(seen, name), " → "))
		return body
	}
	var parents []string
	switch e := body["extends"].(type) {
	case nil:
	case string:
		parents = []string{e}
	case []any:
		for _, p := range e {
			if s, ok := p.(string); ok {
				parents = append(parents, s)
			} else {
				c.errorf("%s: extends: %v is not a job or template name", name, p)
			}
		}
	default:
		c.errorf("%s: extends must be a name or a list of names", name)
	}
	out := map[string]any{}
	for _, p := range parents {
		parent, ok := c.templates[p]
		if !ok {
			parent, ok = c.jobs[p]
		}
		if !ok {
			c.errorf("%s: extends %q, which is not in the file", name, p)
			continue
		}
		mergeInto(out, c.resolve(p, parent, append(seen, name)))
	}
	mergeInto(out, body)
	delete(out, "extends")
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merged := map[string]any{}
				mergeInto(merged, dm)
				mergeInto(merged, sm)
				dst[k] = merged
				continue
			}
		}
		dst[k] = v
	}
}

// job checks one job, with its templates merged in.
func (c *gitlabChecker) job(name string, job map[string]any, stageOf map[string]int) {
	_, trigger := job["trigger"]
	if !trigger && !nonEmptyScript(job["script"]) && job["run"] == nil {
		c.errorf("%s: no script (nor trigger): a job must run something", name)
	}
	for _, key := range []string{"before_script", "after_script"} {
		if v, ok := job[key]; ok && !nonEmptyScript(v) {
			c.errorf("%s: %s must be a command or a list of commands", name, key)
		}
	}
	if w, ok := job["when"]; ok {
		c.when(name, w)
	}
	c.needs(name, job, stageOf)
	if a, ok := job["artifacts"]; ok {
		c.artifacts(name, a)
	}
	if v, ok := job["cache"]; ok {
		c.cache(name, v)
	}
	if v, ok := job["parallel"]; ok {
		c.parallel(name, v)
	}
	if v, ok := job["rules"]; ok {
		rules, ok := v.([]any)
		if !ok {
			c.errorf("%s: rules must be a list", name)
		}
		for i, r := range rules {
			rule, ok := r.(map[string]any)
			if !ok {
				c.errorf("%s: rule %d must be a mapping (if, changes, exists, when, …)", name, i+1)
				continue
			}
			for _, k := range sortedKeys(rule) {
				if !slices.Contains(gitlabRuleKeys, k) {
					c.errorf("%s: rule %d: unknown keyword %q", name, i+1, k)
				}
			}
			if w, ok := rule["when"]; ok {
				c.when(fmt.Sprintf("%s: rule %d", name, i+1), w)
			}
		}
	}
	if v, ok := job["variables"]; ok {
		vars, ok := v.(map[string]any)
		if !ok {
			c.errorf("%s: variables must be a mapping", name)
		}
		for _, k := range sortedKeys(vars) {
			if !gitlabVariableName.MatchString(k) {
				c.errorf("%s: variable name %q", name, k)
			}
		}
	}
}

func (c *gitlabChecker) when(where string, w any) {
	if s, ok := w.(string); !ok || !slices.Contains(gitlabWhen, s) {
		c.errorf("%s: when %v is not one of %s", where, w, strings.Join(gitlabWhen, ", "))
	}
}

// needs checks needs: and dependencies: name jobs of this or an earlier
// stage (dependencies: an earlier one).
func (c *gitlabChecker) needs(name string, job map[string]any, stageOf map[string]int) {
	if v, ok := job["needs"]; ok {
		list, ok := v.([]any)
		if !ok {
			c.errorf("%s: needs must be a list of jobs", name)
		}
		for _, n := range list {
			var other string
			switch n := n.(type) {
			case string:
				other = n
			case map[string]any:
				if _, ok := n["pipeline"]; ok {
					continue // another pipeline's job: not in this file
				}
				other, _ = n["job"].(string)
			}
			if other == "" {
				c.errorf("%s: needs: %v names no job", name, n)
				continue
			}
			if _, ok := c.jobs[other]; !ok {
				c.errorf("%s: needs %q, which is not a job in the file", name, other)
				continue
			}
			if stageOf[other] > stageOf[name] && stageOf[name] >= 0 {
				c.errorf("%s: needs %q, which runs in a later stage", name, other)
			}
		}
	}
	if v, ok := job["dependencies"]; ok {
		list, ok := v.([]any)
		if !ok {
			c.errorf("%s: dependencies must be a list of jobs", name)
		}
		for _, d := range list {
			other, _ := d.(string)
			if _, ok := c.jobs[other]; !ok {
				c.errorf("%s: dependencies: %v is not a job in the file", name, d)
			} else if stageOf[other] >= stageOf[name] && stageOf[name] >= 0 {
				c.errorf("%s: dependencies: %q does not run in an earlier stage", name, other)
			}
		}
	}
}

func (c *gitlabChecker) artifacts(name string, v any) {
	a, ok := v.(map[string]any)
	if !ok {
		c.errorf("%s: artifacts must be a mapping", name)
		return
	}
	for _, k := range sortedKeys(a) {
		switch k {
		case "paths", "exclude":
			c.paths(name, "artifacts:"+k, a[k])
		case "reports":
			reports, ok := a[k].(map[string]any)
			if !ok {
				c.errorf("%s: artifacts:reports must be a mapping of report type to paths", name)
				continue
			}
			for _, r := range sortedKeys(reports) {
				c.paths(name, "artifacts:reports:"+r, reports[r])
			}
		case "when":
			if s, _ := a[k].(string); s != "on_success" && s != "on_failure" && s != "always" {
				c.errorf("%s: artifacts:when %v is not on_success, on_failure or always", name, a[k])
			}
		case "expire_in", "expose_as", "name", "public", "access", "untracked":
		default:
			c.errorf("%s: artifacts: unknown keyword %q", name, k)
		}
	}
	if _, ok := a["paths"]; !ok {
		if _, ok := a["reports"]; !ok {
			c.errorf("%s: artifacts has neither paths nor reports", name)
		}
	}
}

func (c *gitlabChecker) cache(name string, v any) {
	caches, ok := v.([]any)
	if !ok {
		caches = []any{v}
	}
	for _, one := range caches {
		cache, ok := one.(map[string]any)
		if !ok {
			c.errorf("%s: cache must be a mapping", name)
			continue
		}
		for _, k := range sortedKeys(cache) {
			switch k {
			case "paths":
				c.paths(name, "cache:paths", cache[k])
			case "key":
				switch key := cache[k].(type) {
				case string:
					if strings.Contains(key, "/") || key == "." || key == ".." {
						c.errorf("%s: cache:key %q may not have a / or be . or ..", name, key)
					}
				case map[string]any:
					c.paths(name, "cache:key:files", key["files"])
				default:
					c.errorf("%s: cache:key must be a string or {files, prefix}", name)
				}
			case "policy":
				if s, _ := cache[k].(string); s != "pull" && s != "push" && s != "pull-push" && !strings.HasPrefix(s, "$") {
					c.errorf("%s: cache:policy %v is not pull, push or pull-push", name, cache[k])
				}
			case "when":
				if s, _ := cache[k].(string); s != "on_success" && s != "on_failure" && s != "always" {
					c.errorf("%s: cache:when %v is not on_success, on_failure or always", name, cache[k])
				}
			case "untracked", "unprotect", "fallback_keys":
			default:
				c.errorf("%s: cache: unknown keyword %q", name, k)
			}
		}
	}
}

// paths checks a path or list of paths: relative to the project's
// directory, and inside it.
func (c *gitlabChecker) paths(name, key string, v any) {
	var list []any
	switch v := v.(type) {
	case string:
		list = []any{v}
	case []any:
		list = v
	default:
		c.errorf("%s: %s must be a path or a list of paths", name, key)
		return
	}
	if len(list) == 0 {
		c.errorf("%s: %s is empty", name, key)
	}
	for _, p := range list {
		s, ok := p.(string)
		switch {
		case !ok || s == "":
			c.errorf("%s: %s: %v is not a path", name, key, p)
		case path.IsAbs(s) || strings.HasPrefix(s, "$CI_PROJECT_DIR"):
			c.errorf("%s: %s: %q must be relative to the project's directory", name, key, s)
		case path.Clean(s) == ".." || strings.HasPrefix(path.Clean(s), "../"):
			c.errorf("%s: %s: %q leaves the project's directory", name, key, s)
		}
	}
}

// parallel checks parallel: N (2 to 200) or a matrix of at most 200 jobs.
func (c *gitlabChecker) parallel(name string, v any) {
	switch v := v.(type) {
	case int:
		if v < 1 || v > gitlabMaxParallel {
			c.errorf("%s: parallel %d is not from 1 to %d", name, v, gitlabMaxParallel)
		}
	case map[string]any:
		matrix, ok := v["matrix"].([]any)
		if !ok || len(matrix) == 0 || len(v) != 1 {
			c.errorf("%s: parallel must be a number or {matrix: [ {VARIABLE: [values]} … ]}", name)
			return
		}
		total := 0
		for i, m := range matrix {
			entry, ok := m.(map[string]any)
			if !ok || len(entry) == 0 {
				c.errorf("%s: parallel:matrix entry %d must map variables to values", name, i+1)
				continue
			}
			jobs := 1
			for _, k := range sortedKeys(entry) {
				if !gitlabVariableName.MatchString(k) {
					c.errorf("%s: parallel:matrix: variable name %q", name, k)
				}
				switch vals := entry[k].(type) {
				case string, int:
				case []any:
					if len(vals) == 0 {
						c.errorf("%s: parallel:matrix: %s has no values", name, k)
					}
					for _, val := range vals {
						if _, ok := val.(string); !ok {
							if _, ok := val.(int); !ok {
								c.errorf("%s: parallel:matrix: %s: %v is not a value", name, k, val)
							}
						}
					}
					jobs *= max(len(vals), 1)
				default:
					c.errorf("%s: parallel:matrix: %s must be a value or a list of values", name, k)
				}
			}
			total += jobs
		}
		if total > gitlabMaxParallel {
			c.errorf("%s: parallel:matrix makes %d jobs, more than GitLab's %d", name, total, gitlabMaxParallel)
		}
	default:
		c.errorf("%s: parallel must be a number or {matrix: …}", name)
	}
}

func nonEmptyScript(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v) != ""
	case []any:
		if len(v) == 0 {
			return false
		}
		for _, line := range v {
			switch line := line.(type) {
			case string:
			case []any: // a YAML anchor's list, spliced in
				if !nonEmptyScript(line) {
					return false
				}
			default:
				return false
			}
		}
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MatrixValues is a parallel:matrix variable's values in a job, in order.
func MatrixValues(data []byte, job, variable string) ([]string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	j, _ := doc[job].(map[string]any)
	p, _ := j["parallel"].(map[string]any)
	m, _ := p["matrix"].([]any)
	var out []string
	for _, entry := range m {
		e, _ := entry.(map[string]any)
		switch vals := e[variable].(type) {
		case []any:
			for _, v := range vals {
				switch v := v.(type) {
				case string:
					out = append(out, v)
				case int:
					out = append(out, strconv.Itoa(v))
				}
			}
		case string:
			out = append(out, vals)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("job %s has no parallel:matrix variable %s", job, variable)
	}
	return out, nil
}
