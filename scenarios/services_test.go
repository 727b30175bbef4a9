package scenarios

import (
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
)

// TestServicesFromGo is the README's Go example for services, networks and
// files, run as written: a web service on a bridge network, reached from
// this machine through its forward and from a second container by name.
func TestServicesFromGo(t *testing.T) {
	bootsVM(t)
	if !slices.Contains(selectedBoards(t), "raspi4b-fast") {
		t.Skip("raspi4b-fast is not among the selected boards")
	}
	b := harness.Boot(t, "raspi4b-fast", suiteOption()...)
	ctx := t.Context()

	net, err := b.CreateNetwork(ctx, "web")
	require.NoError(t, err)
	web, err := b.StartService(ctx, harness.Container{
		Name: "web", Network: net, Ports: []int{80},
		Cmd:   []string{"httpd", "-f", "-p", "80", "-h", "/www"},
		Files: []harness.File{{Path: "/www/index.html", Content: []byte("hello\n")}},
	})
	require.NoError(t, err)
	defer web.Stop(ctx)

	resp, err := http.Get("http://" + web.Endpoint(80) + "/")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "hello\n", string(body))

	res, err := b.Run(ctx, harness.Container{Name: "client", Network: net,
		Cmd:     []string{"sh", "-c", "nc web 80 </dev/null >/dev/null; echo done > /out"},
		Collect: []string{"/out"}})
	require.NoError(t, err)
	require.Equal(t, "done\n", string(res.Files["/out"]))
	require.NotEmpty(t, res.IP)

	// A service that exits before its port answers is an error that says
	// so, with what it printed.
	_, err = b.StartService(ctx, harness.Container{Name: "broken", Network: net, Ports: []int{81},
		Cmd: []string{"sh", "-c", "echo cannot serve >&2; exit 4"}})
	require.ErrorContains(t, err, "the container exited")
	require.ErrorContains(t, err, "cannot serve")

	stopped, err := web.Stop(ctx)
	require.NoError(t, err)
	require.Equal(t, 137, stopped.ExitCode, "httpd as PID 1 ignores SIGTERM: killed after the grace period")
}
