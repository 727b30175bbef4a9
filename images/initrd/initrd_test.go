package initrd

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

type cpioEntry struct {
	mode uint32
	data []byte
}

// readCPIO parses a newc archive, independently of the writer.
func readCPIO(t *testing.T, r io.Reader) map[string]cpioEntry {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	out := map[string]cpioEntry{}
	field := func(hdr []byte, i int) int {
		v, err := strconv.ParseUint(string(hdr[6+8*i:6+8*i+8]), 16, 32)
		require.NoError(t, err)
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	off := 0
	for {
		require.GreaterOrEqual(t, len(b)-off, 110, "truncated header")
		hdr := b[off : off+110]
		require.Equal(t, "070701", string(hdr[:6]))
		mode, size, nameLen := field(hdr, 1), field(hdr, 6), field(hdr, 11)
		name := string(b[off+110 : off+110+nameLen-1])
		off = align(off + 110 + nameLen)
		data := b[off : off+size]
		off = align(off + size)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioEntry{mode: uint32(mode), data: data}
	}
}

func writeXZ(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// fakeModuleTree lays out a module tree shaped like Debian's: compressed
// modules and a modules.dep listing each module's full dependency closure.
func fakeModuleTree(t *testing.T) string {
	dir := t.TempDir()
	mods := map[string]string{
		"kernel/fs/ext4/ext4.ko.xz":                         "ext4-code",
		"kernel/lib/crc16.ko.xz":                            "crc16-code",
		"kernel/fs/mbcache.ko.xz":                           "mbcache-code",
		"kernel/fs/jbd2/jbd2.ko.xz":                         "jbd2-code",
		"kernel/drivers/block/virtio_blk.ko.xz":             "virtio-blk-code",
		"kernel/drivers/virtio/virtio_pci.ko.xz":            "virtio-pci-code",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz": "modern-code",
		"kernel/crypto/crc32c_generic.ko.xz":                "crc32c-code",
	}
	for p, data := range mods {
		writeXZ(t, filepath.Join(dir, p), []byte(data))
	}
	dep := "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz\n" +
		"kernel/lib/crc16.ko.xz:\n" +
		"kernel/fs/mbcache.ko.xz:\n" +
		"kernel/fs/jbd2/jbd2.ko.xz:\n" +
		"kernel/drivers/block/virtio_blk.ko.xz:\n" +
		"kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz\n" +
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:\n" +
		"kernel/crypto/crc32c_generic.ko.xz:\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.softdep"),
		[]byte("# Soft dependencies extracted from modules themselves.\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\nsoftdep btrfs pre: nosuchalias\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.alias"),
		[]byte("alias crypto-crc32c crc32c_generic\nalias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/net/virtio_net.ko\n"), 0o644))
	return dir
}

func hostBusybox(t *testing.T) string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no busybox on the host: apt-get install busybox-static (scripts/host-setup.sh does)")
	return ""
}

func TestBuildResolvesModulesAndWritesInit(t *testing.T) {
	dir := fakeModuleTree(t)
	var buf bytes.Buffer
	c, err := Build(Spec{
		Busybox: hostBusybox(t), ModulesDir: dir, Machine: elf.EM_X86_64,
		Modules: []string{"virtio_pci", "virtio-blk", "virtio_net", "ext4"},
	}, &buf)
	require.NoError(t, err)
	require.Equal(t, []string{
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz",
		"kernel/drivers/virtio/virtio_pci.ko.xz",
		"kernel/drivers/block/virtio_blk.ko.xz",
		"kernel/crypto/crc32c_generic.ko.xz",
		"kernel/lib/crc16.ko.xz",
		"kernel/fs/mbcache.ko.xz",
		"kernel/fs/jbd2/jbd2.ko.xz",
		"kernel/fs/ext4/ext4.ko.xz",
	}, c.LoadOrder, "soft dependencies and dependencies first, each once")
	require.Equal(t, []string{"virtio_net"}, c.Builtin)

	gz, err := gzip.NewReader(&buf)
	require.NoError(t, err)
	files := readCPIO(t, gz)
	require.Equal(t, "virtio_pci_modern_dev.ko\nvirtio_pci.ko\nvirtio_blk.ko\ncrc32c_generic.ko\ncrc16.ko\nmbcache.ko\njbd2.ko\next4.ko\n",
		string(files["modules.order"].data))
	require.Equal(t, "ext4-code", string(files["lib/modules/ext4.ko"].data), "modules are stored decompressed")
	initf := files["init"]
	require.Equal(t, uint32(0o100755), initf.mode)
	require.True(t, strings.HasPrefix(string(initf.data), "#!/bin/busybox sh\n"))
	require.Contains(t, string(initf.data), "switch_root /newroot")
	require.Equal(t, uint32(0o120777), files["bin/sh"].mode)
	require.Equal(t, "busybox", string(files["bin/sh"].data))
	bb, err := os.ReadFile(hostBusybox(t))
	require.NoError(t, err)
	require.Equal(t, bb, files["bin/busybox"].data)
	for _, d := range []string{"dev", "proc", "sys", "newroot"} {
		require.Equal(t, uint32(0o040755), files[d].mode, d)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := fakeModuleTree(t)
	bb := hostBusybox(t)
	_, err := Build(Spec{Busybox: bb, ModulesDir: dir, Machine: elf.EM_X86_64, Modules: []string{"nosuchmod"}}, io.Discard)
	require.ErrorContains(t, err, `kernel has no module "nosuchmod"`)

	_, err = Build(Spec{Busybox: bb, ModulesDir: dir, Machine: elf.EM_AARCH64, Modules: []string{"ext4"}}, io.Discard)
	require.ErrorContains(t, err, "the board needs EM_AARCH64")

	_, err = Build(Spec{Busybox: bb, ModulesDir: t.TempDir(), Machine: elf.EM_X86_64}, io.Discard)
	require.ErrorContains(t, err, "run depmod")

	notELF := filepath.Join(t.TempDir(), "busybox")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	_, err = Build(Spec{Busybox: notELF, ModulesDir: dir}, io.Discard)
	require.ErrorContains(t, err, "is not an ELF binary")
}

func TestModuleDependencyCycle(t *testing.T) {
	_, _, err := loadOrder(map[string][]string{"a.ko": {"b.ko"}, "b.ko": {"a.ko"}}, nil, nil, []string{"a"})
	require.ErrorContains(t, err, "cycle")
}

func TestResolveReadsOnlyTheIndex(t *testing.T) {
	dir := fakeModuleTree(t)
	// Resolve names the files to fetch before they are there: a tree of
	// index files alone is enough.
	index := t.TempDir()
	for _, f := range []string{"modules.dep", "modules.builtin", "modules.softdep", "modules.alias"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(index, f), b, 0o644))
	}
	c, err := Resolve(index, []string{"virtio_net", "ext4"})
	require.NoError(t, err)
	require.Equal(t, []string{
		"kernel/crypto/crc32c_generic.ko.xz",
		"kernel/lib/crc16.ko.xz",
		"kernel/fs/mbcache.ko.xz",
		"kernel/fs/jbd2/jbd2.ko.xz",
		"kernel/fs/ext4/ext4.ko.xz",
	}, c.LoadOrder)
	require.Equal(t, []string{"virtio_net"}, c.Builtin)
}

func TestClassify(t *testing.T) {
	dir := fakeModuleTree(t)
	kinds, err := Classify(dir, []string{"ext4", "virtio-blk", "virtio_net", "sdhci_iproc"})
	require.NoError(t, err)
	require.Equal(t, []Kind{Loadable, Loadable, Builtin, Absent}, kinds)
	require.Equal(t, "module", Loadable.String())
	require.Equal(t, "built in", Builtin.String())
	require.Equal(t, "absent", Absent.String())

	_, err = Classify(t.TempDir(), []string{"ext4"})
	require.ErrorContains(t, err, "run depmod")
}

// TestResolveRefusesPathsOutOfTheTree is a modules.dep from a hostile
// image: a module path that climbs out of the module tree (or is absolute)
// would have the initrd build copy a file from anywhere.
func TestResolveRefusesPathsOutOfTheTree(t *testing.T) {
	for _, bad := range []string{"../../../../etc/shadow.ko", "/etc/shadow.ko", "kernel/../../x.ko", "kernel/./x.ko", "kernel//x.ko", "kernel/x\x1b.ko"} {
		for _, dep := range []string{
			"kernel/fs/ext4/ext4.ko: " + bad + "\n",
			bad + ":\n",
		} {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644))
			_, err := Resolve(dir, []string{"ext4"})
			require.ErrorIs(t, err, ErrUnsafeModulePath, "%q", dep)
		}
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/fs/ext4/ext4.ko:\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("../../mmc_block.ko\n"), 0o644))
	_, err := Classify(dir, []string{"ext4"})
	require.ErrorIs(t, err, ErrUnsafeModulePath)
}

// TestLongDependencyChain is a modules.dep whose modules each depend on
// the next, 20000 deep: resolved in linear time.
func TestLongDependencyChain(t *testing.T) {
	deps := map[string][]string{}
	const n = 20000
	for i := 0; i < n; i++ {
		deps[fmt.Sprintf("kernel/m%d.ko", i)] = []string{fmt.Sprintf("kernel/m%d.ko", i+1)}
	}
	order, _, err := loadOrder(deps, nil, nil, []string{"m0"})
	require.NoError(t, err)
	require.Len(t, order, n+1)
}

// FuzzModulesIndex parses arbitrary modules.dep, modules.builtin,
// modules.softdep and modules.alias and resolves modules through them:
// never a panic or an endless walk, and every path it would copy stays
// inside the module tree.
func FuzzModulesIndex(f *testing.F) {
	f.Add([]byte("kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/jbd2/jbd2.ko.xz\nkernel/lib/crc16.ko.xz:\nkernel/fs/jbd2/jbd2.ko.xz:\nkernel/crypto/crc32c_generic.ko.xz:\n"),
		[]byte("kernel/drivers/mmc/core/mmc_block.ko\n"),
		[]byte("softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: x\n"),
		[]byte("alias crypto-crc32c crc32c_generic\nalias pci:v*d* virtio_blk\n"))
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"), []byte(""), []byte("softdep a pre: a\n"), []byte(""))
	f.Add([]byte("kernel/a.ko: ../../x.ko\n"), []byte("/abs.ko\n"), []byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, dep, builtin, softdep, alias []byte) {
		deps, err := parseModulesDep(dep, "modules.dep")
		if err != nil {
			return
		}
		bi, err := parseBuiltin(builtin, "modules.builtin")
		if err != nil {
			return
		}
		soft := parseSoftdeps(softdep, alias)
		var wanted []string
		for p := range deps {
			wanted = append(wanted, moduleName(p))
			if len(wanted) == 4 {
				break
			}
		}
		order, _, err := loadOrder(deps, bi, soft, append(wanted, "ext4"))
		if err != nil {
			return
		}
		for _, p := range order {
			if err := checkModulePath(p); err != nil || !filepath.IsLocal(p) {
				t.Fatalf("would copy %q: %v", p, err)
			}
		}
	})
}
