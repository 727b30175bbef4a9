package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/shell"
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Parse(htmlSource))

// htmlOutputLimit keeps the page light: results.json has the whole output.
const htmlOutputLimit = 16 << 10

// WriteHTML writes dir/report.html, a single self-contained page (inline CSS
// and SVG, no scripts, nothing fetched): per board, a timeline of the boot
// stages and scenarios and a table of the scenarios with their output and
// links to the console logs. It returns the path.
func (r *Run) WriteHTML(dir string) (string, error) {
	data, err := r.HTML(dir)
	if err != nil {
		return "", err
	}
	return writeAtomic(dir, "report.html", data)
}

// HTML renders the page for a report that lives in dir: links to files in
// dir (console logs, results.json) are relative, so the directory can be
// moved or published as a whole.
func (r *Run) HTML(dir string) ([]byte, error) {
	v := r.htmlView(dir)
	var buf bytes.Buffer
	if err := htmlTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("render html: %w", err)
	}
	return buf.Bytes(), nil
}

type htmlRun struct {
	Title, Status    string
	Started, Took    string
	Host             string
	Shard            string // "shard 2/3: 5 of the 15 units planned"
	Counts           Counts
	Boards           []htmlBoard
	Files            []htmlLink // results.json, junit.xml next to the page
	GeneratedAt      string
	BoardCount       int
	ShowBoardSummary bool
	Merge            *htmlMerge
}

// htmlMerge is what a page of merged results says about the merge.
type htmlMerge struct {
	Problems            bool
	From                []string
	Missing, Duplicated []string
	Notes               []string
}

type htmlBoard struct {
	*Board
	ID, Status   string
	Meta         []string
	Counts       Counts
	NotReady     string
	Timeline     timeline
	Scenarios    []htmlScenario
	Logs         []htmlLink
	StageSummary string
	HasRepro     bool
}

type htmlScenario struct {
	*Scenario
	Status         string
	Command        string
	Stdout, Stderr string
	StdoutBytes    int
	StderrBytes    int
	// GuestLogs link the guest's logs of a failed scenario.
	GuestLogs []htmlLink
}

type htmlLink struct {
	Href  template.URL
	Label string
}

func (r *Run) htmlView(dir string) htmlRun {
	c := r.Counts()
	v := htmlRun{Status: "pass", Counts: c, BoardCount: len(r.Boards), ShowBoardSummary: len(r.Boards) > 1,
		GeneratedAt: time.Now().UTC().Format(time.RFC3339)}
	if !r.Passed() {
		v.Status = "fail"
	}
	v.Title = fmt.Sprintf("socbox: %s — %d passed, %d failed, %d errors", strings.ToUpper(v.Status), c.Passed, c.Failed, c.Errors)
	if !r.StartedAt.IsZero() {
		v.Started = r.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC")
		if r.FinishedAt.After(r.StartedAt) {
			v.Took = r.FinishedAt.Sub(r.StartedAt).Round(time.Second).String()
		}
	}
	if r.Host.OS != "" {
		v.Host = fmt.Sprintf("%s/%s, %d CPUs", r.Host.OS, r.Host.Arch, r.Host.CPUs)
		if r.Host.Hostname != "" {
			v.Host += ", " + r.Host.Hostname
		}
	}
	for _, name := range []string{"results.json", "junit.xml"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			v.Files = append(v.Files, htmlLink{Href: template.URL(url.PathEscape(name)), Label: name})
		}
	}
	if p := r.Plan; p != nil && !p.Shard.Whole() {
		v.Shard = fmt.Sprintf("shard %s: %d of the %d units planned", p.Shard, len(p.Mine()), len(p.Units))
	}
	if m := r.Merge; m != nil {
		hm := &htmlMerge{Problems: !m.Complete(), Notes: m.Notes}
		for _, f := range m.From {
			line := f.Name
			if f.Shard.String() != "" {
				line += ": shard " + f.Shard.String()
			}
			line += fmt.Sprintf(", %d results", f.Results)
			if f.Host.Hostname != "" {
				line += " on " + f.Host.Hostname
			}
			hm.From = append(hm.From, line)
		}
		for _, u := range m.Missing {
			hm.Missing = append(hm.Missing, u.String())
		}
		for _, d := range m.Duplicated {
			hm.Duplicated = append(hm.Duplicated, fmt.Sprintf("%s: %s", d.Unit, strings.Join(d.In, ", ")))
		}
		v.Merge = hm
	}
	for i, b := range r.Boards {
		hb := htmlBoard{Board: b, ID: fmt.Sprintf("board-%d", i+1), Status: "pass", Counts: b.Counts(), Timeline: b.timeline()}
		if b.Error != "" {
			hb.Status, hb.NotReady = "error", b.notReady()
		} else if hb.Counts.Failed+hb.Counts.Errors > 0 {
			hb.Status = "fail"
		}
		for _, m := range []string{b.Tier, b.Platform, accelerator(b), b.Image, suiteKernel(b), containerd(b), b.Target.describe(b.Board), shardOf(b), hostOf(b)} {
			if m != "" {
				hb.Meta = append(hb.Meta, m)
			}
		}
		var st []string
		for _, s := range b.Stages {
			st = append(st, fmt.Sprintf("%s %.1fs", s.Name, s.Seconds))
		}
		hb.StageSummary = strings.Join(st, " · ")
		for _, s := range b.Scenarios {
			hb.Scenarios = append(hb.Scenarios, htmlScenario{
				Scenario: s, Status: s.Status(), Command: shell.Join(s.Command...),
				Stdout: clipText(s.Stdout, htmlOutputLimit), Stderr: clipText(s.Stderr, htmlOutputLimit),
				StdoutBytes: len(s.Stdout), StderrBytes: len(s.Stderr),
				GuestLogs: guestLogLinks(dir, s.GuestLogs),
			})
		}
		for _, l := range b.ConsoleLogs {
			hb.Logs = append(hb.Logs, fileLink(dir, l))
		}
		hb.HasRepro = len(hb.Logs) > 0 || b.QEMUCommand != "" || b.SSHCommand != "" || b.Overlay != ""
		v.Boards = append(v.Boards, hb)
	}
	return v
}

// describe says which real board ran the scenarios, as who, and which
// profile it is compared against; "" for an emulated board.
func (t *Target) describe(profile string) string {
	if t == nil {
		return ""
	}
	s := "on " + t.Address
	if t.Hostname != "" {
		s += " (" + t.Hostname + ")"
	}
	for _, part := range []string{t.OS, t.Model} {
		if part != "" {
			s += ", " + part
		}
	}
	if t.ProfileFrom == "" {
		return s + ", no board profile picked"
	}
	return s + ", compared against " + profile + " (" + t.ProfileFrom + ")"
}

func shardOf(b *Board) string {
	if b.Shard.Whole() {
		return ""
	}
	return "shard " + b.Shard.String()
}

func hostOf(b *Board) string {
	if b.Host == nil || b.Host.Hostname == "" {
		return ""
	}
	return "host " + b.Host.Hostname
}

func suiteKernel(b *Board) string {
	switch {
	case b.Suite != "" && b.KernelVersion != "":
		return "Debian " + b.Suite + ", kernel " + b.KernelVersion
	case b.Suite != "":
		return "Debian " + b.Suite
	}
	return ""
}

func containerd(b *Board) string {
	if b.Containerd == "" {
		return ""
	}
	return "containerd " + b.Containerd
}

// fileLink links to path from a page in dir: relative when path is inside
// dir, else a file:// URL (the logs stay where the run left them).
func fileLink(dir, path string) htmlLink {
	absDir, err1 := filepath.Abs(dir)
	absPath, err2 := filepath.Abs(path)
	if err1 == nil && err2 == nil {
		if rel, err := filepath.Rel(absDir, absPath); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			parts := strings.Split(filepath.ToSlash(rel), "/")
			for i, p := range parts {
				parts[i] = url.PathEscape(p)
			}
			// "./" keeps a first segment with a colon from reading as a scheme.
			return htmlLink{Href: template.URL("./" + strings.Join(parts, "/")), Label: filepath.ToSlash(rel)}
		}
		u := url.URL{Scheme: "file", Path: filepath.ToSlash(absPath)}
		// Built from a path, never from the scheme a result file claims,
		// so it is safe to mark as a URL.
		return htmlLink{Href: template.URL(u.String()), Label: absPath}
	}
	return htmlLink{Label: path}
}

// guestLogLinks link a scenario's guest logs, each labelled with which log
// it is.
func guestLogLinks(dir string, logs []GuestLog) []htmlLink {
	var out []htmlLink
	for _, l := range logs {
		link := fileLink(dir, l.Path)
		link.Label = l.Name
		if l.Truncated {
			link.Label += " (cut)"
		}
		out = append(out, link)
	}
	return out
}

// accelerator names how QEMU ran the board, for its header.
func accelerator(b *Board) string {
	switch b.Accelerator {
	case "":
		return ""
	case "kvm":
		return "KVM (the host's cores)"
	case "tcg":
		return "TCG (emulated)"
	}
	return b.Accelerator
}
