package idleread

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stallingServer sends its headers and first bytes, then nothing until the
// client goes away.
func stallingServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStalledBodyEnds(t *testing.T) {
	srv := stallingServer(t)
	ctx, g := WithTimeout(context.Background(), 200*time.Millisecond)
	defer g.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body := g.Body(resp.Body)
	defer body.Close()
	start := time.Now()
	data, err := io.ReadAll(body)
	require.ErrorIs(t, err, ErrStalled)
	require.ErrorContains(t, err, "nothing received for 200ms")
	require.Equal(t, "first bytes", string(data))
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestSlowButMovingBodyIsRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 5; i++ {
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer srv.Close()
	ctx, g := WithTimeout(context.Background(), 300*time.Millisecond)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body := g.Body(resp.Body)
	data, err := io.ReadAll(body)
	require.NoError(t, err, "500ms in all, but never 300ms without a byte")
	require.Equal(t, "xxxxx", string(data))
	require.NoError(t, body.Close())
	require.NoError(t, g.Err())
}

func TestStalledHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	ctx, g := WithTimeout(context.Background(), 200*time.Millisecond)
	defer g.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	require.ErrorIs(t, g.Err(), ErrStalled)
}
