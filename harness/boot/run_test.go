package boot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/state"
)

// recorder carries a plan out on paper: it logs each step, fails the ones
// it is told to, and pushes an undo for what a real session would have to
// undo (a machine, a connection) on its Cleanup, as a session does.
type recorder struct {
	log      []string
	fail     map[string][]error // step → errors of its calls, in turn
	failed   error              // the board's failure, as Stage keeps it
	cleanup  Cleanup
	machines int
}

func (r *recorder) do(step string) error {
	r.log = append(r.log, step)
	if errs := r.fail[step]; len(errs) > 0 {
		r.fail[step] = errs[1:]
		return errs[0]
	}
	return nil
}

func (r *recorder) Stage(ctx context.Context, s Stage, fn func(ctx context.Context) error) error {
	if r.failed != nil {
		return r.failed
	}
	r.log = append(r.log, "["+string(s)+"]")
	if err := fn(ctx); err != nil {
		return r.Fail(s, err)
	}
	return nil
}

func (r *recorder) Fail(s Stage, err error) error {
	r.failed = fmt.Errorf("%s: %w", s, err)
	return r.failed
}
func (r *recorder) Recovered()          { r.failed = nil; r.log = append(r.log, "recovered") }
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Overlay(_ context.Context, from state.Slot) error {
	return r.do("overlay on " + string(orBase(from)))
}
func (r *recorder) Start(_ context.Context, uart bool, from state.Slot) error {
	how := "with NIC"
	if uart {
		how = "over UART"
	}
	step := "start " + how
	if from != state.None {
		step += " from " + string(from)
	}
	if err := r.do(step); err != nil {
		return err
	}
	r.machines++
	n := r.machines
	r.cleanup.Push(func(context.Context) error { r.log = append(r.log, fmt.Sprintf("stop machine %d", n)); return nil })
	return nil
}
func (r *recorder) StartTwin(context.Context) error {
	if err := r.do("start twin with NIC"); err != nil {
		return err
	}
	r.machines++
	n := r.machines
	r.cleanup.Push(func(context.Context) error { r.log = append(r.log, fmt.Sprintf("stop machine %d", n)); return nil })
	return nil
}
func (r *recorder) StopTwin(context.Context) error {
	if err := r.do("sync, stop twin"); err != nil {
		return err
	}
	r.log = append(r.log, fmt.Sprintf("stop machine %d", r.machines))
	return nil
}
func (r *recorder) WaitKernel(context.Context) error { return r.do("kernel") }
func (r *recorder) Login(_ context.Context, setClock bool) error {
	if err := r.do(map[bool]string{true: "login, clock", false: "login"}[setClock]); err != nil {
		return err
	}
	r.cleanup.Push(func(context.Context) error { r.log = append(r.log, "close ssh"); return nil })
	return nil
}
func (r *recorder) ReadyContainerd(context.Context) error { return r.do("containerd") }
func (r *recorder) ReadyRestored(_ context.Context, waitNetwork bool) error {
	return r.do(map[bool]string{true: "ready restored, network", false: "ready restored"}[waitNetwork])
}
func (r *recorder) Save(_ context.Context, slot state.Slot, serialSSHD bool) error {
	step := "save " + string(slot)
	if serialSSHD {
		step += " with serial sshd"
	}
	return r.do(step)
}
func (r *recorder) Recover(context.Context) error     { return r.do("recover") }
func (r *recorder) PlugNIC(context.Context) error     { return r.do("plug NIC") }
func (r *recorder) WaitNetwork(context.Context) error { return r.do("network") }
func (r *recorder) StopMachine(context.Context) {
	r.log = append(r.log, fmt.Sprintf("stop machine %d", r.machines))
}
func (r *recorder) Drop(slot state.Slot) { r.log = append(r.log, "drop "+string(slot)) }

func orBase(s state.Slot) state.Slot {
	if s == state.None {
		return "base"
	}
	return s
}

// run carries p out, then closes the session as Board.Close does.
func run(t *testing.T, p Plan, fail map[string][]error) ([]string, error) {
	r := &recorder{fail: fail}
	unlocked := false
	err := Run(t.Context(), p, r, func() {
		if !unlocked {
			r.log = append(r.log, "unlock")
		}
		unlocked = true
	})
	r.log = append(r.log, "--close--")
	require.NoError(t, r.cleanup.Run(t.Context()))
	return r.log, err
}

func plan(t *testing.T, slug string, has state.Have) Plan {
	return Decide(board(t, slug, false), has, Options{Snapshots: true, Containerd: true})
}

var (
	errNoLoad = errors.New("snapshot load: truncated file")
	errBoom   = errors.New("boom")
)

// Every path of TestDecide carried out, and the ways each fails.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		plan func(t *testing.T) Plan
		fail map[string][]error
		want []string
		err  error
	}{
		{name: "cold, saved whole", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{}) },
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save full", "unlock", "--close--", "close ssh", "stop machine 1"}},
		{name: "restore", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{Full: true}) },
			want: []string{"[restore]", "overlay on full", "start with NIC from full", "unlock", "[ssh]", "login", "[containerd]", "ready restored",
				"--close--", "close ssh", "stop machine 1"}},
		{name: "restore fails to load: drop it, boot cold, save again", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{Full: true}) },
			fail: map[string][]error{"start with NIC from full": {errNoLoad}},
			want: []string{"[restore]", "overlay on full", "start with NIC from full", "stop machine 0", "drop full", "recovered",
				"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save full", "unlock", "--close--", "close ssh", "stop machine 1"}},
		{name: "restored but SSH fails: the lock is free, the machine stopped at close",
			plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{Full: true}) },
			fail: map[string][]error{"login": {errBoom}}, err: errBoom,
			want: []string{"[restore]", "overlay on full", "start with NIC from full", "unlock", "[ssh]", "login", "--close--", "stop machine 1"}},

		{name: "raspi3b cold: disk saved with the serial sshd", plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{}) },
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save disk with serial sshd", "unlock", "--close--", "close ssh", "stop machine 1"}},
		{name: "raspi3b NIC lost at boot: booted again, once", plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{}) },
			fail: map[string][]error{"login, clock": {fmt.Errorf("waiting for ssh: %w", machine.ErrUSBNICLost)}},
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "stop machine 1", "recovered",
				"[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save disk with serial sshd", "unlock", "--close--", "close ssh", "stop machine 2", "stop machine 1"}},
		{name: "raspi3b NIC lost twice: the board fails", plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{}) },
			fail: map[string][]error{"login, clock": {machine.ErrUSBNICLost, machine.ErrUSBNICLost}}, err: machine.ErrUSBNICLost,
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "stop machine 1", "recovered",
				"[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "unlock", "--close--", "stop machine 2", "stop machine 1"}},
		{name: "a board without the retry does not boot again", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{}) },
			fail: map[string][]error{"login, clock": {machine.ErrUSBNICLost}}, err: machine.ErrUSBNICLost,
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "unlock", "--close--", "stop machine 1"}},
		{name: "raspi3b serial save: disk booted over the UART, state saved, NIC plugged",
			plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true}) },
			want: []string{"overlay on disk", "[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save serial", "unlock", "[network]", "plug NIC", "network", "--close--", "close ssh", "stop machine 1"}},
		{name: "raspi3b save fails: the board goes on, NIC plugged all the same",
			plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true}) },
			fail: map[string][]error{"save serial": {errBoom}},
			want: []string{"overlay on disk", "[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save serial", "recover", "unlock", "[network]", "plug NIC", "network", "--close--", "close ssh", "stop machine 1"}},
		{name: "raspi3b restore of the serial state: NIC plugged while logging in",
			plan: func(t *testing.T) Plan {
				return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true, Serial: true})
			},
			want: []string{"[restore]", "overlay on serial", "start over UART from serial", "plug NIC", "unlock", "[ssh]", "login", "[containerd]", "ready restored, network",
				"--close--", "close ssh", "stop machine 1"}},
		{name: "raspi3b serial state fails to load: its disk booted over the UART, the state saved again",
			plan: func(t *testing.T) Plan {
				return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true, Serial: true})
			},
			fail: map[string][]error{"plug NIC": {errBoom}},
			want: []string{"[restore]", "overlay on serial", "start over UART from serial", "plug NIC", "stop machine 1", "drop serial", "recovered",
				"overlay on disk", "[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save serial", "unlock", "[network]", "plug NIC", "network", "--close--", "close ssh", "stop machine 2", "stop machine 1"}},
		{name: "raspi3b restored but a CPU's timer is lost: the state dropped, saved again from its disk",
			plan: func(t *testing.T) Plan {
				return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true, Serial: true})
			},
			fail: map[string][]error{"ready restored, network": {fmt.Errorf("%w: CPU [2]", ErrRestoredUnusable)}},
			want: []string{"[restore]", "overlay on serial", "start over UART from serial", "plug NIC", "unlock", "[ssh]", "login", "[containerd]", "ready restored, network",
				"stop machine 1", "drop serial", "recovered",
				"overlay on disk", "[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save serial", "[network]", "plug NIC", "network", "--close--", "close ssh", "stop machine 2", "close ssh", "stop machine 1"}},
		{name: "raspi3b restored but it does not log in soon: the state dropped, saved again from its disk",
			plan: func(t *testing.T) Plan {
				return plan(t, "raspi3b", state.Have{Disk: true, DiskSerialSSHD: true, Serial: true})
			},
			fail: map[string][]error{"login": {fmt.Errorf("%w: no login within 30s", ErrRestoredUnusable)}},
			want: []string{"[restore]", "overlay on serial", "start over UART from serial", "plug NIC", "unlock", "[ssh]", "login",
				"stop machine 1", "drop serial", "recovered",
				"overlay on disk", "[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save serial", "[network]", "plug NIC", "network", "--close--", "close ssh", "stop machine 2", "stop machine 1"}},
		{name: "restored but containerd fails otherwise: the state is kept, the board fails",
			plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{Full: true}) },
			fail: map[string][]error{"ready restored": {errBoom}}, err: errBoom,
			want: []string{"[restore]", "overlay on full", "start with NIC from full", "unlock", "[ssh]", "login", "[containerd]", "ready restored",
				"--close--", "close ssh", "stop machine 1"}},
		{name: "raspi3b disk only: the lock is let go once the overlay is made",
			plan: func(t *testing.T) Plan { return plan(t, "raspi3b", state.Have{Disk: true}) },
			want: []string{"overlay on disk", "unlock", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"--close--", "close ssh", "stop machine 1"}},
		{name: "raspi4b cold over the UART", plan: func(t *testing.T) Plan { return plan(t, "raspi4b", state.Have{}) },
			want: []string{"overlay on base", "[qemu]", "start twin with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd", "[containerd]", "sync, stop twin", "stop machine 1",
				"[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save full", "unlock", "--close--", "close ssh", "stop machine 2", "close ssh", "stop machine 1"}},
		{name: "raspi4b: containerd fails on the twin, the twin is stopped at close", plan: func(t *testing.T) Plan { return plan(t, "raspi4b", state.Have{}) },
			fail: map[string][]error{"containerd": {errBoom}}, err: errBoom,
			want: []string{"overlay on base", "[qemu]", "start twin with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"unlock", "--close--", "close ssh", "stop machine 1"}},
		{name: "raspi4b restore over the UART", plan: func(t *testing.T) Plan { return plan(t, "raspi4b", state.Have{Full: true}) },
			want: []string{"[restore]", "overlay on full", "start over UART from full", "unlock", "[ssh]", "login", "[containerd]", "ready restored",
				"--close--", "close ssh", "stop machine 1"}},
		{name: "raspi4b restore fails: cold, still over the UART", plan: func(t *testing.T) Plan { return plan(t, "raspi4b", state.Have{Full: true}) },
			fail: map[string][]error{"start over UART from full": {errNoLoad}},
			want: []string{"[restore]", "overlay on full", "start over UART from full", "stop machine 0", "drop full", "recovered",
				"overlay on base", "[qemu]", "start twin with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd", "[containerd]", "sync, stop twin", "stop machine 1",
				"[qemu]", "start over UART", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"[snapshot]", "save full", "unlock", "--close--", "close ssh", "stop machine 2", "close ssh", "stop machine 1"}},

		{name: "the overlay fails: nothing started, nothing to stop", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{}) },
			fail: map[string][]error{"overlay on base": {errBoom}}, err: errBoom,
			want: []string{"overlay on base", "unlock", "--close--"}},
		{name: "the kernel never prints: the machine is stopped at close", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{}) },
			fail: map[string][]error{"kernel": {errBoom}}, err: errBoom,
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "unlock", "--close--", "stop machine 1"}},
		{name: "containerd fails: connection and machine undone in reverse", plan: func(t *testing.T) Plan { return plan(t, "raspi4b-fast", state.Have{}) },
			fail: map[string][]error{"containerd": {errBoom}}, err: errBoom,
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "[containerd]", "containerd",
				"unlock", "--close--", "close ssh", "stop machine 1"}},
		{name: "SSH only: no containerd, nothing saved", plan: func(t *testing.T) Plan {
			return Decide(board(t, "raspi4b-fast", false), state.Have{}, Options{Snapshots: true})
		},
			want: []string{"overlay on base", "[qemu]", "start with NIC", "[kernel]", "kernel", "[ssh]", "login, clock", "unlock", "--close--", "close ssh", "stop machine 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, tc.plan(t), tc.fail)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, got, "\n%s", strings.Join(got, "\n"))
		})
	}
}

func TestCleanupRunsInReverseOnce(t *testing.T) {
	var c Cleanup
	var order []int
	for i := range 3 {
		c.Push(func(context.Context) error {
			order = append(order, i)
			if i == 1 {
				return errBoom
			}
			return nil
		})
	}
	require.ErrorIs(t, c.Run(t.Context()), errBoom)
	require.Equal(t, []int{2, 1, 0}, order, "every undo runs, even after one failed")
	require.NoError(t, c.Run(t.Context()))
	require.Equal(t, []int{2, 1, 0}, order, "a second Run does nothing")
}
