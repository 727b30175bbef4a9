package qemu

import (
	"context"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want string
	}{
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n", "7.2.22"},
		{"QEMU emulator version 10.0.3 (Debian 1:10.0.3+ds-0+deb13u1)\n", "10.0.3"},
		{"QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)", "8.2.2"},
		{"QEMU emulator version 9.0\n", "9.0.0"},
	} {
		v, err := ParseVersion(tc.out)
		require.NoError(t, err, tc.out)
		require.Equal(t, tc.want, v.String())
	}
	_, err := ParseVersion("qemu-system-aarch64: command not found")
	require.ErrorContains(t, err, "no QEMU version")
}

func TestVersionAtLeast(t *testing.T) {
	v := func(s string) Version {
		x, err := ParseVersion("QEMU emulator version " + s)
		require.NoError(t, err)
		return x
	}
	require.True(t, v("7.2.22").AtLeast(""))
	require.False(t, v("7.2.22").AtLeast("9.0"))
	require.False(t, v("8.2.2").AtLeast("9.0"))
	require.True(t, v("9.0.0").AtLeast("9.0"))
	require.True(t, v("10.0.3").AtLeast("9.0"), "10 > 9, not compared as text")
	require.True(t, v("9.1.0").AtLeast("9.0.2"))
	require.False(t, v("9.0.1").AtLeast("9.0.2"))
}

func TestCheckVersionNamesTheFastTier(t *testing.T) {
	faithful := boards.Profile{Slug: "raspi4b", Tier: boards.Faithful, Machine: "raspi4b", MinQEMU: "9.0", QEMUBinary: "qemu-system-aarch64"}
	old, err := ParseVersion("QEMU emulator version 7.2.22 (Debian)")
	require.NoError(t, err)
	err = CheckVersion(faithful, old)
	require.ErrorIs(t, err, ErrQEMUTooOld)
	require.ErrorContains(t, err, "board raspi4b needs QEMU 9.0 or newer for its raspi4b machine; this host has 7.2.22")
	require.ErrorContains(t, err, "use --board raspi4b-fast")
	newer, err := ParseVersion("QEMU emulator version 10.0.3")
	require.NoError(t, err)
	require.NoError(t, CheckVersion(faithful, newer))
}

func TestCmdlineProbe(t *testing.T) {
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	exe, args, err := Cmdline(Config{Board: b, Probe: true})
	require.NoError(t, err, "a probe needs no kernel, disk or run directory")
	require.Equal(t, "qemu-system-aarch64", exe)
	require.Equal(t, []string{"stdio"}, argPairs(args, "-qmp"))
	require.Contains(t, args, "-S")
	require.Empty(t, argPairs(args, "-kernel"))
	require.Empty(t, argPairs(args, "-chardev"))
	require.Empty(t, argPairs(args, "-pidfile"))
	require.Equal(t, []string{"driver=null-co,if=none,id=disk0,discard=unmap"}, argPairs(args, "-drive"))
	require.Equal(t, []string{"virtio-blk-pci,drive=disk0", "virtio-net-pci,netdev=net0,romfile=", "virtio-rng-pci"}, argPairs(args, "-device"),
		"the same devices as a real boot")
}

// Probe runs the real QEMU (paused, no kernel): no VM boots.
func TestProbeEveryBoard(t *testing.T) {
	for _, b := range boards.All() {
		t.Run(b.Slug, func(t *testing.T) {
			if _, err := exec.LookPath(b.QEMUBinary); err != nil {
				t.Skipf("%s not installed", b.QEMUBinary)
			}
			v, err := Probe(context.Background(), b)
			if !v.AtLeast(b.MinQEMU) {
				require.ErrorIs(t, err, ErrQEMUTooOld)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestProbeReportsWhatQEMURefuses(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 not installed")
	}
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	badCPU := b
	badCPU.CPU = "cortex-a99"
	_, err = Probe(context.Background(), badCPU)
	require.ErrorContains(t, err, "refused board raspi4b-fast")
	require.ErrorContains(t, err, "cortex-a99")

	badNIC := b
	badNIC.NIC = "no-such-nic"
	_, err = Probe(context.Background(), badNIC)
	require.ErrorContains(t, err, "no-such-nic")

	badMachine := b
	badMachine.Machine = "raspi9z"
	_, err = Probe(context.Background(), badMachine)
	require.ErrorContains(t, err, "unsupported machine type")
}
