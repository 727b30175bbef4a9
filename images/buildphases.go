package images

import (
	"fmt"
	"strings"
	"time"
)

// BuildPhase is one step of an image build and how long it took, kept in
// the image's manifest so the build's cost can be read phase by phase.
type BuildPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// phaseClock times a build's steps one after the other.
type phaseClock struct {
	last   time.Time
	phases []BuildPhase
}

func newPhaseClock() *phaseClock { return &phaseClock{last: time.Now()} }

// done ends the step called name, which began when the previous one ended.
func (c *phaseClock) done(name string) {
	now := time.Now()
	c.phases = append(c.phases, BuildPhase{Name: name, Seconds: now.Sub(c.last).Seconds()})
	c.last = now
}

// add records phases that were timed elsewhere, each name prefixed.
func (c *phaseClock) add(prefix string, phases []BuildPhase) {
	for _, p := range phases {
		c.phases = append(c.phases, BuildPhase{Name: prefix + p.Name, Seconds: p.Seconds})
	}
	c.last = time.Now()
}

// FormatPhases prints phases one per line, with their total.
func FormatPhases(phases []BuildPhase) string {
	var b strings.Builder
	var total float64
	for _, p := range phases {
		fmt.Fprintf(&b, "  %-60s %7.1fs\n", p.Name, p.Seconds)
		total += p.Seconds
	}
	fmt.Fprintf(&b, "  %-60s %7.1fs\n", "total", total)
	return b.String()
}
