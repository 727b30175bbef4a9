// Package initrd builds the small initramfs socbox boots Debian's kernels,
// and user images' own kernels that have their root drivers as modules,
// with: a static busybox for the guest's architecture, the kernel modules
// the board needs to reach its root filesystem, and an /init script. It is
// built on the host in a second, instead of running mkinitramfs under
// qemu-user for minutes.
package initrd

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks an initramfs
// from. The format is small enough that writing it by hand is clearer than
// pulling in a library for it.
type cpioWriter struct {
	w     io.Writer
	ino   int
	err   error
	names map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, names: map[string]bool{}}
}

const (
	cpioTypeDir     = 0o040000
	cpioTypeFile    = 0o100000
	cpioTypeSymlink = 0o120000
)

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	if c.names[name] {
		c.err = fmt.Errorf("cpio: duplicate entry %q", name)
		return
	}
	c.names[name] = true
	nlink := 1
	if mode&0o170000 == cpioTypeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm fs.FileMode) {
	c.entry(name, cpioTypeDir|uint32(perm.Perm()), nil)
}

// File adds a regular file.
func (c *cpioWriter) File(name string, perm fs.FileMode, data []byte) {
	c.entry(name, cpioTypeFile|uint32(perm.Perm()), data)
}

// Symlink adds a symbolic link name → target.
func (c *cpioWriter) Symlink(name, target string) {
	c.entry(name, cpioTypeSymlink|0o777, []byte(target))
}

// Close writes the trailer and returns the first error seen.
func (c *cpioWriter) Close() error {
	c.entry("TRAILER!!!", 0, nil)
	return c.err
}
