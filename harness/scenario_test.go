package harness

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
)

func TestScenarioChecksOOMKill(t *testing.T) {
	b := &Board{}
	oom := ContainerResult{ExitCode: 137, OOMKilled: true}
	require.Empty(t, b.check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, oom))
	require.Empty(t, b.check(Expect{ExitCode: 137}, oom), "not asked about")

	f := b.check(Expect{}, oom)
	require.Equal(t, []string{"exit code 137, want 0 (the OOM killer ended it: it went over its memory limit)"}, f,
		"an unexpected OOM kill says so")

	f = b.check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, ContainerResult{ExitCode: 137})
	require.Equal(t, []string{"not OOM-killed (exit code 137), want killed for going over its memory limit"}, f)

	f = b.check(Expect{ExitCode: 137, OOMKilled: Bool(false)}, oom)
	require.Equal(t, []string{"OOM-killed for going over its memory limit, want not"}, f)
}

// serviceAt is a service whose port 80 is forwarded to addr, as Start
// leaves it.
func serviceAt(addr string) map[string]*Service {
	return map[string]*Service{"web": {Name: "web", forwards: map[int]*sshx.Forward{80: {Addr: addr}}}}
}

func TestCheckHTTPNeverFollowsRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, "secret from elsewhere")
	}))
	defer other.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusFound)
	}))
	defer web.Close()

	b := &Board{}
	services := serviceAt(web.Listener.Addr().String())
	require.Empty(t, b.checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "/", Status: http.StatusFound}, services),
		"a redirect is the answer the check looks at")
	f := b.checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "/", BodyRegex: "secret"}, services)
	require.Len(t, f, 2)
	require.Contains(t, f[0], "status 302, want 200")
	require.NotContains(t, f[1], "secret from elsewhere")
	require.Zero(t, elsewhere.Load(), "the redirect's target was never asked")
}

func TestCheckHTTPDialsOnlyTheForward(t *testing.T) {
	var hits atomic.Int32
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	defer web.Close()
	b := &Board{}
	// A path that makes the URL name another host (userinfo@host) still
	// reaches the forward, and nothing else.
	f := b.checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "@elsewhere.invalid/"}, serviceAt(web.Listener.Addr().String()))
	require.Empty(t, f)
	require.EqualValues(t, 1, hits.Load())
}

func TestCheckHTTPReadsABoundedBody(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("y\n"), 32<<10)
		for range 1 << 12 { // 256 MiB, far more than the check reads
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer web.Close()
	b := &Board{}
	start := time.Now()
	f := b.checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, BodyRegex: "^n"}, serviceAt(web.Listener.Addr().String()))
	require.Len(t, f, 1)
	require.Contains(t, f[0], "does not match")
	require.Less(t, len(f[0]), 1000, "the report gets a clip of the body, not the body")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestCheckHTTPTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() { // accepts, never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	b := &Board{}
	old := httpCheckTimeout
	httpCheckTimeout = 200 * time.Millisecond
	defer func() { httpCheckTimeout = old }()
	start := time.Now()
	f := b.checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80}, serviceAt(ln.Addr().String()))
	require.Len(t, f, 1)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestScenarioSaysOutputWasCut(t *testing.T) {
	b := &Board{}
	res := ContainerResult{Stdout: []byte("y\ny\n"), Truncated: map[string]int64{"stdout": 40000000}}
	require.Empty(t, b.check(Expect{StdoutRegex: "^y"}, res), "a check the head passes passes")
	f := b.check(Expect{Stdout: new(string)}, res)
	require.Equal(t, []string{
		`stdout "y\ny\n", want ""`,
		"stdout was cut: 40000000 bytes, of which the checks saw the first 4 (raise Container.OutputLimit to see more)",
	}, f)
}
