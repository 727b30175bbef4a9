package ociimage

import (
	"debug/elf"
	"errors"
	"fmt"

	"github.com/socbox/socbox/boards"
)

// ErrWrongBinary is returned (wrapped) when a binary cannot run on the
// platform an image is built for: another CPU, or dynamically linked where
// the image has no C library.
var ErrWrongBinary = errors.New("binary does not fit the image platform")

// elfMachines maps an OCI architecture to the ELF machine and class a binary
// for it carries.
var elfMachines = map[string]struct {
	machine elf.Machine
	class   elf.Class
	name    string // what `file` would call it
}{
	"arm64": {elf.EM_AARCH64, elf.ELFCLASS64, "aarch64"},
	"arm":   {elf.EM_ARM, elf.ELFCLASS32, "ARM"},
	"amd64": {elf.EM_X86_64, elf.ELFCLASS64, "x86-64"},
}

// CheckStaticBinary checks that the ELF file at path is built for p's CPU
// and is statically linked, which is what an image made of that one binary
// needs. The error names the file and both machines.
func CheckStaticBinary(path string, p boards.Platform) error {
	want, ok := elfMachines[p.Architecture]
	if !ok {
		return fmt.Errorf("check %s for %s: unsupported architecture %q (known: arm64, arm, amd64)",
			path, p, p.Architecture)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("check %s for %s: %w", path, p, err)
	}
	defer f.Close()

	if f.Machine != want.machine || f.Class != want.class {
		return fmt.Errorf("%w: %s is a %s %s binary, but %s needs a %s %s one (e.g. from Debian's busybox-static:%s)",
			ErrWrongBinary, path, bits(f.Class), machineName(f.Machine), p, bits(want.class), want.name, p.DebianArch())
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked, but the image has no C library: use a static build (Debian's busybox-static)",
				ErrWrongBinary, path)
		}
	}
	return nil
}

func machineName(m elf.Machine) string {
	for _, w := range elfMachines {
		if w.machine == m {
			return w.name
		}
	}
	return m.String()
}

func bits(c elf.Class) string {
	switch c {
	case elf.ELFCLASS32:
		return "32-bit"
	case elf.ELFCLASS64:
		return "64-bit"
	}
	return c.String()
}
