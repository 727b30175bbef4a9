package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/harness/sshx"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/ociimage"
)

// Container says what to run in the guest; see ctrd.Container.
type Container = ctrd.Container

// Mount is a bind mount of a guest path into a container; see
// ctrd.Mount.
type Mount = ctrd.Mount

// ContainerResult is what a container did; see ctrd.ContainerResult.
type ContainerResult = ctrd.ContainerResult

// BusyboxRef is the name the built-in busybox image is imported under.
const BusyboxRef = "socbox.local/busybox:latest"

// Run runs a container on the board and returns its exit code, output and
// duration. A non-zero exit is a result, not an error. An empty Image means
// the built-in busybox.
func (b *Board) Run(ctx context.Context, c Container) (ContainerResult, error) {
	if err := b.life.failed(); err != nil {
		return ContainerResult{}, err
	}
	if b.Runtime == nil {
		return ContainerResult{}, fmt.Errorf("run on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	var err error
	if c, err = b.resolveImage(ctx, c); err != nil {
		return ContainerResult{}, err
	}
	c = b.withOutputLines(c, cmp.Or(c.Name, "container"))
	res, err := b.Runtime.Run(ctx, c)
	if err != nil {
		return res, fmt.Errorf("run on %s: %w", b.Profile.Slug, err)
	}
	return res, nil
}

// OutputLinesShown is how many of a container's output lines
// WithOutputLines logs as they come, both streams together: enough to
// watch it run, not a progress log of a container that writes a lot (a
// scenario checking its output writes 70,000 lines).
const OutputLinesShown = 200

// withOutputLines has c's output lines logged under label, WithOutputLines,
// unless c has a taker of its own: the first OutputLinesShown, then a line
// saying the rest is not shown.
func (b *Board) withOutputLines(c Container, label string) Container {
	if !b.opts.outputLines || c.OutputLines != nil {
		return c
	}
	var n atomic.Int64
	c.OutputLines = func(stream, line string) {
		switch i := n.Add(1); {
		case i <= OutputLinesShown:
			b.life.logf("%s %s: %s", label, stream, line)
		case i == OutputLinesShown+1:
			b.life.logf("%s: more than %d lines of output: the rest is not shown as it comes (its result holds its output)", label, OutputLinesShown)
		}
	}
	return c
}

// resolveImage names the image c runs in the guest: the built-in busybox
// for an empty Image, and for an image source (oci:, docker-archive:,
// docker://) the name ImportImage stored it under.
func (b *Board) resolveImage(ctx context.Context, c Container) (Container, error) {
	switch {
	case c.Image == "":
		c.Image = b.BusyboxImage
	case ociimage.IsSource(c.Image):
		name, err := b.ImportImage(ctx, c.Image)
		if err != nil {
			return c, err
		}
		c.Image = name
	}
	return c, nil
}

// StartService starts a container in the background and returns once each of its
// Ports accepts connections (Container.Ports needs a Network or
// HostNetwork). Each port is forwarded to 127.0.0.1 on this machine through
// the SSH connection: see Endpoint. Stop it when done; Close stops what is
// left.
func (b *Board) StartService(ctx context.Context, c Container) (*Service, error) {
	if err := b.life.failed(); err != nil {
		return nil, err
	}
	if b.Runtime == nil {
		return nil, fmt.Errorf("start on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	var err error
	if c, err = b.resolveImage(ctx, c); err != nil {
		return nil, err
	}
	c = b.withOutputLines(c, cmp.Or(c.Name, "service"))
	rc, err := b.Runtime.Start(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("start on %s: %w", b.Profile.Slug, err)
	}
	s := &Service{Name: c.Name, b: b, rc: rc, forwards: map[int]*sshx.Forward{}}
	b.bg.addService(s)
	if err := s.publish(ctx, c); err != nil {
		res, serr := s.Stop(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("start %s on %s: %w%s", s.label(), b.Profile.Slug, err, exitedWith(res)), serr)
	}
	return s, nil
}

// CreateNetwork makes a bridge network on the board: containers on it
// (Container.Network) reach each other by name and the board at "gateway".
// It is removed when the board is closed, or earlier with its Remove once
// its containers are gone.
func (b *Board) CreateNetwork(ctx context.Context, name string) (*Network, error) {
	if b.Runtime == nil {
		return nil, fmt.Errorf("create network on %s: containerd is not ready", b.Profile.Slug)
	}
	n, err := b.Runtime.CreateNetwork(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Profile.Slug, err)
	}
	b.bg.addNetwork(n)
	return n, nil
}

// ImportImage puts a user image into the board's containerd and returns the
// name it is stored under, which Container.Image can then use. source is
//
//	oci:PATH[:REF]             an OCI image layout directory, or a tar archive of one
//	docker-archive:PATH[:TAG]  a docker save tarball
//	docker://REGISTRY/REPO:TAG (or @sha256:…) pulled on the host, with docker login's credentials
//
// A relative PATH is taken from the working directory. The image for the
// board's platform is picked from a multi-platform one; an image with
// nothing for it is refused before anything is sent (errors.Is
// ociimage.ErrWrongPlatform). Importing a source again is skipped while
// its content is unchanged. Board.Run calls this itself for a
// Container.Image that is a source.
func (b *Board) ImportImage(ctx context.Context, source string) (string, error) {
	if err := b.life.failed(); err != nil {
		return "", err
	}
	if b.Runtime == nil {
		return "", fmt.Errorf("import image on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	name, err := b.imported.add(ctx, b.Runtime, b.Profile.Platform, b.life.logf, source)
	if err != nil {
		return "", fmt.Errorf("import image on %s: %w", b.Profile.Slug, err)
	}
	return name, nil
}

// RunScenario runs s on the board and checks its expectations: see
// scenario.Run. When it fails, the guest's journal, kernel log and
// containerd's log over its run are saved beside the board's console logs
// (see Scenario.GuestLogs).
func (b *Board) RunScenario(ctx context.Context, s scenario.Scenario) *report.Scenario {
	out := scenario.Run(ctx, scenarioRunner{b: b, name: s.Name}, s)
	var lost error
	if out.Error != "" || out.TimedOut {
		// What the board says of a failure below the container is as
		// interesting as the failure, and more telling.
		if lost = b.lost(); lost != nil {
			msg := "the board is lost: " + lost.Error()
			if out.Error == "" {
				out.Error = msg
			} else if !strings.Contains(out.Error, lost.Error()) {
				out.Error += "; " + msg
			}
			out.Passed = false
		}
	}
	if st := out.Status(); st == "fail" || st == "error" {
		b.markFailed()
		if lost == nil {
			// A lost board has no logs to give.
			b.saveGuestLogs(ctx, out)
		}
	}
	return out
}

// lost says why the board cannot run anything more (QEMU exited, the
// guest's kernel panicked, the SSH connection stopped answering), or nil.
// A board found lost is failed: every later call returns that at once
// instead of waiting on it.
func (b *Board) lost() error {
	err := b.Machine.Alive()
	if err == nil {
		err = b.SSH.Lost()
	}
	if err == nil {
		return nil
	}
	if prev := b.life.Err(); prev != nil {
		return prev
	}
	return b.life.fail(b.life.Stage(), err, "read the console log for what the guest printed last")
}

// scenarioRunner is the board as scenario.Run sees it, running the
// scenario called name.
type scenarioRunner struct {
	b    *Board
	name string
}

func (r scenarioRunner) Env() scenario.Env {
	return scenario.Env{Profile: r.b.Profile, HasNetwork: r.b.Machine.HasNetwork(), DefaultImage: r.b.BusyboxImage}
}

func (r scenarioRunner) CreateNetwork(ctx context.Context, name string) (*ctrd.Network, error) {
	return r.b.CreateNetwork(ctx, name)
}

func (r scenarioRunner) StartService(ctx context.Context, c ctrd.Container) (scenario.Service, error) {
	svc, err := r.b.StartService(ctx, r.b.withOutputLines(c, r.name+"/"+cmp.Or(c.Name, "service")))
	if err != nil {
		return nil, err
	}
	return svc, nil
}

func (r scenarioRunner) Run(ctx context.Context, c ctrd.Container) (ctrd.ContainerResult, error) {
	return r.b.Run(ctx, r.b.withOutputLines(c, r.name))
}

// answerTimeout bounds Answers: a board whose containerd takes longer to
// say its version is not one to run the next scenario on.
const answerTimeout = 20 * time.Second

// Answers asks the board's containerd, through the SSH connection, for its
// version: nil when the board can run the next scenario. After a scenario
// that timed out, a board that no longer answers is one to replace.
func (b *Board) Answers(ctx context.Context) error {
	if err := b.life.failed(); err != nil {
		return err
	}
	if b.Runtime == nil {
		return fmt.Errorf("%s: containerd is not ready", b.Profile.Slug)
	}
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	if _, err := b.Runtime.Version(ctx); err != nil {
		return fmt.Errorf("%s does not answer: %w", b.Profile.Slug, err)
	}
	return nil
}
