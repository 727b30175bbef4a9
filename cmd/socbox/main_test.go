package main

// The CLI's unit tests never boot a board: commands that would are given a
// cancelled context, so even a regression that got past the checks they
// test stops before QEMU.

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/scenario"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/qemu"
)

// socbox runs the CLI in-process and returns its stdout, stderr and error.
func socbox(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestUsageListsEveryCommand(t *testing.T) {
	out, _, err := socbox(t, cancelled(), "--help")
	require.NoError(t, err)
	for _, c := range []string{"boards", "image build", "image ls", "image rm", "image prepare", "image inspect", "boot", "run", "report", "report merge", "cache", "cache prune", "doctor"} {
		require.Contains(t, out, "\n  "+c+" ", "usage lists %s", c)
	}
	require.Contains(t, out, "Examples:")

	_, errOut, err := socbox(t, cancelled())
	require.Equal(t, exitCode(2), err)
	require.Contains(t, errOut, "Commands:")

	_, errOut, err = socbox(t, cancelled(), "frobnicate")
	require.Equal(t, exitCode(2), err)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, cmd := range [][]string{{"boards"}, {"image", "build"}, {"image", "ls"}, {"image", "rm"}, {"image", "prepare"}, {"image", "inspect"}, {"boot"}, {"run"}, {"report"}, {"report", "merge"}, {"cache"}, {"cache", "prune"}, {"doctor"}} {
		name := strings.Join(cmd, " ")
		t.Run(name, func(t *testing.T) {
			_, errOut, err := socbox(t, cancelled(), append(cmd, "--help")...)
			require.ErrorIs(t, err, flag.ErrHelp)
			require.Contains(t, errOut, "Usage: socbox "+name+" [flags]")
			require.Contains(t, errOut, "\nExamples:\n  socbox "+name)
		})
	}
	_, errOut, err := socbox(t, cancelled(), "image", "--help")
	require.NoError(t, err)
	require.Contains(t, errOut, "Examples:")

	out, _, err := socbox(t, cancelled(), "help", "run")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out, "Usage: socbox run [flags] [SCENARIOS.yaml|DIR ...]")
}

func TestBoardsListsRaspi4b(t *testing.T) {
	out, _, err := socbox(t, cancelled(), "boards")
	require.NoError(t, err)
	require.Contains(t, out, "BOARD")
	require.Contains(t, out, "raspi4b-fast")
	require.Contains(t, out, "linux/arm64")
	require.Contains(t, out, "raspi4b-fast differs from a real")
}

func TestRunWithBadScenarioFileFailsBeforeBooting(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "arch.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("- name: arch\n  container:\n    cmd: [uname, -m]\n  expect:\n    exitcode: 0\n    max_duration: soon\n"), 0o644))
	out := filepath.Join(dir, "out")

	start := time.Now()
	stdout, stderr, err := socbox(t, cancelled(), "run", "--out", out, bad)
	require.Equal(t, exitCode(2), err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Contains(t, stderr, "nothing was booted")
	require.Contains(t, stderr, bad+`:5: unknown field "exitcode" in expect (known: exit_code,`)
	require.Contains(t, stderr, bad+`:6: max_duration "soon" is not a duration`)
	require.Empty(t, stdout)
	require.NoDirExists(t, out, "nothing written")
}

func TestRunRejectsBadArgumentsBeforeBooting(t *testing.T) {
	_, stderr, err := socbox(t, cancelled(), "run", "--board", "raspi4b-fast,nope", "--out", t.TempDir())
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, `unknown board "nope"`)

	_, stderr, err = socbox(t, cancelled(), "run", "--bogus")
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "flag provided but not defined: -bogus")

	only := filepath.Join(t.TempDir(), "only.yaml")
	require.NoError(t, os.WriteFile(only, []byte("name: x\nboards: [linux/arm/v7]\ncontainer: {cmd: [true]}\n"), 0o644))
	_, stderr, err = socbox(t, cancelled(), "run", "--board", "raspi4b-fast", only)
	require.Equal(t, exitCode(2), err)
	require.Contains(t, stderr, "no scenario applies to raspi4b-fast")
}

func TestParseBoardList(t *testing.T) {
	got, err := parseBoardList("all")
	require.NoError(t, err)
	require.Contains(t, got, "raspi4b-fast")
	got, err = parseBoardList(" raspi4b-fast , raspi4b-fast,")
	require.NoError(t, err)
	require.Equal(t, []string{"raspi4b-fast"}, got)
	_, err = parseBoardList("")
	require.Error(t, err)
}

func TestPlanRunFiltersByBoard(t *testing.T) {
	list := []scenario.Scenario{
		{Name: "everywhere"},
		{Name: "arm64-only", Boards: []string{"linux/arm64"}},
		{Name: "armhf-only", Boards: []string{"linux/arm/v7"}},
	}
	plan, err := planRun([]string{"raspi4b-fast"}, list)
	require.NoError(t, err)
	require.Len(t, plan, 1)
	var names []string
	for _, s := range plan[0].scenarios {
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"everywhere", "arm64-only"}, names)
}

func TestReportRerendersFromResults(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/results.json")
	require.NoError(t, err)
	results := filepath.Join(dir, "results.json")
	require.NoError(t, os.WriteFile(results, data, 0o644))

	out, _, err := socbox(t, cancelled(), "report", results)
	require.NoError(t, err)
	require.Contains(t, out, "1 passed, 1 failed, 0 errors")
	require.Contains(t, out, filepath.Join(dir, "junit.xml"))

	junit, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, err)
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(junit, &suites))
	require.Equal(t, 2, suites.Tests)
	require.Equal(t, 1, suites.Failures)
	require.Equal(t, "raspi4b/exit-code", suites.Suites[0].Cases[1].Name)
	require.Equal(t, "exit code 0, want 3", suites.Suites[0].Cases[1].Failure.Message)

	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), "<svg")
	require.Equal(t, 7, strings.Count(string(page), `<rect class="bar `))

	after, err := os.ReadFile(results)
	require.NoError(t, err)
	require.Equal(t, data, after, "results.json is left as it was")

	_, _, err = socbox(t, cancelled(), "report")
	require.Equal(t, exitCode(2), err)
	_, _, err = socbox(t, cancelled(), "report", filepath.Join(dir, "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestDoctorFormat(t *testing.T) {
	ok := func(detail string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return detail, nil }
	}
	fail := func(msg string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return "", errors.New(msg) }
	}
	checks := []check{
		{"qemu-system-aarch64", ok("QEMU emulator version 7.2.22 at /usr/bin/qemu-system-aarch64"), "sudo apt-get install -y qemu-system-arm"},
		{"mmdebstrap", fail("not found on PATH"), "sudo apt-get install -y mmdebstrap"},
	}
	var out bytes.Buffer
	err := cmdDoctor(context.Background(), nil, &out, &out, checks)
	require.Equal(t, exitCode(1), err)
	require.Equal(t, `OK    qemu-system-aarch64  QEMU emulator version 7.2.22 at /usr/bin/qemu-system-aarch64
FAIL  mmdebstrap           not found on PATH
                           fix: sudo apt-get install -y mmdebstrap

1 of 2 checks failed; sudo scripts/host-setup.sh sets up everything socbox needs
`, out.String())

	out.Reset()
	require.NoError(t, cmdDoctor(context.Background(), nil, &out, &out, checks[:1]))
	require.Contains(t, out.String(), "all 1 checks passed")
}

func TestDoctorChecksEachHaveAFix(t *testing.T) {
	names := map[string]bool{}
	for _, c := range doctorChecks() {
		require.NotEmpty(t, c.fix, c.name)
		require.NotNil(t, c.run, c.name)
		names[c.name] = true
	}
	for _, want := range []string{"qemu-system-aarch64", "qemu-system-arm", "qemu-img", "mmdebstrap", "arch-test",
		"arm64 binaries run", "armhf binaries run", "mke2fs", "debugfs", "e2fsck", "resize2fs", "depmod",
		"dpkg-deb", "gpgv", "debian archive keyring", "binfmt_misc", "binfmt qemu-aarch64", "binfmt qemu-arm"} {
		require.True(t, names[want], want)
	}
	for _, b := range boards.All() {
		require.True(t, names["board "+b.Slug], "every board's machine is started: %s", b.Slug)
	}
}

func TestDoctorNotApplicableIsNotAFailure(t *testing.T) {
	checks := []check{
		{"board raspi4b", func(context.Context) (string, error) {
			return "", fmt.Errorf("%w: board raspi4b needs QEMU 9.0 or newer", errNotApplicable)
		}, "unused"},
		{"qemu-img", func(context.Context) (string, error) { return "7.2", nil }, "unused"},
	}
	var out bytes.Buffer
	require.NoError(t, cmdDoctor(context.Background(), nil, &out, &out, checks))
	require.Contains(t, out.String(), "N/A   board raspi4b  not applicable: board raspi4b needs QEMU 9.0 or newer\n")
	require.Contains(t, out.String(), "all 1 checks passed")
}

// Without arch-test, mmdebstrap refuses to build a foreign root: doctor
// must say so rather than pass (a fresh host once had every other tool).
func TestDoctorWithoutArchTest(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := toolPresent("arch-test")(context.Background())
	require.Error(t, err)
	_, err = archRuns("arm64")(context.Background())
	require.ErrorContains(t, err, "arch-test not found")
}

func TestParseBinfmt(t *testing.T) {
	state, interp, flags := parseBinfmt("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f45\n")
	require.Equal(t, "enabled", state)
	require.Equal(t, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", interp)
	require.Equal(t, "POF", flags)
}

// fakeImage puts an image manifest (and optionally a snapshot made from
// it) into the cache at $SOCBOX_CACHE.
func fakeImage(t *testing.T, cache, name, key string, snapshot bool) string {
	t.Helper()
	dir := filepath.Join(cache, "images", name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "image.json"), []byte(`{"name":"`+name+`","key":"`+key+`"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rootfs.img"), []byte("disk"), 0o444))
	if snapshot {
		s := filepath.Join(cache, "snapshots", "raspi4b-"+key)
		require.NoError(t, os.MkdirAll(s, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(s, "snapshot.json"), []byte(`{"inputs":{"image":"`+key+`"}}`), 0o644))
	}
	return dir
}

func TestImageRm(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SOCBOX_CACHE", cache)
	a := fakeImage(t, cache, "debian-trixie-arm64-aaa", "aaa", true)
	b := fakeImage(t, cache, "debian-bookworm-armhf-bbb", "bbb", true)
	// A board that cannot save its machine state keeps only its disk.
	disk := filepath.Join(cache, "snapshots", "raspi3b-aaa")
	require.NoError(t, os.MkdirAll(disk, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(disk, "disk.json"), []byte(`{"inputs":{"image":"aaa"},"disk_only":true}`), 0o644))

	_, _, err := socbox(t, cancelled(), "image", "rm")
	require.Equal(t, exitCode(2), err)
	_, _, err = socbox(t, cancelled(), "image", "rm", "--all", "debian-trixie-arm64-aaa")
	require.Equal(t, exitCode(2), err)
	_, _, err = socbox(t, cancelled(), "image", "rm", "nope")
	require.ErrorContains(t, err, "no cached image nope")

	out, _, err := socbox(t, cancelled(), "image", "rm", "debian-trixie-arm64-aaa")
	require.NoError(t, err)
	require.Equal(t, "removed debian-trixie-arm64-aaa\n", out)
	require.NoDirExists(t, a)
	require.NoDirExists(t, filepath.Join(cache, "snapshots", "raspi4b-aaa"))
	require.NoDirExists(t, disk)
	require.DirExists(t, b)
	require.DirExists(t, filepath.Join(cache, "snapshots", "raspi4b-bbb"))

	out, _, err = socbox(t, cancelled(), "image", "rm", "--all")
	require.NoError(t, err)
	require.Equal(t, "removed debian-bookworm-armhf-bbb\n", out)
	require.NoDirExists(t, b)

	out, _, err = socbox(t, cancelled(), "image", "ls")
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(out, "\n"), "only the header is left")
}

func TestDoctorSaysWhichAccelerator(t *testing.T) {
	all := boards.All()
	require.Equal(t, "tcg for every board: an amd64 host cannot run an ARM guest with KVM",
		accelSummary(qemu.Host{Arch: "amd64", KVM: true}, all))
	require.Equal(t, "tcg for every board: /dev/kvm is not usable: permission denied",
		accelSummary(qemu.Host{Arch: "arm64", Why: "/dev/kvm is not usable: permission denied"}, all))
	got := accelSummary(qemu.Host{Arch: "arm64", KVM: true}, all)
	require.Contains(t, got, "kvm for raspi3b-fast, raspi4b-fast; tcg for ")
	require.Contains(t, got, "beaglebone-black-fast")
	require.Contains(t, got, "(this host's KVM cannot run a 32-bit (AArch32) guest kernel)")
	require.Equal(t, "kvm for beaglebone-black-fast, raspi3b-fast, raspi4b-fast; tcg for beaglebone-black, raspi3b, raspi4b",
		accelSummary(qemu.Host{Arch: "arm64", KVM: true, KVMAArch32: true}, all))
}
