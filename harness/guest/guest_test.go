package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/sshx"
)

// localShell runs each command line with this machine's /bin/sh, as the
// guest's sshd would, with stub commands first on PATH that log their
// argv (one argument a line) instead of touching this machine.
type localShell struct {
	dir     string // stubs and their logs
	uploads map[string]string
}

func newLocalShell(t *testing.T, stubs map[string]string) *localShell {
	t.Helper()
	dir := t.TempDir()
	for name, body := range stubs {
		s := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" >> " + filepath.Join(dir, "log") + "\n" + body + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(s), 0o755))
	}
	return &localShell{dir: dir, uploads: map[string]string{}}
}

func (l *localShell) Run(ctx context.Context, cmd string, _ ...sshx.RunOption) (sshx.Result, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = append(os.Environ(), "PATH="+l.dir+":"+os.Getenv("PATH"))
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	res := sshx.Result{Command: cmd, Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitCode()
		return res, nil
	}
	return res, err
}

func (l *localShell) Upload(_ context.Context, r io.Reader, path string, _ os.FileMode) error {
	b, err := io.ReadAll(r)
	l.uploads[path] = string(b)
	return err
}

// calls are the stubs' argv, each joined by spaces, with the stub's name
// first.
func (l *localShell) calls(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(l.dir, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, a := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if strings.HasPrefix(a, l.dir+"/") {
			out = append(out, strings.TrimPrefix(a, l.dir+"/"))
			continue
		}
		out[len(out)-1] += " " + a
	}
	return out
}

func TestSetClockPassesTheTimeAsOneArgument(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"date": ""})
	require.NoError(t, SetClock(t.Context(), sh, time.Unix(1700000000, 5).In(time.FixedZone("x", 3600))))
	require.Equal(t, []string{"date -u -s @1700000000.000000005"}, sh.calls(t))
}

func TestGuestFailuresAreExitErrors(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"modprobe": "echo 'modprobe: FATAL: Module x not found' >&2; exit 1"})
	err := LoadModules(t.Context(), sh, "x", "$(reboot)")
	var exit *ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 1, exit.Status)
	require.Contains(t, exit.Output, "Module x not found")
	require.Equal(t, []string{"modprobe -a -- x $(reboot)"}, sh.calls(t), "a module name is an argument, never shell text")
	require.NoError(t, LoadModules(t.Context(), sh), "nothing to load")
}

func TestUnitsAndSocketsAreArguments(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"systemctl": ""})
	sock := filepath.Join(t.TempDir(), "it's a socket")
	require.NoError(t, StartUnitUnlessSocket(t.Context(), sh, "containerd", sock))
	require.NoError(t, EnableUnit(t.Context(), sh, "a;b.service"))
	require.Equal(t, []string{"systemctl start containerd", "systemctl enable a;b.service"}, sh.calls(t))
}

func TestWaitAddressPollsInTheGuest(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"ip": `case "$*" in *global*) echo "2: eth0 inet 10.0.2.15/24";; *) echo "1: lo";; esac`, "sleep": ""})
	require.NoError(t, WaitAddress(t.Context(), sh, time.Second))
	require.Equal(t, []string{"ip -4 -o addr show scope global"}, sh.calls(t))

	sh = newLocalShell(t, map[string]string{"ip": `echo "1: lo"`, "sleep": ""})
	err := WaitAddress(t.Context(), sh, 300*time.Millisecond)
	var exit *ExitError
	require.ErrorAs(t, err, &exit)
	require.Contains(t, exit.Output, "1: lo", "what the guest has is in the error")
	require.Len(t, sh.calls(t), 7, "three tries with a pause after each, then the addresses it has")
}

func TestDpkgAndAptTakePackagesAsArguments(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"dpkg": "", "apt-get": "", "rm": ""})
	require.NoError(t, DpkgInstall(t.Context(), sh, "/var/cache/socbox/debs", "/var/cache/socbox/debs/a b.deb", "/var/cache/socbox/debs/c.deb"))
	require.NoError(t, AptInstall(t.Context(), sh, "containerd", "runc"))
	require.Equal(t, []string{
		"dpkg -i /var/cache/socbox/debs/a b.deb /var/cache/socbox/debs/c.deb",
		"rm -rf -- /var/cache/socbox/debs",
		"apt-get -q -o Acquire::Retries=3 update",
		"apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends containerd runc",
	}, sh.calls(t))
}

func TestReadOSAndFacts(t *testing.T) {
	g, err := parseOS("trixie\narm64\nii  dpkg\nrc  old\nii  libc6:arm64\n")
	require.NoError(t, err)
	require.Equal(t, OS{Suite: "trixie", Arch: "arm64", Installed: map[string]bool{"dpkg": true, "libc6": true}}, g)
	_, err = parseOS("\narm64\n")
	require.ErrorContains(t, err, "no VERSION_CODENAME")

	// The real script, run by this machine's shell.
	f, err := ReadFacts(t.Context(), newLocalShell(t, nil))
	require.NoError(t, err)
	require.NotEmpty(t, f.Kernel)
	require.NotEmpty(t, f.Machine)
	require.Equal(t, os.Getuid(), f.UID)

	_, err = ParseFacts("garbage")
	require.ErrorContains(t, err, "unexpected answer")
	require.Equal(t, "armhf", Facts{Machine: "armv7l"}.DebianArch())
	require.Equal(t, "arm64", Facts{Machine: "aarch64"}.DebianArch())
	require.Equal(t, "armel", Facts{Machine: "armv7l", Arch: "armel"}.DebianArch())
}

func TestInstallSerialSSHD(t *testing.T) {
	sh := newLocalShell(t, map[string]string{"systemctl": ""})
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		require.ErrorIs(t, InstallSerialSSHD(t.Context(), sh, "ttyAMA1"), ErrNoSerialSSHD)
		t.Skip("no /usr/sbin/sshd here: the rest needs it")
	}
	require.NoError(t, InstallSerialSSHD(t.Context(), sh, "ttyAMA1"))
	require.Contains(t, sh.uploads["/etc/systemd/system/"+SerialSSHDUnit], "ExecStart="+SerialSSHDPath+" /dev/ttyAMA1")
	require.NotEmpty(t, sh.uploads[SerialSSHDPath])
	require.Equal(t, []string{"systemctl enable " + SerialSSHDUnit}, sh.calls(t)[len(sh.calls(t))-1:])
}

func TestStalledCPUsWatchesEachCPUFromAnother(t *testing.T) {
	// The stub stalls CPU 2: its sleep never ends, and the watching
	// timeout (run as "timeout -s KILL 10 taskset -c 2 sleep 0.01") fails.
	sh := newLocalShell(t, map[string]string{
		"nproc":   "echo 4",
		"taskset": `shift 2; exec "$@"`,
		"timeout": `[ "$6" = 2 ] && exit 137; shift 3; exec "$@"`,
		"sleep":   "exit 0",
	})
	cpus, err := StalledCPUs(context.Background(), sh)
	require.NoError(t, err)
	require.Equal(t, []int{2}, cpus)
	calls := sh.calls(t)
	require.Contains(t, calls, "taskset -c 1 timeout -s KILL 10 taskset -c 0 sleep 0.01", "CPU 0 is watched from CPU 1")
	require.Contains(t, calls, "taskset -c 0 timeout -s KILL 10 taskset -c 3 sleep 0.01")

	one := newLocalShell(t, map[string]string{"nproc": "echo 1", "taskset": `shift 2; exec "$@"`, "timeout": `shift 3; exec "$@"`, "sleep": "exit 0"})
	cpus, err = StalledCPUs(context.Background(), one)
	require.NoError(t, err)
	require.Empty(t, cpus)
	require.Contains(t, one.calls(t), "taskset -c 0 timeout -s KILL 10 taskset -c 0 sleep 0.01", "a single CPU watches itself")
}
