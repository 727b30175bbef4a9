package shell

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// roundTrip has /bin/sh read the quoted words back and print each on a
// line of its own, NUL-separated.
func roundTrip(t *testing.T, line string) []string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", `f() { for a in "$@"; do printf '%s\0' "$a"; done; }; f `+line).Output()
	require.NoError(t, err, line)
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

func TestQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", "a b", "it's", `"$HOME"`, "`id`", "a\nb", "*", "~root", "x=1", "-n", "$(reboot)", "a;b|c&d", "\\", "é"} {
		require.Equal(t, []string{s}, roundTrip(t, Quote(s)), "quoted as %s", Quote(s))
	}
}

func TestQuoteKeepsPlainWords(t *testing.T) {
	require.Equal(t, "/run/containerd/containerd.sock", Quote("/run/containerd/containerd.sock"))
	require.Equal(t, "file=/a,if=none", Quote("file=/a,if=none"))
	require.Equal(t, "'a b'", Quote("a b"))
	require.Equal(t, "''", Quote(""))
}

func TestJoin(t *testing.T) {
	require.Equal(t, "qemu -append 'root=/dev/vda console=ttyAMA0' -name 'it'\\''s'",
		Join("qemu", "-append", "root=/dev/vda console=ttyAMA0", "-name", "it's"))
	// A command word with '=' would be an assignment: quoted.
	require.Equal(t, "'A=1' true", Join("A=1", "true"))
	argv := []string{"printf", "%s|", "a b", "x=1", "", "'"}
	out, err := exec.Command("/bin/sh", "-c", Join(argv...)).Output()
	require.NoError(t, err)
	require.Equal(t, "a b|x=1||'|", string(out))
}

// FuzzQuote checks that any string comes back from the shell as it went
// in (a NUL cannot be in an argument at all).
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a b", "it's", "$(x)", "a=b", "'\\''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			t.Skip()
		}
		require.Equal(t, []string{s}, roundTrip(t, Quote(s)))
	})
}

func TestScriptPassesValuesAsParameters(t *testing.T) {
	line := Script(`printf '%s|' "$1"; shift; printf '<%s>' "$@"`, "$(reboot)", "a b", "it's")
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	require.NoError(t, err)
	require.Equal(t, "$(reboot)|<a b><it's>", string(out))
}
