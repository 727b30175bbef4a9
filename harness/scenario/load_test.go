package scenario

// Unit tests: they parse files and never boot a board, so
// `go test -run 'TestParse|TestLoad|TestShipped|TestAppliesTo|TestOutput|TestPlan' ./scenarios/`
// runs them alone; every other test in this package boots boards.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
)

func TestParseEveryField(t *testing.T) {
	src := `# two documents: a list, then a single scenario
- name: full
  description: every field
  boards: [raspi4b-fast, linux/arm64]
  needs: [network]
  tags: [smoke, images]
  container:
    image: docker.io/library/alpine:3.20
    cmd: [sh, -c, "echo hi; echo oops >&2"]
    env: [A=1, B=two=2]
    workdir: /tmp
    mounts:
      - {source: /etc, target: /host-etc, read_only: true}
      - source: /tmp
        target: /scratch
    privileged: true
    memory_limit: 64Mi
    host_network: true
  expect:
    exit_code: 0
    stdout: "hi\n"
    stdout_regex: '^hi$'
    stderr: |
      oops
    stderr_regex: oo+ps
    stdout_sha256: 98EA6E4F216F2FB4B69FFF9B3A44842C38686CA685F3F55DC48C5D3FB1107BE4
    max_duration: 1m30s
    oom_killed: false
---
name: minimal
container:
  cmd: [true]
`
	list, err := Parse("x.yaml", []byte(src))
	require.NoError(t, err)
	require.Len(t, list, 2)
	full := list[0]
	require.Equal(t, Scenario{
		Name: "full", Description: "every field", Boards: []string{"raspi4b-fast", "linux/arm64"}, Tags: []string{"smoke", "images"}, Needs: []string{"network"},
		Container: ctrd.Container{
			Image: "docker.io/library/alpine:3.20", Cmd: []string{"sh", "-c", "echo hi; echo oops >&2"},
			Env: []string{"A=1", "B=two=2"}, WorkingDir: "/tmp",
			Mounts: []ctrd.Mount{
				{Source: "/etc", Target: "/host-etc", ReadOnly: true},
				{Source: "/tmp", Target: "/scratch"},
			},
			Privileged: true, MemoryLimit: 64 << 20, HostNetwork: true,
		},
		Expect: Expect{
			Stdout: Str("hi\n"), StdoutRegex: "^hi$", Stderr: Str("oops\n"), StderrRegex: "oo+ps",
			StdoutSHA256: "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4", MaxDuration: 90 * time.Second,
			OOMKilled: Bool(false),
		},
		File: "x.yaml", Line: 2,
	}, full)
	require.Equal(t, "x.yaml:2", full.Where())

	minimal := list[1]
	require.Equal(t, "minimal", minimal.Name)
	require.Equal(t, 30, minimal.Line)
	require.Nil(t, minimal.Expect.Stdout, "unset, not empty")
	require.Equal(t, 0, minimal.Expect.ExitCode)
	require.Nil(t, minimal.Expect.OOMKilled, "unset, not false")
	require.Zero(t, minimal.Container.MemoryLimit)
}

func TestParseOOMKilledDefaultsExitCodeTo137(t *testing.T) {
	list, err := Parse("oom.yaml", []byte("name: a\ncontainer: {cmd: [true], memory_limit: 1M}\nexpect: {oom_killed: true}\n"))
	require.NoError(t, err)
	require.Equal(t, 137, list[0].Expect.ExitCode)
	require.Equal(t, int64(1000000), list[0].Container.MemoryLimit)

	list, err = Parse("oom.yaml", []byte("name: a\ncontainer: {cmd: [true]}\nexpect: {oom_killed: true, exit_code: 1}\n"))
	require.NoError(t, err)
	require.Equal(t, 1, list[0].Expect.ExitCode, "an exit_code given wins")
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"65536", 65536, ""}, {"64Mi", 64 << 20, ""}, {"128M", 128e6, ""}, {"1Gi", 1 << 30, ""},
		{"2G", 2e9, ""}, {"512Ki", 512 << 10, ""}, {"4K", 4000, ""},
		{"", 0, "not a size"}, {"Mi", 0, "not a size"}, {"64MB", 0, "not a size"}, {"64 Mi", 0, "not a size"},
		{"1.5Gi", 0, "not a size"}, {"64mi", 0, "not a size"}, {"0", 0, "more than zero"}, {"-1M", 0, "more than zero"},
		{"9999999999Gi", 0, "too large"},
	} {
		got, err := parseBytes(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown expect field", `
- name: arch
  container:
    cmd: [uname, -m]
  expect:
    stdout: "x"
    exitcode: 1
`, `arch.yaml:6: unknown field "exitcode" in expect (known: exit_code, stdout, stdout_regex, stderr, stderr_regex, stdout_sha256, max_duration, oom_killed, files, http)`},
		{"unknown scenario field", "name: a\ncontainer: {cmd: [true]}\nexpects: {}\n",
			`arch.yaml:3: unknown field "expects" in scenario (known: name, description, boards, tags, needs, network, services, container, expect)`},
		{"unknown container field", "name: a\ncontainer:\n  command: [true]\n",
			`arch.yaml:3: unknown field "command" in container (known: name, image, cmd, env, workdir, mounts, files, privileged, seccomp, memory_limit, host_network, ports, restarts)`},
		{"unknown mount field", "name: a\ncontainer:\n  cmd: [true]\n  mounts:\n    - {source: /a, target: /b, readonly: true}\n",
			`arch.yaml:5: unknown field "readonly" in mount (known: source, target, read_only)`},
		{"mount without target", "name: a\ncontainer:\n  cmd: [true]\n  mounts:\n    - source: /a\n",
			"arch.yaml:5: mount has no target"},
		{"relative mount source", "name: a\ncontainer:\n  cmd: [true]\n  mounts: [{source: data, target: /data}]\n",
			`arch.yaml:4: mount source "data" must be an absolute path`},
		{"mounts not a list", "name: a\ncontainer:\n  cmd: [true]\n  mounts: {source: /a, target: /b}\n",
			"arch.yaml:4: mounts must be a list"},
		{"mount not a mapping", "name: a\ncontainer:\n  cmd: [true]\n  mounts: [/a:/b]\n",
			`arch.yaml:4: mount must be a mapping (source, target, read_only), got "/a:/b"`},
		{"read_only not a bool", "name: a\ncontainer:\n  cmd: [true]\n  mounts: [{source: /a, target: /b, read_only: ro}]\n",
			`arch.yaml:4: read_only must be true or false, got "ro"`},
		{"privileged not a bool", "name: a\ncontainer:\n  cmd: [true]\n  privileged: \"yes\"\n",
			`arch.yaml:4: privileged must be true or false, got "yes"`},
		{"host_network not a bool", "name: a\ncontainer:\n  cmd: [true]\n  host_network: 1\n",
			`arch.yaml:4: host_network must be true or false, got "1"`},
		{"bad memory limit", "name: a\ncontainer:\n  cmd: [true]\n  memory_limit: 64MB\n",
			`arch.yaml:4: memory_limit: "64MB" is not a size like 64Mi, 128M or 65536 (bytes)`},
		{"zero memory limit", "name: a\ncontainer:\n  cmd: [true]\n  memory_limit: 0\n",
			`arch.yaml:4: memory_limit: "0" must be more than zero`},
		{"oom_killed not a bool", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  oom_killed: maybe\n",
			`arch.yaml:4: oom_killed must be true or false, got "maybe"`},
		{"bad regex", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  stdout_regex: 'a(b'\n",
			"arch.yaml:4: stdout_regex is not a valid regular expression: error parsing regexp: missing closing ): `a(b`"},
		{"bad stderr regex", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  stderr_regex: '[z-a]'\n",
			"arch.yaml:4: stderr_regex is not a valid regular expression"},
		{"bad duration", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  max_duration: 10 seconds\n",
			`arch.yaml:4: max_duration "10 seconds" is not a duration like 30s or 2m`},
		{"duration without unit", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  max_duration: 10\n",
			`arch.yaml:4: max_duration "10" is not a duration`},
		{"negative duration", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  max_duration: -1s\n",
			"arch.yaml:4: max_duration must be positive, got -1s"},
		{"empty cmd", "name: a\ncontainer:\n  cmd: []\n",
			"arch.yaml:3: cmd is empty: give the command as a list, e.g. cmd: [uname, -m]"},
		{"no cmd", "name: a\ncontainer:\n  image: alpine\n",
			"arch.yaml:3: container has no cmd"},
		{"cmd is a string", "name: a\ncontainer:\n  cmd: uname -m\n",
			`arch.yaml:3: cmd must be a list, e.g. cmd: [a, b], got "uname -m"`},
		{"no container", "name: a\nexpect: {exit_code: 0}\n",
			`arch.yaml:1: scenario "a" has no container`},
		{"duplicate names", "- name: a\n  container: {cmd: [true]}\n- name: a\n  container: {cmd: [false]}\n",
			`arch.yaml:3: duplicate scenario name "a" (first defined at arch.yaml:1)`},
		{"no name", "container: {cmd: [true]}\n", "arch.yaml:1: scenario has no name"},
		{"bad name", "name: a b\ncontainer: {cmd: [true]}\n", `arch.yaml:1: scenario name "a b": use letters`},
		{"field twice", "name: a\nname: b\ncontainer: {cmd: [true]}\n", `arch.yaml:2: field "name" given twice in scenario (first at line 1)`},
		{"bad exit code", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  exit_code: three\n",
			`arch.yaml:4: exit_code must be a whole number from 0 to 255, got "three"`},
		{"exit code out of range", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  exit_code: 256\n",
			`arch.yaml:4: exit_code must be a whole number from 0 to 255, got "256"`},
		{"bad sha256", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  stdout_sha256: abc\n",
			`arch.yaml:4: stdout_sha256 must be 64 hex digits, got "abc"`},
		{"bad env", "name: a\ncontainer:\n  cmd: [true]\n  env:\n    - A=1\n    - B\n",
			`arch.yaml:6: env entry "B" is not KEY=VALUE`},
		{"tags not a list", "name: a\ntags: smoke\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: tags must be a list, e.g. tags: [a, b], got "smoke"`},
		{"bad tag", "name: a\ntags: [smoke, \"tag:x\"]\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: tag "tag:x": use letters, digits and . _ - only`},
		{"tag twice", "name: a\ntags: [smoke, smoke]\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: tag "smoke" given twice`},
		{"unknown board", "name: a\nboards: [raspi4b-fast, raspi9]\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: unknown board or platform "raspi9" in boards (known: `},
		{"unknown need", "name: a\nneeds: [network, gpu]\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: unknown need "gpu" in needs (known: network)`},
		{"unknown variable", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  stdout: \"${UNAME}\\n\"\n",
			"arch.yaml:4: stdout uses unknown variable ${UNAME} (known: ${UNAME_M}, ${BOARD}, ${PLATFORM})"},
		{"expect not a mapping", "name: a\ncontainer: {cmd: [true]}\nexpect: 0\n",
			`arch.yaml:3: expect must be a mapping (exit_code, stdout, stdout_regex, stderr, stderr_regex, stdout_sha256, max_duration, oom_killed, files, http), got "0"`},
		{"stdout is a list", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  stdout: [a]\n",
			"arch.yaml:4: stdout must be a string, got a list"},
		{"not a scenario", "just text\n", `arch.yaml:1: want a scenario (a mapping with name, container, expect) or a list of them, got "just text"`},
		{"yaml syntax", "name: a\ncontainer:\n  cmd: [true\n", "arch.yaml:2: did not find expected ',' or ']'"},
		{"bad indentation", "- name: a\n  container:\n    cmd: [true]\n   expect: {}\n", "arch.yaml:3: did not find expected key"},
		{"empty file", "# nothing yet\n", "arch.yaml:1: no scenarios in the file"},
		{"unknown network", "name: a\nnetwork: host\ncontainer: {cmd: [true]}\n",
			`arch.yaml:2: network "host": the only one is "bridge"`},
		{"service without name", "name: a\nnetwork: bridge\nservices:\n  - cmd: [httpd]\n",
			"arch.yaml:4: a service needs a name"},
		{"service name not a host name", "name: a\nnetwork: bridge\nservices:\n  - {name: Web_1, cmd: [httpd]}\n",
			`arch.yaml:4: service name "Web_1": use lowercase letters, digits and dashes`},
		{"service twice", "name: a\nnetwork: bridge\nservices:\n  - {name: web}\n  - {name: web}\n",
			`arch.yaml:5: service "web" given twice (first at line 4)`},
		{"ports without a network", "name: a\nservices:\n  - {name: web, ports: [80]}\n",
			"arch.yaml:3: ports [80] cannot be reached in a namespace with only loopback: give the scenario network: bridge"},
		{"bad port", "name: a\nnetwork: bridge\nservices:\n  - {name: web, ports: [http]}\n",
			`arch.yaml:4: port must be a number from 1 to 65535, got "http"`},
		{"http on an unknown service", "name: a\nnetwork: bridge\nservices:\n  - {name: web, ports: [80]}\nexpect:\n  http:\n    - {service: api, port: 80}\n",
			`arch.yaml:7: http check names service "api", which the scenario does not have`},
		{"http on an unpublished port", "name: a\nnetwork: bridge\nservices:\n  - {name: web, ports: [80]}\nexpect:\n  http:\n    - {service: web, port: 8080}\n",
			"arch.yaml:7: http check on port 8080 of web: add 8080 to the service's ports"},
		{"container expectations without a container", "name: a\nnetwork: bridge\nservices:\n  - {name: web}\nexpect:\n  exit_code: 1\n",
			`arch.yaml:6: scenario "a" has expectations about a container but no container`},
		{"relative file", "name: a\ncontainer:\n  cmd: [true]\n  files: {etc/x: hi}\n",
			`arch.yaml:4: file "etc/x" must be an absolute path in the container`},
		{"bad seccomp", "name: a\ncontainer:\n  cmd: [true]\n  seccomp: off\n",
			`arch.yaml:4: seccomp "off": default (containerd's profile, as Docker's) or unconfined`},
		{"bad restarts", "name: a\ncontainer:\n  cmd: [true]\n  restarts: -1\n",
			`arch.yaml:4: restarts must be a whole number from 0 to 100, got "-1"`},
		{"bad file regex", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  files:\n    /out: {regex: '('}\n",
			"arch.yaml:5: regex is not a valid regular expression"},
		{"unknown file expectation", "name: a\ncontainer: {cmd: [true]}\nexpect:\n  files:\n    /out: {contents: x}\n",
			`arch.yaml:5: unknown field "contents" in file /out (known: content, regex, sha256)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := Parse("arch.yaml", []byte(strings.TrimPrefix(tc.src, "\n")))
			require.Error(t, err)
			require.Nil(t, list)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := `- name: a
  container: {cmd: []}
- name: b
  container: {cmd: [true]}
  expect: {max_duration: soon, stdout_regex: "("}
`
	_, err := Parse("many.yaml", []byte(src))
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 3, err.Error())
	require.True(t, strings.HasPrefix(lines[0], "many.yaml:2: cmd is empty"), lines[0])
	require.True(t, strings.HasPrefix(lines[1], "many.yaml:5: "), lines[1])
	require.True(t, strings.HasPrefix(lines[2], "many.yaml:5: "), lines[2])
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func TestLoadFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.yml", "name: second\ncontainer: {cmd: [true]}\n")
	writeFile(t, dir, "a.yaml", "- name: first\n  container: {cmd: [true]}\n")
	writeFile(t, dir, "notes.txt", "not a scenario")
	writeFile(t, dir, "sub/c.yaml", "name: nested\ncontainer: {cmd: [true]}\n")
	extra := writeFile(t, t.TempDir(), "extra.scn", "name: extra\ncontainer: {cmd: [true]}\n")

	list, err := Load(dir, extra, filepath.Join(dir, "a.yaml"))
	require.NoError(t, err)
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"first", "second", "extra"}, names, "sorted, not recursive, each file once")
	require.Equal(t, filepath.Join(dir, "a.yaml"), list[0].File)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", "name: same\ncontainer: {cmd: [true]}\n")
	b := writeFile(t, dir, "b.yaml", "\n\nname: same\ncontainer: {cmd: [true]}\n")
	_, err := Load(dir)
	require.EqualError(t, err, fmt.Sprintf("%s:3: duplicate scenario name \"same\" (first defined at %s:1)", b, a))

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml: no such file")

	_, err = Load(t.TempDir())
	require.ErrorContains(t, err, "no *.yaml or *.yml files in")

	_, err = Load()
	require.Error(t, err)

	bad := writeFile(t, t.TempDir(), "bad.yaml", "name: x\ncontainer: {cmd: [true]}\nexpect: {exitcode: 1}\n")
	_, err = Load(bad)
	require.ErrorContains(t, err, bad+`:3: unknown field "exitcode" in expect`)
}

func TestAppliesTo(t *testing.T) {
	rpi, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	armhf := boards.Profile{Slug: "bbb", Platform: boards.LinuxARMv7}
	for _, tc := range []struct {
		boards    []string
		rpi, bbb  bool
		described string
	}{
		{nil, true, true, "every board by default"},
		{[]string{"raspi4b-fast"}, true, false, "by slug"},
		{[]string{"linux/arm/v7"}, false, true, "by platform"},
		{[]string{"linux/arm64", "bbb"}, true, true, "either"},
	} {
		s := Scenario{Name: "x", Boards: tc.boards}
		require.Equal(t, tc.rpi, s.AppliesTo(rpi), tc.described)
		require.Equal(t, tc.bbb, s.AppliesTo(armhf), tc.described)
	}
}

// aliasBomb is a small file whose aliases stand for a large one: a
// scenario with a long command, named again and again.
func aliasBomb(cmdLen, copies int) string {
	var b strings.Builder
	b.WriteString("- &s\n  name: bomb\n  container:\n    cmd: [")
	b.WriteString(strings.Repeat("x, ", cmdLen))
	b.WriteString("x]\n")
	b.WriteString(strings.Repeat("- *s\n", copies))
	return b.String()
}

func TestParseRefusesAliases(t *testing.T) {
	src := "- &first\n  name: a\n  container: {cmd: [true]}\n- <<: *first\n  name: b\n"
	_, err := Parse("alias.yaml", []byte(src))
	require.ErrorContains(t, err, "alias.yaml:4: ")
	require.ErrorContains(t, err, "alias *first")

	_, err = Parse("cmd.yaml", []byte("name: a\ncontainer:\n  cmd: &c [true]\n  env: *c\n"))
	require.ErrorContains(t, err, "cmd.yaml:4: ")
}

func TestParseAliasBombFailsFast(t *testing.T) {
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(aliasBomb(1000, 2000)))
	require.ErrorContains(t, err, "bomb.yaml:")
	require.ErrorContains(t, err, "alias")
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestLoadRefusesLargeFiles(t *testing.T) {
	var b strings.Builder
	for b.Len() <= MaxFileSize {
		fmt.Fprintf(&b, "# %s\n", strings.Repeat("x", 70))
	}
	b.WriteString("name: a\ncontainer: {cmd: [true]}\n")
	big := writeFile(t, t.TempDir(), "big.yaml", b.String())
	_, err := Load(big)
	require.ErrorContains(t, err, big+":1: ")
	require.ErrorContains(t, err, "larger than")

	_, err = Parse("big.yaml", []byte(b.String()))
	require.ErrorContains(t, err, "big.yaml:1: ")
}

// TestLoadResolvesImagePaths: a scenario file's image path is taken from
// the file's directory, and must exist when the file is loaded.
func TestLoadResolvesImagePaths(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "img"), 0o755))
	file := filepath.Join(dir, "s.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`- name: a
  container: {image: "oci:img:v1", cmd: ["true"]}
- name: b
  container: {image: "docker://example.com/app:1", cmd: ["true"]}
- name: c
  container: {image: "socbox.local/busybox:latest", cmd: ["true"]}
`), 0o644))
	list, err := Load(file)
	require.NoError(t, err)
	require.Equal(t, "oci:"+filepath.Join(dir, "img")+":v1", list[0].Container.Image)
	require.Equal(t, "docker://example.com/app:1", list[1].Container.Image)
	require.Equal(t, "socbox.local/busybox:latest", list[2].Container.Image)

	require.NoError(t, os.WriteFile(file, []byte(`- name: a
  container:
    image: docker-archive:missing.tar
    cmd: ["true"]
- name: b
  container:
    image: "oci-archive:img.tar"
    cmd: ["true"]
`), 0o644))
	_, err = Load(file)
	require.ErrorContains(t, err, fmt.Sprintf("%s:3: image source docker-archive:%s: stat %[2]s: no such file or directory", file, filepath.Join(dir, "missing.tar")))
	require.ErrorContains(t, err, fmt.Sprintf(`%s:7: image source "oci-archive:img.tar": unknown transport "oci-archive"`, file))
}
