package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/shell"
)

// SaveState stops the guest and writes its whole machine state (RAM and
// device state) to path through QEMU's migration, waiting for it to finish.
// The guest stays paused; Resume continues it. The disk is not in the file:
// the caller keeps the overlay as it is at this moment.
//
// QEMU's internal snapshots (snapshot-save) would keep the state inside the
// qcow2 overlay, so every restore would first copy that file; a state file
// is read once by a new QEMU (-incoming) over a fresh overlay instead.
func (m *Machine) SaveState(ctx context.Context, path string) error {
	// The default migration bandwidth cap (32 MiB/s) is for networks, not
	// for a local file.
	if _, err := m.QMP(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if _, err := m.QMP(ctx, "stop", nil); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if _, err := m.QMP(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shell.Quote(path)}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	for {
		out, err := m.QMP(ctx, "query-migrate", nil)
		if err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("save state: migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			_, _ = m.QMP(context.Background(), "migrate_cancel", nil)
			return fmt.Errorf("save state: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Resume continues a paused guest.
func (m *Machine) Resume(ctx context.Context) error {
	_, err := m.QMP(ctx, "cont", nil)
	return err
}

// WaitRunning waits until the guest runs: after -incoming, until the saved
// state is loaded.
func (m *Machine) WaitRunning(ctx context.Context) error {
	for {
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		switch st {
		case "running":
			return nil
		case "inmigrate", "prelaunch", "restore-vm":
		case "paused", "postmigrate":
			// Loaded but not started (e.g. -S): start it.
			if _, err := m.QMP(ctx, "cont", nil); err != nil {
				return err
			}
		default:
			return fmt.Errorf("guest is %q while loading its saved state", st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PlugNIC hot-plugs the board's NIC on the user network (netdev net0),
// for a machine started with Config.SerialSSH: its state was saved without
// the NIC, which QEMU cannot migrate. The guest finds it as it would a USB
// adapter plugged into the real board.
func (m *Machine) PlugNIC(ctx context.Context, device, port string) error {
	args := map[string]any{"driver": device, "netdev": "net0", "id": "nic0"}
	if port != "" {
		args["port"] = port
	}
	if strings.HasSuffix(device, "-pci") {
		args["romfile"] = "" // as NICDevice: no option ROM to find
	}
	if _, err := m.QMP(ctx, "device_add", args); err != nil {
		return fmt.Errorf("plug %s: %w", device, err)
	}
	return nil
}
