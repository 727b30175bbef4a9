package scenarios

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/ociimage/ociimagetest"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// TestUserImages runs containers from user images on raspi4b-fast, one from
// each kind of source: an OCI layout directory, a docker save tarball and a
// registry (go-containerregistry's, in this process on 127.0.0.1: the host
// pulls, the guest never sees it). Each image is the busybox image with a
// layer holding /hello.txt, which the container prints, so the test knows
// which image ran. Then the refusals: an image for another platform.
func TestUserImages(t *testing.T) {
	bootsVM(t)
	if testing.Short() {
		t.Skip("boots a VM")
	}
	const slug = "raspi4b-fast"
	if sel := selectedBoards(t); len(sel) != len(boards.Slugs()) && !slices.Contains(sel, slug) {
		t.Skipf("board %s not selected", slug)
	}
	prof, err := boards.Lookup(slug)
	require.NoError(t, err)
	ctx := t.Context()
	base := busyboxFor(t, prof.Platform)
	dir := t.TempDir()

	// A layout with the board's image and one for another platform: the
	// board's is picked.
	layoutDir := filepath.Join(dir, "hello-layout")
	lp, err := layout.Write(layoutDir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(claim(t, withHello(t, base, "wrong platform picked\n"), "amd64"),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})))
	require.NoError(t, lp.AppendImage(withHello(t, base, "from an OCI layout\n"),
		layout.WithPlatform(v1.Platform{OS: prof.Platform.OS, Architecture: prof.Platform.Architecture, Variant: prof.Platform.Variant})))

	saved := filepath.Join(dir, "hello-saved.tar")
	tag, err := name.NewTag("example.com/socbox/hello:saved")
	require.NoError(t, err)
	require.NoError(t, tarball.WriteToFile(saved, tag, withHello(t, base, "from docker save\n")))

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host + "/socbox/hello:pulled")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, withHello(t, base, "from a registry\n")))

	intel := filepath.Join(dir, "intel-layout")
	lp, err = layout.Write(intel, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(claim(t, withHello(t, base, "never runs\n"), "amd64")))

	logs := &logRecorder{t: t}
	b := harness.Boot(t, slug, append([]harness.Option{harness.WithLogf(logs.logf),
		harness.WithArtifactsDir(filepath.Join(outputDir(t), "userimages-"+slug))}, suiteOption()...)...)

	for _, tc := range []struct{ name, source, hello string }{
		{"oci-layout", "oci:" + layoutDir, "from an OCI layout\n"},
		{"docker-archive", "docker-archive:" + saved, "from docker save\n"},
		{"registry", "docker://" + host + "/socbox/hello:pulled", "from a registry\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := b.Run(ctx, harness.Container{Image: tc.source, Cmd: []string{"cat", "/hello.txt"}})
			require.NoError(t, err)
			require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
			require.Equal(t, tc.hello, string(res.Stdout))
		})
	}

	t.Run("second run does not import again", func(t *testing.T) {
		before := logs.count("importing as")
		res, err := b.Run(ctx, harness.Container{Image: "oci:" + layoutDir, Cmd: []string{"uname", "-m"}})
		require.NoError(t, err)
		require.Equal(t, prof.Platform.UnameMachine()+"\n", string(res.Stdout))
		require.Equal(t, before, logs.count("importing as"))
		require.Equal(t, 1, logs.count("already imported as socbox.local/hello-layout:latest"))
	})

	t.Run("imported name runs as a bare name", func(t *testing.T) {
		imgName, err := b.ImportImage(ctx, "docker-archive:"+saved)
		require.NoError(t, err)
		require.Equal(t, "example.com/socbox/hello:saved", imgName, "named by its tag")
		res, err := b.Run(ctx, harness.Container{Image: imgName, Cmd: []string{"cat", "/hello.txt"}})
		require.NoError(t, err)
		require.Equal(t, "from docker save\n", string(res.Stdout))
	})

	t.Run("wrong platform", func(t *testing.T) {
		before := logs.count("importing as")
		_, err := b.Run(ctx, harness.Container{Image: "oci:" + intel, Cmd: []string{"true"}})
		require.ErrorIs(t, err, ociimage.ErrWrongPlatform)
		require.ErrorContains(t, err, "import image on raspi4b-fast: load oci:"+intel+": wrong platform: the image is for linux/amd64, but the board runs linux/arm64: build it for the board (docker buildx build --platform linux/arm64)")
		require.Equal(t, before, logs.count("importing as"), "nothing was sent to the guest")
	})

	t.Run("yaml", func(t *testing.T) {
		// A scenario file next to its image, naming it by a relative path.
		ydir := filepath.Join(dir, "yaml")
		require.NoError(t, os.MkdirAll(ydir, 0o755))
		require.NoError(t, os.Rename(layoutDir, filepath.Join(ydir, "layout")))
		file := filepath.Join(ydir, "hello.yaml")
		require.NoError(t, os.WriteFile(file, []byte(`- name: hello-from-layout
  container:
    image: oci:./layout
    cmd: [cat, /hello.txt]
  expect:
    stdout: "from an OCI layout\n"
`), 0o644))
		list, err := scenario.Load(file)
		require.NoError(t, err)
		require.Len(t, list, 1)
		r := b.RunScenario(ctx, list[0])
		require.Empty(t, r.Failures, "stdout %q, stderr %q", r.Stdout, r.Stderr)
	})
}

// busyboxFor is socbox's busybox image for p, built from Debian's
// busybox-static for p (cached with the default image's packages).
func busyboxFor(t *testing.T, p boards.Platform) v1.Image {
	t.Helper()
	cache, err := images.CacheDir()
	require.NoError(t, err)
	archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs"), Logf: t.Logf}
	bb, err := images.BusyboxBinary(t.Context(), archive, images.DefaultSuite, p.DebianArch())
	require.NoError(t, err)
	img, err := ociimage.Busybox(bb, p)
	require.NoError(t, err)
	return img
}

// withHello adds a layer with /hello.txt to img.
func withHello(t *testing.T, img v1.Image, hello string) v1.Image {
	return ociimagetest.WithFile(t, img, "hello.txt", hello)
}

// claim makes img's config say it is for linux/arch, as an image built for
// another board would.
func claim(t *testing.T, img v1.Image, arch string) v1.Image {
	t.Helper()
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.Variant = arch, ""
	img, err = mutate.ConfigFile(img, cfg)
	require.NoError(t, err)
	return img
}

// logRecorder passes the harness's log to the test and keeps it, so that
// the test can tell what the harness did.
type logRecorder struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.t.Logf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
