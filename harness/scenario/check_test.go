package scenario

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/ctrd"
)

func TestScenarioChecksOOMKill(t *testing.T) {
	oom := ctrd.ContainerResult{ExitCode: 137, OOMKilled: true}
	require.Empty(t, Check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, oom, Vars{}))
	require.Empty(t, Check(Expect{ExitCode: 137}, oom, Vars{}), "not asked about")

	f := Check(Expect{}, oom, Vars{})
	require.Equal(t, []string{"exit code 137, want 0 (the OOM killer ended it: it went over its memory limit)"}, f,
		"an unexpected OOM kill says so")

	f = Check(Expect{ExitCode: 137, OOMKilled: Bool(true)}, ctrd.ContainerResult{ExitCode: 137}, Vars{})
	require.Equal(t, []string{"not OOM-killed (exit code 137), want killed for going over its memory limit"}, f)

	f = Check(Expect{ExitCode: 137, OOMKilled: Bool(false)}, oom, Vars{})
	require.Equal(t, []string{"OOM-killed for going over its memory limit, want not"}, f)
}

// forwarded is a service whose port 80 is forwarded to addr, as a
// Runner's StartService leaves it.
type forwarded struct{ addr string }

func (f forwarded) Endpoint(port int) string {
	if port == 80 {
		return f.addr
	}
	return ""
}
func (forwarded) IP() string { return "10.88.0.2" }
func (forwarded) Stop(context.Context) (ctrd.ContainerResult, error) {
	return ctrd.ContainerResult{}, nil
}

func serviceAt(addr string) map[string]Service {
	return map[string]Service{"web": forwarded{addr}}
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

	services := serviceAt(web.Listener.Addr().String())
	require.Empty(t, checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "/", Status: http.StatusFound}, services, Vars{}),
		"a redirect is the answer the check looks at")
	f := checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "/", BodyRegex: "secret"}, services, Vars{})
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
	// A path that makes the URL name another host (userinfo@host) still
	// reaches the forward, and nothing else.
	f := checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, Path: "@elsewhere.invalid/"}, serviceAt(web.Listener.Addr().String()), Vars{})
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
	start := time.Now()
	f := checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80, BodyRegex: "^n"}, serviceAt(web.Listener.Addr().String()), Vars{})
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
	old := httpCheckTimeout
	httpCheckTimeout = 200 * time.Millisecond
	defer func() { httpCheckTimeout = old }()
	start := time.Now()
	f := checkHTTP(t.Context(), HTTPCheck{Service: "web", Port: 80}, serviceAt(ln.Addr().String()), Vars{})
	require.Len(t, f, 1)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestScenarioSaysOutputWasCut(t *testing.T) {
	res := ctrd.ContainerResult{Stdout: []byte("y\ny\n"), Truncated: map[string]int64{"stdout": 40000000}}
	require.Empty(t, Check(Expect{StdoutRegex: "^y"}, res, Vars{}), "a check the head passes passes")
	f := Check(Expect{Stdout: new(string)}, res, Vars{})
	require.Equal(t, []string{
		`stdout "y\ny\n", want ""`,
		"stdout was cut: 40000000 bytes, of which the checks saw the first 4 (raise Container.OutputLimit to see more)",
	}, f)
}

func TestScenarioChecks(t *testing.T) {
	v := Vars{Board: "raspi4b-fast", UnameM: "aarch64", Platform: "linux/arm64"}
	res := ctrd.ContainerResult{ExitCode: 3, Stdout: []byte("aarch64\n"), Stderr: []byte("oops\n"), Duration: 2 * time.Second}
	require.Empty(t, Check(Expect{ExitCode: 3, Stdout: Str("${UNAME_M}\n"), StderrRegex: "^oops"}, res, v))
	f := Check(Expect{ExitCode: 0, Stdout: Str("x"), StdoutSHA256: "00", MaxDuration: time.Second}, res, v)
	require.Len(t, f, 4)
	require.Contains(t, f[0], "exit code 3, want 0")
	require.Contains(t, f[2], "output was altered")
	require.Contains(t, f[3], "at most 1s")
}
