// Package proc starts the host processes socbox runs (QEMU, qemu-img,
// mmdebstrap, xz, debugfs…) so that none outlives socbox: each gets a
// process group of its own, which a cancelled context (CommandContext) or
// KillAll kills whole, and SIGKILL as its parent-death signal, so that a socbox killed
// with SIGKILL (or a `go test -timeout` panic) takes them with it.
//
// The parent-death signal is sent when the thread that started the child
// exits, not the process (prctl(2), PR_SET_PDEATHSIG): the Go runtime ends
// a thread when a goroutine locked to it exits. Start therefore starts the
// child from a goroutine locked to its thread, and keeps that goroutine
// (and so the thread) until the child has exited.
//
// The package has no dependencies in socbox, so that images/ may use it as
// harness/ does.
package proc

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// running holds the process groups started and not yet exited, for KillAll.
var running = struct {
	mu    sync.Mutex
	pgids map[int]struct{}
}{pgids: map[int]struct{}{}}

// CommandContext is exec.CommandContext whose cancellation kills the
// child's whole process group, not only the child: start it with Start.
func CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return killGroup(cmd) }
	return cmd
}

// Start is cmd.Start with the child in a process group of its own and a
// parent-death signal; the caller waits for it with cmd.Wait as usual.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is never unlocked: once the child has gone the
		// goroutine ends, and the runtime ends the thread with it.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		// Registered before Start returns: a KillAll right after it
		// must find the child.
		pid := cmd.Process.Pid
		running.mu.Lock()
		running.pgids[pid] = struct{}{}
		running.mu.Unlock()
		started <- nil
		waitExited(pid)
		running.mu.Lock()
		delete(running.pgids, pid)
		running.mu.Unlock()
	}()
	return <-started
}

// waitExited waits until the process has exited without reaping it: the
// caller's cmd.Wait does that. If the caller reaped it first, waitid fails
// at once with ECHILD.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// KillAll sends SIGKILL to the process group of every child started with
// Start that has not exited: for a process about to exit without its
// usual teardown (a second Ctrl-C).
func KillAll() int {
	running.mu.Lock()
	defer running.mu.Unlock()
	for pgid := range running.pgids {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return len(running.pgids)
}

// Run is cmd.Run through Start.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output is cmd.Output through Start: standard output, and standard error
// in the *exec.ExitError as exec keeps it.
func Output(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("proc: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	captureErr := cmd.Stderr == nil
	if captureErr {
		cmd.Stderr = &stderr
	}
	err := Run(cmd)
	var ee *exec.ExitError
	if captureErr && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput is cmd.CombinedOutput through Start.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("proc: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd)
	return b.Bytes(), err
}
