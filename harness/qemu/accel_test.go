package qemu

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

func TestChooseAccel(t *testing.T) {
	arm64KVM := Host{Arch: "arm64", KVM: true, KVMAArch32: true}
	arm64KVMNo32 := Host{Arch: "arm64", KVM: true}
	arm64NoKVM := Host{Arch: "arm64", Why: "/dev/kvm is not usable: no such file or directory"}
	amd64KVM := Host{Arch: "amd64", KVM: true}
	for _, tc := range []struct {
		host  Host
		board string
		want  Accel
		why   string
	}{
		// The fast tier gets KVM on an arm64 host that has it.
		{arm64KVM, "raspi4b-fast", KVM, "usable /dev/kvm"},
		{arm64KVM, "raspi3b-fast", KVM, "usable /dev/kvm"},
		{arm64KVM, "beaglebone-black-fast", KVM, "usable /dev/kvm"},
		// A 32-bit board only where KVM runs an AArch32 EL1.
		{arm64KVMNo32, "beaglebone-black-fast", TCG, "32-bit"},
		{arm64KVMNo32, "raspi4b-fast", KVM, "usable /dev/kvm"},
		// No usable /dev/kvm: TCG, saying why.
		{arm64NoKVM, "raspi4b-fast", TCG, "no such file"},
		{arm64NoKVM, "beaglebone-black-fast", TCG, "no such file"},
		// An x86 host's KVM runs x86 guests, not ARM ones.
		{amd64KVM, "raspi4b-fast", TCG, "amd64 host"},
		{amd64KVM, "beaglebone-black-fast", TCG, "amd64 host"},
		// The faithful machines never: their SoC is emulated.
		{arm64KVM, "raspi3b", TCG, "raspi3b is QEMU's model"},
		{arm64KVM, "raspi4b", TCG, "raspi4b is QEMU's model"},
		{arm64KVM, "beaglebone-black", TCG, "cubieboard is QEMU's model"},
		{amd64KVM, "raspi3b", TCG, "QEMU's model"},
	} {
		t.Run(tc.host.Arch+"/"+tc.board, func(t *testing.T) {
			b, err := boards.Lookup(tc.board)
			require.NoError(t, err)
			got, why := ChooseAccel(tc.host, b)
			require.Equal(t, tc.want, got)
			require.Contains(t, why, tc.why)
		})
	}
	// Every board in the catalog: KVM exactly for the fast tier.
	for _, b := range boards.All() {
		got, _ := ChooseAccel(arm64KVM, b)
		require.Equal(t, b.Tier == boards.Fast, got == KVM, b.Slug)
	}
}

func TestCmdlineKVM(t *testing.T) {
	for _, tc := range []struct {
		board, exe, cpu string
	}{
		{"raspi4b-fast", "qemu-system-aarch64", "host"},
		{"raspi3b-fast", "qemu-system-aarch64", "host"},
		// qemu-system-arm has no KVM on an arm64 host: the 32-bit board
		// runs in qemu-system-aarch64 with AArch64 off.
		{"beaglebone-black-fast", "qemu-system-aarch64", "host,aarch64=off"},
	} {
		t.Run(tc.board, func(t *testing.T) {
			b, err := boards.Lookup(tc.board)
			require.NoError(t, err)
			for name, cfg := range goldenConfigs(b) {
				cfg.Accel = KVM
				exe, args, err := Cmdline(cfg)
				require.NoError(t, err, name)
				require.Equal(t, tc.exe, exe, name)
				require.Equal(t, []string{"kvm"}, argPairs(args, "-accel"), name)
				require.Equal(t, []string{tc.cpu}, argPairs(args, "-cpu"), name)
				require.Equal(t, []string{b.Machine}, argPairs(args, "-machine"), name)
				require.Equal(t, KVM, cfg.Accelerator())

				// Apart from the accelerator, CPU and binary, the same
				// machine as under TCG.
				cfg.Accel = TCG
				_, tcg, err := Cmdline(cfg)
				require.NoError(t, err)
				require.Equal(t, withoutAccel(tcg), withoutAccel(args), name)
			}
		})
	}
}

// withoutAccel drops -accel and -cpu and their values.
func withoutAccel(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-accel" || args[i] == "-cpu" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func TestCmdlineRefusesKVMForFaithfulBoardsAndUnknownAccels(t *testing.T) {
	for _, slug := range []string{"raspi3b", "raspi4b", "beaglebone-black"} {
		b, err := boards.Lookup(slug)
		require.NoError(t, err)
		_, _, err = Cmdline(Config{Board: b, RunDir: "/r", Kernel: "/k", Disk: "/d", Accel: KVM})
		require.ErrorContains(t, err, "KVM runs only boards on QEMU's virt machine")
	}
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	_, _, err = Cmdline(Config{Board: b, RunDir: "/r", Kernel: "/k", Disk: "/d", Accel: "hvf"})
	require.ErrorContains(t, err, `unknown accelerator "hvf" (tcg or kvm)`)
	require.Equal(t, TCG, Config{}.Accelerator(), "the zero accelerator is TCG")
}

func TestProbeKVM(t *testing.T) {
	dir := t.TempDir()
	missing := ProbeKVM(filepath.Join(dir, "kvm"))
	require.False(t, missing.KVM)
	require.Contains(t, missing.Why, "is not usable")
	require.Equal(t, runtime.GOARCH, missing.Arch)

	// A file that opens but is no KVM device.
	notKVM := filepath.Join(dir, "notkvm")
	require.NoError(t, os.WriteFile(notKVM, nil, 0o600))
	h := ProbeKVM(notKVM)
	require.False(t, h.KVM)
	require.Contains(t, h.Why, "does not answer as KVM")
	h = ProbeKVM(os.DevNull)
	require.False(t, h.KVM)

	// This machine's own /dev/kvm, where there is one this user may open:
	// it answers, though an x86 host's KVM still runs no ARM board.
	if f, err := os.OpenFile(KVMDevice, os.O_RDWR, 0); err == nil {
		f.Close()
		h := ProbeKVM(KVMDevice)
		require.True(t, h.KVM, h.Why)
		if runtime.GOARCH != "arm64" {
			require.False(t, h.KVMAArch32, "an x86 KVM has no AArch32 EL1")
			b, _ := boards.Lookup("raspi4b-fast")
			a, _ := ChooseAccel(h, b)
			require.Equal(t, TCG, a)
		}
	}
}
