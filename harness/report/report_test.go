package report

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/shell"
)

// sampleRun is two boards: raspi4b-fast got ready and ran three scenarios (one
// failed, one could not run); bbb never got past ssh.
func sampleRun(dir string) *Run {
	t0 := time.Date(2026, 11, 28, 13, 50, 34, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	return &Run{
		StartedAt: t0, FinishedAt: at(140),
		Host: Host{OS: "linux", Arch: "amd64", CPUs: 2, Hostname: "ci-1"},
		Boards: []*Board{
			{
				Board: "raspi4b-fast", Tier: "fast", Platform: "linux/arm64", Image: "debian-trixie-arm64-abc",
				Suite: "trixie", KernelVersion: "6.12.0-1-arm64", Containerd: "auto", Accelerator: "tcg",
				Stages: []Stage{
					{Name: "image", StartedAt: at(0), Seconds: 0.1},
					{Name: "qemu", StartedAt: at(0.1), Seconds: 0.3},
					{Name: "kernel", StartedAt: at(0.4), Seconds: 1.2},
					{Name: "ssh", StartedAt: at(1.6), Seconds: 40.6},
					{Name: "containerd", StartedAt: at(42.2), Seconds: 34.4},
				},
				Scenarios: []*Scenario{
					{Name: "arch", StartedAt: at(77), Passed: true, Command: []string{"uname", "-m"}, Stdout: "aarch64\n", Seconds: 4.3},
					{Name: "exit-code", StartedAt: at(81.5), Command: []string{"sh", "-c", "exit 3"}, ExitCode: 0, Seconds: 4.9,
						Source: "scenarios/bundled/basics.yaml:9", Failures: []string{"exit code 0, want 3"}, Stdout: "<script>alert(1)</script>"},
					{Name: "<b>odd</b>", StartedAt: at(87), Seconds: 0.2, Error: "run on raspi4b-fast: image not found", Failures: []string{"container did not run"}},
				},
				QEMUCommand: "qemu-system-aarch64 -M virt -cpu cortex-a72",
				SSHCommand:  "ssh -i key -p 2222 root@127.0.0.1",
				ConsoleLogs: []string{filepath.Join(dir, "raspi4b-fast", "serial0.log")},
			},
			{
				Board: "bbb", Tier: "faithful", Platform: "linux/arm/v7",
				Stages:      []Stage{{Name: "image", StartedAt: at(100), Seconds: 0.2}, {Name: "qemu", StartedAt: at(100.2), Seconds: 0.4}},
				Error:       "boot bbb: ssh: waiting for ssh: timed out\nlast console lines:\n  login:",
				FailedStage: "ssh",
				Scenarios: []*Scenario{
					{Name: "arch", Error: "not run: board bbb did not get ready"},
					{Name: "env", Error: "not run: board bbb did not get ready"},
				},
				ConsoleLogs: []string{"/var/tmp/elsewhere/serial0.log"},
			},
		},
	}
}

// The shape a CI server reads, declared apart from the writer's types so
// the test checks the XML, not the structs.
type xmlSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
				Body    string `xml:",chardata"`
			} `xml:"error"`
			SystemOut string `xml:"system-out"`
			SystemErr string `xml:"system-err"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestWriteJUnit(t *testing.T) {
	dir := t.TempDir()
	p, err := sampleRun(dir).WriteJUnit(dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "junit.xml"), p)
	data, err := os.ReadFile(p)
	require.NoError(t, err)

	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got))
	require.Equal(t, 5, got.Tests)
	require.Equal(t, 1, got.Failures)
	require.Equal(t, 3, got.Errors)
	require.Len(t, got.Suites, 2)

	rpi := got.Suites[0]
	require.Equal(t, "raspi4b-fast", rpi.Name)
	require.Equal(t, 3, rpi.Tests)
	require.Equal(t, "raspi4b-fast/arch", rpi.Cases[0].Name)
	require.Equal(t, "socbox.raspi4b-fast", rpi.Cases[0].Classname)
	require.Equal(t, "4.300", rpi.Cases[0].Time)
	require.Nil(t, rpi.Cases[0].Failure)
	require.Equal(t, "aarch64\n", rpi.Cases[0].SystemOut)

	failed := rpi.Cases[1]
	require.NotNil(t, failed.Failure)
	require.Equal(t, "exit code 0, want 3", failed.Failure.Message)
	require.Contains(t, failed.Failure.Body, "scenarios/bundled/basics.yaml:9")
	require.Contains(t, failed.Failure.Body, filepath.Join(dir, "raspi4b-fast", "serial0.log"))
	require.Contains(t, failed.Failure.Body, "qemu: qemu-system-aarch64 -M virt")
	require.Contains(t, failed.Failure.Body, "ssh:  ssh -i key -p 2222")
	require.Equal(t, "<script>alert(1)</script>", failed.SystemOut, "escaped in XML, intact when read back")
	require.NotNil(t, rpi.Cases[2].Error)
	require.Equal(t, "run on raspi4b-fast: image not found", rpi.Cases[2].Error.Message)

	// Which accelerator ran the board, where it is known.
	require.Contains(t, string(data), `<property name="accelerator" value="tcg"></property>`)
	require.Equal(t, 1, strings.Count(string(data), `name="accelerator"`), "none for a board that does not say")

	bbb := got.Suites[1]
	require.Equal(t, 2, bbb.Errors)
	for _, c := range bbb.Cases {
		require.Nil(t, c.Failure)
		require.NotNil(t, c.Error, c.Name)
		require.Equal(t, "board bbb did not get ready: stage ssh failed", c.Error.Message)
		require.Contains(t, c.Error.Body, "timed out")
		require.Contains(t, c.Error.Body, "/var/tmp/elsewhere/serial0.log")
	}
}

func TestJUnitBoardWithoutScenarios(t *testing.T) {
	r := &Run{Boards: []*Board{{Board: "raspi4b-fast", Error: "boot raspi4b-fast: qemu: no such file", FailedStage: "qemu"}}}
	data, err := r.JUnit()
	require.NoError(t, err)
	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got))
	require.Equal(t, 1, got.Errors)
	require.Equal(t, "raspi4b-fast/boot", got.Suites[0].Cases[0].Name)
	require.Equal(t, "board raspi4b-fast did not get ready: stage qemu failed", got.Suites[0].Cases[0].Error.Message)
}

func TestJUnitCarriesAnyOutput(t *testing.T) {
	nasty := "a]]>b\x1b[31mred\x00\xff\n<tag attr=\"&\">"
	r := &Run{Boards: []*Board{{Board: "b", Scenarios: []*Scenario{{Name: "n", Failures: []string{"x]]>y"}, Stdout: nasty, Stderr: nasty}}}}}
	data, err := r.JUnit()
	require.NoError(t, err)
	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got), string(data))
	c := got.Suites[0].Cases[0]
	require.Equal(t, "a]]>b\uFFFD[31mred\uFFFD\uFFFD\n<tag attr=\"&\">", c.SystemOut)
	require.Equal(t, c.SystemOut, c.SystemErr)
	require.Equal(t, "x]]>y", c.Failure.Message)
	require.Contains(t, c.Failure.Body, "- x]]>y")
}

func TestJUnitClipsLongOutput(t *testing.T) {
	r := &Run{Boards: []*Board{{Board: "b", Scenarios: []*Scenario{{Name: "big", Passed: true, Stdout: strings.Repeat("é", junitOutputLimit)}}}}}
	data, err := r.JUnit()
	require.NoError(t, err)
	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got))
	out := got.Suites[0].Cases[0].SystemOut
	require.Less(t, len(out), junitOutputLimit+100)
	require.Contains(t, out, "more bytes in results.json")
	require.NotContains(t, out, "\uFFFD", "clipped on a rune boundary")
}

func TestWriteHTML(t *testing.T) {
	dir := t.TempDir()
	r := sampleRun(dir)
	_, err := r.WriteJSON(dir)
	require.NoError(t, err)
	p, err := r.WriteHTML(dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "report.html"), p)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	page := string(data)

	require.Equal(t, 2, strings.Count(page, "<svg "), "one timeline per board")
	// raspi4b-fast: 5 stages + 3 scenarios; bbb: 2 stages + the failed one + 2 not run.
	require.Equal(t, 13, strings.Count(page, `<rect class="bar `))
	require.Equal(t, 7, strings.Count(page, `<rect class="bar stage"`))
	require.Equal(t, 1, strings.Count(page, `<rect class="bar stage failed"`))
	require.Equal(t, 1, strings.Count(page, `<rect class="bar scenario pass"`))
	require.Equal(t, 1, strings.Count(page, `<rect class="bar scenario fail"`))
	require.Equal(t, 2, strings.Count(page, `<rect class="bar scenario notrun"`))
	require.Contains(t, page, ">40.6s<", "seconds label of the ssh stage")
	require.Contains(t, page, "TCG (emulated)", "the accelerator that ran the board")

	// Hostile strings are text, never markup.
	require.NotContains(t, page, "<script")
	require.NotContains(t, page, "<b>odd</b>")
	require.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;")
	require.Contains(t, page, "&lt;b&gt;odd&lt;/b&gt;")

	// Self-contained: nothing is fetched.
	require.NotRegexp(t, regexp.MustCompile(`(?i)(src|href)="https?:`), page)
	require.NotContains(t, page, "<link")

	// Logs inside the report dir are linked relatively, others by file URL.
	require.Contains(t, page, `href="./raspi4b-fast/serial0.log"`)
	require.Contains(t, page, `href="file:///var/tmp/elsewhere/serial0.log"`)
	require.Contains(t, page, `href="results.json"`)
	require.Contains(t, page, "board bbb did not get ready: stage ssh failed")

	// A scenario's services and the files it checked are shown with it.
	r.Boards[0].Scenarios[0].Services = []Service{{Name: "web", IP: "10.213.0.2", ExitCode: 137, Stderr: "<i>served</i>"}}
	r.Boards[0].Scenarios[0].Files = map[string]string{"/out/result.txt": "SOCBOX\n"}
	p, err = r.WriteHTML(dir)
	require.NoError(t, err)
	data, err = os.ReadFile(p)
	require.NoError(t, err)
	page = string(data)
	require.Contains(t, page, "service web at 10.213.0.2: exit 137")
	require.Contains(t, page, "&lt;i&gt;served&lt;/i&gt;")
	require.Contains(t, page, "file /out/result.txt</summary><pre>SOCBOX\n</pre>")
}

func TestTimelineLaysOutOldResultsEndToEnd(t *testing.T) {
	b := &Board{Board: "x",
		Stages:    []Stage{{Name: "image", Seconds: 1}, {Name: "qemu", Seconds: 2}},
		Scenarios: []*Scenario{{Name: "a", Passed: true, Seconds: 3}},
	}
	sp := b.spans()
	require.Len(t, sp, 3)
	require.Equal(t, []float64{0, 1, 3}, []float64{sp[0].start, sp[1].start, sp[2].start})
	tl := b.timeline()
	require.Len(t, tl.Rows, 3)
	last := tl.Rows[2]
	require.InDelta(t, tl.PlotX+tl.PlotW, last.X+last.W, 0.2, "the last bar ends at the plot's right edge")
	require.Equal(t, "0s", tl.Ticks[0].Label)
}

func TestShellJoin(t *testing.T) {
	require.Equal(t, `sh -c 'echo about to fail; exit 3'`, shell.Join("sh", "-c", "echo about to fail; exit 3"))
	require.Equal(t, `echo '' 'it'\''s' a=b/c`, shell.Join("echo", "", "it's", "a=b/c"))
}

func TestShortDuration(t *testing.T) {
	for in, want := range map[float64]string{0: "0s", 0.5: "0.5s", 15: "15s", 60: "1m", 90: "1m30s", 600: "10m"} {
		require.Equal(t, want, shortDuration(in), "%v", in)
	}
}

func TestJSONRoundTripKeepsStartTimes(t *testing.T) {
	dir := t.TempDir()
	r := sampleRun(dir)
	p, err := r.WriteJSON(dir)
	require.NoError(t, err)
	back, err := ReadJSON(p)
	require.NoError(t, err)
	require.True(t, back.Boards[0].Stages[1].StartedAt.Equal(r.Boards[0].Stages[1].StartedAt))
	require.True(t, back.Boards[0].Scenarios[0].StartedAt.Equal(r.Boards[0].Scenarios[0].StartedAt))
	require.Equal(t, Counts{Passed: 1, Failed: 1, Errors: 3}, back.Counts())
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NotContains(t, string(raw), `"started_at": "0001-01-01`, "zero start times are left out")
}

func TestNotApplicableIsNeitherPassNorFail(t *testing.T) {
	run := &Run{Boards: []*Board{{Board: "raspi4b", Scenarios: []*Scenario{
		{Name: "arch", Passed: true},
		{Name: "host-network", NotApplicable: "needs a network interface; raspi4b has none"},
	}}}}
	require.True(t, run.Passed(), "a scenario that does not apply does not fail the run")
	require.Equal(t, Counts{Passed: 1, NotApplicable: 1}, run.Counts())
	require.Equal(t, 1, run.Counts().Total())

	x, err := run.JUnit()
	require.NoError(t, err)
	require.Contains(t, string(x), `skipped="1"`)
	require.Contains(t, string(x), `<skipped message="not applicable: needs a network interface; raspi4b has none"></skipped>`)

	h, err := run.HTML(t.TempDir())
	require.NoError(t, err)
	require.Contains(t, string(h), "1 not applicable")
	require.Contains(t, string(h), `<span class="badge n/a">n/a</span>`)
}

// A results.json from elsewhere may hold any number: seconds that add up
// past the largest float once made the time axis loop for ever.
func TestTimelineOfHugeDurationsEnds(t *testing.T) {
	r := &Run{Boards: []*Board{{Board: "raspi4b",
		Stages:    []Stage{{Name: "image", Seconds: 1e308}, {Name: "qemu", Seconds: 1e308}},
		Scenarios: []*Scenario{{Name: "arch", Seconds: -5}, {Name: "env", Seconds: 1e-300}}}}}
	done := make(chan error, 1)
	go func() {
		_, err := r.HTML(t.TempDir())
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("rendering the timeline did not end")
	}
	tl := r.Boards[0].timeline()
	require.LessOrEqual(t, len(tl.Ticks), 12)
}

func TestGuestLogsAreAttachedInJUnitAndLinkedInHTML(t *testing.T) {
	dir := t.TempDir()
	logs := func(scenario string) []GuestLog {
		var out []GuestLog
		for _, n := range []string{"journal", "kernel", "containerd"} {
			out = append(out, GuestLog{Name: n, Path: filepath.Join(dir, "raspi4b-fast", scenario, n+".log"), Bytes: 10})
		}
		out[1].Truncated = true
		return out
	}
	r := &Run{Boards: []*Board{{Board: "raspi4b-fast", Scenarios: []*Scenario{
		{Name: "failing", Failures: []string{"exit code 1, want 0"}, Stdout: strings.Repeat("x", junitOutputLimit+10), GuestLogs: logs("failing")},
		{Name: "broken", Error: "run container: boom", GuestLogs: logs("broken")},
		{Name: "fine", Passed: true, Stdout: "ok\n"},
	}}}}
	data, err := r.JUnit()
	require.NoError(t, err)
	var got xmlSuites
	require.NoError(t, xml.Unmarshal(data, &got))
	cases := got.Suites[0].Cases
	for i, name := range []string{"failing", "broken"} {
		c := cases[i]
		for _, n := range []string{"journal", "kernel", "containerd"} {
			require.Contains(t, c.SystemOut, "[[ATTACHMENT|"+filepath.Join(dir, "raspi4b-fast", name, n+".log")+"]]\n",
				"after the output, even a clipped one")
		}
		msg := ""
		if c.Failure != nil {
			msg = c.Failure.Message
			require.Contains(t, c.Failure.Body, "guest logs:\n  journal: "+filepath.Join(dir, "raspi4b-fast", name, "journal.log"))
		} else {
			msg = c.Error.Message
		}
		require.Contains(t, msg, "(guest logs: "+filepath.Join(dir, "raspi4b-fast", name)+")")
	}
	require.NotContains(t, cases[2].SystemOut, "ATTACHMENT")

	_, err = r.WriteHTML(dir)
	require.NoError(t, err)
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), `guest logs: <a href="./raspi4b-fast/failing/journal.log">journal</a> <a href="./raspi4b-fast/failing/kernel.log">kernel (cut)</a> <a href="./raspi4b-fast/failing/containerd.log">containerd</a>`)
	require.Equal(t, 2, strings.Count(string(page), `class="guestlogs"`))
}
