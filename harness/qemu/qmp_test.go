package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/qmptest"
	"github.com/stretchr/testify/require"
)

// fakeQEMU answers QMP as QEMU does, through go-qemu's qmptest monitor,
// and records each command with its arguments.
type fakeQEMU struct {
	mu       sync.Mutex
	log      []string
	status   []string // query-status answers, in turn; the last repeats
	migrate  []string // query-migrate statuses, in turn
	failWith map[string]error
}

func (f *fakeQEMU) run(cmd qmp.Command) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	entry := cmd.Execute
	if b, _ := json.Marshal(cmd.Args); cmd.Args != nil && string(b) != "{}" {
		entry += " " + string(b)
	}
	f.log = append(f.log, entry)
	if err := f.failWith[cmd.Execute]; err != nil {
		return nil, err
	}
	switch cmd.Execute {
	case "query-status":
		st := f.status[0]
		if len(f.status) > 1 {
			f.status = f.status[1:]
		}
		return map[string]any{"return": map[string]any{"status": st, "running": st == "running"}}, nil
	case "query-migrate":
		st := f.migrate[0]
		if len(f.migrate) > 1 {
			f.migrate = f.migrate[1:]
		}
		ret := map[string]any{"status": st}
		if st == "failed" {
			ret["error-desc"] = "disk full"
		}
		return map[string]any{"return": ret}, nil
	}
	return map[string]any{"return": map[string]any{}}, nil
}

func (f *fakeQEMU) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func fakeMachine(f *fakeQEMU) *Machine {
	return NewMachine(Config{}, qmptest.NewMonitor(f.run), nil)
}

func TestSaveStateMigratesToAFileAndWaits(t *testing.T) {
	f := &fakeQEMU{migrate: []string{"setup", "active", "completed"}}
	m := fakeMachine(f)
	require.NoError(t, m.SaveState(t.Context(), "/snap/it's/vmstate"))
	require.Equal(t, []string{
		`migrate-set-parameters {"max-bandwidth":1099511627776}`,
		"stop",
		`migrate {"uri":"exec:cat \u003e '/snap/it'\\''s/vmstate'"}`,
		"query-migrate", "query-migrate", "query-migrate",
	}, f.commands())
}

func TestSaveStateSaysWhyMigrationFailed(t *testing.T) {
	f := &fakeQEMU{migrate: []string{"active", "failed"}}
	err := fakeMachine(f).SaveState(t.Context(), "/s")
	require.ErrorContains(t, err, "save state: migration failed: disk full")
}

func TestSaveStateCancelsWhenTheContextEnds(t *testing.T) {
	f := &fakeQEMU{migrate: []string{"active"}}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := fakeMachine(f).SaveState(ctx, "/s")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	cmds := f.commands()
	require.Equal(t, "migrate_cancel", cmds[len(cmds)-1])
}

func TestWaitRunningStartsALoadedGuest(t *testing.T) {
	f := &fakeQEMU{status: []string{"inmigrate", "paused", "running"}}
	require.NoError(t, fakeMachine(f).WaitRunning(t.Context()))
	require.Equal(t, []string{"query-status", "query-status", "cont", "query-status"}, f.commands())

	f = &fakeQEMU{status: []string{"internal-error"}}
	require.ErrorContains(t, fakeMachine(f).WaitRunning(t.Context()), `guest is "internal-error" while loading its saved state`)
}

func TestPlugNICSendsTheNICsProperties(t *testing.T) {
	f := &fakeQEMU{}
	m := fakeMachine(f)
	require.NoError(t, m.PlugNIC(t.Context(), "usb-net", "1"))
	require.NoError(t, m.PlugNIC(t.Context(), "virtio-net-pci", ""))
	require.Equal(t, []string{
		`device_add {"driver":"usb-net","id":"nic0","netdev":"net0","port":"1"}`,
		`device_add {"driver":"virtio-net-pci","id":"nic0","netdev":"net0","romfile":""}`,
	}, f.commands())

	f.failWith = map[string]error{"device_add": errors.New("Bus 'usb-bus.0' not found")}
	require.ErrorContains(t, m.PlugNIC(t.Context(), "usb-net", "1"), "plug usb-net: qmp device_add: Bus 'usb-bus.0' not found")
}

func TestStopQuitsAndStatusReadsTheRunState(t *testing.T) {
	f := &fakeQEMU{status: []string{"paused"}}
	m := fakeMachine(f)
	st, err := m.Status(t.Context())
	require.NoError(t, err)
	require.Equal(t, "paused", st)
	require.NoError(t, m.Pause(t.Context()))
	require.NoError(t, m.Resume(t.Context()))
	require.NoError(t, m.Stop(t.Context(), false, 0))
	require.ErrorIs(t, m.Alive(), ErrExited)
	require.Equal(t, []string{"query-status", "stop", "cont", "quit"}, f.commands())
	_, err = m.Status(t.Context())
	require.ErrorIs(t, err, ErrExited, "no QMP once it is gone")
}
