package harness

import (
	"context"
	"fmt"
	"time"
)

// requirement is one thing a stage waits for: checked every interval until
// it holds, the context ends, or alive() says the machine is gone.
type requirement struct {
	desc     string
	interval time.Duration
	alive    func() error
	check    func(ctx context.Context) error
}

func poll(ctx context.Context, r requirement) error {
	var last error
	for {
		if r.alive != nil {
			if err := r.alive(); err != nil {
				return fmt.Errorf("waiting for %s: %w", r.desc, err)
			}
		}
		if last = r.check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", r.desc, ctx.Err(), last)
		case <-time.After(r.interval):
		}
	}
}
