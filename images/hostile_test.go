package images

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/images/debarchive"
	"github.com/socbox/socbox/images/imagetest"
)

// Tests of images built to attack the host that prepares them: each
// proves that nothing outside the image's root is read or written.

// TestPrepareRefusesSymlinkOutOfDebugfsScript is a root filesystem whose
// symbolic links name a path with a newline and a debugfs command in it:
// written into a debugfs script unchecked, the command would run as its
// own line and dump the image's file onto the host.
func TestPrepareRefusesSymlinkOutOfDebugfsScript(t *testing.T) {
	for _, tc := range []struct {
		name string
		link string // the image's symbolic link, replaced by the hostile one
		opts imagetest.RaspiOS
	}{
		// Prepare writes root's authorized_keys through /root.
		{name: "root's home", link: "root"},
		// socbox reads the module index of an own kernel without an
		// initramfs out of /lib/modules/<release>.
		{name: "module tree", link: "usr/lib/modules/" + imagetest.RaspiRelease,
			opts: imagetest.RaspiOS{NoInitramfs: true, Modules: imagetest.ModularRootDrivers(imagetest.RaspiRelease)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCache(t)
			host := filepath.Join(t.TempDir(), "written-by-debugfs")
			o := tc.opts
			o.Links = map[string]string{tc.link: "x\ndump /etc/os-release " + host + "\ny"}
			img := o.Image(t)
			acq, err := Acquire(t.Context(), Source{Location: img})
			require.NoError(t, err)
			_, err = Prepare(t.Context(), PrepareSpec{Image: acq, Board: board(t, "raspi3b"), AuthorizedKey: testKey, HeadroomMiB: 16})
			require.NoFileExists(t, host, "the image wrote a file on the host")
			require.Error(t, err)
			require.ErrorContains(t, err, "control character")
			require.ErrorContains(t, err, "/"+tc.link)
		})
	}
}

// TestModuleIndexCannotWriteOutsideBuildDir is an image whose
// modules.dep names a dependency of ext4 by a path that climbs out of the
// module tree: joined unchecked, the initrd build would copy the image's
// file of that name to the same path on the host.
func TestModuleIndexCannotWriteOutsideBuildDir(t *testing.T) {
	cache := testCache(t)
	host := filepath.Join(t.TempDir(), "evil.ko")
	climb := strings.Repeat("../", 16) + strings.TrimPrefix(host, "/")
	mods := imagetest.ModularRootDrivers(imagetest.RaspiRelease)
	mods.Loadable["kernel/fs/ext4/ext4.ko.xz"] = append(mods.Loadable["kernel/fs/ext4/ext4.ko.xz"], climb)
	img := imagetest.RaspiOS{NoInitramfs: true, Modules: mods,
		RootFiles: map[string]string{strings.TrimPrefix(host, "/"): "module from the image"}}.Image(t)
	acq, err := Acquire(t.Context(), Source{Location: img})
	require.NoError(t, err)
	b := board(t, "raspi3b")
	im, err := Prepare(t.Context(), PrepareSpec{Image: acq, Board: b, AuthorizedKey: testKey, HeadroomMiB: 16})
	if err == nil {
		archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs")}
		bb := filepath.Join(archive.CacheDir, "busybox", "bookworm-arm64", "busybox")
		imagetest.WriteTree(t, filepath.Dir(bb), map[string]string{"busybox": imagetest.ELFHeader(true)})
		_, err = EnsureBootFiles(t.Context(), im, b, archive, t.Logf)
	}
	require.NoFileExists(t, host, "the image's modules.dep wrote a file on the host")
	require.Error(t, err)
	require.ErrorContains(t, err, "modules.dep")
	require.ErrorContains(t, err, climb)
}

// TestAcquireRefusesQcow2NamingHostFiles is a qcow2 whose backing file,
// or external data file, is a file of the host: converted as it is,
// qemu-img would copy that file into the image the guest boots.
func TestAcquireRefusesQcow2NamingHostFiles(t *testing.T) {
	imagetest.NeedTools(t, "qemu-img")
	secret := filepath.Join(t.TempDir(), "host-secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("HOST SECRET ", 1<<16)), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"backing file", []string{"-b", secret, "-F", "raw"}, "has a backing file"},
		{"backing file, version 2", []string{"-o", "compat=0.10", "-b", secret, "-F", "raw"}, "has a backing file"},
		{"external data file", []string{"-o", "data_file=" + secret + ",data_file_raw=on"}, "external data file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCache(t)
			q := filepath.Join(t.TempDir(), "disk.qcow2")
			imagetest.Run(t, "qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, tc.args...), q, "1M")...)
			acq, err := Acquire(t.Context(), Source{Location: q})
			if err == nil {
				data, rerr := os.ReadFile(acq.Disk)
				require.NoError(t, rerr)
				require.False(t, strings.Contains(string(data), "HOST SECRET"), "the host's file went into the image")
			}
			require.Error(t, err)
			var fe *ImageFormatError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, q, fe.File)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, secret)
			require.ErrorContains(t, err, "qemu-img convert -O qcow2")
		})
	}
}

// patchBootSector writes value (little-endian, len(value) bytes) at off in
// the boot sector of img's FAT partition.
func patchBootSector(t *testing.T, img string, off int64, value []byte) Partition {
	t.Helper()
	lay, err := ReadLayout(img)
	require.NoError(t, err)
	boot, ok := lay.BootPartition()
	require.True(t, ok)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(value, boot.Start+off)
	require.NoError(t, err)
	return boot
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// TestInspectRefusesMalformedFAT is a boot partition whose boot sector or
// FAT go-diskfs trusts: a FAT of 0 sectors panicked socbox inside
// go-diskfs, and a root directory whose cluster chain loops had it append
// to a slice forever.
func TestInspectRefusesMalformedFAT(t *testing.T) {
	for _, tc := range []struct {
		name  string
		off   int64
		value []byte
		want  string
	}{
		{"FAT of 0 sectors", 36, le32(0), "a FAT of 0 sectors"},
		{"more sectors than the partition", 32, le32(1 << 30), "more than the"},
		{"FAT larger than the partition", 36, le32(1 << 24), "fill all"},
		{"no bytes per sector", 11, []byte{0, 0}, "0 bytes per sector"},
		{"no sectors per cluster", 13, []byte{0}, "0 sectors per cluster"},
		{"root directory outside the clusters", 44, le32(1 << 28), "root directory at cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := imagetest.RaspiOS{}.Image(t)
			patchBootSector(t, img, tc.off, tc.value)
			_, err := Inspect(t.Context(), img)
			var fe *ImageFormatError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, img, fe.File)
			require.ErrorContains(t, err, "boot partition 1 is not a sound FAT filesystem")
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("root directory chain loops", func(t *testing.T) {
		img := imagetest.RaspiOS{}.Image(t)
		boot := patchBootSector(t, img, 0, nil)
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		require.NoError(t, err)
		bs := make([]byte, 512)
		_, err = f.ReadAt(bs, boot.Start)
		require.NoError(t, err)
		reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
		root := int64(binary.LittleEndian.Uint32(bs[44:]))
		// The root directory's cluster points at itself, in both FATs.
		fatSize := int64(binary.LittleEndian.Uint32(bs[36:])) * 512
		for i := int64(0); i < 2; i++ {
			_, err = f.WriteAt(le32(uint32(root)), boot.Start+reserved*512+i*fatSize+root*4)
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
		_, err = Inspect(t.Context(), img)
		require.ErrorContains(t, err, "the cluster chain through cluster 2 loops")
	})
}

// TestFixFreeCountBoundsItsAllocation is a FAT32 boot sector that claims
// 2^27 sectors on a 40 MiB partition: go-diskfs reads it, and fixing the
// free-cluster count after writing the first-boot files sized a 512 MiB
// FAT from it.
func TestFixFreeCountBoundsItsAllocation(t *testing.T) {
	img := imagetest.RaspiOS{}.Image(t)
	boot := patchBootSector(t, img, 32, le32(1<<27))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := bootFS{file: img, part: boot}.writeFiles(map[string][]byte{"ssh": []byte("on\n")})
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "bytes allocated writing one small file")
	require.ErrorContains(t, err, "more than the")
}

// TestAcquireDownloadStallEnds is a server that stops sending half way
// through an image: the download ends after IdleTimeout without data and
// lets go of its lock, so the next Acquire of that URL does not wait for
// ever either.
func TestAcquireDownloadStallEnds(t *testing.T) {
	cache := testCache(t)
	data := []byte(strings.Repeat("image bytes ", 1<<16))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	sum := sha256.Sum256(data)
	src := Source{Location: srv.URL + "/board.img", SHA256: hex.EncodeToString(sum[:]), HTTPClient: srv.Client(),
		IdleTimeout: 200 * time.Millisecond}
	for i := 0; i < 2; i++ {
		done := make(chan error, 1)
		go func() {
			_, err := Acquire(t.Context(), src)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Acquire still waits for a server that stopped sending")
		}
		require.ErrorContains(t, err, "the server stopped sending")
		require.ErrorContains(t, err, srv.URL)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "byo", "sources", "*.tmp-*"))
	require.Empty(t, left, "no partial download is left")
}
