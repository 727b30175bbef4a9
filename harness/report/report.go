// Package report holds the results of a socbox run and writes them:
// results.json with everything (the source of truth), and junit.xml and
// report.html rendered from it, for CI and for people.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/socbox/socbox/harness/plan"
	"github.com/socbox/socbox/images/cachefs"
)

// Run is one socbox run: one or more boards, each with its scenarios.
type Run struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Host       Host      `json:"host"`
	// Plan is what the run set out to do: every unit over all shards, and
	// the shard this run had. Results written before socbox recorded it
	// have none.
	Plan   *plan.Plan `json:"plan,omitempty"`
	Boards []*Board   `json:"boards"`
	// Merge is set on results merged from several runs' (socbox report
	// merge): what they were, and which units none or several of them ran.
	Merge *Merge `json:"merge,omitempty"`
}

// Host says which machine the figures came from.
type Host struct {
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	Hostname string `json:"hostname"`
}

// ThisHost describes the machine the run is on.
func ThisHost() Host {
	h, _ := os.Hostname()
	return Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Hostname: h}
}

// Stage is one boot stage's timing.
type Stage struct {
	Name      string    `json:"name"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Seconds   float64   `json:"seconds"`
}

// Board is what happened on one board.
type Board struct {
	Board    string `json:"board"`
	Tier     string `json:"tier"`
	Platform string `json:"platform"`
	Image    string `json:"image,omitempty"`
	// ImageID is the image as the run's plan names it (plan.Unit's Image):
	// debian-trixie, a user image's file name, +crun with crun.
	ImageID       string `json:"image_id,omitempty"`
	Suite         string `json:"suite,omitempty"`
	KernelVersion string `json:"kernel_version,omitempty"`
	Containerd    string `json:"containerd_strategy,omitempty"`
	// Accelerator is how QEMU ran the guest: "tcg" (emulated) or "kvm"
	// (the host's own cores); empty on a real board.
	Accelerator string      `json:"accelerator,omitempty"`
	Stages      []Stage     `json:"stages"`
	Scenarios   []*Scenario `json:"scenarios"`
	// Error is set when the board did not get ready; FailedStage says where.
	Error       string `json:"error,omitempty"`
	FailedStage string `json:"failed_stage,omitempty"`
	// Target is set when the board is a real one reached over SSH
	// (socbox run --target) rather than an emulated one.
	Target *Target `json:"target,omitempty"`
	// Reproducer: how to look at the same board again.
	QEMUCommand string   `json:"qemu_command,omitempty"`
	SSHCommand  string   `json:"ssh_command,omitempty"`
	Overlay     string   `json:"overlay,omitempty"`
	ConsoleLogs []string `json:"console_logs,omitempty"`
	// Shard and Host are set on a board of merged results: the shard that
	// ran it, and the machine, when the merged runs came from several.
	Shard plan.Shard `json:"shard,omitzero"`
	Host  *Host      `json:"host,omitempty"`
}

// Target is the real board a run attached to, as it described itself.
type Target struct {
	Address  string `json:"address"` // user@host:port
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`      // PRETTY_NAME from /etc/os-release
	Kernel   string `json:"kernel,omitempty"`  // uname -r
	Machine  string `json:"machine,omitempty"` // uname -m
	Model    string `json:"model,omitempty"`   // the device tree's model
	UID      int    `json:"uid"`
	Identity string `json:"identity,omitempty"` // the key file logged in with, or ssh-agent
	// ProfileFrom says how the board profile the results are compared
	// against was chosen.
	ProfileFrom string `json:"profile_from,omitempty"`
}

// Scenario is one scenario's outcome on one board.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Source is where the scenario is defined ("file:line"), if in a file.
	Source    string    `json:"source,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Passed    bool      `json:"passed"`
	Failures  []string  `json:"failures,omitempty"`
	Image     string    `json:"image"`
	Command   []string  `json:"command"`
	ExitCode  int       `json:"exit_code"`
	Stdout    string    `json:"stdout"`
	Stderr    string    `json:"stderr"`
	Seconds   float64   `json:"seconds"`
	// Error is a harness error (the container could not run at all).
	Error string `json:"error,omitempty"`
	// TimedOut is set when the container outlived its limit (its
	// max_duration, or scenario.DefaultMaxDuration) and was killed;
	// Stdout and Stderr hold what it wrote until then.
	TimedOut bool `json:"timed_out,omitempty"`
	// NotApplicable says why the scenario was not run on this board: it
	// needs what the board lacks (a network on raspi4b). Not a failure.
	NotApplicable string `json:"not_applicable,omitempty"`
	// Services are the scenario's background containers.
	Services []Service `json:"services,omitempty"`
	// Files are the files the container left that the scenario checked.
	Files map[string]string `json:"files,omitempty"`
	// Truncated names the output cut at the container's output limit
	// ("stdout", "stderr" or a file's path) with its whole size in bytes:
	// Stdout, Stderr and Files hold only its head.
	Truncated map[string]int64 `json:"truncated,omitempty"`
	// GuestLogs are the guest's logs over the scenario's window (journal,
	// kernel log, containerd's log), saved as files when it failed.
	GuestLogs []GuestLog `json:"guest_logs,omitempty"`
}

// GuestLog is one of the guest's logs, saved in a file.
type GuestLog struct {
	// Name is which log: "journal", "kernel" or "containerd".
	Name string `json:"name"`
	// Path is the file it was saved in.
	Path string `json:"path"`
	// Bytes is how much the guest printed; more than the file holds when
	// it was cut at the limit.
	Bytes     int64 `json:"bytes"`
	Truncated bool  `json:"truncated,omitempty"`
	// Error says why it could not be read (the file then says it too).
	Error string `json:"error,omitempty"`
}

// Service is what one of a scenario's background containers did.
type Service struct {
	Name     string   `json:"name"`
	Image    string   `json:"image"`
	Command  []string `json:"command"`
	IP       string   `json:"ip,omitempty"`
	ExitCode int      `json:"exit_code"`
	Stdout   string   `json:"stdout"`
	Stderr   string   `json:"stderr"`
	// Truncated is as in Scenario.
	Truncated map[string]int64 `json:"truncated,omitempty"`
}

// Passed reports whether every board got ready, every scenario passed and,
// for merged results, every planned unit ran exactly once.
func (r *Run) Passed() bool {
	if r.Merge != nil && !r.Merge.Complete() {
		return false
	}
	for _, b := range r.Boards {
		if b.Error != "" {
			return false
		}
		for _, s := range b.Scenarios {
			if !s.Passed && s.NotApplicable == "" {
				return false
			}
		}
	}
	return true
}

// Status is "pass", "fail" (an expectation failed), "error" (the
// container did not run, or the board never got ready) or "n/a" (the
// scenario needs what the board lacks).
func (s *Scenario) Status() string {
	switch {
	case s.NotApplicable != "":
		return "n/a"
	case s.Error != "":
		return "error"
	case s.Passed:
		return "pass"
	}
	return "fail"
}

// Counts is how many scenarios passed, failed, errored and did not apply.
type Counts struct{ Passed, Failed, Errors, NotApplicable int }

// Total is every scenario counted that was meant to run.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Errors }

// Counts sums up the board's scenarios.
func (b *Board) Counts() Counts {
	var c Counts
	for _, s := range b.Scenarios {
		switch s.Status() {
		case "pass":
			c.Passed++
		case "fail":
			c.Failed++
		case "n/a":
			c.NotApplicable++
		default:
			c.Errors++
		}
	}
	return c
}

// Counts sums up every board's scenarios.
func (r *Run) Counts() Counts {
	var c Counts
	for _, b := range r.Boards {
		bc := b.Counts()
		c.Passed, c.Failed, c.Errors = c.Passed+bc.Passed, c.Failed+bc.Failed, c.Errors+bc.Errors
		c.NotApplicable += bc.NotApplicable
	}
	return c
}

// WriteJSON writes the run to dir/results.json, atomically, and returns the
// path.
func (r *Run) WriteJSON(dir string) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	return writeAtomic(dir, "results.json", append(b, '\n'))
}

// writeAtomic writes data to dir/name through a temporary file of its own,
// so a reader never sees half a report and two writers never share one,
// and returns the path.
func writeAtomic(dir, name string, data []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, cachefs.WriteFile(p, data, 0o644)
}

// NewRunDir makes a new directory for a run's results under parent, named
// after now ("20260102-150405"), with "-2", "-3"… when that name is taken:
// two runs started in the same second get one each. The name is claimed
// by creating it, so no two processes get the same.
func NewRunDir(parent string, now time.Time) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(parent, now.Format("20060102-150405"))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			return "", fmt.Errorf("make a results directory in %s: %w", parent, err)
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

// ReadJSON reads a results.json written by WriteJSON.
func ReadJSON(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseResults(path, b)
}

// parseResults reads a results.json's content. It may come from another
// machine: null boards and scenarios are dropped, so that every later step
// can take each one as there.
func parseResults(name string, data []byte) (*Run, error) {
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	boards := r.Boards[:0]
	for _, b := range r.Boards {
		if b == nil {
			continue
		}
		scenarios := b.Scenarios[:0]
		for _, s := range b.Scenarios {
			if s != nil {
				scenarios = append(scenarios, s)
			}
		}
		b.Scenarios = scenarios
		boards = append(boards, b)
	}
	r.Boards = boards
	return &r, nil
}
