package ctrd

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/ociimage/ociimagetest"
)

// TestImportUserImages takes user images from each kind of source through
// the host side (ociimage) into a real containerd, and runs them: what the
// daemon gets from a layout, a docker save tarball and a registry is an
// image it stores, unpacks and starts.
func TestImportUserImages(t *testing.T) {
	p := hostPlatform(t)
	d := startContainerd(t)
	stateDir := filepath.Join(d.dir, "guest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Connect(ctx, localShell{}, WithSocket(d.socket), WithStateDir(stateDir))
	t.Cleanup(func() { r.Close() })
	require.NoError(t, err)

	dir := t.TempDir()
	oci := filepath.Join(dir, "layout")
	lp, err := layout.Write(oci, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(helloImage(t, p, "from a layout\n")))

	saved := filepath.Join(dir, "saved.tar")
	ociimagetest.DockerSave(t, saved, helloImage(t, p, "from docker save\n"), "example.com/saved:1")

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host + "/test/hello:1")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, helloImage(t, p, "from a registry\n")))

	for _, tc := range []struct{ source, name, hello string }{
		{"oci:" + oci, "socbox.local/layout:latest", "from a layout\n"},
		{"docker-archive:" + saved, "example.com/saved:1", "from docker save\n"},
		{"docker://" + host + "/test/hello:1", host + "/test/hello:1", "from a registry\n"},
	} {
		t.Run(strings.SplitN(tc.source, ":", 2)[0], func(t *testing.T) {
			src, err := ociimage.ParseSource(tc.source)
			require.NoError(t, err)
			img, err := src.Load(ctx, p)
			require.NoError(t, err)
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(ociimage.WriteArchive(pw, img.Image, img.Name)) }()
			start := time.Now()
			got, err := r.Import(ctx, pr, p)
			pr.CloseWithError(err)
			require.NoError(t, err)
			require.Equal(t, tc.name, got)
			t.Logf("%s: %d bytes imported in %s", tc.source, img.Size, time.Since(start).Round(time.Millisecond))

			res, err := r.Run(ctx, Container{Image: got, Cmd: []string{"cat", "/hello.txt"}})
			require.NoError(t, err)
			require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
			require.Equal(t, tc.hello, string(res.Stdout))
		})
	}
}

// helloImage is the host's busybox image with a layer holding /hello.txt.
func helloImage(t *testing.T, p boards.Platform, hello string) v1.Image {
	t.Helper()
	const busybox = "/bin/busybox"
	if err := ociimage.CheckStaticBinary(busybox, p); err != nil {
		t.Skipf("needs a static busybox for %s at %s (apt-get install busybox-static): %v", p, busybox, err)
	}
	img, err := ociimage.Busybox(busybox, p)
	require.NoError(t, err)
	return ociimagetest.WithFile(t, img, "hello.txt", hello)
}
