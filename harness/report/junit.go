package report

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/shell"
)

// JUnit's shape as CI systems (GitLab, Jenkins, GitHub actions) read it:
// one testsuite per board, one testcase per scenario on that board.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
	SystemErr *junitText    `xml:"system-err,omitempty"`
}

// junitText is free text: CDATA, so that it stays readable in the file.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

// junitOutputLimit keeps junit.xml readable by CI viewers; results.json has
// the whole output.
const junitOutputLimit = 64 << 10

// WriteJUnit writes the run to dir/junit.xml and returns the path. A
// scenario whose expectations failed carries a <failure>; one that could
// not run, or whose board never got ready, an <error> naming the stage.
// Both say where the console logs are and how to reproduce the board.
func (r *Run) WriteJUnit(dir string) (string, error) {
	data, err := r.JUnit()
	if err != nil {
		return "", err
	}
	return writeAtomic(dir, "junit.xml", data)
}

// JUnit renders the run as JUnit XML.
func (r *Run) JUnit() ([]byte, error) {
	all := junitSuites{Name: "socbox"}
	var total float64
	for _, b := range r.Boards {
		s := b.junitSuite(r.Host.Hostname, r.StartedAt)
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		total += b.seconds()
		all.Suites = append(all.Suites, s)
	}
	if s, ok := r.Merge.junitSuite(); ok {
		all.Tests += s.Tests
		all.Errors += s.Errors
		all.Suites = append(all.Suites, s)
	}
	all.Time = secs(total)
	out, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render junit: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// seconds is how long the board took: its stages and scenarios.
func (b *Board) seconds() float64 {
	var t float64
	for _, st := range b.Stages {
		t += st.Seconds
	}
	for _, s := range b.Scenarios {
		t += s.Seconds
	}
	return t
}

func (b *Board) junitSuite(hostname string, runStart time.Time) junitSuite {
	if b.Host != nil && b.Host.Hostname != "" {
		hostname = b.Host.Hostname
	}
	s := junitSuite{Name: b.Board, Time: secs(b.seconds()), Hostname: hostname}
	start := runStart
	if len(b.Stages) > 0 && !b.Stages[0].StartedAt.IsZero() {
		start = b.Stages[0].StartedAt
	}
	if !start.IsZero() {
		s.Timestamp = start.UTC().Format("2006-01-02T15:04:05")
	}
	var target Target // a real board's, when it is one
	if b.Target != nil {
		target = *b.Target
	}
	for _, p := range [][2]string{
		{"tier", b.Tier}, {"platform", b.Platform}, {"image", b.Image}, {"image_id", b.ImageID}, {"shard", b.Shard.String()}, {"suite", b.Suite},
		{"kernel", b.KernelVersion}, {"containerd", b.Containerd}, {"accelerator", b.Accelerator},
		{"qemu_command", b.QEMUCommand}, {"ssh_command", b.SSHCommand},
		{"target", target.Address}, {"target_os", target.OS}, {"target_kernel", target.Kernel},
		{"target_model", target.Model}, {"target_profile_from", target.ProfileFrom},
	} {
		if p[1] != "" {
			s.Properties = append(s.Properties, junitProperty{Name: p[0], Value: p[1]})
		}
	}
	for _, st := range b.Stages {
		s.Properties = append(s.Properties, junitProperty{Name: "stage." + st.Name + ".seconds", Value: secs(st.Seconds)})
	}
	class := "socbox." + b.Board
	scenarios := b.Scenarios
	if b.Error != "" && len(scenarios) == 0 {
		// Nothing was planned on the board, but its failure must still
		// show up as a red test.
		scenarios = []*Scenario{{Name: "boot", Error: b.Error}}
	}
	for _, sc := range scenarios {
		c := junitCase{Name: b.Board + "/" + sc.Name, Classname: class, Time: secs(sc.Seconds)}
		switch sc.Status() {
		case "fail":
			s.Failures++
			c.Failure = &junitProblem{Message: xmlSafe(strings.Join(sc.Failures, "; ") + sc.guestLogsNote()), Type: "ScenarioFailed", Body: xmlSafe(b.problemText(sc))}
		case "n/a":
			s.Skipped++
			c.Skipped = &junitSkipped{Message: xmlSafe("not applicable: " + sc.NotApplicable)}
		case "error":
			s.Errors++
			msg, typ := sc.Error, "ScenarioError"
			if b.Error != "" {
				msg, typ = b.notReady(), "BoardNotReady"
			}
			c.Error = &junitProblem{Message: xmlSafe(firstLine(msg) + sc.guestLogsNote()), Type: typ, Body: xmlSafe(b.problemText(sc))}
		}
		c.SystemOut = junitOutput(sc.Stdout)
		if a := sc.attachments(); a != "" {
			// After the clipped output, so that a long one never cuts them.
			if c.SystemOut == nil {
				c.SystemOut = &junitText{}
			}
			if t := c.SystemOut.Text; t != "" && !strings.HasSuffix(t, "\n") {
				c.SystemOut.Text += "\n"
			}
			c.SystemOut.Text += xmlSafe(a)
		}
		c.SystemErr = junitOutput(sc.Stderr)
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	return s
}

// junitSuite makes the units a merge found missing or duplicated into
// errors of their own, so that CI reading junit.xml goes red for them.
func (m *Merge) junitSuite() (junitSuite, bool) {
	if m == nil || m.Complete() {
		return junitSuite{}, false
	}
	s := junitSuite{Name: "socbox merge", Time: secs(0)}
	for _, u := range m.Missing {
		s.Cases = append(s.Cases, junitCase{Name: u.Board + "/" + u.Scenario, Classname: "socbox." + u.Board, Time: secs(0),
			Error: &junitProblem{Message: xmlSafe("not run: " + u.String() + " is in the plan but in none of the merged results"), Type: "UnitMissing",
				Body: xmlSafe(strings.Join(m.Notes, "\n"))}})
	}
	for _, d := range m.Duplicated {
		s.Cases = append(s.Cases, junitCase{Name: d.Unit.Board + "/" + d.Unit.Scenario, Classname: "socbox." + d.Unit.Board, Time: secs(0),
			Error: &junitProblem{Message: xmlSafe(fmt.Sprintf("%s has %d results: %s", d.Unit, len(d.In), strings.Join(d.In, ", "))), Type: "UnitDuplicated"}})
	}
	s.Tests, s.Errors = len(s.Cases), len(s.Cases)
	return s, true
}

// notReady says that the board never got ready, and at which stage.
func (b *Board) notReady() string {
	stage := b.FailedStage
	if stage == "" {
		stage = "start"
	}
	return fmt.Sprintf("board %s did not get ready: stage %s failed", b.Board, stage)
}

// problemText is what a person needs to look into a failed scenario: what
// went wrong, what ran, the console logs and how to get the board back.
func (b *Board) problemText(sc *Scenario) string {
	var w strings.Builder
	if b.Error != "" {
		fmt.Fprintf(&w, "%s\n\n%s\n", b.notReady(), b.Error)
	} else {
		fmt.Fprintf(&w, "scenario %s on %s", sc.Name, b.Board)
		if sc.Source != "" {
			fmt.Fprintf(&w, " (%s)", sc.Source)
		}
		w.WriteString("\n")
		if len(sc.Command) > 0 {
			fmt.Fprintf(&w, "command: %s\nimage: %s\n", shell.Join(sc.Command...), sc.Image)
		}
		fmt.Fprintf(&w, "exit code %d after %.2fs\n", sc.ExitCode, sc.Seconds)
		if sc.Error != "" {
			fmt.Fprintf(&w, "error: %s\n", sc.Error)
		}
		for _, f := range sc.Failures {
			fmt.Fprintf(&w, "- %s\n", f)
		}
		if len(sc.GuestLogs) > 0 {
			w.WriteString("\nguest logs:\n")
			for _, l := range sc.GuestLogs {
				fmt.Fprintf(&w, "  %s: %s\n", l.Name, l.Path)
			}
		}
	}
	w.WriteString(b.reproducer())
	return w.String()
}

// reproducer lists the console logs and the commands that bring the board
// back.
func (b *Board) reproducer() string {
	var w strings.Builder
	if len(b.ConsoleLogs) > 0 {
		w.WriteString("\nconsole logs:\n")
		for _, l := range b.ConsoleLogs {
			fmt.Fprintf(&w, "  %s\n", l)
		}
	}
	if b.QEMUCommand != "" || b.SSHCommand != "" {
		w.WriteString("\nreproduce:\n")
		if b.QEMUCommand != "" {
			fmt.Fprintf(&w, "  qemu: %s\n", b.QEMUCommand)
		}
		if b.SSHCommand != "" {
			fmt.Fprintf(&w, "  ssh:  %s\n", b.SSHCommand)
		}
	}
	return w.String()
}

// guestLogsNote points a failure's message at the guest's logs.
func (sc *Scenario) guestLogsNote() string {
	if len(sc.GuestLogs) == 0 {
		return ""
	}
	return " (guest logs: " + filepath.Dir(sc.GuestLogs[0].Path) + ")"
}

// attachments are the guest's logs as the lines CI servers read from a
// test case's system-out to attach files to it (Jenkins' JUnit
// attachments, GitLab's test reports), after the container's output.
func (sc *Scenario) attachments() string {
	if len(sc.GuestLogs) == 0 {
		return ""
	}
	var w strings.Builder
	for _, l := range sc.GuestLogs {
		fmt.Fprintf(&w, "[[ATTACHMENT|%s]]\n", l.Path)
	}
	return w.String()
}

func junitOutput(s string) *junitText {
	if s == "" {
		return nil
	}
	return &junitText{Text: xmlSafe(clipText(s, junitOutputLimit))}
}

// xmlSafe replaces what XML cannot carry, even in CDATA (invalid UTF-8,
// most control characters: a console's escape sequences), with U+FFFD.
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

func secs(f float64) string { return fmt.Sprintf("%.3f", f) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// clipText shortens s to about limit bytes, on a UTF-8 boundary, saying how
// much was left out.
func clipText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && cut < len(s) && !isRuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s\n… %d more bytes in results.json", s[:cut], len(s)-cut)
}

func isRuneStart(c byte) bool { return c&0xC0 != 0x80 }
