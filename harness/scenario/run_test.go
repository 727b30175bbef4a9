package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ctrd"
)

// recorder is a Runner that records what a scenario asked of it; its
// services answer HTTP for real, on this machine.
type recorder struct {
	env     Env
	calls   []string
	web     *httptest.Server
	failRun error
	result  ctrd.ContainerResult
}

func (r *recorder) Env() Env { return r.env }

func (r *recorder) CreateNetwork(context.Context, string) (*ctrd.Network, error) {
	return nil, errors.New("no networks here")
}

func (r *recorder) StartService(_ context.Context, c ctrd.Container) (Service, error) {
	r.calls = append(r.calls, "start "+c.Name)
	if c.Name == "broken" {
		return nil, errors.New("exited at once")
	}
	return &recordedService{r: r, name: c.Name, addr: r.web.Listener.Addr().String()}, nil
}

func (r *recorder) Run(_ context.Context, c ctrd.Container) (ctrd.ContainerResult, error) {
	r.calls = append(r.calls, fmt.Sprintf("run %v collect %v", c.Cmd, c.Collect))
	return r.result, r.failRun
}

type recordedService struct {
	r          *recorder
	name, addr string
}

func (s *recordedService) Endpoint(port int) string {
	if port == 80 {
		return s.addr
	}
	return ""
}
func (s *recordedService) IP() string { return "10.88.0.9" }
func (s *recordedService) Stop(context.Context) (ctrd.ContainerResult, error) {
	s.r.calls = append(s.r.calls, "stop "+s.name)
	return ctrd.ContainerResult{ExitCode: 143, Stdout: []byte(s.name + " out")}, nil
}

func newRecorder(t *testing.T) *recorder {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from aarch64")
	}))
	t.Cleanup(web.Close)
	p, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	return &recorder{env: Env{Profile: p, HasNetwork: true, DefaultImage: "busybox"}, web: web}
}

func TestRunStartsServicesInOrderAndStopsThemInReverse(t *testing.T) {
	r := newRecorder(t)
	r.result = ctrd.ContainerResult{Stdout: []byte("aarch64\n"), Files: map[string][]byte{"/out": []byte("ok")}}
	s := Scenario{Name: "s",
		Services:  []ctrd.Container{{Name: "db"}, {Name: "web", Image: "oci:web"}},
		Container: ctrd.Container{Cmd: []string{"uname", "-m"}},
		Expect: Expect{Stdout: Str("${UNAME_M}\n"), Files: map[string]FileExpect{"/out": {Content: Str("ok")}},
			HTTP: []HTTPCheck{{Service: "web", Port: 80, BodyRegex: "from ${UNAME_M}$"}}},
	}
	res := Run(t.Context(), r, s)
	require.True(t, res.Passed, "%v", res.Failures)
	require.Equal(t, []string{"start db", "start web", "run [uname -m] collect [/out]", "stop web", "stop db"}, r.calls)
	require.Len(t, res.Services, 2)
	require.Equal(t, "db", res.Services[0].Name)
	require.Equal(t, "busybox", res.Services[0].Image, "a service with no image ran the default one")
	require.Equal(t, "oci:web", res.Services[1].Image)
	require.Equal(t, "busybox", res.Image)
}

func TestRunReportsWhatFailed(t *testing.T) {
	r := newRecorder(t)
	s := Scenario{Name: "s", Services: []ctrd.Container{{Name: "db"}, {Name: "broken"}}, Container: ctrd.Container{Cmd: []string{"true"}}}
	res := Run(t.Context(), r, s)
	require.False(t, res.Passed)
	require.Contains(t, res.Error, "exited at once")
	require.Equal(t, []string{"start db", "start broken", "stop db"}, r.calls, "what started is stopped, the check does not run")

	r = newRecorder(t)
	r.failRun = errors.New("no such image")
	res = Run(t.Context(), r, Scenario{Name: "s", Container: ctrd.Container{Cmd: []string{"true"}}})
	require.Equal(t, []string{"container did not run: no such image"}, res.Failures)

	r = newRecorder(t)
	res = Run(t.Context(), r, Scenario{Name: "s", Network: "host", Container: ctrd.Container{Cmd: []string{"true"}}})
	require.Contains(t, res.Error, `network "host": only "bridge" is known`)
	require.Empty(t, r.calls)
}

func TestScenarioNeedsNetwork(t *testing.T) {
	withNIC, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	noNIC, err := boards.Lookup("raspi4b")
	require.NoError(t, err)

	s := Scenario{Name: "host-network", Needs: []string{NeedNetwork}}
	require.Empty(t, s.Unmet(withNIC))
	require.Equal(t, "needs a network interface; raspi4b has none (see `socbox boards`)", s.Unmet(noNIC))
	require.Empty(t, Scenario{Name: "arch"}.Unmet(noNIC), "a scenario that needs nothing runs everywhere")

	// Not run, and not a failure either.
	r := newRecorder(t)
	r.env = Env{Profile: noNIC, HasNetwork: false}
	res := Run(t.Context(), r, s)
	require.Equal(t, "n/a", res.Status())
	require.Contains(t, res.NotApplicable, "raspi4b has none")
	require.Empty(t, r.calls)

	// A real board compared against raspi4b is reached over its network:
	// it has one.
	r.env.HasNetwork = true
	r.result = ctrd.ContainerResult{}
	require.True(t, Run(t.Context(), r, Scenario{Name: "host-network", Needs: []string{NeedNetwork}, Container: ctrd.Container{Cmd: []string{"true"}}}).Passed)
}

func TestRunReportsATimeoutWithItsPartialOutput(t *testing.T) {
	r := newRecorder(t)
	r.result = ctrd.ContainerResult{ExitCode: 137, Stdout: []byte("started\n"), Stderr: []byte("half")}
	timeout := fmt.Errorf("run on raspi4b-fast: %w",
		fmt.Errorf("run container check-1 (image busybox): %w", &ctrd.TimeoutError{Limit: 2 * time.Second}))
	r.failRun = timeout
	s := Scenario{Name: "hangs", Container: ctrd.Container{Cmd: []string{"sleep", "inf"}},
		Expect: Expect{MaxDuration: 2 * time.Second}}
	out := Run(context.Background(), r, s)
	require.False(t, out.Passed)
	require.True(t, out.TimedOut)
	require.Empty(t, out.Error, "a timeout is the scenario's failure, not the harness's")
	require.Equal(t, []string{"timed out after 2s (max_duration)"}, out.Failures)
	require.Equal(t, "started\n", out.Stdout)
	require.Equal(t, "half", out.Stderr)
	require.Equal(t, 137, out.ExitCode)

	// What else went wrong is said beside it.
	r.failRun = errors.Join(timeout, errors.New("clean up container check-1: remove task: connection lost"))
	out = Run(context.Background(), r, s)
	require.Equal(t, []string{"timed out after 2s (max_duration)",
		"after the timeout: clean up container check-1: remove task: connection lost"}, out.Failures)
}

func TestRunGivesEveryContainerAHardLimit(t *testing.T) {
	var got []time.Duration
	r := &limitRecorder{recorder: newRecorder(t), limits: &got}
	Run(context.Background(), r, Scenario{Name: "set", Container: ctrd.Container{Cmd: []string{"true"}}, Expect: Expect{MaxDuration: 30 * time.Second}})
	out := Run(context.Background(), r, Scenario{Name: "unset", Container: ctrd.Container{Cmd: []string{"true"}}})
	require.Equal(t, []time.Duration{30 * time.Second, DefaultMaxDuration}, got)
	require.True(t, out.Passed)

	r.recorder.failRun = &ctrd.TimeoutError{Limit: DefaultMaxDuration}
	out = Run(context.Background(), r, Scenario{Name: "unset", Container: ctrd.Container{Cmd: []string{"true"}}})
	require.Equal(t, []string{"timed out after 10m0s (the default limit; set expect.max_duration for a longer one)"}, out.Failures)
}

// limitRecorder records the Timeout each container is run with.
type limitRecorder struct {
	*recorder
	limits *[]time.Duration
}

func (r *limitRecorder) Run(ctx context.Context, c ctrd.Container) (ctrd.ContainerResult, error) {
	*r.limits = append(*r.limits, c.Timeout)
	return r.recorder.Run(ctx, c)
}
