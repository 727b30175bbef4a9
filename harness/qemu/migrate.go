package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"

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
	unlimited := int64(1) << 40
	if err := m.qmp(ctx, "migrate-set-parameters", func(r *raw.Monitor) error {
		return r.MigrateSetParameters(&raw.MigrateSetParameters{MaxBandwidth: &unlimited})
	}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := m.Pause(ctx); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	uri := "exec:cat > " + shell.Quote(path)
	if err := m.qmp(ctx, "migrate", func(r *raw.Monitor) error { return r.Migrate(uri, nil, nil, nil) }); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	for {
		var info raw.MigrationInfo
		if err := m.qmp(ctx, "query-migrate", func(r *raw.Monitor) (err error) {
			info, err = r.QueryMigrate()
			return err
		}); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		if info.Status != nil {
			switch *info.Status {
			case raw.MigrationStatusCompleted:
				return nil
			case raw.MigrationStatusFailed, raw.MigrationStatusCancelled:
				desc := ""
				if info.ErrorDesc != nil {
					desc = *info.ErrorDesc
				}
				return fmt.Errorf("save state: migration %s: %s", info.Status, desc)
			}
		}
		select {
		case <-ctx.Done():
			_ = m.qmp(context.Background(), "migrate_cancel", func(r *raw.Monitor) error { return r.MigrateCancel() })
			return fmt.Errorf("save state: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Resume continues a paused guest.
func (m *Machine) Resume(ctx context.Context) error {
	return m.qmp(ctx, "cont", func(r *raw.Monitor) error { return r.Cont() })
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
			if err := m.Resume(ctx); err != nil {
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

// deviceAdd is QMP's device_add with the properties a NIC needs. go-qemu's
// typed DeviceAdd takes only a driver, bus and id; device_add passes any
// other property through, and a NIC needs netdev (and port, romfile).
type deviceAdd struct {
	Driver  string  `json:"driver"`
	ID      string  `json:"id"`
	Netdev  string  `json:"netdev"`
	Port    string  `json:"port,omitempty"`
	Romfile *string `json:"romfile,omitempty"`
}

// PlugNIC hot-plugs the board's NIC on the user network (netdev net0),
// for a machine started with Config.SerialSSH: its state was saved without
// the NIC, which QEMU cannot migrate. The guest finds it as it would a USB
// adapter plugged into the real board.
func (m *Machine) PlugNIC(ctx context.Context, device, port string) error {
	args := deviceAdd{Driver: device, Netdev: "net0", ID: "nic0", Port: port}
	if strings.HasSuffix(device, "-pci") {
		none := "" // as NICDevice: no option ROM to find
		args.Romfile = &none
	}
	cmd, err := json.Marshal(map[string]any{"execute": "device_add", "arguments": args})
	if err != nil {
		return err
	}
	if err := m.qmp(ctx, "device_add", func(*raw.Monitor) error {
		m.monMu.Lock()
		mon := m.mon
		m.monMu.Unlock()
		_, err := mon.Run(cmd)
		return err
	}); err != nil {
		return fmt.Errorf("plug %s: %w", device, err)
	}
	return nil
}
