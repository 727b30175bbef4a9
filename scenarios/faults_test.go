package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/harness/state"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/cachefs"
)

// TestFaults injects, on a real board, each fault a nightly run meets, and
// checks that socbox says what happened, does not hang, and leaves nothing
// behind: no QEMU process, no run directory, no lock held. It runs on
// raspi4b-fast, whose saved state restores in seconds, one fault after
// another.
func TestFaults(t *testing.T) {
	bootsVM(t)
	const slug = "raspi4b-fast"
	skipUnlessQEMUHasMachine(t, slug)
	start := time.Now()
	t.Cleanup(func() { t.Logf("fault suite took %s", time.Since(start).Round(time.Second)) })

	t.Run("never-exiting container", func(t *testing.T) {
		b := faultBoard(t, slug)
		res := b.RunScenario(t.Context(), scenario.Scenario{Name: "hangs",
			Container: ctrd.Container{Cmd: []string{"sh", "-c", "echo started; sleep 1000"}},
			Expect:    scenario.Expect{MaxDuration: 3 * time.Second}})
		require.True(t, res.TimedOut, "%+v", res)
		require.False(t, res.Passed)
		require.Empty(t, res.Error)
		require.Equal(t, []string{"timed out after 3s (max_duration)"}, res.Failures)
		require.Equal(t, "started\n", res.Stdout, "the output until the kill")
		require.Less(t, res.Seconds, 30.0)
		// The board goes on.
		requirePasses(t, b)
	})

	t.Run("QEMU killed mid-scenario", func(t *testing.T) {
		b := faultBoard(t, slug)
		res := duringScenario(t, b, func() {
			require.NoError(t, syscall.Kill(boardQEMU(t, b), syscall.SIGKILL))
		})
		requireHarnessError(t, res)
	})

	t.Run("SSH connection dropped", func(t *testing.T) {
		b := faultBoard(t, slug)
		res := duringScenario(t, b, func() {
			// Every sshd session in the guest, this one's too: the
			// connection socbox holds goes with them.
			_, _ = b.SSH.Run(t.Context(), "pkill -KILL -x sshd-session; pkill -KILL -f '^sshd: '")
		})
		requireHarnessError(t, res)
	})

	t.Run("kernel panic", func(t *testing.T) {
		b := faultBoard(t, slug)
		res := duringScenario(t, b, func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, _ = b.SSH.Run(ctx, "echo c > /proc/sysrq-trigger")
		})
		requireHarnessError(t, res)
	})

	t.Run("containerd killed mid-run", func(t *testing.T) {
		b := faultBoard(t, slug)
		res := duringScenario(t, b, func() {
			_, err := b.SSH.Run(t.Context(), "kill -KILL $(pidof containerd)")
			require.NoError(t, err)
		})
		requireHarnessError(t, res)
	})

	t.Run("guest disk full", func(t *testing.T) {
		b := faultBoard(t, slug)
		out, err := b.SSH.Output(t.Context(), `avail=$(df --output=avail -B1 /var/lib/containerd | tail -n 1)
fallocate -l $((avail - 65536)) /var/tmp/fill && dd if=/dev/zero of=/var/tmp/fill2 bs=4k 2>/dev/null; df --output=avail / | tail -n 1`)
		require.NoError(t, err)
		t.Logf("guest disk: %s KiB free", strings.TrimSpace(out))
		res := b.RunScenario(t.Context(), quickScenario())
		requireHarnessError(t, res)
		require.Contains(t, res.Error, "no space left on device")
		// Space again, and the board goes on.
		_, err = b.SSH.Run(t.Context(), "rm -f /var/tmp/fill /var/tmp/fill2")
		require.NoError(t, err)
		requirePasses(t, b)
	})

	t.Run("truncated saved state", func(t *testing.T) {
		b := faultBoard(t, slug)
		saved := restoredFrom(t, b)
		require.NoError(t, b.Close())
		unlock, err := cachefs.Lock(state.LockFile(saved), nil)
		require.NoError(t, err)
		vmstate := filepath.Join(saved, "vmstate")
		st, err := os.Stat(vmstate)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(vmstate, st.Size()/2))
		unlock()

		var logs lockedBuffer
		b = faultBoard(t, slug, harness.WithLogf(func(format string, args ...any) {
			t.Logf(format, args...)
			fmt.Fprintf(&logs, format+"\n", args...)
		}))
		require.Contains(t, logs.String(), "snapshot: restore failed, dropping the state")
		require.Contains(t, logs.String(), "snapshot: saved", "a whole state replaces it")
		requirePasses(t, b)
	})

	t.Run("SIGINT twice to socbox run", func(t *testing.T) {
		tmp := shortTempDir(t)
		run := startRun(t, tmp, slug, hangScenarios(t))
		run.waitFor(t, "scenario 1 of 1: hangs")
		qemuPIDs := run.children("qemu-system")
		require.NotEmpty(t, qemuPIDs, "QEMU runs under socbox")
		// A guest that no longer answers: the clean stop the first
		// SIGINT asks for hangs on it.
		for _, pid := range qemuPIDs {
			require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
		}
		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		time.Sleep(2 * time.Second)
		require.False(t, run.exited(), "socbox stopped cleanly on a frozen guest?")
		// The second does not wait for the teardown.
		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		code := run.wait(t, 10*time.Second)
		require.Equal(t, 130, code, "%s", run.stderr.String())
		require.Contains(t, run.stderr.String(), "interrupted again")
		requireProcessesGone(t, qemuPIDs)
		// What it left, the next run reclaims (below).
	})

	t.Run("SIGKILL of a run, then the next run reclaims what it left", func(t *testing.T) {
		tmp := shortTempDir(t)
		run := startRun(t, tmp, slug, hangScenarios(t))
		run.waitFor(t, "scenario 1 of 1: hangs")
		qemuPIDs := run.children("qemu-system")
		require.NoError(t, run.cmd.Process.Kill())
		run.wait(t, 10*time.Second)
		// QEMU dies with socbox; the run directory stays behind.
		requireProcessesGone(t, qemuPIDs)
		left, err := filepath.Glob(filepath.Join(tmp, "socbox-"+slug+"-*"))
		require.NoError(t, err)
		require.Len(t, left, 1, "the killed run's directory")

		next := startRun(t, tmp, slug, quickScenarios(t))
		require.Equal(t, 0, next.wait(t, 3*time.Minute), "%s", next.stderr.String())
		require.Contains(t, next.stderr.String(), "cleanup: removed "+left[0])
		_, err = os.Stat(left[0])
		require.ErrorIs(t, err, os.ErrNotExist)
		requireNoRunDirs(t, tmp, slug)
	})

	t.Run("four runs at once on one cache", func(t *testing.T) {
		tmp := shortTempDir(t)
		scenarios := quickScenarios(t)
		var runs []*socboxRun
		for range 4 {
			runs = append(runs, startRun(t, tmp, slug, scenarios))
		}
		for i, r := range runs {
			require.Equal(t, 0, r.wait(t, 5*time.Minute), "run %d: %s", i, r.stderr.String())
		}
		results, err := filepath.Glob(filepath.Join(tmp, "socbox-results", "*", "results.json"))
		require.NoError(t, err)
		require.Len(t, results, 4, "each run has results of its own")
		for _, p := range results {
			res, err := report.ReadJSON(p)
			require.NoError(t, err)
			require.True(t, res.Passed(), p)
		}
		requireNoRunDirs(t, tmp, slug)
	})
}

// faultBoard boots slug for one fault and, when the test ends, closes it
// and checks that nothing is left: QEMU gone, run directory gone, no lock
// on a saved state held.
func faultBoard(t *testing.T, slug string, opts ...harness.Option) *harness.Board {
	t.Helper()
	b, err := harness.Start(t.Context(), append([]harness.Option{harness.WithBoard(slug), harness.WithLogf(t.Logf)}, opts...)...)
	if err != nil {
		_ = b.Close()
		t.Fatalf("socbox: %v", err)
	}
	pid, runDir := boardQEMU(t, b), b.RunDir()
	t.Cleanup(func() {
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Logf("close after the fault: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("closing the board after the fault hung")
		}
		requireNothingLeft(t, pid, runDir)
	})
	return b
}

// restoredFrom is the saved state b was restored from: the directory of
// the disk its overlay is made on.
func restoredFrom(t *testing.T, b *harness.Board) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", filepath.Join(b.RunDir(), "disk.qcow2")).Output()
	require.NoError(t, err)
	var info struct {
		Backing string `json:"full-backing-filename"`
	}
	require.NoError(t, json.Unmarshal(out, &info))
	require.Equal(t, "disk.qcow2", filepath.Base(info.Backing), "the board was not restored from a saved state")
	return filepath.Dir(info.Backing)
}

// boardQEMU is the board's QEMU process (see qemuPID), which must be
// known.
func boardQEMU(t *testing.T, b *harness.Board) int {
	t.Helper()
	pid := qemuPID(b)
	require.NotZero(t, pid, "no QEMU pidfile in %s", b.RunDir())
	return pid
}

// requireNothingLeft checks that QEMU pid has exited, runDir is gone and
// no saved state's lock is held.
func requireNothingLeft(t *testing.T, pid int, runDir string) {
	t.Helper()
	require.Eventually(t, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}, 10*time.Second, 100*time.Millisecond, "QEMU (pid %d) is still running", pid)
	_, err := os.Stat(runDir)
	require.ErrorIs(t, err, os.ErrNotExist, "the run directory is left")
	cache, err := images.CacheDir()
	require.NoError(t, err)
	locks, err := filepath.Glob(filepath.Join(cache, "snapshots", "*.lock"))
	require.NoError(t, err)
	for _, l := range locks {
		f, err := os.Open(l)
		require.NoError(t, err)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		require.NoError(t, err, "%s is still locked", l)
	}
}

// quickScenario is a scenario that passes on any board.
func quickScenario() scenario.Scenario {
	return scenario.Scenario{Name: "quick",
		Container: ctrd.Container{Cmd: []string{"echo", "still here"}},
		Expect:    scenario.Expect{Stdout: scenario.Str("still here\n")}}
}

// requirePasses checks that the board runs a scenario after the fault.
func requirePasses(t *testing.T, b *harness.Board) {
	t.Helper()
	res := b.RunScenario(t.Context(), quickScenario())
	require.True(t, res.Passed, "after the fault: %+v", res)
}

// duringScenario runs a scenario whose container sleeps, injects fault
// once the container runs, and returns what the scenario reported. A
// scenario that does not end within a minute of the fault fails the test:
// socbox hung.
func duringScenario(t *testing.T, b *harness.Board, fault func()) *report.Scenario {
	t.Helper()
	done := make(chan *report.Scenario, 1)
	go func() {
		done <- b.RunScenario(t.Context(), scenario.Scenario{Name: "sleeps",
			Container: ctrd.Container{Cmd: []string{"sleep", "1001"}},
			Expect:    scenario.Expect{MaxDuration: 5 * time.Minute}})
	}()
	require.Eventually(t, func() bool {
		// Not any sleep: the shim keeper's container sleeps too. The
		// pattern does not match the shell running pgrep.
		out, err := b.SSH.Output(t.Context(), "pgrep -f '^sleep 1001$' || true")
		return err == nil && strings.TrimSpace(out) != ""
	}, time.Minute, 200*time.Millisecond, "the container did not start")
	fault()
	faulted := time.Now()
	select {
	case res := <-done:
		t.Logf("reported %.1fs after the fault: error %q, failures %q", time.Since(faulted).Seconds(), res.Error, res.Failures)
		return res
	case <-time.After(time.Minute):
		t.Fatalf("the scenario did not end within a minute of the fault")
		return nil
	}
}

// requireHarnessError checks that the scenario failed with an error that
// says what went wrong, rather than passing or hanging.
func requireHarnessError(t *testing.T, res *report.Scenario) {
	t.Helper()
	require.False(t, res.Passed)
	require.NotEmpty(t, res.Error, "%+v", res)
}

// socboxBinDir holds the socbox command once built; TestMain removes it.
var socboxBinDir string

// socbox is the socbox command, built once for the tests that run it as a
// user does.
var socbox = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "socbox-bin-")
	if err != nil {
		return "", err
	}
	socboxBinDir = dir
	bin := filepath.Join(dir, "socbox")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/socbox/socbox/cmd/socbox").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w: %s", err, out)
	}
	return bin, nil
})

// socboxRun is a `socbox run` process.
type socboxRun struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan int
}

// startRun starts `socbox run` on slug with the scenario file, with tmp as
// its temporary directory (where its run directories go) and working
// directory (where its results go).
func startRun(t *testing.T, tmp, slug, scenarioFile string) *socboxRun {
	t.Helper()
	bin, err := socbox()
	require.NoError(t, err)
	r := &socboxRun{stderr: &lockedBuffer{}, done: make(chan int, 1)}
	r.cmd = exec.Command(bin, "run", "--board", slug, scenarioFile)
	r.cmd.Dir = tmp
	r.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	r.cmd.Stdout, r.cmd.Stderr = r.stderr, r.stderr
	require.NoError(t, r.cmd.Start())
	go func() {
		_ = r.cmd.Wait()
		r.done <- r.cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		if !r.exited() {
			_ = r.cmd.Process.Kill()
		}
		t.Logf("socbox run said:\n%s", r.stderr.String())
	})
	return r
}

// waitFor waits until the run's output has what.
func (r *socboxRun) waitFor(t *testing.T, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(r.stderr.String(), what) },
		3*time.Minute, 100*time.Millisecond, "socbox run never said %q:\n%s", what, r.stderr.String())
}

// exited reports, without waiting, whether the run has exited.
func (r *socboxRun) exited() bool {
	select {
	case code := <-r.done:
		r.done <- code
		return true
	default:
		return false
	}
}

// wait waits for the run to exit and returns its exit code (-1 when
// killed by a signal).
func (r *socboxRun) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(within):
		t.Fatalf("socbox run did not exit within %s:\n%s", within, r.stderr.String())
		return 0
	}
}

// children are the PIDs of the run's child processes whose command name
// starts with name.
func (r *socboxRun) children(name string) []int { return childPIDs(r.cmd.Process.Pid, name) }

// requireProcessesGone checks that each of pids has exited.
func requireProcessesGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		require.Eventually(t, func() bool {
			stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			// Gone, or a zombie waiting for its parent's parent.
			return err != nil || strings.Contains(string(stat), ") Z ")
		}, 10*time.Second, 100*time.Millisecond, "process %d is still running", pid)
	}
}

// requireNoRunDirs checks that tmp holds no run directory.
func requireNoRunDirs(t *testing.T, tmp, slug string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(tmp, "socbox-"+slug+"-*"))
	require.NoError(t, err)
	require.Empty(t, left, "run directories left")
}

// shortTempDir is a temporary directory with a short path: a run
// directory in it holds QEMU's QMP socket, whose path must stay within
// the 108 bytes of a unix socket address (t.TempDir's carry the test's
// name).
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "sbf-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// hangScenarios is a scenario file whose container never ends.
func hangScenarios(t *testing.T) string {
	return writeScenarios(t, "- name: hangs\n  container: {cmd: [sleep, \"1000\"]}\n")
}

// quickScenarios is a scenario file that passes at once.
func quickScenarios(t *testing.T) string {
	return writeScenarios(t, "- name: quick\n  container: {cmd: [echo, still here]}\n  expect: {stdout: \"still here\\n\"}\n")
}

func writeScenarios(t *testing.T, yaml string) string {
	p := filepath.Join(t.TempDir(), "faults.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

// lockedBuffer is a bytes.Buffer safe to write from a process's output
// copier while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
