package proc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// alive reports whether pid is a process that has not exited (a zombie
// counts as exited).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func requireGone(t *testing.T, pid int, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return !alive(pid) }, 10*time.Second, 20*time.Millisecond, msg)
}

// TestMain lets the test binary act as a parent that starts a child and is
// then killed: with PROC_TEST_HELPER set it starts `sleep`, prints the
// child's pid and waits to be killed.
func TestMain(m *testing.M) {
	mode := os.Getenv("PROC_TEST_HELPER")
	if mode == "" {
		os.Exit(m.Run())
	}
	// Keep the main thread for this goroutine: the runtime never ends
	// the main thread, and the goroutines below must run elsewhere.
	runtime.LockOSThread()
	switch mode {
	case "proc":
		done := make(chan *exec.Cmd)
		// From a goroutine locked to its thread that then exits: the
		// thread goes, and a parent-death signal tied to it would fire.
		go func() {
			runtime.LockOSThread()
			cmd := exec.Command("sleep", "100")
			if err := Start(cmd); err != nil {
				panic(err)
			}
			done <- cmd
		}()
		fmt.Println((<-done).Process.Pid)
	case "plain":
		done := make(chan *exec.Cmd)
		go func() {
			runtime.LockOSThread()
			cmd := exec.Command("sleep", "100")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				panic(err)
			}
			done <- cmd
		}()
		fmt.Println((<-done).Process.Pid)
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

// helper starts the test binary as a parent of a sleep and returns both.
func helper(t *testing.T, mode string) (parent *exec.Cmd, child int) {
	t.Helper()
	parent = exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), "PROC_TEST_HELPER="+mode)
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	child, err = strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	return parent, child
}

func TestChildDiesWithItsParent(t *testing.T) {
	parent, child := helper(t, "proc")
	time.Sleep(300 * time.Millisecond)
	require.True(t, alive(child), "the child lives while its parent does, whichever thread started it")
	pgid, err := syscall.Getpgid(child)
	require.NoError(t, err)
	require.Equal(t, child, pgid, "a process group of its own")

	require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
	requireGone(t, child, "a SIGKILLed parent takes its child with it")
}

// Why Start locks a thread: a parent-death signal set from a goroutine
// whose thread ends fires while the parent lives on.
func TestPdeathsigIsTiedToTheThread(t *testing.T) {
	_, child := helper(t, "plain")
	requireGone(t, child, "the child was killed when its starting thread ended")
}

func TestCancelKillsTheProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := CommandContext(ctx, "sh", "-c", "sleep 100 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, Start(cmd))
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	cancel()
	require.Error(t, cmd.Wait())
	requireGone(t, grandchild, "the grandchild went with the group")
}

func TestKillAll(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 100 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, Start(cmd))
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	require.GreaterOrEqual(t, KillAll(), 1)
	require.Error(t, cmd.Wait())
	requireGone(t, grandchild, "KillAll kills the whole group")
}

func TestOutputs(t *testing.T) {
	out, err := Output(exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"))
	require.Equal(t, "out\n", string(out))
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, "err\n", string(ee.Stderr))
	out, err = CombinedOutput(exec.Command("sh", "-c", "echo out; echo err >&2"))
	require.NoError(t, err)
	require.Equal(t, "out\nerr\n", string(out))
}
