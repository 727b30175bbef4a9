package boards

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every profile is complete and consistent: a board that boots needs all of
// these, and `socbox boards` prints them.
func TestCatalogIsConsistent(t *testing.T) {
	require.Equal(t, []string{"beaglebone-black", "beaglebone-black-fast", "raspi3b", "raspi3b-fast", "raspi4b", "raspi4b-fast"}, Slugs())
	for _, p := range All() {
		t.Run(p.Slug, func(t *testing.T) {
			got, err := Lookup(p.Slug)
			require.NoError(t, err)
			require.Equal(t, p.Slug, got.Slug)
			require.NotEmpty(t, p.Name)
			require.Contains(t, []Tier{Faithful, Fast}, p.Tier)
			require.Contains(t, []string{"qemu-system-aarch64", "qemu-system-arm"}, p.QEMUBinary)
			require.Positive(t, p.MemoryMiB)
			require.Positive(t, p.SMP)
			require.Positive(t, p.SerialPorts)
			require.NotEmpty(t, p.Kernel.DebianPackage)
			require.NotEmpty(t, p.Kernel.Console)
			require.NotEmpty(t, p.Kernel.InitrdModules)
			require.NotEmpty(t, p.Divergences, "users must be told what differs from the real board")
			require.True(t, p.HasNetwork() || p.SerialSSH.Enabled(), "a board needs a NIC or a serial port for SSH")
			if !p.HasNetwork() {
				require.Contains(t, p.Kernel.ExtraCmdline, "socbox.serial_ssh="+p.SerialSSH.TTY,
					"a board without a NIC starts the image's serial sshd from its first boot")
			}
			if p.Tier == Faithful && p.MinQEMU != "" {
				require.NotEmpty(t, p.FastSlug(), "a board that needs a newer QEMU names the tier that runs on older ones")
			}
			if p.Tier == Fast {
				require.True(t, p.IsVirt(), "fast boards run on virt")
				require.Equal(t, DiskVirtio, p.DiskBus)
				require.Empty(t, p.Kernel.DTB, "QEMU makes virt's device tree")
			} else {
				require.False(t, p.IsVirt())
				require.Equal(t, DiskSD, p.DiskBus)
				require.NotEmpty(t, p.Kernel.DTB)
			}
			switch p.Platform {
			case LinuxARM64:
				require.Equal(t, "qemu-system-aarch64", p.QEMUBinary)
				require.Equal(t, "aarch64", p.Platform.UnameMachine())
			case LinuxARMv7:
				require.Equal(t, "qemu-system-arm", p.QEMUBinary)
				require.Equal(t, "armv7l", p.Platform.UnameMachine())
				require.Equal(t, "armhf", p.Platform.DebianArch())
			default:
				t.Fatalf("unexpected platform %s", p.Platform)
			}
		})
	}
}

func TestLookupUnknownListsKnownBoards(t *testing.T) {
	_, err := Lookup("raspi5")
	require.ErrorContains(t, err, `unknown board "raspi5"`)
	require.True(t, strings.Contains(err.Error(), "raspi4b-fast") && strings.Contains(err.Error(), "socbox boards"))
}

func TestPlatformString(t *testing.T) {
	require.Equal(t, "linux/arm64", LinuxARM64.String())
	require.Equal(t, "linux/arm/v7", LinuxARMv7.String())
}
