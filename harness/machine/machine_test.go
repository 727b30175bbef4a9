package machine

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp/qmptest"
	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/sshx"
)

// driver is a QEMU driver over go-qemu's fake monitor: a machine whose
// console logs are in a directory of the test's.
func driver(t *testing.T, slug string, watchUSBNIC bool) (*QEMU, string) {
	p, err := boards.Lookup(slug)
	require.NoError(t, err)
	dir := t.TempDir()
	m := qemu.NewMachine(qemu.Config{Board: p, RunDir: dir}, qmptest.NewMonitor(nil), nil)
	return &QEMU{proc: m, prof: p, watchUSBNIC: watchUSBNIC, ssh: sshx.Endpoint{Host: "127.0.0.1", Port: 40022, User: "root"}}, ConsoleLog(p, dir)
}

func TestAliveSeesAUSBNICLost(t *testing.T) {
	q, log := driver(t, "raspi3b", true)
	require.NoError(t, q.Alive())
	require.NoError(t, os.WriteFile(log, []byte("[   61.3] usb usb1-port1: attempt power cycle\n[   62.9] usb usb1-port1: unable to enumerate USB device\n"), 0o644))
	require.ErrorIs(t, q.Alive(), ErrUSBNICLost)

	q.watchUSBNIC = false // the NIC-less boot has no USB NIC to lose
	require.NoError(t, q.Alive())
}

// stalledEnumeration is the console of a CI boot whose USB NIC never
// came: the port power-cycled, and the fourth try hung without the
// kernel's "unable to enumerate" line.
const stalledEnumeration = `[   46.432904] usb 1-1: new full-speed USB device number 2 using dwc2
[   46.434228] dwc2 3f980000.usb: Not connected
[   48.491135] usb usb1-port1: attempt power cycle
[   48.797387] usb 1-1: new full-speed USB device number 4 using dwc2
socbox login: [   49.412658] usb 1-1: new full-speed USB device number 5 using dwc2
[   49.413050] dwc2 3f980000.usb: Not connected
`

func TestUSBNICState(t *testing.T) {
	for _, tc := range []struct {
		name           string
		head           string
		lost, troubled bool
	}{
		{"quiet", "[    1.0] Booting Linux\n", false, false},
		{"gave up", "[ 62.9] usb usb1-port1: unable to enumerate USB device\n", true, false},
		{"stalled after a power cycle", stalledEnumeration, false, true},
		{"came up after a power cycle", stalledEnumeration +
			"[ 51.0] cdc_ether 1-1:1.0 usb0: register 'cdc_ether' at usb-3f980000.usb-1, CDC Ethernet Device, 52:54:00:12:34:57\n", false, false},
		{"came up at once", "[ 59.1] cdc_ether 1-1:1.0 usb0: register 'cdc_ether' at usb-3f980000.usb-1, CDC Ethernet Device, 52:54:00:12:34:57\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, troubled := usbNICState(tc.head)
			require.Equal(t, tc.lost, lost, "lost")
			require.Equal(t, tc.troubled, troubled, "in trouble")
		})
	}
}

func TestAliveSeesAUSBEnumerationStall(t *testing.T) {
	q, log := driver(t, "raspi3b", true)
	require.NoError(t, os.WriteFile(log, []byte(stalledEnumeration), 0o644))
	require.NoError(t, q.Alive(), "a power cycle alone is not a lost NIC")
	t0 := time.Now()
	require.NoError(t, q.usbNICLost(stalledEnumeration, t0.Add(usbNICStall-time.Second)), "the stall is timed from when it was first seen")
	err := q.usbNICLost(stalledEnumeration, t0.Add(usbNICStall+time.Second))
	require.ErrorIs(t, err, ErrUSBNICLost)
	require.Contains(t, err.Error(), "stalled after the port's power cycle")

	quiet, log := driver(t, "raspi3b-fast", false)
	require.NoError(t, os.WriteFile(log, []byte(stalledEnumeration), 0o644))
	require.NoError(t, quiet.Alive(), "watched only on a board with a USB NIC")
}

func TestAliveSeesSSHDFail(t *testing.T) {
	for _, line := range []string{
		"[FAILED] Failed to start ssh.service - OpenBSD Secure Shell server.",
		"[FAILED] Failed to start OpenBSD Secure Shell server.",
	} {
		q, log := driver(t, "raspi4b", false)
		require.NoError(t, os.WriteFile(log, []byte("[  OK  ] Started systemd-logind.service.\r\n"+line+"\r\n"), 0o644))
		err := q.Alive()
		require.ErrorIs(t, err, ErrSSHDFailed)
		require.ErrorContains(t, err, line)
		require.ErrorContains(t, err, log, "points at the console log")

		// Early in the boot: still found once it has scrolled out of the tail.
		require.NoError(t, os.WriteFile(log, []byte(line+"\n"+strings.Repeat("[  OK  ] Reached target.\n", 200)), 0o644))
		require.ErrorIs(t, q.Alive(), ErrSSHDFailed)
	}
}

func TestAliveSeesPanicsAndTheKernel(t *testing.T) {
	q, log := driver(t, "raspi4b-fast", false)
	require.False(t, q.KernelStarted())
	require.NoError(t, os.WriteFile(log, []byte("[    0.000000] Booting Linux on physical CPU 0x0\n[    2.1] Kernel panic - not syncing: VFS\n"), 0o644))
	require.True(t, q.KernelStarted())
	require.ErrorIs(t, q.Alive(), ErrKernelPanic)
	require.NoError(t, os.WriteFile(log, []byte("socbox-initrd: error: no root\n"), 0o644))
	require.ErrorIs(t, q.Alive(), ErrInitrd)
}

// The three kinds of board, as code that serves all of them sees them.
func TestKindsOfBoard(t *testing.T) {
	q, _ := driver(t, "raspi4b-fast", false)
	u := &UART{QEMU: q, socket: SerialSocket(q.RunDir())}
	r := &Real{URL: "ssh://root@rpi:22", SSH: sshx.Endpoint{Host: "rpi", Port: 22, User: "root"}}
	for _, c := range []struct {
		m       Machine
		serial  bool
		shared  bool
		network bool
		saves   bool
		plugs   bool
	}{
		{m: q, network: true, saves: true},
		{m: u, serial: true, network: true, saves: true, plugs: true},
		{m: r, shared: true, network: true},
		{m: Off{NIC: true}, network: true},
	} {
		require.Equal(t, c.serial, c.m.Endpoint().Serial != "", "%T", c.m)
		require.Equal(t, c.shared, c.m.Shared(), "%T", c.m)
		require.Equal(t, c.network, c.m.HasNetwork(), "%T", c.m)
		_, saves := c.m.(Saver)
		require.Equal(t, c.saves, saves, "%T", c.m)
		_, plugs := c.m.(NICPlugger)
		require.Equal(t, c.plugs, plugs, "%T", c.m)
	}
	require.Equal(t, "root", u.Endpoint().SSH.User, "the serial login is still root's")
	require.NoError(t, r.Alive())
	require.Nil(t, r.ConsoleTail(10))
	require.Error(t, Off{}.Alive(), "a board not started is not alive")

	noNIC, err := boards.Lookup("raspi4b")
	require.NoError(t, err)
	u.prof = noNIC
	require.False(t, u.HasNetwork(), "raspi4b has no NIC at all")
	require.ErrorContains(t, u.PlugNIC(t.Context()), "the board has none")
}
