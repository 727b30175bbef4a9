package sshx_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

func TestRunKeepsTheHeadOfLargeOutput(t *testing.T) {
	_, c := connect(t)
	ctx := testContext(t)
	const total = 40_000_000
	res, err := c.Run(ctx, "yes | head -c 40000000; yes | head -c 20000000 >&2")
	require.NoError(t, err)
	require.Len(t, res.Stdout, sshx.DefaultOutputLimit, "the head, up to the default limit")
	require.Equal(t, []byte("y\ny\n"), res.Stdout[:4])
	require.EqualValues(t, total, res.StdoutSize, "every byte counted")
	require.Len(t, res.Stderr, sshx.DefaultOutputLimit)
	require.EqualValues(t, 20_000_000, res.StderrSize)
	require.True(t, res.Truncated())

	res, err = c.Run(ctx, "echo 0123456789abc", sshx.WithOutputLimit(10))
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(res.Stdout))
	require.EqualValues(t, 14, res.StdoutSize)
	require.True(t, res.Truncated())

	res, err = c.Run(ctx, "echo short", sshx.WithOutputLimit(10))
	require.NoError(t, err)
	require.Equal(t, "short\n", string(res.Stdout))
	require.False(t, res.Truncated())
}

func TestRunOutputLimitDoesNotCutStreams(t *testing.T) {
	_, c := connect(t)
	var streamed bytes.Buffer
	res, err := c.Run(testContext(t), "echo 0123456789abc", sshx.WithOutputLimit(4), sshx.WithStdout(&streamed))
	require.NoError(t, err)
	require.Equal(t, "0123", string(res.Stdout))
	require.Equal(t, "0123456789abc\n", streamed.String(), "the caller's writer gets it all")
}

func TestReadAndTruncateKeepsTheHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sshtest.Option
	}{
		{"sftp", nil},
		{"shell fallback", []sshtest.Option{sshtest.WithoutSFTP()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := connect(t, tc.opts...)
			ctx := testContext(t)
			dir := t.TempDir()
			big, small := filepath.Join(dir, "big"), filepath.Join(dir, "small")
			content := bytes.Repeat([]byte("0123456789"), 10<<10) // 100 KiB
			require.NoError(t, os.WriteFile(big, content, 0o600))
			require.NoError(t, os.WriteFile(small, []byte("tiny"), 0o600))

			got, err := c.ReadAndTruncate(ctx, 1000, big, small)
			require.NoError(t, err)
			require.Equal(t, content[:1000], got[0].Data)
			require.EqualValues(t, len(content), got[0].Size)
			require.True(t, got[0].Truncated())
			require.Equal(t, "tiny", string(got[1].Data))
			require.False(t, got[1].Truncated())
			requireEmptied(t, []string{big, small})

			// The default limit: a file larger than it is cut there.
			require.NoError(t, os.WriteFile(big, make([]byte, sshx.DefaultOutputLimit+5), 0o600))
			got, err = c.ReadAndTruncate(ctx, sshx.DefaultOutputLimit, big)
			require.NoError(t, err)
			require.Len(t, got[0].Data, sshx.DefaultOutputLimit)
			require.EqualValues(t, sshx.DefaultOutputLimit+5, got[0].Size)
		})
	}
}
