// Package qemu runs one QEMU machine: it builds the command line from a board
// profile (a pure function), starts the process tidily, talks QMP and stops
// it in steps.
package qemu

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/shell"
)

// Forward is a TCP port forward from the host's loopback to the guest.
type Forward struct {
	HostPort  int
	GuestPort int
}

// Config is everything QEMU needs for one run.
type Config struct {
	Board boards.Profile
	// RunDir holds the QMP socket, pidfile and serial logs of this run.
	RunDir string
	Kernel string
	Initrd string
	DTB    string
	// Append is the kernel command line.
	Append string
	// Disk is the qcow2 overlay the guest writes to.
	Disk string
	// SMP overrides the board's vCPU count (0 = the board's).
	SMP int
	// Forwards are host 127.0.0.1 ports forwarded into the guest; the first
	// one is usually SSH.
	Forwards []Forward
	// Incoming is a saved machine state (see Machine.SaveState) to resume
	// from instead of booting; the rest of the configuration must match the
	// machine that saved it, except the disk overlay and port forwards.
	Incoming string
	// SerialSSH, on a board with a SerialSSH port, is the host unix socket
	// that port is connected to instead of a log file; the NIC is then left
	// out (its netdev stays, so PlugNIC can add it once the state is saved
	// or loaded).
	SerialSSH string
	// Accel is how the guest runs (ChooseAccel decides); the zero value is
	// TCG, as every board ran before KVM was an option.
	Accel Accel
	// ExtraArgs are appended verbatim (for experiments; not used by socbox).
	ExtraArgs []string
	// Probe asks only whether this QEMU accepts the board's machine, CPU
	// and devices (see Probe): no kernel, a null disk, no run directory,
	// paused, QMP on stdio.
	Probe bool
}

// Accelerator is the accelerator the configuration runs with.
func (c Config) Accelerator() Accel {
	if c.Accel == "" {
		return TCG
	}
	return c.Accel
}

// QMPSocket is the path of the QMP socket in a run directory.
func QMPSocket(runDir string) string { return filepath.Join(runDir, "qmp.sock") }

// PIDFile is the path of QEMU's pidfile in a run directory.
func PIDFile(runDir string) string { return filepath.Join(runDir, "qemu.pid") }

// SerialLog is the path of serial port i's log in a run directory.
func SerialLog(runDir string, i int) string {
	return filepath.Join(runDir, fmt.Sprintf("serial%d.log", i))
}

// Cmdline builds the QEMU executable and arguments for cfg. It has no side
// effects, so every board's command line is checked by table tests.
func Cmdline(cfg Config) (string, []string, error) {
	b := cfg.Board
	var errs []error
	if b.QEMUBinary == "" || b.Machine == "" {
		errs = append(errs, fmt.Errorf("board %q has no QEMU binary or machine", b.Slug))
	}
	if cfg.RunDir == "" && !cfg.Probe {
		errs = append(errs, errors.New("no run directory"))
	}
	if cfg.Kernel == "" && !cfg.Probe {
		errs = append(errs, errors.New("no kernel"))
	}
	if cfg.Disk == "" && !cfg.Probe {
		errs = append(errs, errors.New("no disk"))
	}
	for _, f := range cfg.Forwards {
		if f.HostPort <= 0 || f.HostPort > 65535 || f.GuestPort <= 0 || f.GuestPort > 65535 {
			errs = append(errs, fmt.Errorf("bad port forward %d->%d", f.HostPort, f.GuestPort))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", nil, fmt.Errorf("qemu command line for %s: %w", b.Slug, err)
	}

	switch {
	case cfg.Accel != "" && cfg.Accel != TCG && cfg.Accel != KVM:
		return "", nil, fmt.Errorf("qemu command line for %s: unknown accelerator %q (tcg or kvm)", b.Slug, cfg.Accel)
	case cfg.Accel == KVM && !b.IsVirt():
		return "", nil, fmt.Errorf("qemu command line for %s: KVM runs only boards on QEMU's virt machine, not %s", b.Slug, b.Machine)
	}
	exe, accel, cpu := accelArgs(b, cfg.Accel)

	smp := b.SMP
	if cfg.SMP > 0 {
		smp = cfg.SMP
	}
	args := []string{
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-machine", b.Machine,
		"-accel", accel,
		"-m", strconv.Itoa(b.MemoryMiB),
		"-smp", strconv.Itoa(smp),
	}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	if cfg.Probe {
		args = append(args, "-S", "-qmp", "stdio")
	} else {
		args = append(args,
			"-qmp", "unix:"+optionValue(QMPSocket(cfg.RunDir))+",server=on,wait=off",
			"-pidfile", PIDFile(cfg.RunDir),
		)
	}
	if cfg.SerialSSH != "" && !b.SerialSSH.Enabled() {
		return "", nil, fmt.Errorf("qemu command line for %s: the board has no serial port for SSH", b.Slug)
	}
	for i := 0; i < max(b.SerialPorts, 1) && !cfg.Probe; i++ {
		id := fmt.Sprintf("serial%d", i)
		backend := "file,id=" + id + ",path=" + optionValue(SerialLog(cfg.RunDir, i))
		if cfg.SerialSSH != "" && i == b.SerialSSH.Port {
			backend = "socket,id=" + id + ",path=" + optionValue(cfg.SerialSSH) + ",server=on,wait=off"
		}
		args = append(args, "-chardev", backend, "-serial", "chardev:"+id)
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
	}
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	if cfg.DTB != "" {
		args = append(args, "-dtb", cfg.DTB)
	}
	if cfg.Append != "" {
		args = append(args, "-append", cfg.Append)
	}

	disk := "file=" + optionValue(cfg.Disk) + ",format=qcow2"
	if cfg.Probe {
		disk = "driver=null-co"
	}
	switch b.DiskBus {
	case boards.DiskVirtio:
		args = append(args,
			"-drive", disk+",if=none,id=disk0,discard=unmap",
			"-device", "virtio-blk-pci,drive=disk0")
	case boards.DiskSD:
		args = append(args, "-drive", disk+",if=sd,index=0")
	default:
		return "", nil, fmt.Errorf("qemu command line for %s: unknown disk bus %q", b.Slug, b.DiskBus)
	}

	var fwd strings.Builder
	for _, f := range cfg.Forwards {
		// 127.0.0.1 only: a board is never reachable from the network.
		fmt.Fprintf(&fwd, ",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
	}
	args = append(args, "-netdev", "user,id=net0"+fwd.String())
	switch {
	case cfg.SerialSSH != "":
		// No NIC in the saved state: see PlugNIC.
	case b.OnboardNIC:
		args = append(args, "-net", "nic,netdev=net0")
	case b.NIC != "":
		args = append(args, "-device", NICDevice(b.NIC))
	}
	if b.IsVirt() {
		// Entropy for the guest: without it sshd can wait seconds for the
		// kernel's pool on an emulated CPU.
		args = append(args, "-device", "virtio-rng-pci")
	}
	if cfg.Incoming != "" {
		args = append(args, "-incoming", "exec:cat "+shell.Quote(cfg.Incoming))
	}
	args = append(args, cfg.ExtraArgs...)
	return exe, args, nil
}

// optionValue escapes s for a value in a QEMU option list (-drive,
// -chardev, -qmp), which QEMU splits at commas: a comma in the value is
// doubled. A path with a comma (a TMPDIR, a user's directory) would
// otherwise end the value there, and what follows would be read as more
// options.
func optionValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// NICDevice is the -device value for a NIC on the user network. A PCI NIC
// gets an empty romfile: its option ROM (efi-virtio.rom, from ipxe-qemu, a
// package a --no-install-recommends host lacks) is only for firmware that
// boots from the network, and socbox boots with -kernel.
func NICDevice(nic string) string {
	dev := nic + ",netdev=net0"
	if strings.HasSuffix(nic, "-pci") {
		dev += ",romfile="
	}
	return dev
}
