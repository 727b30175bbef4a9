// Package idleread ends an HTTP download whose server stops sending. A
// context deadline bounds a whole download, which a slow but moving one may
// rightly exceed; what must not happen is a body that sends nothing at all
// while the downloader holds a lock other processes wait on.
package idleread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrStalled is the cause of a download that sent nothing for its idle
// timeout.
var ErrStalled = errors.New("the server stopped sending")

// Guard watches one request: the response's headers and every read of its
// body must come within the idle timeout of the last progress.
type Guard struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	timer   *time.Timer
}

// WithTimeout returns a context for the request and its Guard. Stop the
// Guard when the download is over.
func WithTimeout(parent context.Context, timeout time.Duration) (context.Context, *Guard) {
	ctx, cancel := context.WithCancelCause(parent)
	g := &Guard{ctx: ctx, cancel: cancel, timeout: timeout}
	g.timer = time.AfterFunc(timeout, func() {
		cancel(fmt.Errorf("%w: nothing received for %s", ErrStalled, timeout))
	})
	return ctx, g
}

// Stop ends the watch and releases the context.
func (g *Guard) Stop() {
	g.timer.Stop()
	g.cancel(nil)
}

// Err is why the request was ended: ErrStalled (wrapped) when the server
// went idle, else nil.
func (g *Guard) Err() error {
	if err := context.Cause(g.ctx); errors.Is(err, ErrStalled) {
		return err
	}
	return nil
}

// Body wraps a response body: each read that brings data restarts the idle
// timeout, a read ended by it returns the stall as its error, and closing
// it stops the Guard.
func (g *Guard) Body(body io.ReadCloser) io.ReadCloser {
	return &guardedBody{ReadCloser: body, g: g}
}

type guardedBody struct {
	io.ReadCloser
	g *Guard
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.g.timer.Reset(b.g.timeout)
	}
	if err != nil && err != io.EOF {
		if stall := b.g.Err(); stall != nil {
			return n, stall
		}
	}
	return n, err
}

func (b *guardedBody) Close() error {
	err := b.ReadCloser.Close()
	b.g.Stop()
	return err
}
