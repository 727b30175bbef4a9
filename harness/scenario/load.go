package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/ociimage"
)

// Load reads scenarios from YAML files and directories (every *.yaml and
// *.yml directly in it, in name order). Every problem is reported, each as
// "file:line: what", before anything runs; scenario names must be unique
// across all the files.
func Load(paths ...string) ([]Scenario, error) {
	if len(paths) == 0 {
		return nil, errors.New("load scenarios: no files or directories given")
	}
	var files []string
	seen := map[string]bool{}
	for _, p := range paths {
		fs, err := scenarioFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			if c := filepath.Clean(f); !seen[c] {
				seen[c] = true
				files = append(files, f)
			}
		}
	}
	var all []Scenario
	var errs []error
	for _, f := range files {
		data, err := readBounded(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		list, err := Parse(f, data)
		errs = append(errs, err)
		all = append(all, list...)
	}
	errs = append(errs, duplicates(all)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return all, nil
}

// MaxFileSize bounds a scenario file. The bundled ones are a few KiB; a
// scenario file is written by hand, so anything near this is a mistake or
// an attack on the host's memory.
const MaxFileSize = 1 << 20

// readBounded reads a scenario file, never more than MaxFileSize+1 bytes:
// Parse refuses one that is larger.
func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("load scenarios: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load scenarios: %w", err)
	}
	return data, nil
}

// scenarioFiles expands a directory into its YAML files, sorted.
func scenarioFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load scenarios: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("load scenarios: %w", err)
	}
	var out []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load scenarios: no *.yaml or *.yml files in %s", path)
	}
	sort.Strings(out)
	return out, nil
}

// Unique says which scenario names in list are defined more than once,
// for lists put together from several files.
func Unique(list []Scenario) error { return errors.Join(duplicates(list)...) }

// duplicates reports scenario names defined more than once.
func duplicates(list []Scenario) []error {
	var errs []error
	first := map[string]Scenario{}
	for _, s := range list {
		if f, ok := first[s.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: duplicate scenario name %q (first defined at %s)", s.Where(), s.Name, f.Where()))
			continue
		}
		first[s.Name] = s
	}
	return errs
}

// Parse reads the scenarios in one YAML file; name is the file's path, used
// in messages and in each Scenario's File. A file holds one or more YAML
// documents (separated by ---), each a scenario or a list of scenarios:
//
//	# checks.yaml
//	- name: arch
//	  description: the container runs on the board's architecture
//	  boards: [raspi4b-fast, linux/arm64]   # optional; default: every board
//	  needs: [network]                 # optional; not applicable on a board without (raspi4b)
//	  tags: [basics, smoke]            # optional; --run/--skip match tag:NAME
//	  container:
//	    image: ""                      # empty: the built-in busybox
//	    cmd: [uname, -m]
//	    env: [GREETING=hello]
//	    workdir: /
//	    mounts:                        # bind mounts of guest paths
//	      - {source: /etc, target: /host-etc, read_only: true}
//	    privileged: false
//	    memory_limit: 64Mi             # bytes, or with K, M, G (1000s) or Ki, Mi, Gi (1024s)
//	    host_network: false            # true: the guest's network namespace
//	  expect:
//	    exit_code: 0
//	    stdout: "${UNAME_M}\n"         # also ${BOARD}, ${PLATFORM}
//	    stdout_regex: '^\w+\n$'
//	    stderr: ""
//	    stderr_regex: ""
//	    stdout_sha256: 0123…
//	    max_duration: 30s
//	    oom_killed: false              # true: exit_code defaults to 137
//
// Unknown fields, bad regular expressions and durations, empty commands and
// duplicate names are errors, each as "file:line: what". So are aliases
// (*name, and merge keys <<: *name) and files larger than MaxFileSize: a
// few aliases can stand for gigabytes of scenarios.
func Parse(name string, data []byte) ([]Scenario, error) {
	p := &parser{file: name}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s:1: the file is larger than %d bytes, the most a scenario file may have: split it into several files", name, MaxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// Strict, though KnownFields only bites when decoding into structs:
	// decoding into yaml.Node keeps every line, and the walk below checks
	// each mapping's fields itself, naming the known ones.
	dec.KnownFields(true)
	var out []Scenario
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, p.yamlError(err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if a := firstAlias(&doc); a != nil {
			p.errorf(a, "alias *%s: aliases and merge keys (<<) are not supported, write the value out", a.Value)
			continue
		}
		root := doc.Content[0]
		switch root.Kind {
		case yaml.SequenceNode:
			for _, item := range root.Content {
				if s, ok := p.scenario(item); ok {
					out = append(out, s)
				}
			}
		case yaml.MappingNode:
			if s, ok := p.scenario(root); ok {
				out = append(out, s)
			}
		default:
			p.errorf(root, "want a scenario (a mapping with name, container, expect) or a list of them, got %s", kindName(root))
		}
	}
	if len(out) == 0 && len(p.errs) == 0 {
		p.errs = append(p.errs, fmt.Errorf("%s:1: no scenarios in the file", name))
	}
	p.errs = append(p.errs, duplicates(out)...)
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return out, nil
}

type parser struct {
	file string
	errs []error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.file, n.Line, fmt.Sprintf(format, args...)))
}

// yamlLine finds the line yaml.v3 puts into its syntax errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlError turns "yaml: line 3: mapping values are not allowed in this
// context" into "file:3: mapping values are not allowed in this context".
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", p.file, m[1], msg[len(m[0]):])
	}
	return fmt.Errorf("%s:1: %s", p.file, strings.TrimPrefix(msg, "yaml: "))
}

var (
	scenarioFields  = []string{"name", "description", "boards", "tags", "needs", "network", "services", "container", "expect"}
	containerFields = []string{"name", "image", "cmd", "env", "workdir", "mounts", "files", "privileged", "seccomp", "memory_limit", "host_network", "ports", "restarts"}
	mountFields     = []string{"source", "target", "read_only"}
	expectFields    = []string{"exit_code", "stdout", "stdout_regex", "stderr", "stderr_regex", "stdout_sha256", "max_duration", "oom_killed", "files", "http"}
	fileFields      = []string{"content", "regex", "sha256"}
	httpFields      = []string{"service", "port", "path", "status", "body_regex"}
	// hostName is what a service's name may be: other containers reach it
	// by that name.
	hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// scenarioName is what a name may be: it becomes part of test names
	// (board/scenario) and of the guest's container IDs.
	scenarioName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	variable      = regexp.MustCompile(`\$\{([^}]*)\}`)
)

// fields checks a mapping's keys against the known ones and returns the
// value node of each, by key.
func (p *parser) fields(n *yaml.Node, what string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping (%s), got %s", what, strings.Join(known, ", "), kindName(n))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !contains(known, k.Value):
			p.errorf(k, "unknown field %q in %s (known: %s)", k.Value, what, strings.Join(known, ", "))
		case out[k.Value] != nil:
			p.errorf(k, "field %q given twice in %s (first at line %d)", k.Value, what, out[k.Value].Line)
		default:
			out[k.Value] = v
		}
	}
	return out
}

func (p *parser) scenario(n *yaml.Node) (Scenario, bool) {
	before := len(p.errs)
	s := Scenario{File: p.file, Line: n.Line}
	f := p.fields(n, "scenario", scenarioFields)
	if n.Kind != yaml.MappingNode {
		return s, false
	}
	if v := f["name"]; v == nil {
		p.errorf(n, "scenario has no name")
	} else if s.Name, _ = p.str(v, "name"); s.Name == "" {
		p.errorf(v, "scenario name is empty")
	} else if !scenarioName.MatchString(s.Name) {
		p.errorf(v, "scenario name %q: use letters, digits and . _ - only, starting with a letter or digit", s.Name)
	}
	s.Description, _ = p.str(f["description"], "description")
	s.Boards = p.boards(f["boards"])
	s.Needs = p.needs(f["needs"])
	s.Tags = p.tags(f["tags"])
	if v, ok := p.str(f["network"], "network"); ok {
		if v != NetworkBridge {
			p.errorf(f["network"], "network %q: the only one is %q (containers reach each other by name); leave it out for a namespace of their own each", v, NetworkBridge)
		}
		s.Network = v
	}
	if v := f["services"]; v != nil && !isNull(v) {
		s.Services = p.services(v, s.Network)
	}
	if v := f["container"]; v != nil {
		s.Container = p.container(v, false)
		p.ports(v, s.Container, s.Network)
	} else if len(s.Services) == 0 {
		p.errorf(n, "scenario %q has no container (with at least cmd)", s.Name)
	}
	if v := f["expect"]; v != nil {
		s.Expect = p.expect(v)
		if f["container"] == nil && hasContainerExpectations(p.fields(v, "expect", expectFields)) {
			p.errorf(v, "scenario %q has expectations about a container but no container: only http checks apply to services", s.Name)
		}
		p.httpTargets(v, s)
	}
	return s, len(p.errs) == before
}

// hasContainerExpectations reports whether expect says anything but http.
func hasContainerExpectations(f map[string]*yaml.Node) bool {
	for k := range f {
		if k != "http" {
			return true
		}
	}
	return false
}

// services reads a scenario's background containers: each needs a name,
// which is its host name on the scenario's network.
func (p *parser) services(n *yaml.Node, network string) []ctrd.Container {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "services must be a list of containers, each with a name, got %s", kindName(n))
		return nil
	}
	var out []ctrd.Container
	seen := map[string]int{}
	for _, item := range n.Content {
		c := p.container(item, true)
		if item.Kind != yaml.MappingNode {
			continue
		}
		switch {
		case c.Name == "":
			p.errorf(item, "a service needs a name: the other containers reach it by that name")
		case !hostName.MatchString(c.Name):
			p.errorf(item, "service name %q: use lowercase letters, digits and dashes (it is a host name)", c.Name)
		case seen[c.Name] != 0:
			p.errorf(item, "service %q given twice (first at line %d)", c.Name, seen[c.Name])
		default:
			seen[c.Name] = item.Line
		}
		p.ports(item, c, network)
		out = append(out, c)
	}
	return out
}

// ports checks that a container with ports can be reached.
func (p *parser) ports(n *yaml.Node, c ctrd.Container, network string) {
	if len(c.Ports) > 0 && network == "" && !c.HostNetwork {
		p.errorf(n, "ports %v cannot be reached in a namespace with only loopback: give the scenario network: bridge, or the container host_network: true", c.Ports)
	}
}

// httpTargets checks that each http check names a service and a port it
// publishes.
func (p *parser) httpTargets(n *yaml.Node, s Scenario) {
	f := p.fields(n, "expect", expectFields)
	list := f["http"]
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	for i, h := range s.Expect.HTTP {
		if i >= len(list.Content) {
			break
		}
		item := list.Content[i]
		var svc *ctrd.Container
		for j := range s.Services {
			if s.Services[j].Name == h.Service {
				svc = &s.Services[j]
			}
		}
		switch {
		case svc == nil:
			p.errorf(item, "http check names service %q, which the scenario does not have", h.Service)
		case !slices.Contains(svc.Ports, h.Port):
			p.errorf(item, "http check on port %d of %s: add %d to the service's ports, so it is forwarded", h.Port, h.Service, h.Port)
		}
	}
}

// container reads a container; a service's may leave out cmd (the image's
// own then runs).
func (p *parser) container(n *yaml.Node, service bool) ctrd.Container {
	var c ctrd.Container
	what := "container"
	if service {
		what = "service"
	}
	f := p.fields(n, what, containerFields)
	c.Name, _ = p.str(f["name"], "name")
	if c.Name != "" && !service && !scenarioName.MatchString(c.Name) {
		p.errorf(f["name"], "container name %q: use letters, digits and . _ - only", c.Name)
	}
	c.Image, _ = p.str(f["image"], "image")
	// An image source's relative path is taken from the scenario file's
	// directory, and must exist before anything boots.
	if img, err := ociimage.ResolveSource(c.Image, filepath.Dir(p.file)); err != nil {
		p.errorf(f["image"], "%v", err)
	} else {
		c.Image = img
	}
	c.WorkingDir, _ = p.str(f["workdir"], "workdir")
	if v := f["cmd"]; v == nil {
		if !service {
			p.errorf(n, "container has no cmd: give the command as a list, e.g. cmd: [uname, -m]")
		}
	} else if c.Cmd, _ = p.strList(v, "cmd"); len(c.Cmd) == 0 && v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
		p.errorf(v, "cmd is empty: give the command as a list, e.g. cmd: [uname, -m]")
	} else if len(c.Cmd) > 0 && c.Cmd[0] == "" {
		p.errorf(v, "cmd starts with an empty program name")
	}
	if v := f["env"]; v != nil {
		var nodes []*yaml.Node
		c.Env, nodes = p.strList(v, "env")
		for i, e := range c.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				p.errorf(nodes[i], "env entry %q is not KEY=VALUE", e)
			}
		}
	}
	if v := f["mounts"]; v != nil && !isNull(v) {
		c.Mounts = p.mounts(v)
	}
	if v := f["files"]; v != nil && !isNull(v) {
		c.Files = p.files(v)
	}
	c.Privileged, _ = p.boolean(f["privileged"], "privileged")
	if v, ok := p.str(f["seccomp"], "seccomp"); ok {
		switch v {
		case "default":
		case "unconfined":
			c.SeccompUnconfined = true
		default:
			p.errorf(f["seccomp"], "seccomp %q: default (containerd's profile, as Docker's) or unconfined", v)
		}
	}
	c.HostNetwork, _ = p.boolean(f["host_network"], "host_network")
	if v := f["ports"]; v != nil && !isNull(v) {
		if v.Kind != yaml.SequenceNode {
			p.errorf(v, "ports must be a list of TCP port numbers, e.g. ports: [80], got %s", kindName(v))
		} else {
			for _, item := range v.Content {
				port, err := strconv.Atoi(item.Value)
				if item.Kind != yaml.ScalarNode || err != nil || port < 1 || port > 65535 {
					p.errorf(item, "port must be a number from 1 to 65535, got %s", kindName(item))
					continue
				}
				c.Ports = append(c.Ports, port)
			}
		}
	}
	if v := f["restarts"]; v != nil && !isNull(v) {
		n, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || n < 0 || n > 100 {
			p.errorf(v, "restarts must be a whole number from 0 to 100, got %s", kindName(v))
		}
		c.Restarts = n
	}
	if v := f["memory_limit"]; v != nil && !isNull(v) {
		if s, ok := p.str(v, "memory_limit"); ok {
			n, err := parseBytes(s)
			if err != nil {
				p.errorf(v, "memory_limit: %v", err)
			}
			c.MemoryLimit = n
		}
	}
	return c
}

func (p *parser) mounts(n *yaml.Node) []ctrd.Mount {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "mounts must be a list, e.g. mounts: [{source: /etc, target: /host-etc, read_only: true}], got %s", kindName(n))
		return nil
	}
	var out []ctrd.Mount
	for _, item := range n.Content {
		f := p.fields(item, "mount", mountFields)
		if item.Kind != yaml.MappingNode {
			continue
		}
		var m ctrd.Mount
		for _, end := range []struct {
			key string
			dst *string
		}{{"source", &m.Source}, {"target", &m.Target}} {
			v := f[end.key]
			if v == nil {
				p.errorf(item, "mount has no %s", end.key)
				continue
			}
			if s, ok := p.str(v, end.key); ok {
				if !path.IsAbs(s) {
					p.errorf(v, "mount %s %q must be an absolute path", end.key, s)
				}
				*end.dst = s
			}
		}
		m.ReadOnly, _ = p.boolean(f["read_only"], "read_only")
		out = append(out, m)
	}
	return out
}

// files reads files to copy into a container: a mapping of absolute path
// to content.
func (p *parser) files(n *yaml.Node) []ctrd.File {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "files must be a mapping of path to content, e.g. files: {/etc/motd: \"hello\\n\"}, got %s", kindName(n))
		return nil
	}
	var out []ctrd.File
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !path.IsAbs(k.Value) || path.Clean(k.Value) == "/" {
			p.errorf(k, "file %q must be an absolute path in the container", k.Value)
		}
		content, ok := p.str(v, "file "+k.Value)
		if !ok && !isNull(v) {
			continue
		}
		out = append(out, ctrd.File{Path: k.Value, Content: []byte(content)})
	}
	return out
}

// parseBytes reads a size: a whole number of bytes, optionally followed by
// K, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024), as in
// Kubernetes' quantities: "64Mi", "128M", "1Gi", "65536".
func parseBytes(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGi")
	unit := s[len(num):]
	mult := map[string]int64{"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if mult == 0 || err != nil {
		return 0, fmt.Errorf("%q is not a size like 64Mi, 128M or 65536 (bytes)", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// boolean reads true or false; a missing or null field is false and not
// set.
func (p *parser) boolean(n *yaml.Node, key string) (bool, bool) {
	if n == nil || isNull(n) {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errorf(n, "%s must be true or false, got %s", key, kindName(n))
		return false, false
	}
	b, err := strconv.ParseBool(n.Value)
	if err != nil {
		// YAML 1.1 spellings such as yes/no carry the tag but are not
		// what yaml.v3 treats as booleans.
		p.errorf(n, "%s must be true or false, got %q", key, n.Value)
		return false, false
	}
	return b, true
}

func (p *parser) expect(n *yaml.Node) Expect {
	var e Expect
	f := p.fields(n, "expect", expectFields)
	if v := f["exit_code"]; v != nil && !isNull(v) {
		code, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || code < 0 || code > 255 {
			p.errorf(v, "exit_code must be a whole number from 0 to 255, got %q", v.Value)
		}
		e.ExitCode = code
	}
	for _, exact := range []struct {
		key string
		dst **string
	}{{"stdout", &e.Stdout}, {"stderr", &e.Stderr}} {
		if s, ok := p.str(f[exact.key], exact.key); ok {
			p.variables(f[exact.key], exact.key, s)
			*exact.dst = Str(s)
		}
	}
	for _, re := range []struct {
		key string
		dst *string
	}{{"stdout_regex", &e.StdoutRegex}, {"stderr_regex", &e.StderrRegex}} {
		s, ok := p.str(f[re.key], re.key)
		if !ok {
			continue
		}
		p.variables(f[re.key], re.key, s)
		// Variables are filled in on the board; check the rest now.
		if _, err := regexp.Compile(variable.ReplaceAllString(s, "x")); err != nil {
			p.errorf(f[re.key], "%s is not a valid regular expression: %v", re.key, err)
		}
		*re.dst = s
	}
	if s, ok := p.str(f["stdout_sha256"], "stdout_sha256"); ok {
		s = strings.ToLower(s)
		if !sha256Pattern.MatchString(s) {
			p.errorf(f["stdout_sha256"], "stdout_sha256 must be 64 hex digits, got %q", s)
		}
		e.StdoutSHA256 = s
	}
	if s, ok := p.str(f["max_duration"], "max_duration"); ok {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.errorf(f["max_duration"], "max_duration %q is not a duration like 30s or 2m", s)
		case d <= 0:
			p.errorf(f["max_duration"], "max_duration must be positive, got %s", s)
		}
		e.MaxDuration = d
	}
	if v := f["files"]; v != nil && !isNull(v) {
		e.Files = p.fileExpects(v)
	}
	if v := f["http"]; v != nil && !isNull(v) {
		e.HTTP = p.httpChecks(v)
	}
	if b, ok := p.boolean(f["oom_killed"], "oom_killed"); ok {
		e.OOMKilled = Bool(b)
		if v := f["exit_code"]; b && (v == nil || isNull(v)) {
			e.ExitCode = 137 // SIGKILL, which is what the OOM killer sends
		}
	}
	return e
}

// fileExpects reads what files the container must leave: path to the exact
// content, or to a mapping of content, regex and sha256.
func (p *parser) fileExpects(n *yaml.Node) map[string]FileExpect {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "files must be a mapping of path to content or to {content, regex, sha256}, got %s", kindName(n))
		return nil
	}
	out := map[string]FileExpect{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !path.IsAbs(k.Value) || path.Clean(k.Value) == "/" {
			p.errorf(k, "file %q must be an absolute path in the container", k.Value)
		}
		var fe FileExpect
		switch v.Kind {
		case yaml.ScalarNode:
			if !isNull(v) {
				p.variables(v, "file "+k.Value, v.Value)
				fe.Content = Str(v.Value)
			}
		default:
			f := p.fields(v, "file "+k.Value, fileFields)
			if s, ok := p.str(f["content"], "content"); ok {
				p.variables(f["content"], "content", s)
				fe.Content = Str(s)
			}
			if s, ok := p.str(f["regex"], "regex"); ok {
				p.variables(f["regex"], "regex", s)
				if _, err := regexp.Compile(variable.ReplaceAllString(s, "x")); err != nil {
					p.errorf(f["regex"], "regex is not a valid regular expression: %v", err)
				}
				fe.Regex = s
			}
			if s, ok := p.str(f["sha256"], "sha256"); ok {
				s = strings.ToLower(s)
				if !sha256Pattern.MatchString(s) {
					p.errorf(f["sha256"], "sha256 must be 64 hex digits, got %q", s)
				}
				fe.SHA256 = s
			}
		}
		out[path.Clean(k.Value)] = fe
	}
	return out
}

// httpChecks reads requests made from the host to services' ports.
func (p *parser) httpChecks(n *yaml.Node) []HTTPCheck {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "http must be a list, e.g. http: [{service: web, port: 80, body_regex: hello}], got %s", kindName(n))
		return nil
	}
	var out []HTTPCheck
	for _, item := range n.Content {
		f := p.fields(item, "http check", httpFields)
		var h HTTPCheck
		if s, ok := p.str(f["service"], "service"); ok {
			h.Service = s
		} else {
			p.errorf(item, "http check has no service")
		}
		if v := f["port"]; v == nil {
			p.errorf(item, "http check has no port")
		} else if port, err := strconv.Atoi(v.Value); err != nil || port < 1 || port > 65535 {
			p.errorf(v, "port must be a number from 1 to 65535, got %s", kindName(v))
		} else {
			h.Port = port
		}
		if s, ok := p.str(f["path"], "path"); ok {
			if !strings.HasPrefix(s, "/") {
				p.errorf(f["path"], "path %q must start with /", s)
			}
			h.Path = s
		}
		if v := f["status"]; v != nil && !isNull(v) {
			st, err := strconv.Atoi(v.Value)
			if err != nil || st < 100 || st > 599 {
				p.errorf(v, "status must be an HTTP status from 100 to 599, got %s", kindName(v))
			}
			h.Status = st
		}
		if s, ok := p.str(f["body_regex"], "body_regex"); ok {
			p.variables(f["body_regex"], "body_regex", s)
			if _, err := regexp.Compile(variable.ReplaceAllString(s, "x")); err != nil {
				p.errorf(f["body_regex"], "body_regex is not a valid regular expression: %v", err)
			}
			h.BodyRegex = s
		}
		out = append(out, h)
	}
	return out
}

// variables checks that an expectation only uses the variables the harness
// fills in.
func (p *parser) variables(n *yaml.Node, key, s string) {
	for _, m := range variable.FindAllStringSubmatch(s, -1) {
		switch m[1] {
		case "UNAME_M", "BOARD", "PLATFORM":
		default:
			p.errorf(n, "%s uses unknown variable %s (known: ${UNAME_M}, ${BOARD}, ${PLATFORM})", key, m[0])
		}
	}
}

// boards checks that each entry names a board or a guest platform.
func (p *parser) boards(n *yaml.Node) []string {
	if n == nil || isNull(n) {
		return nil
	}
	list, nodes := p.strList(n, "boards")
	known := boards.Slugs()
	for _, b := range boards.All() {
		if !contains(known, b.Platform.String()) {
			known = append(known, b.Platform.String())
		}
	}
	for _, pl := range []boards.Platform{boards.LinuxARM64, boards.LinuxARMv7} {
		if !contains(known, pl.String()) {
			known = append(known, pl.String())
		}
	}
	for i, b := range list {
		if !contains(known, b) {
			p.errorf(nodes[i], "unknown board or platform %q in boards (known: %s)", b, strings.Join(known, ", "))
		}
	}
	return list
}

// needs reads what a scenario needs of the board (KnownNeeds).
func (p *parser) needs(n *yaml.Node) []string {
	if n == nil || isNull(n) {
		return nil
	}
	list, nodes := p.strList(n, "needs")
	for i, need := range list {
		if !contains(KnownNeeds, need) {
			p.errorf(nodes[i], "unknown need %q in needs (known: %s)", need, strings.Join(KnownNeeds, ", "))
		}
	}
	return list
}

// tags reads a scenario's tags: names as scenario names are, each once.
func (p *parser) tags(n *yaml.Node) []string {
	if n == nil || isNull(n) {
		return nil
	}
	list, nodes := p.strList(n, "tags")
	seen := map[string]bool{}
	var out []string
	for i, t := range list {
		switch {
		case !scenarioName.MatchString(t):
			p.errorf(nodes[i], "tag %q: use letters, digits and . _ - only, starting with a letter or digit", t)
		case seen[t]:
			p.errorf(nodes[i], "tag %q given twice", t)
		default:
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// str reads a scalar as text, exactly as written; a missing or null field
// is not set.
func (p *parser) str(n *yaml.Node, key string) (string, bool) {
	if n == nil || isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s must be a string, got %s", key, kindName(n))
		return "", false
	}
	return n.Value, true
}

// strList reads a list of strings, and the node of each for messages.
func (p *parser) strList(n *yaml.Node, key string) ([]string, []*yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list, e.g. %s: [a, b], got %s", key, key, kindName(n))
		return nil, nil
	}
	out := make([]string, 0, len(n.Content))
	var nodes []*yaml.Node
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || isNull(item) {
			p.errorf(item, "%s entries must be strings, got %s", key, kindName(item))
			continue
		}
		out = append(out, item.Value)
		nodes = append(nodes, item)
	}
	return out, nodes
}

// firstAlias finds the first alias (*name) in a document, in file order.
// The walk visits each node once: the tree holds aliases, not the nodes
// they stand for, so it is no larger than the file.
func firstAlias(doc *yaml.Node) *yaml.Node {
	stack := []*yaml.Node{doc}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			return n
		}
		for i := len(n.Content) - 1; i >= 0; i-- {
			stack = append(stack, n.Content[i])
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
