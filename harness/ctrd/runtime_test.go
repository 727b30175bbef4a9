package ctrd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/harness/sshx/sshtest"
)

const busyboxRef = "socbox.local/busybox:latest"

// hostPlatform is the platform of this host, which the test daemon runs.
func hostPlatform(t *testing.T) boards.Platform {
	switch runtime.GOARCH {
	case "amd64":
		return boards.Platform{OS: "linux", Architecture: "amd64"}
	case "arm64":
		return boards.LinuxARM64
	}
	t.Skipf("no test platform for GOARCH=%s", runtime.GOARCH)
	return boards.Platform{}
}

// busyboxArchive is the busybox image for p, built from the host's static
// busybox, as an OCI archive. If claim is set, the image config claims that
// platform instead, as an image for another board would, and sets
// CLAIMED to it so that a container shows which config it got.
func busyboxArchive(t *testing.T, p boards.Platform, ref string, claim *boards.Platform) []byte {
	t.Helper()
	const busybox = "/bin/busybox"
	if err := ociimage.CheckStaticBinary(busybox, p); err != nil {
		t.Skipf("needs a static busybox for %s at %s (apt-get install busybox-static): %v", p, busybox, err)
	}
	img, err := ociimage.Busybox(busybox, p)
	require.NoError(t, err)
	if claim != nil {
		cfg, err := img.ConfigFile()
		require.NoError(t, err)
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture, cfg.Variant = claim.OS, claim.Architecture, claim.Variant
		cfg.Config.Env = append(cfg.Config.Env, "CLAIMED="+claim.String())
		img, err = mutate.ConfigFile(img, cfg)
		require.NoError(t, err)
	}
	var buf bytes.Buffer
	require.NoError(t, ociimage.WriteArchive(&buf, img, ref))
	return buf.Bytes()
}

func TestRuntimeAgainstContainerd(t *testing.T) {
	p := hostPlatform(t)
	archive := busyboxArchive(t, p, busyboxRef, nil)
	d := startContainerd(t)
	stateDir := filepath.Join(d.dir, "guest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r, err := Connect(ctx, localShell{}, WithSocket(d.socket), WithStateDir(stateDir))
	t.Cleanup(func() { r.Close() })
	require.NoError(t, err)
	version, err := r.Version(ctx)
	require.NoError(t, err)
	t.Logf("containerd %s, platform %s", version, r.Platform())
	require.Equal(t, p.OS, r.Platform().OS, "platform from the daemon")
	require.Equal(t, p.Architecture, r.Platform().Architecture, "platform from the daemon")

	start := time.Now()
	name, err := r.Import(ctx, bytes.NewReader(archive), p)
	require.NoError(t, err)
	require.Equal(t, busyboxRef, name)
	t.Logf("import took %s", time.Since(start).Round(time.Millisecond))

	runCases(t, ctx, r, d, stateDir, name, p)

	t.Run("wrong platform is refused", func(t *testing.T) {
		ref := "socbox.local/busybox:arm64"
		arm64 := busyboxArchive(t, p, ref, &boards.LinuxARM64)
		_, err := r.Import(ctx, bytes.NewReader(arm64), p)
		require.ErrorIs(t, err, ErrPlatformMismatch)
		require.ErrorContains(t, err, "the archive's index has linux/arm64, not "+p.String())
		requireNoImage(t, ctx, r, ref)

		// Without a platform in the index, the config is what tells.
		_, err = r.Import(ctx, bytes.NewReader(stripIndexPlatforms(t, arm64)), p)
		require.ErrorIs(t, err, ErrPlatformMismatch)
		require.ErrorContains(t, err, ref+" is for linux/arm64, not "+p.String())
		requireNoImage(t, ctx, r, ref)

		// An image put there by other means is refused by Run.
		_, err = r.client.Import(r.withNamespace(ctx), bytes.NewReader(arm64), client.WithAllPlatforms(true))
		require.NoError(t, err)
		_, err = r.Run(ctx, Container{Image: ref, Cmd: []string{"true"}})
		require.ErrorIs(t, err, ErrPlatformMismatch)
		require.ErrorContains(t, err, "image "+ref+" has nothing for "+r.Platform().String())
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("multi-platform archive", func(t *testing.T) {
		// One name on two manifests: containerd's importer leaves it on
		// the last, here the arm64 one, whose content it did not import.
		ref := "socbox.local/busybox:multi"
		archive := mergeArchives(t,
			busyboxArchive(t, p, ref, nil),
			busyboxArchive(t, p, ref, &boards.LinuxARM64))
		name, err := r.Import(ctx, bytes.NewReader(archive), p)
		require.NoError(t, err)
		require.Equal(t, ref, name)
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo ${CLAIMED:-none}"}})
		require.NoError(t, err)
		require.Equal(t, "none\n", string(res.Stdout), "ran the other platform's config")

		// A name only on the other platform's manifest is not kept.
		other := "socbox.local/busybox:multi-arm64"
		archive = mergeArchives(t,
			busyboxArchive(t, p, "socbox.local/busybox:multi-host", nil),
			busyboxArchive(t, p, other, &boards.LinuxARM64))
		name, err = r.Import(ctx, bytes.NewReader(archive), p)
		require.NoError(t, err)
		require.Equal(t, "socbox.local/busybox:multi-host", name)
		requireNoImage(t, ctx, r, other)
	})

	t.Run("missing image", func(t *testing.T) {
		_, err := r.Run(ctx, Container{Image: "socbox.local/nothing:here", Cmd: []string{"true"}})
		require.ErrorContains(t, err, "image socbox.local/nothing:here is not in the guest's containerd")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("no daemon", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := Connect(ctx, localShell{}, WithSocket(filepath.Join(d.dir, "absent.sock")))
		require.ErrorContains(t, err, "is containerd installed and running in the guest?")
	})
}

// TestRuntimeThroughSSH takes the production path: the containerd client
// dialled through a real SSH connection (sshx.Client to an sshtest server),
// the output read back with SSH commands.
func TestRuntimeThroughSSH(t *testing.T) {
	p := hostPlatform(t)
	archive := busyboxArchive(t, p, busyboxRef, nil)
	d := startContainerd(t)
	stateDir := filepath.Join(d.dir, "guest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(key)
	require.NoError(t, err)
	srv := sshtest.NewServer(t, sshtest.WithAuthorizedKey(signer.PublicKey()))
	sh, err := sshx.Dial(ctx, sshx.Config{Endpoint: srv.Endpoint(), Signer: signer, HostKeys: sshx.NewHostKeys(srv.HostKey())})
	t.Cleanup(func() { sh.Close() })
	require.NoError(t, err)

	r, err := Connect(ctx, sh, WithSocket(d.socket), WithStateDir(stateDir), WithPlatform(p))
	t.Cleanup(func() { r.Close() })
	require.NoError(t, err)
	version, err := r.Version(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, version)

	start := time.Now()
	name, err := r.Import(ctx, bytes.NewReader(archive), p)
	require.NoError(t, err)
	require.Equal(t, busyboxRef, name)
	t.Logf("import over ssh took %s", time.Since(start).Round(time.Millisecond))

	runCases(t, ctx, r, d, stateDir, name, p)
}

// runCases runs the container cases against r, with image name imported.
func runCases(t *testing.T, ctx context.Context, r *Runtime, d *testDaemon, stateDir, name string, p boards.Platform) {
	t.Run("uname", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Name: "uname", Image: name, Cmd: []string{"uname", "-m"}})
		require.NoError(t, err)
		require.Equal(t, 0, res.ExitCode)
		require.Equal(t, p.UnameMachine()+"\n", string(res.Stdout))
		require.Empty(t, res.Stderr)
		require.True(t, strings.HasPrefix(res.ID, "uname-"), res.ID)
		t.Logf("ran in %s", res.Duration.Round(time.Millisecond))
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("exit code and separate streams", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
		require.NoError(t, err, "a non-zero exit is a result")
		require.Equal(t, 3, res.ExitCode)
		require.Equal(t, "out\n", string(res.Stdout))
		require.Equal(t, "err\n", string(res.Stderr))
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("output lines come while it runs", func(t *testing.T) {
		if _, local := r.sh.(localShell); local {
			t.Skip("the local shell streams nothing: this runs through SSH in TestRuntimeThroughSSH")
		}
		type line struct {
			stream, text string
			at           time.Time
		}
		var mu sync.Mutex
		var got []line
		c := Container{Image: name, OutputLimit: 16, Cmd: []string{"sh", "-c",
			"echo first; sleep 3; echo 'second\033[2J' >&2; seq 1 5; printf last-without-newline"},
			OutputLines: func(stream, text string) {
				mu.Lock()
				got = append(got, line{stream, text, time.Now()})
				mu.Unlock()
			}}
		res, err := r.Run(ctx, c)
		returned := time.Now()
		require.NoError(t, err)
		require.Equal(t, "first\n1\n2\n3\n4\n5\n", string(res.Stdout), "the capture and its limit are as without lines")
		mu.Lock()
		defer mu.Unlock()
		var stdout, stderr []string
		for _, l := range got {
			if l.stream == "stdout" {
				stdout = append(stdout, l.text)
			} else {
				stderr = append(stderr, l.text)
			}
		}
		require.Equal(t, []string{"first", "1", "2", "3", "4", "5", "last-without-newline"}, stdout, "every line, past the capture's limit too")
		require.Equal(t, []string{"second\uFFFD[2J"}, stderr, "made safe to print")
		require.Equal(t, "first", got[0].text)
		require.Greater(t, returned.Sub(got[0].at), 2*time.Second, "the first line came while the container ran")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("env and working dir", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", `echo "$GREETING"; pwd; echo "$PATH"`},
			Env: []string{"GREETING=hello board"}, WorkingDir: "/tmp"})
		require.NoError(t, err)
		require.Equal(t, "hello board\n/tmp\n"+ociimage.DefaultPath+"\n", string(res.Stdout))
	})

	t.Run("1 MB of output arrives intact", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c",
			"head -c 1048576 /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob"}})
		require.NoError(t, err)
		require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
		require.Len(t, res.Stdout, 1<<20)
		sum := sha256.Sum256(res.Stdout)
		require.Equal(t, hex.EncodeToString(sum[:])+"  /tmp/blob\n", string(res.Stderr))
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("output is cut at the limit", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, OutputLimit: 1 << 20, Collect: []string{"/big", "/small"}, Cmd: []string{"sh", "-c",
			"yes | head -c 3000000; echo small >&2; yes | head -c 2000000 > /big; echo small > /small"}})
		require.NoError(t, err)
		require.Len(t, res.Stdout, 1<<20)
		require.Equal(t, "y\ny\n", string(res.Stdout[:4]))
		require.Len(t, res.Files["/big"], 1<<20)
		require.Equal(t, "small\n", string(res.Stderr))
		require.Equal(t, "small\n", string(res.Files["/small"]))
		require.Equal(t, map[string]int64{"stdout": 3000000, "/big": 2000000}, res.Truncated)
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("a flood of output stops at the default limit", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "yes | head -c 40000000"}})
		require.NoError(t, err)
		require.Len(t, res.Stdout, sshx.DefaultOutputLimit)
		require.EqualValues(t, 40000000, res.Truncated["stdout"])
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("both streams large at once", func(t *testing.T) {
		var want strings.Builder
		for i := 1; i <= 100000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "seq 1 100000 | tee /dev/stderr"}})
		require.NoError(t, err)
		require.Equal(t, 0, res.ExitCode)
		require.Equal(t, want.String(), string(res.Stdout))
		require.Equal(t, want.String(), string(res.Stderr))
	})

	t.Run("bind mounts, read-only and writable", func(t *testing.T) {
		ro, rw := t.TempDir(), t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(ro, "hello"), []byte("from the machine\n"), 0o644))
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c",
			"cat /ro/hello; touch /ro/x 2>/dev/null || echo ro refused; echo written > /rw/out"},
			Mounts: []Mount{{Source: ro, Target: "/ro", ReadOnly: true}, {Source: rw, Target: "/rw"}}})
		require.NoError(t, err)
		require.Equal(t, "from the machine\nro refused\n", string(res.Stdout), string(res.Stderr))
		out, err := os.ReadFile(filepath.Join(rw, "out"))
		require.NoError(t, err)
		require.Equal(t, "written\n", string(out))
	})

	t.Run("network namespace, own or the machine's", func(t *testing.T) {
		ifaces := `sed -n "s/^ *\([^:]*\):.*/\1/p" /proc/net/dev | sort`
		own, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", ifaces}})
		require.NoError(t, err)
		require.Equal(t, "lo\n", string(own.Stdout), string(own.Stderr))
		host, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", ifaces + "; cat /etc/resolv.conf >/dev/null && echo resolv"}, HostNetwork: true})
		require.NoError(t, err)
		require.Contains(t, string(host.Stdout), "lo\n")
		require.Greater(t, strings.Count(string(host.Stdout), "\n"), 2, "more than lo: %q", host.Stdout)
		require.True(t, strings.HasSuffix(string(host.Stdout), "resolv\n"), string(host.Stderr))
	})

	t.Run("host network on a guest without /etc/hosts", func(t *testing.T) {
		// A minimal Debian root has no /etc/hosts, and may have a
		// resolv.conf that points nowhere.
		etc := t.TempDir()
		require.NoError(t, os.Symlink("/run/systemd/resolve/nowhere.conf", filepath.Join(etc, "resolv.conf")))
		other, err := Connect(ctx, r.sh, WithSocket(d.socket), WithStateDir(filepath.Join(t.TempDir(), "state")))
		require.NoError(t, err)
		defer other.Close()
		other.etcDir = etc
		res, err := other.Run(ctx, Container{Image: name, HostNetwork: true,
			Cmd: []string{"sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf"}})
		require.NoError(t, err)
		hostname, err := os.ReadFile("/proc/sys/kernel/hostname")
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t"+string(hostname)+"---\n", string(res.Stdout), string(res.Stderr))
	})

	t.Run("memory limit, not reached", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"echo", "ok"}, MemoryLimit: 64 << 20})
		require.NoError(t, err)
		require.Equal(t, "ok\n", string(res.Stdout), string(res.Stderr))
		require.False(t, res.OOMKilled)
	})

	t.Run("files in and out of the root filesystem", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c",
			"cat /etc/greeting; ls -l /opt/tool/run | cut -c1-10; mkdir -p /out && echo made > /out/result"},
			Files:   []File{{Path: "/etc/greeting", Content: []byte("hi from the host\n")}, {Path: "/opt/tool/run", Content: []byte("#!/bin/sh\n"), Mode: 0o755}},
			Collect: []string{"/out/result", "/etc/greeting", "/not/there"}})
		require.NoError(t, err)
		require.Equal(t, "hi from the host\n-rwxr-xr-x\n", string(res.Stdout), string(res.Stderr))
		require.Equal(t, map[string][]byte{"/out/result": []byte("made\n"), "/etc/greeting": []byte("hi from the host\n")}, res.Files)
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("files keep the modes of the directories they go into", func(t *testing.T) {
		// /tmp is 1777 in the image: a file put there must not make it
		// 0755 in the container, and missing parents are made as mkdir -p
		// makes them.
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"stat", "-c", "%a %n", "/tmp", "/tmp/sub", "/etc", "/new", "/new/dir"},
			Files: []File{{Path: "/tmp/sub/x", Content: []byte("x")}, {Path: "/etc/x", Content: []byte("x")}, {Path: "/new/dir/y", Content: []byte("y")}}})
		require.NoError(t, err)
		require.Equal(t, "1777 /tmp\n755 /tmp/sub\n755 /etc\n755 /new\n755 /new/dir\n", string(res.Stdout), string(res.Stderr))
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("a restart keeps the root filesystem", func(t *testing.T) {
		res, err := r.Run(ctx, Container{Image: name, Restarts: 2, Cmd: []string{"sh", "-c",
			"echo run >> /runs; wc -l < /runs; exit $(wc -l < /runs)"}})
		require.NoError(t, err)
		require.Equal(t, 3, res.Runs)
		require.Equal(t, "1\n2\n3\n", string(res.Stdout), "output of every run: %s", res.Stderr)
		require.Equal(t, 3, res.ExitCode, "the last run's")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("seccomp: the default profile unless privileged or unconfined", func(t *testing.T) {
		mode := []string{"sh", "-c", "grep Seccomp: /proc/self/status"}
		res, err := r.Run(ctx, Container{Image: name, Cmd: mode})
		require.NoError(t, err)
		require.Equal(t, "Seccomp:\t2\n", string(res.Stdout), string(res.Stderr))
		res, err = r.Run(ctx, Container{Image: name, Cmd: mode, SeccompUnconfined: true})
		require.NoError(t, err)
		require.Equal(t, "Seccomp:\t0\n", string(res.Stdout), string(res.Stderr))
	})

	t.Run("a service on a bridge network, reached by name", func(t *testing.T) {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("needs iproute2")
		}
		n, err := r.CreateNetwork(ctx, "utest")
		require.NoError(t, err)
		defer func() { require.NoError(t, n.Remove(context.WithoutCancel(ctx))) }()
		web, err := r.Start(ctx, Container{Name: "web", Image: name, Network: n, Ports: []int{8080},
			Cmd:   []string{"httpd", "-f", "-p", "8080", "-h", "/www"},
			Files: []File{{Path: "/www/index.html", Content: []byte("served\n")}}})
		require.NoError(t, err)
		defer web.Stop(context.WithoutCancel(ctx), 0) // a no-op once stopped
		require.Equal(t, "10.213.0.2", web.IP())
		res, err := r.Run(ctx, Container{Name: "client", Image: name, Network: n, Cmd: []string{"sh", "-c",
			// Debian bookworm's static busybox wget crashes at start; nc
			// does the HTTP request instead.
			"hostname; for i in $(seq 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 8080 | tail -n 1 | grep . && break; sleep 0.2; done; ping -c 1 -W 2 gateway >/dev/null && echo gateway answers"}})
		require.NoError(t, err)
		require.Equal(t, "client\nserved\ngateway answers\n", string(res.Stdout), string(res.Stderr))
		require.Equal(t, "10.213.0.3", res.IP)
		stopped, err := web.Stop(ctx, time.Second)
		require.NoError(t, err)
		// httpd is PID 1 in its namespace, where SIGTERM does nothing
		// unless handled: the SIGKILL after the grace period ends it.
		require.Equal(t, 137, stopped.ExitCode)
		_, err = web.Wait(ctx)
		require.ErrorContains(t, err, "already")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("bad containers are refused before anything is made", func(t *testing.T) {
		_, err := r.Run(ctx, Container{Image: name, Cmd: []string{"true"}, Ports: []int{80}})
		require.ErrorContains(t, err, "only loopback cannot be reached")
		_, err = r.Run(ctx, Container{Image: name, Cmd: []string{"true"}, Files: []File{{Path: "rel"}}})
		require.ErrorContains(t, err, "absolute")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("output files are emptied and used again by the next container", func(t *testing.T) {
		require.NoError(t, r.DropOutputs(ctx))
		_, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo first; echo first-err >&2"}})
		require.NoError(t, err)
		require.Len(t, r.outputs, 1)
		ahead := r.outputs[0]
		for _, f := range []string{ahead.stdout, ahead.stderr} {
			st, err := os.Stat(f)
			require.NoError(t, err)
			require.Zero(t, st.Size(), "emptied once read")
		}
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo used"}})
		require.NoError(t, err)
		require.Equal(t, "used\n", string(res.Stdout), "nothing of the first container's output")
		require.Empty(t, res.Stderr)
		require.Equal(t, []guestOutput{ahead}, r.outputs, "the same files, handed back")
		require.NoError(t, r.DropOutputs(ctx))
		require.NoDirExists(t, ahead.dir)
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("a warm shim serves the next containers", func(t *testing.T) {
		require.NoError(t, r.KeepShimWarm(ctx, name))
		require.NoError(t, r.KeepShimWarm(ctx, name), "a second call finds it running")
		require.Len(t, d.shims(), 1, "the keeper's shim")
		for range 2 {
			res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo in the group"}})
			require.NoError(t, err)
			require.Equal(t, "in the group\n", string(res.Stdout), string(res.Stderr))
			require.Len(t, d.shims(), 1, "no shim of its own")
			var names []string
			for _, p := range res.Phases {
				names = append(names, p.Name)
			}
			require.Equal(t, []string{"image", "create container", "output files", "create task", "start task", "run", "remove task", "read output", "remove container"}, names)
		}
		require.NoError(t, r.StopShimKeeper(ctx))
		require.NoError(t, r.StopShimKeeper(ctx), "nothing to stop")
		require.Eventually(t, func() bool { return len(d.shims()) == 0 }, 10*time.Second, 100*time.Millisecond, "the shim exits with its last container")
		requireNothingLeft(t, ctx, r, d, stateDir)
	})

	t.Run("cancel kills and cleans up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo started; sleep 60"}})
		elapsed := time.Since(start)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, elapsed, 10*time.Second)
		require.Equal(t, 137, res.ExitCode, "128+SIGKILL")
		require.Equal(t, "started\n", string(res.Stdout), "output so far")
		t.Logf("returned %s after the deadline", (elapsed - 1500*time.Millisecond).Round(time.Millisecond))
		requireNothingLeft(t, ctx, r, d, stateDir)
	})
	t.Run("timeout kills and cleans up", func(t *testing.T) {
		start := time.Now()
		res, err := r.Run(ctx, Container{Image: name, Cmd: []string{"sh", "-c", "echo started; echo to stderr >&2; sleep 60"}, Timeout: 1500 * time.Millisecond})
		elapsed := time.Since(start)
		var te *TimeoutError
		require.ErrorAs(t, err, &te)
		require.Equal(t, 1500*time.Millisecond, te.Limit)
		require.ErrorContains(t, err, "timed out after 1.5s and was killed")
		require.NoError(t, ctx.Err(), "the run's own context goes on")
		require.Less(t, elapsed, 15*time.Second)
		require.Equal(t, 137, res.ExitCode, "128+SIGKILL")
		require.Equal(t, "started\n", string(res.Stdout), "output so far")
		require.Equal(t, "to stderr\n", string(res.Stderr), "output so far")
		require.GreaterOrEqual(t, res.Duration, 1500*time.Millisecond)
		requireNothingLeft(t, ctx, r, d, stateDir)

		// A container that ends in time is not touched by its limit.
		res, err = r.Run(ctx, Container{Image: name, Cmd: []string{"echo", "quick"}, Timeout: time.Minute})
		require.NoError(t, err)
		require.Equal(t, "quick\n", string(res.Stdout))
	})
}

// requireNothingLeft checks that no container, task, active snapshot,
// lease, mount or output file is left in the daemon.
func requireNothingLeft(t *testing.T, ctx context.Context, r *Runtime, d *testDaemon, stateDir string) {
	t.Helper()
	ctx = r.withNamespace(context.WithoutCancel(ctx))
	containers, err := r.client.Containers(ctx)
	require.NoError(t, err)
	require.Empty(t, containers, "containers")

	ts, err := r.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	require.NoError(t, err)
	require.Empty(t, ts.Tasks, "tasks")

	var active []string
	err = r.client.SnapshotService(r.snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			active = append(active, info.Name)
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, active, "active snapshots")

	leases, err := r.client.LeasesService().List(ctx)
	require.NoError(t, err)
	require.Empty(t, leases, "leases")

	require.Empty(t, d.mounts(), "mounts under the daemon's directory")

	// Output files made ahead for a next container are all that may be
	// left; once dropped, nothing is.
	require.NoError(t, r.DropOutputs(ctx))
	entries, err := os.ReadDir(filepath.Join(stateDir, "containers"))
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	require.Empty(t, entries, "output directories")
}

func requireNoImage(t *testing.T, ctx context.Context, r *Runtime, name string) {
	t.Helper()
	imgs, err := r.client.ImageService().List(r.withNamespace(ctx))
	require.NoError(t, err)
	for _, img := range imgs {
		require.NotEqual(t, name, img.Name, "image left behind")
	}
}

// stripIndexPlatforms removes the platform from the index entries of an OCI
// archive, as some tools write them.
func stripIndexPlatforms(t *testing.T, archive []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(archive))
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		if h.Name == "index.json" {
			var index map[string]any
			require.NoError(t, json.Unmarshal(data, &index))
			for _, m := range index["manifests"].([]any) {
				delete(m.(map[string]any), "platform")
			}
			data, err = json.Marshal(index)
			require.NoError(t, err)
			h.Size = int64(len(data))
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err = tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return out.Bytes()
}

// mergeArchives joins OCI archives into one whose index lists the manifests
// of all, in order.
func mergeArchives(t *testing.T, archives ...[]byte) []byte {
	t.Helper()
	var (
		index map[string]any
		names []string
		files = map[string][]byte{}
	)
	for _, a := range archives {
		tr := tar.NewReader(bytes.NewReader(a))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			if h.Typeflag != tar.TypeReg {
				continue
			}
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			if h.Name == "index.json" {
				var idx map[string]any
				require.NoError(t, json.Unmarshal(data, &idx))
				if index == nil {
					index = idx
				} else {
					index["manifests"] = append(index["manifests"].([]any), idx["manifests"].([]any)...)
				}
				continue
			}
			if _, ok := files[h.Name]; !ok {
				names = append(names, h.Name)
			}
			files[h.Name] = data
		}
	}
	data, err := json.Marshal(index)
	require.NoError(t, err)
	files["index.json"] = data
	names = append(names, "index.json")

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, name := range names {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(files[name]))}))
		_, err := tw.Write(files[name])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return out.Bytes()
}
