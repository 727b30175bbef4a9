package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/ulikunitz/xz"
)

// Spec says what goes into an initrd.
type Spec struct {
	// Busybox is the path of a static busybox binary for the guest.
	Busybox string
	// ModulesDir is the kernel's module tree: <root>/lib/modules/<version>,
	// with modules.dep in it (run depmod first).
	ModulesDir string
	// Modules are loaded in this order, each after its dependencies.
	Modules []string
	// Machine is the ELF machine the busybox must be built for.
	Machine elf.Machine
}

// Contents is what Build put in the initrd, for tests and logs.
type Contents struct {
	// LoadOrder is the module files loaded by /init, in order, relative to
	// ModulesDir.
	LoadOrder []string
	// Builtin are requested modules the kernel has built in.
	Builtin []string
}

// Build writes a gzip-compressed newc cpio initramfs to w.
func Build(spec Spec, w io.Writer) (Contents, error) {
	var c Contents
	bb, err := os.ReadFile(spec.Busybox)
	if err != nil {
		return c, fmt.Errorf("initrd: read busybox: %w", err)
	}
	if err := checkELF(spec.Busybox, bb, spec.Machine); err != nil {
		return c, err
	}
	c, err = Resolve(spec.ModulesDir, spec.Modules)
	if err != nil {
		return c, err
	}
	order := c.LoadOrder

	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	cw := newCPIOWriter(gz)
	for _, d := range []string{"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		cw.Dir(d, 0o755)
	}
	cw.File("bin/busybox", 0o755, bb)
	cw.Symlink("bin/sh", "busybox")
	var list strings.Builder
	for _, rel := range order {
		data, err := readModule(filepath.Join(spec.ModulesDir, rel))
		if err != nil {
			return c, err
		}
		name := moduleFileName(rel)
		cw.File("lib/modules/"+name, 0o644, data)
		list.WriteString(name + "\n")
	}
	cw.File("modules.order", 0o644, []byte(list.String()))
	cw.File("init", 0o755, []byte(initScript))
	if err := cw.Close(); err != nil {
		return c, fmt.Errorf("initrd: %w", err)
	}
	if err := gz.Close(); err != nil {
		return c, fmt.Errorf("initrd: %w", err)
	}
	return c, nil
}

// Resolve says which module files Build would put in the initrd for
// modules, dependencies first, and which of modules the kernel has built
// in. It reads only the tree's index files (modules.dep, modules.builtin,
// modules.softdep, modules.alias), so a caller can fetch just those files
// and then the ones listed.
func Resolve(modulesDir string, modules []string) (Contents, error) {
	var c Contents
	deps, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return c, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return c, err
	}
	soft, err := readSoftdeps(filepath.Join(modulesDir, "modules.softdep"), filepath.Join(modulesDir, "modules.alias"))
	if err != nil {
		return c, err
	}
	c.LoadOrder, c.Builtin, err = loadOrder(deps, builtin, soft, modules)
	return c, err
}

// Kind is how a kernel has a module.
type Kind int

const (
	// Absent: neither built in nor in modules.dep. The kernel does without
	// it, e.g. a Raspberry Pi kernel that drives the SD card with its own
	// bcm2835-sdhost driver instead of the mainline bcm2835 one.
	Absent Kind = iota
	// Builtin: in modules.builtin; nothing to load.
	Builtin
	// Loadable: a module file in modules.dep, which something must load.
	Loadable
)

func (k Kind) String() string {
	switch k {
	case Builtin:
		return "built in"
	case Loadable:
		return "module"
	}
	return "absent"
}

// Classify says how the kernel of a module tree has each named module,
// from its modules.dep and modules.builtin alone.
func Classify(modulesDir string, names []string) ([]Kind, error) {
	deps, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	loadable := map[string]bool{}
	for p := range deps {
		loadable[moduleName(p)] = true
	}
	out := make([]Kind, len(names))
	for i, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		switch {
		case loadable[n]:
			out[i] = Loadable
		case builtin[n]:
			out[i] = Builtin
		}
	}
	return out, nil
}

func checkELF(name string, data []byte, want elf.Machine) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("initrd: busybox %s is not an ELF binary: %w", name, err)
	}
	if want != elf.EM_NONE && f.Machine != want {
		return fmt.Errorf("initrd: busybox %s is built for %s, the board needs %s: fetch busybox-static for the guest's architecture",
			name, f.Machine, want)
	}
	return nil
}

// A module tree's index files come from the image, which may be hostile:
// they are read with a bound (a distribution kernel's largest, modules.alias,
// is about 1.5 MiB), and every module path in them must stay inside the
// module tree. They are depmod's own line formats, which no Go library
// reads; the parsing is a few lines each.
const (
	// MaxIndexFile bounds modules.dep, modules.builtin, modules.softdep
	// and modules.alias.
	MaxIndexFile = 16 << 20
	// MaxModuleFile bounds a module, compressed or not: the largest in
	// Debian's arm64 kernel is a few MiB.
	MaxModuleFile = 64 << 20
)

// ErrUnsafeModulePath is wrapped when an index file names a module by a
// path that could lead outside the module tree.
var ErrUnsafeModulePath = errors.New("unsafe module path")

// readIndex reads an index file of the module tree, at most MaxIndexFile
// bytes.
func readIndex(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxIndexFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxIndexFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, MaxIndexFile)
	}
	return b, nil
}

// checkModulePath refuses a module path from an index file that is not a
// plain relative path inside the module tree ("kernel/fs/ext4/ext4.ko.xz"):
// absolute, with "." or ".." components, or with a control character or
// space.
func checkModulePath(p string) error {
	switch {
	case p == "":
		return errors.New("an empty path")
	case len(p) > 4095:
		return fmt.Errorf("%d bytes long, more than PATH_MAX", len(p))
	case path.IsAbs(p):
		return errors.New("an absolute path: module paths are relative to the module tree")
	case path.Clean(p) != p:
		return errors.New("not a clean path (., .. or repeated slashes)")
	case p == ".." || strings.HasPrefix(p, "../"):
		return errors.New("it leads out of the module tree")
	}
	for i, r := range p {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("a control character, space or invalid byte at byte %d", i)
		}
	}
	return nil
}

// readModulesDep parses modules.dep: "path: dep dep ...".
func readModulesDep(p string) (map[string][]string, error) {
	b, err := readIndex(p)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w (run depmod on the kernel's module tree first)", err)
	}
	return parseModulesDep(b, p)
}

// parseModulesDep parses the text of modules.dep; name is for errors.
func parseModulesDep(b []byte, name string) (map[string][]string, error) {
	deps := map[string][]string{}
	for i, line := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		list := strings.Fields(rest)
		for _, m := range append([]string{mod}, list...) {
			if err := checkModulePath(m); err != nil {
				return nil, fmt.Errorf("initrd: %s line %d: %w %q: %v", filepath.Base(name), i+1, ErrUnsafeModulePath, m, err)
			}
		}
		deps[mod] = list
	}
	return deps, nil
}

// readBuiltin parses modules.builtin, one module path per line; a missing
// file means no module is built in.
func readBuiltin(p string) (map[string]bool, error) {
	b, err := readIndex(p)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return parseBuiltin(b, p)
}

func parseBuiltin(b []byte, name string) (map[string]bool, error) {
	out := map[string]bool{}
	for i, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		if err := checkModulePath(l); err != nil {
			return nil, fmt.Errorf("initrd: %s line %d: %w %q: %v", filepath.Base(name), i+1, ErrUnsafeModulePath, l, err)
		}
		out[moduleName(l)] = true
	}
	return out, nil
}

// readSoftdeps returns, per module name, the modules to load before it
// ("softdep ext4 pre: crypto-crc32c"), with aliases resolved through
// modules.alias: ext4 mounts fail without crc32c, which is not in
// modules.dep because nothing links against it. Both files are optional;
// their entries are names, never paths.
func readSoftdeps(softdepPath, aliasPath string) (map[string][]string, error) {
	var alias, softdep []byte
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{aliasPath, &alias}, {softdepPath, &softdep}} {
		b, err := readIndex(f.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		*f.dst = b
	}
	return parseSoftdeps(softdep, alias), nil
}

func parseSoftdeps(softdep, alias []byte) map[string][]string {
	aliases := map[string][]string{}
	for _, l := range strings.Split(string(alias), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			aliases[f[1]] = append(aliases[f[1]], f[2])
		}
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(softdep), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		mod := strings.ReplaceAll(f[1], "-", "_")
		pre := false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
				continue
			case "post:":
				pre = false
				continue
			}
			if !pre {
				continue
			}
			if real, ok := aliases[w]; ok {
				out[mod] = append(out[mod], real...)
			} else {
				out[mod] = append(out[mod], w)
			}
		}
	}
	return out
}

// moduleName turns "kernel/fs/ext4/ext4.ko.xz" into "ext4", with '-' read
// as '_' the way the kernel does.
func moduleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// moduleFileName is the uncompressed file name a module gets in the initrd.
func moduleFileName(p string) string { return moduleName(p) + ".ko" }

// loadOrder resolves wanted module names to files, dependencies first,
// each once.
func loadOrder(deps map[string][]string, builtin map[string]bool, soft map[string][]string, wanted []string) ([]string, []string, error) {
	byName := map[string]string{}
	for p := range deps {
		byName[moduleName(p)] = p
	}
	var order, bi []string
	seen := map[string]bool{}
	// The modules being visited, as a stack and a set: a hostile
	// modules.dep may chain thousands of modules, and a cycle is found
	// without walking the stack.
	var chain []string
	onChain := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if seen[p] {
			return nil
		}
		if onChain[p] {
			return fmt.Errorf("initrd: module dependency cycle: %s", strings.Join(append(chain, p), " -> "))
		}
		chain = append(chain, p)
		onChain[p] = true
		// Soft dependencies first; they are optional: skip the ones the
		// kernel lacks or has built in.
		for _, s := range soft[moduleName(p)] {
			if sp, ok := byName[strings.ReplaceAll(s, "-", "_")]; ok && sp != p {
				if err := visit(sp); err != nil {
					return err
				}
			}
		}
		for _, d := range deps[p] {
			if err := visit(d); err != nil {
				return err
			}
		}
		chain = chain[:len(chain)-1]
		delete(onChain, p)
		seen[p] = true
		order = append(order, p)
		return nil
	}
	for _, w := range wanted {
		n := strings.ReplaceAll(w, "-", "_")
		p, ok := byName[n]
		if !ok {
			if builtin[n] {
				bi = append(bi, n)
				continue
			}
			return nil, nil, fmt.Errorf("initrd: kernel has no module %q (neither in modules.dep nor built in): check the board's InitrdModules against the kernel version", w)
		}
		if err := visit(p); err != nil {
			return nil, nil, err
		}
	}
	return order, bi, nil
}

// readModule returns a module's bytes, decompressed: busybox insmod does not
// read compressed modules.
func readModule(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(p, ".ko"):
	case strings.HasSuffix(p, ".ko.xz"):
		xr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("initrd: decompress %s: %w", p, err)
		}
		r = xr
	case strings.HasSuffix(p, ".ko.gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initrd: decompress %s: %w", p, err)
		}
		r = gr
	default:
		return nil, fmt.Errorf("initrd: module %s: unsupported compression (socbox reads .ko, .ko.xz and .ko.gz)", p)
	}
	// A compressed module is small and expands tenfold at most; a
	// crafted one could expand without end.
	data, err := io.ReadAll(io.LimitReader(r, MaxModuleFile+1))
	if err != nil {
		return nil, fmt.Errorf("initrd: read %s: %w", p, err)
	}
	if len(data) > MaxModuleFile {
		return nil, fmt.Errorf("initrd: module %s is larger than %d bytes", p, MaxModuleFile)
	}
	return data, nil
}

// initScript mounts the root filesystem named on the kernel command line
// (root=/dev/..., LABEL=..., UUID=...; rootfstype=, default ext4) and
// hands over to its init. Every line it prints starts with "socbox-initrd:"
// so the console log says which stage failed.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "socbox-initrd: loading modules"
for m in $(cat /modules.order); do
  insmod /lib/modules/$m || echo "socbox-initrd: insmod $m failed"
done
root=""; fstype=ext4; init=/sbin/init; ro=rw
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="${arg#root=}" ;;
    rootfstype=*) fstype="${arg#rootfstype=}" ;;
    init=*) init="${arg#init=}" ;;
    ro) ro=ro ;;
  esac
done
if [ -z "$root" ]; then
  echo "socbox-initrd: error: no root= on the kernel command line"
  exit 1
fi
echo "socbox-initrd: waiting for root $root"
dev=""
i=0
while [ $i -lt 300 ]; do
  case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    PARTUUID=*)
      want=$(echo "${root#PARTUUID=}" | tr A-Z a-z)
      for d in /sys/class/block/*; do
        if grep -qi "PARTUUID=$want" "$d/uevent" 2>/dev/null; then dev=/dev/${d##*/}; fi
      done
      [ -z "$dev" ] && dev=$(blkid | grep -i "PARTUUID=\"$want\"" | cut -d: -f1)
      ;;
    *) [ -b "$root" ] && dev="$root" ;;
  esac
  [ -n "$dev" ] && [ -b "$dev" ] && break
  dev=""
  i=$((i+1))
  sleep 0.1
done
if [ -z "$dev" ]; then
  echo "socbox-initrd: error: root device $root did not appear in 30s; block devices:"
  ls /sys/class/block
  exit 1
fi
if ! mount -t "$fstype" -o "$ro" "$dev" /newroot; then
  echo "socbox-initrd: error: cannot mount $dev ($fstype) on /newroot"
  exit 1
fi
echo "socbox-initrd: switching to $dev"
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot "$init"
`
