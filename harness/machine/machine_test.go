package machine

import (
	"os"
	"strings"
	"testing"

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
