package report

import (
	"fmt"
	"math"
	"time"
)

// Timeline geometry, in SVG user units. The picture scales to the page
// width; these only fix its proportions.
const (
	tlWidth   = 960.0
	tlLabelW  = 170.0 // row labels, right-aligned against the plot
	tlRightW  = 80.0  // room for the seconds label after the longest bar
	tlAxisH   = 26.0
	tlRowH    = 22.0
	tlBarH    = 14.0
	tlBottomH = 8.0
)

// timeline is one board's picture: boot stages, then scenarios, each a bar
// on a shared time axis.
type timeline struct {
	Width, Height float64
	PlotX, PlotW  float64
	Ticks         []tick
	Rows          []bar
}

type tick struct {
	X     float64
	Label string
}

type bar struct {
	RowY, RowH     float64 // the row, for its background stripe
	Y, H, TextY    float64 // top and height of the bar; baseline of its text
	X, W           float64
	LabelX, ValueX float64
	Label          string // short enough for the label column
	Title          string // the tooltip: full name and timing
	Value          string // "40.6s", "failed", "not run"
	Class          string // "stage", "stage failed", "scenario pass", ...
	Stripe         bool
}

// span is one bar in seconds from the board's start.
type span struct {
	label, class, value, title string
	start, seconds             float64
}

// spans places each stage and scenario on the board's time axis. Start
// times come from the results; older results without them are laid end to
// end.
func (b *Board) spans() []span {
	var t0 time.Time
	for _, st := range b.Stages {
		t0 = earliest(t0, st.StartedAt)
	}
	for _, s := range b.Scenarios {
		t0 = earliest(t0, s.StartedAt)
	}
	var out []span
	cursor := 0.0
	place := func(at time.Time, seconds float64) float64 {
		start := cursor
		if !at.IsZero() && !t0.IsZero() {
			start = at.Sub(t0).Seconds()
		}
		cursor = math.Max(cursor, start+seconds)
		return start
	}
	for _, st := range b.Stages {
		start := place(st.StartedAt, st.Seconds)
		out = append(out, span{label: st.Name, class: "stage", value: fmt.Sprintf("%.1fs", st.Seconds),
			title: fmt.Sprintf("%s: %.1fs", st.Name, st.Seconds), start: start, seconds: st.Seconds})
	}
	if b.Error != "" {
		stage := b.FailedStage
		if stage == "" {
			stage = "start"
		}
		out = append(out, span{label: stage, class: "stage failed", value: "failed",
			title: b.notReady(), start: cursor})
	}
	for _, s := range b.Scenarios {
		sp := span{label: s.Name, class: "scenario " + s.Status(), value: fmt.Sprintf("%.2fs", s.Seconds),
			title: fmt.Sprintf("%s: %s in %.2fs", s.Name, s.Status(), s.Seconds), seconds: s.Seconds}
		if s.StartedAt.IsZero() && s.Seconds == 0 && s.Error != "" {
			sp.value, sp.class, sp.title = "not run", "scenario notrun", s.Name+": not run: "+firstLine(s.Error)
		}
		sp.start = place(s.StartedAt, s.Seconds)
		out = append(out, sp)
	}
	return out
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// timeline lays the board's spans out as rows of bars under a time axis.
func (b *Board) timeline() timeline {
	spans := b.spans()
	total := 0.0
	for _, s := range spans {
		total = math.Max(total, s.start+s.seconds)
	}
	switch {
	case total <= 0 || math.IsNaN(total):
		total = 1
	case math.IsInf(total, 1):
		// Results from elsewhere may hold any figure.
		total = math.MaxFloat64
	}
	tl := timeline{Width: tlWidth, PlotX: tlLabelW, PlotW: tlWidth - tlLabelW - tlRightW}
	tl.Height = tlAxisH + float64(len(spans))*tlRowH + tlBottomH
	scale := tl.PlotW / total
	step := tickStep(total)
	// Counted, not stepped, so that no figure makes the axis loop: a step
	// lost in the rounding of a huge total would never reach it.
	for i := 0; i <= maxTicks; i++ {
		t := float64(i) * step
		if t > total+step/1000 {
			break
		}
		tl.Ticks = append(tl.Ticks, tick{X: round1(tl.PlotX + t*scale), Label: shortDuration(t)})
	}
	for i, s := range spans {
		y := tlAxisH + float64(i)*tlRowH
		x := tl.PlotX + s.start*scale
		w := math.Max(s.seconds*scale, 2) // a 50 ms scenario is still visible
		tl.Rows = append(tl.Rows, bar{
			RowY: round1(y), RowH: tlRowH, Y: round1(y + (tlRowH-tlBarH)/2), H: tlBarH, TextY: round1(y + tlRowH/2 + 4),
			X: round1(x), W: round1(w), LabelX: tl.PlotX - 8, ValueX: round1(x + w + 5),
			Label: clipLabel(s.label, 24), Title: s.title, Value: s.value, Class: s.class,
			Stripe: i%2 == 1,
		})
	}
	return tl
}

// maxTicks bounds the axis whatever tickStep picks.
const maxTicks = 11

// tickStep picks a round step that gives at most ten ticks.
func tickStep(total float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600} {
		if total/s <= 10 {
			return s
		}
	}
	return math.Ceil(total/10/3600) * 3600
}

// shortDuration renders tick labels: "0s", "15s", "1m", "1m30s".
func shortDuration(s float64) string {
	if s < 60 {
		return fmt.Sprintf("%gs", s)
	}
	m, rest := int(s)/60, int(s)%60
	if rest == 0 {
		return fmt.Sprintf("%dm", m)
	}
	return fmt.Sprintf("%dm%02ds", m, rest)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func clipLabel(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
