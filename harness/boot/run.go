package boot

import (
	"context"
	"errors"

	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/state"
)

// Steps are what a session does for the runner; each acts on the session's
// one board. A step that acquires something pushes its undo on the
// session's Cleanup.
type Steps interface {
	// Stage runs fn as one stage, with its timeout, and records its
	// timing; a failure stops the board (every later Stage fails).
	Stage(ctx context.Context, s Stage, fn func(ctx context.Context) error) error
	// Fail records err as the failure of stage s, outside a Stage.
	Fail(s Stage, err error) error
	// Recovered forgets the failure the plan recovers from (a restore
	// that did not load, a USB NIC lost at boot).
	Recovered()
	Logf(format string, args ...any)

	// Overlay makes the run's disk: over the base image (state.None) or
	// over the disk of the store's slot.
	Overlay(ctx context.Context, from state.Slot) error
	// Start starts the machine, over its UART or with its NIC; from, when
	// not state.None, is the saved state it loads (Start returns once it
	// runs).
	Start(ctx context.Context, uart bool, from state.Slot) error
	// WaitKernel waits for the kernel's banner on the console.
	WaitKernel(ctx context.Context) error
	// Login waits for the guest's sshd and logs in; setClock sets the
	// guest's clock too.
	Login(ctx context.Context, setClock bool) error
	// ReadyContainerd installs containerd where it is missing and
	// connects to it.
	ReadyContainerd(ctx context.Context) error
	// ReadyRestored makes a restored board ready: its clock set, its NIC's
	// address awaited when waitNetwork, containerd connected.
	ReadyRestored(ctx context.Context, waitNetwork bool) error
	// Save saves the ready board into the slot.
	Save(ctx context.Context, slot state.Slot, installSerialSSHD bool) error
	// Recover lets a board whose save failed go on: running, connected.
	Recover(ctx context.Context) error
	// PlugNIC plugs the NIC into a board started without it; WaitNetwork
	// waits for its address.
	PlugNIC(ctx context.Context) error
	WaitNetwork(ctx context.Context) error
	// StartTwin starts the board's twin with a network on the run's disk.
	StartTwin(ctx context.Context) error
	// StopTwin flushes the twin's disk and stops it.
	StopTwin(ctx context.Context) error
	// StopMachine stops the machine, before another is started.
	StopMachine(ctx context.Context)
	// Drop removes the slot's entry from the store.
	Drop(slot state.Slot)
}

// Run carries plan p out through s. unlock releases the store's lock the
// session took to decide (a no-op when p.Lock is LockNone); Run releases it
// when the plan says, and in any case before it returns.
func Run(ctx context.Context, p Plan, s Steps, unlock func()) error {
	defer unlock()
	if p.Path == Restore {
		err := s.Stage(ctx, StageRestore, func(ctx context.Context) error {
			if err := s.Overlay(ctx, p.From); err != nil {
				return err
			}
			if err := s.Start(ctx, p.UART, p.From); err != nil {
				return err
			}
			if p.PlugNIC {
				// Plugged now, so the guest finds it while we log in.
				return s.PlugNIC(ctx)
			}
			return nil
		})
		if err == nil {
			unlock()
			err = s.Stage(ctx, StageSSH, func(ctx context.Context) error { return s.Login(ctx, false) })
			if err == nil {
				err = s.Stage(ctx, StageContainerd, func(ctx context.Context) error { return s.ReadyRestored(ctx, p.PlugNIC) })
			}
			if err == nil || !errors.Is(err, ErrRestoredUnusable) || ctx.Err() != nil {
				return err
			}
		}
		// A state that does not load (QEMU upgraded in place, a truncated
		// file), or comes back unusable: drop it and come up as if it had
		// not been there.
		s.Logf("snapshot: restore failed, dropping the state: %v", err)
		s.StopMachine(ctx)
		s.Drop(p.From)
		s.Recovered()
		p = *p.OnRestoreFailure
	}
	if err := s.Overlay(ctx, p.From); err != nil {
		return s.Fail(StageImage, err)
	}
	if p.Lock == LockUntilDisk {
		unlock()
	}
	if p.OnTwin {
		if err := runTwin(ctx, s); err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		if err := s.Stage(ctx, StageQEMU, func(ctx context.Context) error { return s.Start(ctx, p.UART, state.None) }); err != nil {
			return err
		}
		if err := s.Stage(ctx, StageKernel, s.WaitKernel); err != nil {
			return err
		}
		err := s.Stage(ctx, StageSSH, func(ctx context.Context) error { return s.Login(ctx, true) })
		if err == nil {
			break
		}
		if attempt > 1 || !p.RetryLostNIC || !errors.Is(err, machine.ErrUSBNICLost) {
			return err
		}
		// Seen about one cold raspi3b boot in six here: a fresh machine
		// enumerates it again.
		s.Logf("ssh: %v; booting again, once", machine.ErrUSBNICLost)
		s.StopMachine(ctx)
		s.Recovered()
	}
	if !p.Containerd {
		return nil
	}
	if err := s.Stage(ctx, StageContainerd, s.ReadyContainerd); err != nil {
		return err
	}
	if p.Save == state.None {
		return nil
	}
	if err := s.Stage(ctx, StageSnapshot, func(ctx context.Context) error {
		if err := s.Save(ctx, p.Save, p.InstallSerialSSHD); err != nil {
			// The board itself is fine: go on without a snapshot, as long
			// as it answers again.
			s.Logf("snapshot: not saved, later boards will boot cold: %v", err)
			return s.Recover(ctx)
		}
		return nil
	}); err != nil {
		return err
	}
	unlock()
	if p.PlugNIC {
		// Saved without its NIC: give it back.
		return s.Stage(ctx, StageNetwork, func(ctx context.Context) error {
			if err := s.PlugNIC(ctx); err != nil {
				return err
			}
			return s.WaitNetwork(ctx)
		})
	}
	return nil
}

// runTwin installs containerd on the run's disk booted by the board's twin,
// and stops the twin; the board then boots the disk with containerd in it.
func runTwin(ctx context.Context, s Steps) error {
	s.Logf("containerd: installing it on the board's twin with a network first")
	if err := s.Stage(ctx, StageQEMU, s.StartTwin); err != nil {
		return err
	}
	if err := s.Stage(ctx, StageKernel, s.WaitKernel); err != nil {
		return err
	}
	if err := s.Stage(ctx, StageSSH, func(ctx context.Context) error { return s.Login(ctx, true) }); err != nil {
		return err
	}
	if err := s.Stage(ctx, StageContainerd, s.ReadyContainerd); err != nil {
		return err
	}
	return s.Stage(ctx, StageContainerd, s.StopTwin)
}
