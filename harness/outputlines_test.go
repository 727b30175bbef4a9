package harness

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOutputLinesAreLoggedWithBoardAndScenario(t *testing.T) {
	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	o, err := newOptions(defaultOptions(), []Option{WithOutputLines()})
	require.NoError(t, err)
	b := &Board{opts: o, life: newLifecycle("raspi4b-fast", o, prefixedLogf(logf, "raspi4b-fast"))}

	r := scenarioRunner{b: b, name: "arch"}
	c := b.withOutputLines(Container{Cmd: []string{"uname", "-m"}}, r.name)
	c.OutputLines("stdout", "aarch64")
	svc := b.withOutputLines(Container{Name: "web"}, r.name+"/web")
	svc.OutputLines("stderr", "listening")
	// A taker of the container's own is left alone, as Board.Run finds it.
	b.withOutputLines(c, "container").OutputLines("stdout", "again")
	require.Equal(t, []string{"raspi4b-fast: arch stdout: aarch64", "raspi4b-fast: arch/web stderr: listening", "raspi4b-fast: arch stdout: again"}, logged)

	logged = nil
	chatty := b.withOutputLines(Container{}, "seq")
	for i := range OutputLinesShown + 50 {
		chatty.OutputLines("stdout", fmt.Sprint(i))
	}
	require.Len(t, logged, OutputLinesShown+1)
	require.Equal(t, fmt.Sprintf("raspi4b-fast: seq stdout: %d", OutputLinesShown-1), logged[OutputLinesShown-1])
	require.Equal(t, "raspi4b-fast: seq: more than 200 lines of output: the rest is not shown as it comes (its result holds its output)", logged[OutputLinesShown])

	quiet := &Board{opts: defaultOptions(), life: b.life}
	require.Nil(t, quiet.withOutputLines(Container{}, "arch").OutputLines, "only when asked for")
}
