package boot

import (
	"context"
	"errors"
	"sync"
)

// Cleanup is what a session must undo, in the reverse of the order it was
// done: each resource pushes its undo as it is acquired, so that a session
// that fails half way undoes exactly what it did.
type Cleanup struct {
	mu  sync.Mutex
	fns []func(ctx context.Context) error
}

// Push adds an undo, run before every undo pushed earlier.
func (c *Cleanup) Push(fn func(ctx context.Context) error) {
	c.mu.Lock()
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

// Run runs every undo, last pushed first, and joins their errors; the
// stack is empty afterwards, so a second Run does nothing.
func (c *Cleanup) Run(ctx context.Context) error {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		errs = append(errs, fns[i](ctx))
	}
	return errors.Join(errs...)
}
