package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/report"
)

// Run runs s on r and checks its expectations. Every failed expectation
// is listed; a container that could not run at all is an Error.
func Run(ctx context.Context, r Runner, s Scenario) *report.Scenario {
	env := r.Env()
	vars := VarsOf(env.Profile)
	out := &report.Scenario{Name: s.Name, Description: s.Description, Source: s.Where(),
		Image: s.Container.Image, Command: s.Container.Cmd}
	if out.Image == "" {
		out.Image = env.DefaultImage
	}
	if reason := s.unmet(env.Profile.Slug, env.HasNetwork); reason != "" {
		out.NotApplicable = reason
		return out
	}
	start := time.Now()
	out.StartedAt = start.UTC()
	defer func() { out.Seconds = time.Since(start).Seconds() }()
	fail := func(what string, err error) *report.Scenario {
		out.Error = err.Error()
		out.Failures = append(out.Failures, what+": "+err.Error())
		return out
	}

	var network *ctrd.Network
	if s.Network == NetworkBridge {
		n, err := r.CreateNetwork(ctx, "s"+randomHex(4))
		if err != nil {
			return fail("network did not come up", err)
		}
		network = n
		defer func() {
			if err := n.Remove(context.WithoutCancel(ctx)); err != nil {
				out.Failures = append(out.Failures, "network not removed: "+err.Error())
			}
		}()
	} else if s.Network != "" {
		return fail("bad scenario", fmt.Errorf("network %q: only %q is known", s.Network, NetworkBridge))
	}

	services := map[string]Service{}
	var started []Service
	// Services stop after the check, in reverse order, and what they did
	// goes into the report.
	defer func() {
		for i := len(started) - 1; i >= 0; i-- {
			svc := started[i]
			res, err := svc.Stop(context.WithoutCancel(ctx))
			c := s.Services[i]
			rs := report.Service{Name: c.Name, Image: c.Image, Command: c.Cmd, IP: svc.IP(),
				ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr), Truncated: res.Truncated}
			if rs.Image == "" {
				rs.Image = env.DefaultImage
			}
			out.Services = append([]report.Service{rs}, out.Services...)
			if err != nil {
				out.Failures = append(out.Failures, fmt.Sprintf("service %s: %v", c.Name, err))
			}
		}
		out.Passed = len(out.Failures) == 0 && out.Error == ""
	}()
	for _, c := range s.Services {
		c.Network = network
		svc, err := r.StartService(ctx, c)
		if err != nil {
			return fail("service "+c.Name+" did not start", err)
		}
		services[c.Name] = svc
		started = append(started, svc)
	}
	for _, h := range s.Expect.HTTP {
		out.Failures = append(out.Failures, checkHTTP(ctx, h, services, vars)...)
	}
	if len(s.Container.Cmd) == 0 && len(s.Services) > 0 {
		return out // the services were the check
	}

	c := s.Container
	c.Network = network
	if c.Network != nil && c.Name == "" {
		c.Name = "check"
	}
	for p := range s.Expect.Files {
		c.Collect = append(c.Collect, p)
	}
	sort.Strings(c.Collect)
	c.Timeout = s.Expect.MaxDuration
	if c.Timeout == 0 {
		c.Timeout = DefaultMaxDuration
	}
	res, err := r.Run(ctx, c)
	if te := (*ctrd.TimeoutError)(nil); errors.As(err, &te) {
		// A failure of the scenario, not of the harness: the container
		// was killed and what it wrote until then is kept.
		out.TimedOut = true
		out.ExitCode, out.Stdout, out.Stderr = res.ExitCode, string(res.Stdout), string(res.Stderr)
		out.Truncated = res.Truncated
		out.Failures = append(out.Failures, timeoutFailure(s.Expect.MaxDuration, te.Limit))
		if rest := afterTimeout(err); rest != nil {
			out.Failures = append(out.Failures, "after the timeout: "+rest.Error())
		}
		return out
	}
	if err != nil {
		return fail("container did not run", err)
	}
	out.ExitCode, out.Stdout, out.Stderr = res.ExitCode, string(res.Stdout), string(res.Stderr)
	out.Truncated = res.Truncated
	out.Failures = append(out.Failures, Check(s.Expect, res, vars)...)
	if len(res.Files) > 0 {
		out.Files = map[string]string{}
		for p, content := range res.Files {
			out.Files[p] = clip(content)
		}
	}
	return out
}

// DefaultMaxDuration is the hard limit on a scenario's container when
// its expect sets no max_duration: long enough for a compile on an
// emulated board, short enough that a hung container does not hold a
// nightly run until its CI job is killed.
const DefaultMaxDuration = 10 * time.Minute

// timeoutFailure says that the container outlived its limit and which
// limit that was.
func timeoutFailure(set, limit time.Duration) string {
	if set > 0 {
		return fmt.Sprintf("timed out after %s (max_duration)", limit)
	}
	return fmt.Sprintf("timed out after %s (the default limit; set expect.max_duration for a longer one)", limit)
}

// afterTimeout is what else went wrong with a timed-out container (its
// removal, reading its output), or nil: err without the timeout itself
// and the wrappers around it.
func afterTimeout(err error) error {
	var te *ctrd.TimeoutError
	switch {
	case err == nil || !errors.As(err, &te):
		return err
	case errors.Unwrap(err) != nil:
		return afterTimeout(errors.Unwrap(err))
	}
	var rest []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			rest = append(rest, afterTimeout(e))
		}
	}
	return errors.Join(rest...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
