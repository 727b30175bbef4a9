package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/machine"
	"github.com/socbox/socbox/harness/ociimage"
	"github.com/socbox/socbox/harness/qemu"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/harness/shell"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// The benchmarks of this file answer what a user weighs when choosing
// socbox and sizing a host for it. Together, in one run:
//
//	go test -run '^$' -bench 'NaiveVsSocbox|CostCurve|ReadyAndContainer' -benchtime 1x -timeout 60m ./scenarios/
//
// BenchmarkNaiveVsSocbox: the same board and image driven by hand (QEMU,
// SSH, apt-get install containerd, ctr) against socbox (restore, run),
// phase by phase, for 1 and 10 scenarios. BenchmarkCostCurve: wall time,
// peak host memory, QEMU's peak RSS and overlay growth for 1, 10 and 50
// scenarios on one board and for 1, 2 and 4 boards at once.
// BenchmarkReadyAndContainer: restore to ready and a warm container on
// every board, with what each containerd call and the runtime binaries
// cost in the guest.

// basicScenarios are the bundled scenarios that need nothing but a
// container with a command and an environment (the "basics" tag), which
// the naive way can run with `ctr run`, repeated to n.
func basicScenarios(n int) []scenario.Scenario {
	var basics []scenario.Scenario
	for _, s := range Bundled() {
		for _, t := range s.Tags {
			if t == "basics" {
				basics = append(basics, s)
			}
		}
	}
	var out []scenario.Scenario
	for len(out) < n {
		out = append(out, basics[len(out)%len(basics)])
	}
	return out
}

// repeatedBundled is every bundled scenario, repeated to n.
func repeatedBundled(n int) []scenario.Scenario {
	all := Bundled()
	var out []scenario.Scenario
	for len(out) < n {
		out = append(out, all[len(out)%len(all)])
	}
	return out
}

func benchSlug() string {
	if s := os.Getenv("SOCBOX_BOARDS"); s != "" && s != "all" && !strings.Contains(s, ",") {
		return s
	}
	return "raspi4b-fast"
}

// BenchmarkNaiveVsSocbox runs the same scenarios (the basics, repeated to
// ten) on the same board and image twice: the way a user without socbox
// does it (a fresh overlay of the default image, QEMU, SSH with the image's
// key, apt-get install containerd from Debian's archive, the busybox image
// imported and each scenario's container run with ctr over SSH, its output
// checked) and through socbox (restore, RunScenario). Each side runs once;
// its figure for one scenario is the same run up to the first scenario's
// end, which is what a one-scenario run does.
func BenchmarkNaiveVsSocbox(b *testing.B) {
	slug := benchSlug()
	ctx := context.Background()
	prof, err := boards.Lookup(slug)
	must(b, err)
	suite := basicScenarios(10)
	quiet := harness.WithLogf(func(string, ...any) {})
	for i := 0; i < b.N; i++ {
		// socbox first: its snapshot is provisioned if missing (not
		// counted), so the naive side never waits on that.
		bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
		must(b, err)
		must(b, bd.Close())

		naive := naiveRun(b, ctx, prof, suite)

		start := time.Now()
		bd, err = harness.Start(ctx, harness.WithBoard(slug), quiet)
		must(b, err)
		if _, ok := stageSeconds(bd)["restore"]; !ok {
			b.Fatalf("%s did not restore from a snapshot: stages %v", slug, stageSeconds(bd))
		}
		ready := time.Since(start)
		var perScenario []time.Duration
		for _, s := range suite {
			t0 := time.Now()
			if r := bd.RunScenario(ctx, s); !r.Passed {
				b.Fatalf("socbox: scenario %s failed: %v", s.Name, r.Failures)
			}
			perScenario = append(perScenario, time.Since(t0))
		}
		t0 := time.Now()
		must(b, bd.Close())
		closed := time.Since(t0)

		fmt.Printf("naive vs socbox on %s (%d scenarios: the basics, repeated)\n", slug, len(suite))
		fmt.Printf("  %-43s %8s %8s\n", "naive", "1", "10")
		var naiveFixed time.Duration
		for _, p := range naive.fixed {
			fmt.Printf("  %-43s %8.2fs %8.2fs\n", p.Name, p.Duration.Seconds(), p.Duration.Seconds())
			naiveFixed += p.Duration
		}
		naive1, naive10 := naiveFixed+naive.scenarios[0], naiveFixed+sum(naive.scenarios)
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "scenarios (ctr run, output checked)", naive.scenarios[0].Seconds(), sum(naive.scenarios).Seconds())
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "stop QEMU", naive.stop.Seconds(), naive.stop.Seconds())
		naive1, naive10 = naive1+naive.stop, naive10+naive.stop
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "naive total", naive1.Seconds(), naive10.Seconds())
		fmt.Printf("  %-43s %8s %8s\n", "socbox", "1", "10")
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "restore to ready (harness.Start)", ready.Seconds(), ready.Seconds())
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "scenarios (RunScenario)", perScenario[0].Seconds(), sum(perScenario).Seconds())
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "close", closed.Seconds(), closed.Seconds())
		socbox1, socbox10 := ready+perScenario[0]+closed, ready+sum(perScenario)+closed
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "socbox total", socbox1.Seconds(), socbox10.Seconds())
		fmt.Printf("  %-43s %8.1fx %8.1fx\n", "ratio, naive / socbox", naive1.Seconds()/socbox1.Seconds(), naive10.Seconds()/socbox10.Seconds())
		fmt.Printf("  %-43s %8.2fs %8.2fs\n", "per scenario, median: naive / socbox", median(naive.scenarios).Seconds(), median(perScenario).Seconds())
		b.ReportMetric(naive1.Seconds()/socbox1.Seconds(), "ratio-1-x")
		b.ReportMetric(naive10.Seconds()/socbox10.Seconds(), "ratio-10-x")
	}
}

type naiveResult struct {
	fixed     []ctrd.Phase // before the first scenario, in order
	scenarios []time.Duration
	stop      time.Duration
}

// naiveRun drives prof's default image by hand: nothing of socbox's boot
// plan, snapshots, containerd bundle or client is used; only its image (the
// same one socbox boots), its QEMU command line and its SSH client.
func naiveRun(b *testing.B, ctx context.Context, prof boards.Profile, suite []scenario.Scenario) naiveResult {
	b.Helper()
	var res naiveResult
	mark := time.Now()
	phase := func(name string) {
		res.fixed = append(res.fixed, ctrd.Phase{Name: name, Duration: time.Since(mark)})
		mark = time.Now()
	}
	cache, err := images.CacheDir()
	must(b, err)
	signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, "ssh", "id_ed25519"))
	must(b, err)
	archive := &debarchive.Client{CacheDir: filepath.Join(cache, "debs")}
	im, err := images.BuildDefault(ctx, images.DefaultSpec{Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer), Archive: archive})
	must(b, err)
	bf, err := images.EnsureBootFiles(ctx, im, prof, archive, nil)
	must(b, err)
	dir := b.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	mark = time.Now()
	must(b, images.CreateOverlay(ctx, im, disk, 0))
	phase("fresh overlay of the image")

	smp := prof.SMP
	if prof.IsVirt() && runtime.NumCPU() < smp {
		smp = runtime.NumCPU()
	}
	cfg := qemu.Config{Board: prof, RunDir: dir, Kernel: bf.Kernel, Initrd: bf.Initrd, DTB: bf.DTB,
		Append: strings.TrimSpace(im.Append + " console=" + prof.Kernel.Console + " " + prof.Kernel.ExtraCmdline), Disk: disk, SMP: smp}
	q, err := machine.Start(ctx, cfg, im.User, nil)
	must(b, err)
	stopped := false
	defer func() {
		if !stopped {
			_ = q.Stop(context.Background())
		}
	}()
	var pinned []ssh.PublicKey
	for _, k := range im.HostKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		must(b, err)
		pinned = append(pinned, pk)
	}
	sh, err := sshx.DialRetry(ctx, q.Endpoint().Config(sshx.Config{Signer: signer, HostKeys: sshx.NewHostKeys(pinned...), Timeout: 20 * time.Second}),
		500*time.Millisecond, q.Alive)
	must(b, err)
	defer sh.Close()
	phase("boot to ssh")

	run := func(what, cmd string) sshx.Result {
		r, err := sh.Run(ctx, cmd)
		must(b, err)
		if r.ExitCode != 0 {
			b.Fatalf("naive: %s: exit %d: %s", what, r.ExitCode, r.Stderr)
		}
		return r
	}
	run("apt-get install containerd", "export DEBIAN_FRONTEND=noninteractive; apt-get -q update && apt-get -q -y install containerd")
	run("containerd answers", "for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; ctr version")
	phase("apt-get install containerd (Debian's archive)")

	// The same busybox image socbox imports, as a tar made on the host.
	g, err := guest.ReadOS(ctx, sh)
	must(b, err)
	bb, err := images.BusyboxBinary(ctx, archive, g.Suite, g.Arch)
	must(b, err)
	img, err := ociimage.Busybox(bb, prof.Platform)
	must(b, err)
	var tarball bytes.Buffer
	must(b, ociimage.WriteArchive(&tarball, img, harness.BusyboxRef))
	must(b, sh.Upload(ctx, &tarball, "/root/busybox.tar", 0o644))
	run("ctr image import", "ctr image import --platform "+shell.Quote(prof.Platform.String())+" /root/busybox.tar")
	phase("upload and ctr image import")

	vars := scenario.VarsOf(prof)
	for n, s := range suite {
		t0 := time.Now()
		c := s.Container
		args := []string{"ctr", "run", "--rm"}
		for _, e := range c.Env {
			args = append(args, "--env", e)
		}
		args = append(args, harness.BusyboxRef, fmt.Sprintf("naive-%d", n))
		args = append(args, c.Cmd...)
		r, err := sh.Run(ctx, shell.Join(args...))
		must(b, err)
		got := ctrd.ContainerResult{ExitCode: r.ExitCode, Stdout: r.Stdout, Stderr: r.Stderr, Duration: r.Duration}
		if f := scenario.Check(s.Expect, got, vars); len(f) > 0 {
			b.Fatalf("naive: scenario %s failed: %v", s.Name, f)
		}
		res.scenarios = append(res.scenarios, time.Since(t0))
	}
	t0 := time.Now()
	_ = sh.Close()
	must(b, q.Stop(ctx))
	stopped = true
	res.stop = time.Since(t0)
	return res
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// BenchmarkCostCurve measures how the cost grows with the work: 50
// scenarios (the bundled ones, repeated) on one restored board, with wall
// time, peak host memory and overlay growth read after the 1st, 10th and
// 50th; then 1, 2 and 4 boards at once (the same board restored that many
// times, each running the four basics), with wall time, peak host memory,
// CPU time and each board's QEMU peak RSS and overlay growth. Peak host
// memory is this process and its QEMUs, sampled every 100 ms.
func BenchmarkCostCurve(b *testing.B) {
	slug := benchSlug()
	ctx := context.Background()
	quiet := harness.WithLogf(func(string, ...any) {})
	for i := 0; i < b.N; i++ {
		bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet) // provisions if needed
		must(b, err)
		must(b, bd.Close())

		fmt.Printf("cost curve, scenarios on one board (%s, restored once; the bundled scenarios repeated)\n", slug)
		fmt.Printf("  %-12s %9s %10s %10s %12s\n", "scenarios", "wall", "peak host", "QEMU RSS", "overlay")
		mem := startMemSampler()
		start := time.Now()
		bd, err = harness.Start(ctx, harness.WithBoard(slug), quiet)
		must(b, err)
		pid := qemuPID(bd)
		disk0 := allocated(filepath.Join(bd.RunDir(), "disk.qcow2"))
		fmt.Printf("  %-12s %8.2fs %9.0fM %9.0fM %11.1fM\n", "0 (ready)", time.Since(start).Seconds(), mib(mem.peak()), mib(procKB(pid, "VmHWM")*1024), 0.0)
		for n, s := range repeatedBundled(50) {
			if r := bd.RunScenario(ctx, s); !r.Passed && r.NotApplicable == "" {
				b.Fatalf("scenario %s failed: %v", s.Name, r.Failures)
			}
			if k := n + 1; k == 1 || k == 10 || k == 50 {
				growth := allocated(filepath.Join(bd.RunDir(), "disk.qcow2")) - disk0
				fmt.Printf("  %-12d %8.2fs %9.0fM %9.0fM %11.1fM\n", k, time.Since(start).Seconds(), mib(mem.peak()), mib(procKB(pid, "VmHWM")*1024), mib(growth))
				b.ReportMetric(time.Since(start).Seconds(), fmt.Sprintf("scenarios-%d-s", k))
			}
		}
		must(b, bd.Close())
		mem.stop()

		fmt.Printf("cost curve, boards at once (%s restored n times, the four basics on each)\n", slug)
		fmt.Printf("  %-6s %9s %9s %10s %22s %22s\n", "boards", "wall", "CPU", "peak host", "QEMU RSS per board", "overlay per board")
		for _, n := range []int{1, 2, 4} {
			must(b, harness.LimitBoards(n))
			mem := startMemSampler()
			cpu0 := childCPU()
			start := time.Now()
			type boardCost struct{ rss, disk int64 }
			costs := make([]boardCost, n)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for j := 0; j < n; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
					if err != nil {
						errs <- err
						return
					}
					disk := filepath.Join(bd.RunDir(), "disk.qcow2")
					d0 := allocated(disk)
					for _, s := range basicScenarios(4) {
						if r := bd.RunScenario(ctx, s); !r.Passed {
							errs <- fmt.Errorf("board %d: scenario %s failed: %v", j, s.Name, r.Failures)
						}
					}
					costs[j] = boardCost{rss: procKB(qemuPID(bd), "VmHWM") * 1024, disk: allocated(disk) - d0}
					if err := bd.Close(); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			wall := time.Since(start)
			mem.stop()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			var rss, disk []string
			for _, c := range costs {
				rss = append(rss, fmt.Sprintf("%.0f", mib(c.rss)))
				disk = append(disk, fmt.Sprintf("%.1f", mib(c.disk)))
			}
			fmt.Printf("  %-6d %8.2fs %8.1fs %9.0fM %22s %22s\n", n, wall.Seconds(), (childCPU() - cpu0).Seconds(), mib(mem.peak()),
				strings.Join(rss, " ")+" M", strings.Join(disk, " ")+" M")
			b.ReportMetric(wall.Seconds(), fmt.Sprintf("boards-%d-s", n))
		}
		must(b, harness.LimitBoards(harness.MaxBoards()))
	}
}

// memSampler follows the peak of this process's RSS plus its QEMU
// children's.
type memSampler struct {
	mu   sync.Mutex
	max  int64
	done chan struct{}
	wg   sync.WaitGroup
}

func startMemSampler() *memSampler {
	m := &memSampler{done: make(chan struct{})}
	m.sample()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *memSampler) sample() {
	total := procKB(os.Getpid(), "VmRSS")
	for _, pid := range qemuChildren() {
		total += procKB(pid, "VmRSS")
	}
	m.mu.Lock()
	m.max = max(m.max, total*1024)
	m.mu.Unlock()
}

func (m *memSampler) peak() int64 {
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.max
}

func (m *memSampler) stop() {
	close(m.done)
	m.wg.Wait()
}

// qemuChildren are the QEMU processes this process started.
func qemuChildren() []int { return childPIDs(os.Getpid(), "qemu-system") }

// procKB is a kB field of /proc/PID/status (VmRSS, VmHWM), 0 if unknown.
func procKB(pid int, field string) int64 {
	if pid <= 0 {
		return 0
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// qemuPID is the PID of bd's QEMU, from the pidfile in its run directory.
func qemuPID(bd *harness.Board) int {
	data, err := os.ReadFile(qemu.PIDFile(bd.RunDir()))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// allocated is the disk space path takes (its blocks, not its size).
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// childCPU is the user and system time of this process and of its
// waited-for children (the QEMUs, once stopped).
func childCPU() time.Duration {
	var t time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			t += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return t
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// BenchmarkReadyAndContainer restores every board (or those in
// SOCBOX_BOARDS) three times and prints the median restore to ready (the
// harness's stages, and the wall time of Start); then, on the restored
// board, the median of five `uname -m` containers (the arch scenario's)
// end to end and phase by phase, one gRPC round trip to the guest's
// containerd (an image lookup), and what the runtime's binaries cost to
// start in the guest. A board without a snapshot is provisioned first,
// not counted.
func BenchmarkReadyAndContainer(b *testing.B) {
	ctx := context.Background()
	quiet := harness.WithLogf(func(string, ...any) {})
	for i := 0; i < b.N; i++ {
		for _, slug := range benchBoards() {
			prof, err := boards.Lookup(slug)
			must(b, err)
			if v, err := qemu.ExeVersion(ctx, prof.QEMUBinary); err == nil {
				if err := qemu.CheckVersion(prof, v); err != nil {
					fmt.Printf("%s: not on this host: %v\n", slug, err)
					continue
				}
			}
			for range 2 { // see BenchmarkRestore
				bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
				must(b, err)
				_, restored := stageSeconds(bd)["restore"]
				must(b, bd.Close())
				if restored {
					break
				}
			}
			var stagesum, walls []time.Duration
			stages := map[string][]time.Duration{}
			// Inside the stages: the login's handshake and the clock,
			// which is set while containerd is connected.
			var logMu sync.Mutex
			logged := map[string][]time.Duration{}
			record := harness.WithLogf(func(format string, args ...any) {
				line := fmt.Sprintf(format, args...)
				for _, what := range []string{"ssh: logged in after ", "ssh: clock set in "} {
					if i := strings.Index(line, what); i >= 0 {
						if v, err := strconv.ParseFloat(strings.TrimSuffix(line[i+len(what):], "s"), 64); err == nil {
							logMu.Lock()
							logged[what] = append(logged[what], secs(v))
							logMu.Unlock()
						}
					}
				}
			})
			var bd *harness.Board
			for j := range 3 {
				start := time.Now()
				var err error
				bd, err = harness.Start(ctx, harness.WithBoard(slug), record)
				must(b, err)
				walls = append(walls, time.Since(start))
				stagesum = append(stagesum, addRestoreStages(b, slug, bd, stages))
				if j < 2 {
					must(b, bd.Close())
				}
			}
			fmt.Printf("%s\n", slug)
			benchReport(b, "  restore to ready (stages, median of 3)", median(stagesum), slug+"-ready-s")
			printStages(stages, "    %-41s %8.2fs\n")
			fmt.Printf("  %-43s %8.2fs\n", "restore to ready (Start, wall)", median(walls).Seconds())
			if l := logged["ssh: logged in after "]; len(l) > 0 {
				fmt.Printf("    %-41s %8.2fs\n", "ssh login (handshake and auth)", median(l).Seconds())
			}
			if l := logged["ssh: clock set in "]; len(l) > 0 {
				fmt.Printf("    %-41s %8.2fs\n", "clock set (beside containerd)", median(l).Seconds())
			}

			var runs []time.Duration
			phases := map[string][]time.Duration{}
			var order []string
			for range 5 {
				start := time.Now()
				res, err := bd.Run(ctx, harness.Container{Cmd: []string{"uname", "-m"}})
				must(b, err)
				if res.ExitCode != 0 || len(res.Stdout) == 0 {
					b.Fatalf("%s: uname -m: exit %d, output %q", slug, res.ExitCode, res.Stdout)
				}
				runs = append(runs, time.Since(start))
				for _, p := range res.Phases {
					if _, seen := phases[p.Name]; !seen {
						order = append(order, p.Name)
					}
					phases[p.Name] = append(phases[p.Name], p.Duration)
				}
			}
			benchReport(b, "  warm container, uname -m (median of 5)", median(runs), slug+"-container-s")
			for _, name := range order {
				fmt.Printf("    %-41s %8.2fs\n", name, median(phases[name]).Seconds())
			}
			var rts []time.Duration
			for range 10 {
				start := time.Now()
				if !bd.Runtime.HasImage(ctx, bd.BusyboxImage) {
					b.Fatalf("%s: busybox image gone", slug)
				}
				rts = append(rts, time.Since(start))
			}
			fmt.Printf("  %-43s %8.3fs\n", "one containerd call (image lookup, median)", median(rts).Seconds())
			// What the runtime's programs cost to start in the guest,
			// timed there (milliseconds, median of 3).
			out, err := bd.SSH.Output(ctx, `t() { best=; for i in 1 2 3; do s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e-s)/1000000 )); done | sort -n | sed -n 2p; }; `+
				`echo "true $(t /bin/true)"; echo "runc $(t runc --version)"; echo "shim $(t containerd-shim-runc-v2 -v)"; echo "ctr $(t ctr --version)"`)
			must(b, err)
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) == 2 {
					fmt.Printf("  %-43s %8s ms\n", "start of "+f[0]+" in the guest", f[1])
				}
			}
			must(b, bd.Close())
		}
	}
}
