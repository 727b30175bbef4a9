package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
)

// noControl fails if out has a byte a terminal would act on, other than
// the newlines that end its lines.
func noControl(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0) {
			t.Fatalf("control character %q at %d in %q", r, i, out)
		}
	}
}

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, false)
	now := time.Date(2026, 11, 28, 13, 50, 34, 0, time.Local)
	p.now = func() time.Time { return now }
	p.Logf("2 boards, 2 at once")
	a := p.Board(1, 2, "raspi4b-fast")
	now = now.Add(500 * time.Millisecond)
	b := p.Board(2, 2, "raspi3b-fast")
	now = now.Add(time.Second)
	a.Logf("raspi4b-fast: qemu ready after 0.3s")
	b.Status("scenario 2 of 4: env")
	a.Logf("did not get ready: line one\nline two\x1b[31m red\r")
	b.Done()
	a.Done()
	p.Close()
	require.Equal(t, `13:50:34 2 boards, 2 at once
13:50:35   +1.5s [1/2] raspi4b-fast: qemu ready after 0.3s
13:50:35   +1.0s [2/2] raspi3b-fast: scenario 2 of 4: env
13:50:35   +1.5s [1/2] raspi4b-fast: did not get ready: line one
13:50:35   +1.5s [1/2] raspi4b-fast: line two`+"\uFFFD"+`[31m red`+"\uFFFD"+`
`, buf.String())
	noControl(t, buf.String())
}

// screen plays out what a terminal shows for out: text, \r, \n and the
// three sequences the status block uses (cursor up, clear to the end of
// the screen, clear to the end of the line).
func screen(t *testing.T, out string) []string {
	t.Helper()
	var rows [][]rune
	row, col := 0, 0
	put := func(r rune) {
		for len(rows) <= row {
			rows = append(rows, nil)
		}
		for len(rows[row]) < col {
			rows[row] = append(rows[row], ' ')
		}
		if col < len(rows[row]) {
			rows[row][col] = r
		} else {
			rows[row] = append(rows[row], r)
		}
		col++
	}
	csi := regexp.MustCompile(`^\x1b\[(\d*)([AJK])`)
	for i := 0; i < len(out); {
		if m := csi.FindStringSubmatch(out[i:]); m != nil {
			switch m[2] {
			case "A":
				n, _ := strconv.Atoi(m[1])
				row -= max(n, 1)
				require.GreaterOrEqual(t, row, 0, "cursor moved above the screen")
			case "J":
				if row < len(rows) {
					rows = rows[:row+1]
					rows[row] = rows[row][:min(col, len(rows[row]))]
				}
			case "K":
				if row < len(rows) {
					rows[row] = rows[row][:min(col, len(rows[row]))]
				}
			}
			i += len(m[0])
			continue
		}
		r := []rune(out[i:])[0]
		switch r {
		case '\r':
			col = 0
		case '\n':
			row, col = row+1, 0
		case 0x1b:
			t.Fatalf("unexpected escape sequence %q", out[i:min(i+8, len(out))])
		default:
			put(r)
		}
		i += len(string(r))
	}
	var lines []string
	for _, r := range rows {
		lines = append(lines, strings.TrimRight(string(r), " "))
	}
	return lines
}

func TestProgressStatusBlockOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 28, 13, 50, 34, 0, time.Local)
	p := &progress{w: &buf, tty: true, now: func() time.Time { return now }, width: func() int { return 60 }, done: make(chan struct{})}
	a := p.Board(1, 2, "raspi4b-fast")
	a.Status("booting")
	b := p.Board(2, 2, "raspi3b-fast")
	b.Status("booting")
	now = now.Add(3 * time.Second)
	a.Logf("raspi4b-fast: kernel ready after 2.9s")
	now = now.Add(12 * time.Second)
	b.Status("scenario 2 of 15: a scenario whose name is far too long for the terminal")
	now = now.Add(4 * time.Second)
	p.clearBlock() // what the ticker does every second
	p.drawBlock()
	require.Equal(t, []string{
		"13:50:34   +0.0s [1/2] raspi4b-fast: booting",
		"13:50:34   +0.0s [2/2] raspi3b-fast: booting",
		"13:50:37   +3.0s [1/2] raspi4b-fast: kernel ready after 2.9s",
		"13:50:49  +15.0s [2/2] raspi3b-fast: scenario 2 of 15: a scenario whose name is far too long for the terminal",
		"[1/2] raspi4b-fast: booting: waiting for ssh … 16s",
		"[2/2] raspi3b-fast: scenario 2 of 15: a scenario whose nam…",
	}, screen(t, buf.String()), "events above, one status line per running board below")
	for _, l := range p.blockLines() {
		require.LessOrEqual(t, utf8.RuneCountInString(l), 59, "none as wide as the terminal: it would wrap")
	}

	// A board that is done leaves the block; the others' lines stay.
	a.Logf("raspi4b-fast: ssh ready after 40.6s")
	a.Done()
	got := screen(t, buf.String())
	require.Equal(t, "13:50:53  +19.0s [1/2] raspi4b-fast: ssh ready after 40.6s", got[len(got)-2])
	require.Equal(t, "[2/2] raspi3b-fast: scenario 2 of 15: a scenario whose nam…", got[len(got)-1])

	b.Done()
	p.Close()
	got = screen(t, buf.String())
	require.Len(t, got, 6)
	require.Empty(t, got[5], "no status line is left: the cursor is on a clean line")
	require.True(t, strings.HasSuffix(buf.String(), "\r\x1b[J"), "the block is cleared at the end")
}

// fakeBoards is a board runner for runBoards that boots nothing: each
// board records that it runs and waits until release lets it finish.
type fakeBoards struct {
	mu         sync.Mutex
	running    int
	most       int
	started    []string
	release    chan struct{} // closed: boards finish at once
	twoAtATime chan struct{} // closed once two boards ran at the same time
	once       sync.Once
}

func (f *fakeBoards) run(ctx context.Context, bprog *boardProgress, bp boardPlan) *report.Board {
	f.mu.Lock()
	f.running++
	f.most = max(f.most, f.running)
	f.started = append(f.started, bp.slug)
	if f.running >= 2 {
		f.once.Do(func() { close(f.twoAtATime) })
	}
	f.mu.Unlock()
	bprog.Status("booting")
	select {
	case <-f.release:
	case <-ctx.Done():
	}
	bprog.Logf("%s: containerd ready after 1.0s", bp.slug)
	f.mu.Lock()
	f.running--
	f.mu.Unlock()
	rb := &report.Board{Board: bp.slug, Tier: "fast"}
	for _, s := range bp.scenarios {
		rb.Scenarios = append(rb.Scenarios, &report.Scenario{Name: s.Name, Passed: true})
	}
	return rb
}

func fivePlans() []boardPlan {
	var plans []boardPlan
	for i := range 5 {
		plans = append(plans, boardPlan{slug: fmt.Sprintf("board%d", i), scenarios: []scenario.Scenario{{Name: "arch"}, {Name: "env"}}})
	}
	return plans
}

func TestRunBoardsInParallel(t *testing.T) {
	dir := t.TempDir()
	plans := fivePlans()
	f := &fakeBoards{release: make(chan struct{}), twoAtATime: make(chan struct{})}
	go func() {
		// The boards finish only once two ran at the same time.
		select {
		case <-f.twoAtATime:
		case <-time.After(10 * time.Second):
		}
		close(f.release)
	}()
	var buf bytes.Buffer
	res := &runResults{run: &report.Run{}, dir: dir, imageID: "debian-trixie", boards: make([]*report.Board, len(plans))}
	var adding atomic.Int32
	var order []int
	notRun := runBoards(t.Context(), newProgress(&buf, false), plans, 2, f.run, func(i int, rb *report.Board) {
		require.Equal(t, int32(1), adding.Add(1), "results are added one board at a time")
		defer adding.Add(-1)
		order = append(order, i)
		res.add(i, rb)
		// Written after every board: results.json has each board done so far.
		got, err := report.ReadJSON(filepath.Join(dir, "results.json"))
		require.NoError(t, err)
		require.Len(t, got.Boards, len(order))
	})
	require.Zero(t, notRun)
	require.Equal(t, 2, f.most, "two boards at once, never more")
	require.ElementsMatch(t, []int{0, 1, 2, 3, 4}, order)
	require.NoError(t, res.err)

	got, err := report.ReadJSON(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var slugs []string
	for _, b := range got.Boards {
		slugs = append(slugs, b.Board)
		require.Equal(t, "debian-trixie", b.ImageID)
		require.Len(t, b.Scenarios, 2)
	}
	require.Equal(t, []string{"board0", "board1", "board2", "board3", "board4"}, slugs, "in the plan's order, whatever order they finished in")
	require.FileExists(t, filepath.Join(dir, "junit.xml"))
	require.FileExists(t, filepath.Join(dir, "report.html"))

	// One line per event, each with its board.
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		require.Regexp(t, `^\d\d:\d\d:\d\d +\+\d+\.\ds \[[1-5]/5\] board[0-4]: (booting|containerd ready after 1\.0s)$`, line)
	}
	noControl(t, buf.String())
}

func TestRunBoardsOneAtATime(t *testing.T) {
	f := &fakeBoards{release: make(chan struct{}), twoAtATime: make(chan struct{})}
	close(f.release)
	var order []int
	notRun := runBoards(t.Context(), newProgress(&bytes.Buffer{}, false), fivePlans(), 1, f.run, func(i int, _ *report.Board) { order = append(order, i) })
	require.Zero(t, notRun)
	require.Equal(t, 1, f.most)
	require.Equal(t, []int{0, 1, 2, 3, 4}, order, "--parallel 1: one after the other, in order")
	require.Equal(t, []string{"board0", "board1", "board2", "board3", "board4"}, f.started)
}

func TestRunBoardsStartsNoBoardOnceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f := &fakeBoards{release: make(chan struct{}), twoAtATime: make(chan struct{})}
	var done []int
	var mu sync.Mutex
	notRun := runBoards(ctx, newProgress(&bytes.Buffer{}, false), fivePlans(), 2, func(ctx context.Context, bprog *boardProgress, bp boardPlan) *report.Board {
		if bp.slug == "board1" {
			cancel() // Ctrl-C while two boards run
		}
		return f.run(ctx, bprog, bp)
	}, func(i int, _ *report.Board) {
		mu.Lock()
		defer mu.Unlock()
		done = append(done, i)
	})
	require.Equal(t, 3, notRun, "the boards not started are counted")
	require.ElementsMatch(t, []int{0, 1}, done, "the running ones end and report")

	f = &fakeBoards{release: make(chan struct{}), twoAtATime: make(chan struct{})}
	notRun = runBoards(cancelled(), newProgress(&bytes.Buffer{}, false), fivePlans(), 2, f.run, func(int, *report.Board) {})
	require.Equal(t, 5, notRun)
	require.Empty(t, f.started)
}

// Two boards on a host that lacks the tools to build their image: both
// start at once through the real harness, fail at the image stage within
// a fraction of a second, and are reported, in the plan's order.
func TestRunParallelBoardsThatFailAtTheImage(t *testing.T) {
	t.Setenv("PATH", "") // no QEMU and no mmdebstrap: nothing can boot
	t.Setenv("SOCBOX_CACHE", t.TempDir())
	checks := fourScenarios(t)
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := socbox(t, t.Context(), "run", "--board", "raspi4b-fast,raspi3b-fast", "--parallel", "2", "--skip", "tag:slow", "--out", out, checks)
	require.Equal(t, exitCode(1), err, stderr)
	require.Contains(t, stdout, "2 boards, 2 at once")
	require.Regexp(t, `\+\d+\.\ds \[1/2\] raspi4b-fast: did not get ready: boot raspi4b-fast: image: `, stdout)
	require.Regexp(t, `\+\d+\.\ds \[2/2\] raspi3b-fast: did not get ready: boot raspi3b-fast: image: `, stdout)
	require.NotContains(t, stdout, "raspi4b-fast: raspi4b-fast:", "the harness's own board prefix is not repeated")
	noControl(t, stdout)

	run, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Len(t, run.Boards, 2)
	for i, slug := range []string{"raspi4b-fast", "raspi3b-fast"} {
		b := run.Boards[i]
		require.Equal(t, slug, b.Board)
		require.Equal(t, "image", b.FailedStage)
		require.Equal(t, "debian-trixie", b.ImageID)
		require.Len(t, b.Scenarios, 2, "arch and env, each not run")
	}
	require.Len(t, run.Plan.Units, 4)
}

func TestRunParallelFlag(t *testing.T) {
	for _, bad := range []string{"0", "-1"} {
		_, stderr, err := socbox(t, cancelled(), "run", "--parallel", bad, "--out", t.TempDir())
		require.Equal(t, exitCode(2), err)
		require.Contains(t, stderr, "--parallel "+bad+": give at least 1")
	}
	_, stderr, err := socbox(t, cancelled(), "run", "--parallel", "two")
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, `invalid value "two" for flag -parallel`)

	_, help, err := socbox(t, cancelled(), "run", "--help")
	require.Error(t, err)
	require.Contains(t, help, "-parallel N")
	require.Contains(t, help, fmt.Sprintf("(default %d)", harness.MaxBoards()), "the default is what the host allows")

	// With a shard and a selection: the plan is recorded, the boards of
	// the shard are counted as not run once interrupted.
	checks := fourScenarios(t)
	out := filepath.Join(t.TempDir(), "out")
	stdout, _, err := socbox(t, cancelled(), "run", "--board", "raspi4b,raspi3b,beaglebone-black", "--parallel", "3",
		"--skip", "^tag:slow$", "--shard", "2/2", "--out", out, checks)
	require.Equal(t, exitCode(1), err)
	require.Contains(t, stdout, "shard 2/2: 4 of the 7 units planned, on 2 board(s)")
	require.Contains(t, stdout, "interrupted: 2 board(s) not run")
	run, err := report.ReadJSON(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.Len(t, run.Plan.Units, 7)
	require.Empty(t, run.Boards)
	noControl(t, stdout)
	_ = os.Remove(out)
}
