package qemu

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/cmdline/*.argv from today's Cmdline")

// goldenConfigs are the machines a board is started as: cold, restoring a
// saved state, with SSH on its UART where it has one, and the probe.
func goldenConfigs(b boards.Profile) map[string]Config {
	cold := Config{
		Board: b, RunDir: "/run/x", Kernel: "/img/vmlinuz", Initrd: "/img/initrd.img", DTB: "/img/board.dtb",
		Append: "root=LABEL=r console=" + b.Kernel.Console, Disk: "/run/x/disk.qcow2", SMP: 2,
		Forwards: []Forward{{HostPort: 40022, GuestPort: 22}},
	}
	restore := cold
	restore.Incoming = "/cache/snapshots/x/vmstate"
	out := map[string]Config{"cold": cold, "restore": restore, "probe": {Board: b, Probe: true}}
	if b.SerialSSH.Enabled() {
		uart := cold
		uart.SerialSSH = "/run/x/ssh-serial.sock"
		out["uart"] = uart
	}
	return out
}

// TestCmdlineTCGIsUnchanged pins every board's TCG command line, byte for
// byte: a saved state's key is made of it, so a change there makes every
// cached state stale. The files were written by the Cmdline that had no
// accelerator choice; TCG, said or left zero, must still give the same,
// and so must what this host chooses unless it is an arm64 host with KVM.
func TestCmdlineTCGIsUnchanged(t *testing.T) {
	for _, b := range boards.All() {
		accels := []Accel{"", TCG}
		if a, why := HostAccel(b); a == TCG {
			t.Logf("%s: tcg on this host: %s", b.Slug, why)
			accels = append(accels, a)
		}
		for name, cfg := range goldenConfigs(b) {
			t.Run(b.Slug+"/"+name, func(t *testing.T) {
				golden := filepath.Join("testdata", "cmdline", b.Slug+"-"+name+".argv")
				if *updateGolden {
					exe, args, err := Cmdline(cfg)
					require.NoError(t, err)
					require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
					require.NoError(t, os.WriteFile(golden, []byte(strings.Join(append([]string{exe}, args...), "\n")+"\n"), 0o644))
				}
				want, err := os.ReadFile(golden)
				require.NoError(t, err)
				for _, a := range accels {
					cfg.Accel = a
					exe, args, err := Cmdline(cfg)
					require.NoError(t, err)
					require.Equal(t, string(want), strings.Join(append([]string{exe}, args...), "\n")+"\n", "accelerator %q", a)
				}
			})
		}
	}
}
