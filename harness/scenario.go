package harness

import (
	"context"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
)

// RunScenario runs s on the board and checks its expectations: see
// scenario.Run.
func (b *Board) RunScenario(ctx context.Context, s scenario.Scenario) *report.Scenario {
	return scenario.Run(ctx, scenarioRunner{b}, s)
}

// scenarioRunner is the board as scenario.Run sees it.
type scenarioRunner struct{ b *Board }

func (r scenarioRunner) Env() scenario.Env {
	// (A real board is reached over its network: it has one.)
	return scenario.Env{Profile: r.b.Profile, HasNetwork: r.b.Target != nil || r.b.Profile.HasNetwork(), DefaultImage: r.b.BusyboxImage}
}

func (r scenarioRunner) CreateNetwork(ctx context.Context, name string) (*ctrd.Network, error) {
	return r.b.CreateNetwork(ctx, name)
}

func (r scenarioRunner) StartService(ctx context.Context, c ctrd.Container) (scenario.Service, error) {
	svc, err := r.b.StartService(ctx, c)
	if err != nil {
		return nil, err
	}
	return svc, nil
}

func (r scenarioRunner) Run(ctx context.Context, c ctrd.Container) (ctrd.ContainerResult, error) {
	return r.b.Run(ctx, c)
}

// Report describes the board for a results file: stages, image, and how to
// reproduce it.
func (b *Board) Report() *report.Board {
	r := &report.Board{
		Board: b.Profile.Slug, Tier: string(b.Profile.Tier), Platform: b.Profile.Platform.String(),
		Containerd: string(b.opts.containerd),
	}
	if b.Image != nil {
		r.Image, r.Suite, r.KernelVersion = b.Image.Name, b.Image.Suite, b.Image.KernelVersion
	}
	for _, t := range b.Timings() {
		r.Stages = append(r.Stages, report.Stage{Name: string(t.Stage), StartedAt: t.Start.UTC(), Seconds: t.Seconds})
	}
	if err := b.Err(); err != nil {
		r.Error = err.Error()
		if se, ok := err.(*StageError); ok {
			r.FailedStage = string(se.Stage)
		}
	}
	if b.Machine != nil {
		r.Accelerator = string(b.Machine.Config().Accelerator())
		r.QEMUCommand = b.Machine.CommandLine()
		r.Overlay = b.Machine.Config().Disk
		r.SSHCommand = b.SSHCommand()
		r.ConsoleLogs = b.ConsoleLogs()
	}
	b.describeTarget(r)
	return r
}
