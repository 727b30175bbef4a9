package ctrd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLineSplitter(t *testing.T) {
	var got []string
	l := newLineSplitter(func(s string) { got = append(got, s) })
	for _, p := range []string{"a", "b\nc\r\n", "\n", "d\x1b[31m\xff\te\nlong:" + strings.Repeat("x", maxLineBytes)} {
		n, err := l.Write([]byte(p))
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
	require.Equal(t, []string{"ab", "c", "", "d\uFFFD[31m\uFFFD\te", "long:" + strings.Repeat("x", maxLineBytes-5)}, got,
		"whole lines, a long one in pieces, nothing a terminal acts on")
	got = nil
	// What was captured elsewhere is the same bytes: only its rest is new.
	all := "ab\nc\r\n\nd\x1b[31m\xff\te\nlong:" + strings.Repeat("x", maxLineBytes) + "yz\nend"
	l.finish([]byte(all))
	require.Equal(t, []string{"xxxxxyz", "end"}, got)
	_, _ = l.Write([]byte("late\n"))
	l.finish([]byte(all + "more\n"))
	require.Equal(t, []string{"xxxxxyz", "end"}, got, "nothing after finish")
}

func TestLineSplitterFinishWithoutCapture(t *testing.T) {
	var got []string
	l := newLineSplitter(func(s string) { got = append(got, s) })
	_, _ = l.Write([]byte("one\ntwo"))
	l.finish(nil)
	require.Equal(t, []string{"one", "two"}, got)
	var nilFollower *follower
	nilFollower.stop()
	nilFollower.finish(nil, nil)
}
