package scenario

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// httpCheckTimeout bounds one expect.http request, body included.
var httpCheckTimeout = 30 * time.Second

// maxHTTPBody is how much of a response body an http check reads: what a
// body_regex can look at.
const maxHTTPBody = 1 << 20

// forwardClient is the HTTP client of an http check. The guest's service
// is untrusted: the client never follows a redirect (a 3xx is the answer
// the check looks at), never uses a proxy, and only ever dials addr, the
// service's forward on 127.0.0.1, whatever the URL says.
func forwardClient(addr string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: httpCheckTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
	}
}

// checkHTTP makes one request to a service's forwarded port.
func checkHTTP(ctx context.Context, h HTTPCheck, services map[string]Service, v Vars) []string {
	what := fmt.Sprintf("GET %s port %d%s", h.Service, h.Port, h.Path)
	svc := services[h.Service]
	if svc == nil {
		return []string{what + ": no such service in the scenario"}
	}
	addr := svc.Endpoint(h.Port)
	if addr == "" {
		return []string{fmt.Sprintf("%s: the service does not publish port %d (add it to its ports)", what, h.Port)}
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	status := h.Status
	if status == 0 {
		status = http.StatusOK
	}
	u, err := url.Parse(path)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return []string{fmt.Sprintf("%s: path %q must be a path on the service, like /health", what, path)}
	}
	u.Scheme, u.Host = "http", addr
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", what, err)}
	}
	resp, err := forwardClient(addr).Do(req)
	if err != nil {
		return []string{fmt.Sprintf("%s from this machine (forwarded %s): %v", what, addr, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if err != nil {
		return []string{fmt.Sprintf("%s from this machine (forwarded %s): read the body: %v", what, addr, err)}
	}
	var f []string
	if resp.StatusCode != status {
		f = append(f, fmt.Sprintf("%s: status %d, want %d", what, resp.StatusCode, status))
	}
	if h.BodyRegex != "" {
		re, err := regexp.Compile(v.expand(h.BodyRegex))
		if err != nil {
			f = append(f, fmt.Sprintf("%s: bad body regex %q: %v", what, h.BodyRegex, err))
		} else if !re.Match(body) {
			f = append(f, fmt.Sprintf("%s: body %q does not match %q", what, clip(body), h.BodyRegex))
		}
	}
	return f
}
