package debarchive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/internal/idleread"
)

// fetchError is a failure to reach the mirror (network, HTTP status), as
// opposed to a failure to verify what it sent. Only fetch errors let Index
// fall back to a stale cached index.
type fetchError struct {
	URL        string
	StatusCode int // 0 for a transport error
	Err        error
}

func (e *fetchError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.StatusCode)
	}
	return fmt.Sprintf("GET %s: %v", e.URL, e.Err)
}

func (e *fetchError) Unwrap() error { return e.Err }

func (e *fetchError) retryable() bool {
	return e.StatusCode == 0 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

const fetchAttempts = 3

// withRetry runs attempt up to fetchAttempts times while it fails with a
// retryable fetch error, backing off 1s, 2s.
func (c *Client) withRetry(ctx context.Context, attempt func() error) error {
	var err error
	for i := 0; i < fetchAttempts; i++ {
		if i > 0 {
			d := time.Duration(i) * time.Second
			if c.wait != nil {
				c.wait(d)
			} else {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		err = attempt()
		var fe *fetchError
		if err == nil || ctx.Err() != nil || !errors.As(err, &fe) || !fe.retryable() {
			return err
		}
	}
	return err
}

// get starts a GET and returns the response if its status is 200. A
// server that sends nothing for IdleTimeout, before the headers or in the
// body, ends the request with a (retryable) fetch error.
func (c *Client) get(ctx context.Context, url string) (*http.Response, error) {
	reqCtx, guard := idleread.WithTimeout(ctx, c.idleTimeout())
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
	if err != nil {
		guard.Stop()
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		stall := guard.Err()
		guard.Stop()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case stall != nil:
			return nil, &fetchError{URL: url, Err: stall}
		}
		return nil, &fetchError{URL: url, Err: err}
	}
	resp.Body = guard.Body(resp.Body)
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &fetchError{URL: url, StatusCode: resp.StatusCode}
	}
	return resp, nil
}

// getSmall fetches a whole response of at most limit bytes.
func (c *Client) getSmall(ctx context.Context, url string, limit int64) ([]byte, error) {
	var data []byte
	err := c.withRetry(ctx, func() error {
		resp, err := c.get(ctx, url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return &fetchError{URL: url, Err: err}
		}
		if int64(len(data)) > limit {
			return fmt.Errorf("GET %s: larger than %d bytes", url, limit)
		}
		return nil
	})
	return data, err
}

// fetchVerified streams the first of urls that exists (later ones are tried
// only on 404) into w, checking size and SHA256 as it goes. w is reset with
// reset before each attempt.
func (c *Client) fetchVerified(ctx context.Context, urls []string, size int64, sum string, w io.Writer, reset func() error) error {
	var err error
	for _, url := range urls {
		err = c.withRetry(ctx, func() error {
			if err := reset(); err != nil {
				return err
			}
			resp, err := c.get(ctx, url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return copyVerified(w, resp.Body, url, size, sum)
		})
		var fe *fetchError
		if !errors.As(err, &fe) || fe.StatusCode != http.StatusNotFound {
			return err
		}
	}
	return err
}

// copyVerified copies r to w, refusing more than size bytes, and checks the
// size and SHA256 of what it copied.
func copyVerified(w io.Writer, r io.Reader, url string, size int64, sum string) error {
	h := sha256.New()
	body := &readTracker{r: r}
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(body, size+1))
	if body.err != nil {
		return &fetchError{URL: url, Err: body.err}
	}
	if err != nil {
		return err // writing, not fetching, failed
	}
	if n != size {
		return fmt.Errorf("%w: %s: got %d bytes, the index says %d", ErrVerify, url, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%w: %s: SHA256 %s, the index says %s", ErrVerify, url, got, sum)
	}
	return nil
}

// readTracker remembers a read error, to tell a broken download from a
// failure to write it.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// writeAtomic writes a file so that readers (other processes too) see all
// of it or nothing: see cachefs.WriteFunc.
func writeAtomic(path string, fill func(f *os.File) error) error {
	return cachefs.WriteFunc(path, 0o644, fill, nil)
}
