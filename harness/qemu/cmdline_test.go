package qemu

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
)

// argPairs returns the values given to flag, in order.
func argPairs(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestCmdlineEveryBoard(t *testing.T) {
	for _, b := range boards.All() {
		t.Run(b.Slug, func(t *testing.T) {
			cfg := Config{
				Board: b, RunDir: "/run/x", Kernel: "/img/vmlinuz", Initrd: "/img/initrd.img",
				Append: "root=LABEL=r console=" + b.Kernel.Console, Disk: "/run/x/disk.qcow2",
				Forwards: []Forward{{HostPort: 40022, GuestPort: 22}},
			}
			exe, args, err := Cmdline(cfg)
			require.NoError(t, err)
			require.Equal(t, b.QEMUBinary, exe)
			require.Equal(t, []string{b.Machine}, argPairs(args, "-machine"))
			if b.CPU != "" {
				require.Equal(t, []string{b.CPU}, argPairs(args, "-cpu"))
			}
			require.Contains(t, args, "-nodefaults")
			require.Equal(t, []string{"unix:/run/x/qmp.sock,server=on,wait=off"}, argPairs(args, "-qmp"))
			require.Equal(t, []string{"/run/x/qemu.pid"}, argPairs(args, "-pidfile"))
			// Every serial port is logged to a file in the run directory.
			chardevs := argPairs(args, "-chardev")
			require.Len(t, chardevs, max(b.SerialPorts, 1))
			for i, c := range chardevs {
				require.Equal(t, "file,id=serial"+string(rune('0'+i))+",path=/run/x/serial"+string(rune('0'+i))+".log", c)
			}
			// Port forwards are bound to loopback only.
			netdev := argPairs(args, "-netdev")
			require.Len(t, netdev, 1)
			require.Contains(t, netdev[0], "hostfwd=tcp:127.0.0.1:40022-:22")
			require.NotContains(t, netdev[0], "hostfwd=tcp::")
			require.NotContains(t, netdev[0], "0.0.0.0")
			// The disk is the overlay, never the base image.
			drives := strings.Join(argPairs(args, "-drive"), " ")
			require.Contains(t, drives, "file=/run/x/disk.qcow2,format=qcow2")
		})
	}
}

func TestCmdlineRaspi4b(t *testing.T) {
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	_, args, err := Cmdline(Config{Board: b, RunDir: "/r", Kernel: "/k", Disk: "/d.qcow2", SMP: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"2"}, argPairs(args, "-smp"), "SMP override wins over the board's 4")
	require.Equal(t, []string{"2048"}, argPairs(args, "-m"))
	require.Equal(t, []string{"cortex-a72"}, argPairs(args, "-cpu"))
	require.Equal(t, []string{"virtio-blk-pci,drive=disk0", "virtio-net-pci,netdev=net0,romfile=", "virtio-rng-pci"}, argPairs(args, "-device"))
	require.Empty(t, argPairs(args, "-initrd"), "no initrd flag when none is given")
}

func TestCmdlineSerialSSH(t *testing.T) {
	b, err := boards.Lookup("raspi3b")
	require.NoError(t, err)
	base := Config{Board: b, RunDir: "/r", Kernel: "/k", Disk: "/d.qcow2", Forwards: []Forward{{HostPort: 40022, GuestPort: 22}}}
	_, cold, err := Cmdline(base)
	require.NoError(t, err)
	require.Equal(t, []string{"usb-net,netdev=net0"}, argPairs(cold, "-device"))

	withSerial := base
	withSerial.SerialSSH = "/r/ssh-serial.sock"
	_, args, err := Cmdline(withSerial)
	require.NoError(t, err)
	require.Equal(t, []string{
		"socket,id=serial0,path=/r/ssh-serial.sock,server=on,wait=off",
		"file,id=serial1,path=/r/serial1.log",
	}, argPairs(args, "-chardev"), "the PL011 is the SSH socket, the console (mini-UART) is still logged")
	require.Empty(t, argPairs(args, "-device"), "no usb-net in a state that is to be saved")
	require.Equal(t, argPairs(cold, "-netdev"), argPairs(args, "-netdev"), "the netdev stays for the NIC plugged in later")

	r4, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	_, _, err = Cmdline(Config{Board: r4, RunDir: "/r", Kernel: "/k", Disk: "/d", SerialSSH: "/r/s.sock"})
	require.ErrorContains(t, err, "no serial port for SSH")
}

func TestCmdlineErrors(t *testing.T) {
	b, err := boards.Lookup("raspi4b-fast")
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no run dir", Config{Board: b, Kernel: "/k", Disk: "/d"}, "no run directory"},
		{"no kernel", Config{Board: b, RunDir: "/r", Disk: "/d"}, "no kernel"},
		{"no disk", Config{Board: b, RunDir: "/r", Kernel: "/k"}, "no disk"},
		{"bad port", Config{Board: b, RunDir: "/r", Kernel: "/k", Disk: "/d", Forwards: []Forward{{HostPort: 0, GuestPort: 22}}}, "bad port forward"},
		{"no machine", Config{Board: boards.Profile{Slug: "x"}, RunDir: "/r", Kernel: "/k", Disk: "/d"}, "no QEMU binary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Cmdline(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// QEMU reads -chardev, -drive and -qmp values as key=value lists split at
// commas; a comma in a path must be doubled, or a TMPDIR with a comma in
// it breaks the command line (or worse, adds options).
func TestCmdlineEscapesCommasInPaths(t *testing.T) {
	for _, tc := range []struct {
		name      string
		board     string
		serialSSH string
		flag      string
		want      string
	}{
		{"qmp socket", "raspi4b", "", "-qmp", "unix:/tmp/a,,b/qmp.sock,server=on,wait=off"},
		{"serial log", "raspi4b", "", "-chardev", "file,id=serial0,path=/tmp/a,,b/serial0.log"},
		{"virtio disk", "raspi4b-fast", "", "-drive", "file=/tmp/a,,b/disk.qcow2,format=qcow2,if=none,id=disk0,discard=unmap"},
		{"sd disk", "raspi3b", "", "-drive", "file=/tmp/a,,b/disk.qcow2,format=qcow2,if=sd,index=0"},
		{"serial ssh socket", "raspi3b", "/tmp/a,b/ssh,serial.sock", "-chardev", "socket,id=serial0,path=/tmp/a,,b/ssh,,serial.sock,server=on,wait=off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := boards.Lookup(tc.board)
			require.NoError(t, err)
			_, args, err := Cmdline(Config{Board: b, RunDir: "/tmp/a,b", Kernel: "/img/vmlinuz", Disk: "/tmp/a,b/disk.qcow2", SerialSSH: tc.serialSSH})
			require.NoError(t, err)
			require.Contains(t, argPairs(args, tc.flag), tc.want)
		})
	}
}

func TestOptionValue(t *testing.T) {
	for in, want := range map[string]string{
		"/run/x":        "/run/x",
		"/tmp/a,b":      "/tmp/a,,b",
		",,":            ",,,,",
		"/tmp/x,if=sd,": "/tmp/x,,if=sd,,",
	} {
		require.Equal(t, want, optionValue(in), in)
	}
}
