package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/socbox/socbox/harness/qemu"
)

// StageTiming is how long one stage took.
type StageTiming struct {
	Stage    Stage         `json:"stage"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Seconds  float64       `json:"seconds"`
}

// lifecycle is a board's way from off to ready: where it is, how long each
// stage took, and the first failure, after which it refuses to go on.
type lifecycle struct {
	// name is the board in errors: its slug, or a real board's URL.
	name     string
	timeouts map[Stage]time.Duration
	logf     func(format string, args ...any)
	// hint says what to check when a stage fails; console says where the
	// console log is and its last lines (nothing where socbox sees none).
	hint    func(Stage) string
	console func() (log string, tail []string)
	// kept is said in a failure's hint: the run directory, when kept.
	kept string

	mu      sync.Mutex
	stage   Stage
	err     error
	timings []StageTiming
	closed  bool
}

func newLifecycle(name string, o options, logf func(string, ...any)) *lifecycle {
	return &lifecycle{name: name, timeouts: o.timeouts, logf: logf, stage: StageOff,
		hint: func(Stage) string { return "" }, console: func() (string, []string) { return "", nil }}
}

// fail records err as the failure of stage: the board goes no further.
func (l *lifecycle) fail(stage Stage, err error, hint string) error {
	se := &StageError{Stage: stage, Board: l.name, Err: err, Hint: hint}
	se.ConsoleLog, se.ConsoleTail = l.console()
	if l.kept != "" {
		se.Hint = strings.TrimSpace(se.Hint + " (run dir kept: " + l.kept + ")")
	}
	l.mu.Lock()
	l.stage, l.err = StageFailed, se
	l.mu.Unlock()
	return se
}

// recovered forgets a failure the boot plan recovers from.
func (l *lifecycle) recovered() {
	l.mu.Lock()
	l.err, l.stage = nil, StageImage
	l.mu.Unlock()
}

// failed is the board's failure, wrapped for a call it refuses.
func (l *lifecycle) failed() error {
	if err := l.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBoardFailed, err)
	}
	return nil
}

// step runs one stage with its timeout and records its timing.
func (l *lifecycle) step(ctx context.Context, stage Stage, fn func(ctx context.Context) error) error {
	if err := l.failed(); err != nil {
		return err
	}
	timeout := l.timeouts[stage]
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := fn(sctx)
	d := time.Since(start)
	if err != nil {
		if errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w (raise it with harness.WithTimeout(harness.%s, ...))",
				timeout, err, stageConstName(stage))
		}
		var se *StageError
		if errors.As(err, &se) {
			return err
		}
		return l.fail(stage, err, l.hint(stage))
	}
	l.mu.Lock()
	l.stage = stage
	l.timings = append(l.timings, StageTiming{Stage: stage, Start: start, Duration: d, Seconds: d.Seconds()})
	l.mu.Unlock()
	l.logf("%s ready after %.1fs", stage, d.Seconds())
	return nil
}

func (l *lifecycle) setStage(s Stage) {
	l.mu.Lock()
	l.stage = s
	l.mu.Unlock()
}

// Stage is where the board is now.
func (l *lifecycle) Stage() Stage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stage
}

// Timings are the stages done so far and how long each took.
func (l *lifecycle) Timings() []StageTiming {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]StageTiming(nil), l.timings...)
}

// Err is the error that stopped the board, if any.
func (l *lifecycle) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// close marks the board closed; it says false when it was already.
func (l *lifecycle) close() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	return true
}

// emulatedConsole is where a failure of an emulated board points: its
// console log (in the artifacts directory when one is set, where Close
// copies it) and the log's last lines.
func emulatedConsole(log, artifactsDir string) func() (string, []string) {
	return func() (string, []string) {
		tail := qemu.TailFile(log, 25)
		if artifactsDir != "" {
			return filepath.Join(artifactsDir, filepath.Base(log)), tail
		}
		return log, tail
	}
}

// stageConstName is the Go name of a stage's constant, for hints.
func stageConstName(s Stage) string {
	return map[Stage]string{
		StageImage: "StageImage", StageQEMU: "StageQEMU", StageKernel: "StageKernel", StageSSH: "StageSSH",
		StageContainerd: "StageContainerd", StageSnapshot: "StageSnapshot", StageRestore: "StageRestore",
		StageNetwork: "StageNetwork",
	}[s]
}
