package sshx_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
)

func TestRunSeparatesOutputAndReportsExitCode(t *testing.T) {
	_, c := connect(t)
	cmd := `sh -c 'echo out; echo err >&2; exit 3'`
	res, err := c.Run(testContext(t), cmd)
	require.NoError(t, err, "a failing command is a Result, not an error")
	require.Equal(t, cmd, res.Command)
	require.Equal(t, 3, res.ExitCode)
	require.Equal(t, "out\n", string(res.Stdout))
	require.Equal(t, "err\n", string(res.Stderr))
	require.Positive(t, res.Duration)
}

func TestRunReportsDeathBySignal(t *testing.T) {
	_, c := connect(t)
	res, err := c.Run(testContext(t), "kill -TERM $$")
	require.NoError(t, err)
	require.Equal(t, 128+int(syscall.SIGTERM), res.ExitCode)
}

func TestRunLargeOutputIntact(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)
	const size = 5 << 20
	var streamed bytes.Buffer
	res, err := c.Run(ctx, "head -c "+strconv.Itoa(size)+" /dev/urandom | tee big", sshx.WithStdout(&streamed))
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, string(res.Stderr))
	require.Len(t, res.Stdout, size)

	remote, err := c.Output(ctx, "sha256sum big")
	require.NoError(t, err)
	sum := sha256.Sum256(res.Stdout)
	require.Equal(t, hex.EncodeToString(sum[:]), strings.Fields(remote)[0])
	require.Equal(t, res.Stdout, streamed.Bytes(), "streamed and captured output agree")
}

func TestRunFeedsStdin(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)

	res, err := c.Run(ctx, "tr a-z A-Z", sshx.WithStdin(strings.NewReader("hello\n")))
	require.NoError(t, err)
	require.Equal(t, "HELLO\n", string(res.Stdout))

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	res, err = c.Run(ctx, "sha256sum", sshx.WithStdin(bytes.NewReader(big)))
	require.NoError(t, err)
	sum := sha256.Sum256(big)
	require.Equal(t, hex.EncodeToString(sum[:]), strings.Fields(string(res.Stdout))[0])

	res, err = c.Run(ctx, "cat")
	require.NoError(t, err, "without WithStdin the command reads end of file")
	require.Empty(t, res.Stdout)
}

func TestRunStreamsToOneWriterForBoth(t *testing.T) {
	_, c := connect(t)
	var both bytes.Buffer
	res, err := c.Run(testContext(t), "for i in 1 2 3; do echo o$i; echo e$i >&2; done",
		sshx.WithStdout(&both), sshx.WithStderr(&both))
	require.NoError(t, err)
	require.Equal(t, "o1\no2\no3\n", string(res.Stdout))
	require.Equal(t, "e1\ne2\ne3\n", string(res.Stderr))
	require.Len(t, both.String(), len(res.Stdout)+len(res.Stderr))
}

func TestRunCancelStopsCommandPromptly(t *testing.T) {
	_, c := connect(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := c.Run(ctx, "echo $$ > "+shell.Quote(pidFile)+"; exec sleep 30")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)

	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}, 5*time.Second, 20*time.Millisecond, "sleep was killed")

	res, err := c.Run(testContext(t), "echo still usable")
	require.NoError(t, err, "the connection survives a cancelled command")
	require.Equal(t, "still usable\n", string(res.Stdout))
}

func TestOutput(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)

	out, err := c.Output(ctx, "echo hi")
	require.NoError(t, err)
	require.Equal(t, "hi\n", out)

	_, err = c.Output(ctx, "echo partial; echo 'no such thing' >&2; exit 7")
	var cmdErr *sshx.CommandError
	require.ErrorAs(t, err, &cmdErr)
	require.Equal(t, 7, cmdErr.Result.ExitCode)
	require.ErrorContains(t, err, "status 7")
	require.ErrorContains(t, err, "no such thing")

	_, err = c.Output(ctx, "yes 'stderr line' | head -n 10000 >&2; echo last words >&2; exit 1")
	require.ErrorContains(t, err, "last words")
	require.Less(t, len(err.Error()), 4096, "only the tail of stderr")
}
