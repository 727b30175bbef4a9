package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/scenario"
	"github.com/socbox/socbox/harness/sshx"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/debarchive"
)

// BenchmarkSpeed measures, in one run, what the speed issue asks for:
//
//	go test -run '^$' -bench Speed -benchtime 1x -timeout 90m ./scenarios/
//
// cold image build (into an empty cache), cold boot to SSH and to
// containerd-ready, restore-to-ready from a provisioned snapshot, the
// overhead of one container on a warm board, and a 10-scenario suite run
// with a cold boot per scenario and with a restore per scenario. Figures
// are printed and reported as metrics; BENCHMARKS.md records them.
// SOCBOX_BENCH_SUITE=0 skips the (long) cold half of the suite comparison.
func BenchmarkSpeed(b *testing.B) {
	slug := "raspi4b-fast"
	if s := os.Getenv("SOCBOX_BOARDS"); s != "" && s != "all" {
		slug = s
	}
	ctx := context.Background()
	prof, err := boards.Lookup(slug)
	if err != nil {
		b.Fatal(err)
	}
	quiet := harness.WithLogf(func(string, ...any) {})
	for i := 0; i < b.N; i++ {
		// 1. Cold image build, in a cache of its own so nothing is reused.
		coldCache := b.TempDir()
		build := func() time.Duration {
			old, had := os.LookupEnv("SOCBOX_CACHE")
			os.Setenv("SOCBOX_CACHE", coldCache)
			defer func() {
				if had {
					os.Setenv("SOCBOX_CACHE", old)
				} else {
					os.Unsetenv("SOCBOX_CACHE")
				}
			}()
			signer, err := sshx.LoadOrCreateKey(filepath.Join(coldCache, "ssh", "id_ed25519"))
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			_, err = images.BuildDefault(ctx, images.DefaultSpec{Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer),
				Archive: &debarchive.Client{CacheDir: filepath.Join(coldCache, "debs")}})
			if err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		imageCold := build()
		benchReport(b, "cold image build", imageCold, "image-build-s")

		// 2. Cold boot (the image stage, a cache hit or a build, is not
		// counted).
		cold, err := harness.Start(ctx, harness.WithBoard(slug), harness.WithoutSnapshot(), quiet)
		must(b, err)
		st := stageSeconds(cold)
		benchReport(b, "cold boot to ssh", secs(st["qemu"]+st["kernel"]+st["ssh"]), "boot-to-ssh-s")
		benchReport(b, "ssh to containerd-ready", secs(st["containerd"]), "containerd-ready-s")
		benchReport(b, "cold start to containerd-ready", secs(st["qemu"]+st["kernel"]+st["ssh"]+st["containerd"]), "cold-ready-s")

		// 3. Per-container overhead on the warm board.
		benchContainers(b, cold, "container-s")
		must(b, cold.Close())

		// 4. Provision the snapshot (once), then restore-to-ready.
		prov, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
		must(b, err)
		must(b, prov.Close())
		restored, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
		must(b, err)
		rs := stageSeconds(restored)
		if _, ok := rs["restore"]; !ok {
			b.Fatalf("board did not restore from a snapshot: stages %v", rs)
		}
		benchReport(b, "restore to containerd-ready", secs(rs["restore"]+rs["ssh"]+rs["containerd"]+rs["network"]), "restore-to-ready-s")
		must(b, restored.Close())

		// 5. A 10-scenario suite, a fresh board per scenario: cold vs restore.
		suite := tenScenarios()
		runSuite := func(opts ...harness.Option) time.Duration {
			start := time.Now()
			for _, s := range suite {
				bd, err := harness.Start(ctx, append([]harness.Option{harness.WithBoard(slug), quiet}, opts...)...)
				must(b, err)
				if r := bd.RunScenario(ctx, s); !r.Passed {
					b.Fatalf("scenario %s failed: %v", s.Name, r.Failures)
				}
				must(b, bd.Close())
			}
			return time.Since(start)
		}
		warm := runSuite()
		benchReport(b, "10 scenarios, restore per scenario", warm, "suite-restore-s")
		if os.Getenv("SOCBOX_BENCH_SUITE") != "0" {
			coldSuite := runSuite(harness.WithoutSnapshot())
			benchReport(b, "10 scenarios, cold boot per scenario", coldSuite, "suite-cold-s")
			b.ReportMetric(coldSuite.Seconds()/warm.Seconds(), "suite-speedup-x")
			fmt.Printf("%-45s %.1fx\n", "suite speed-up (cold / restore)", coldSuite.Seconds()/warm.Seconds())
		}
	}
}

// BenchmarkRestore measures restore-to-ready on every board (or those in
// SOCBOX_BOARDS), stage by stage, the median of three restores; a board
// without a snapshot yet is provisioned first (not counted):
//
//	go test -run '^$' -bench Restore -benchtime 1x ./scenarios/
func BenchmarkRestore(b *testing.B) {
	ctx := context.Background()
	quiet := harness.WithLogf(func(string, ...any) {})
	for i := 0; i < b.N; i++ {
		for _, slug := range benchBoards() {
			// Up to two boards to provision: a board QEMU cannot save with
			// its NIC (raspi3b) keeps its disk first, then its state.
			for range 2 {
				bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
				must(b, err)
				_, restored := stageSeconds(bd)["restore"]
				must(b, bd.Close())
				if restored {
					break
				}
			}
			stages := map[string][]time.Duration{}
			var totals []time.Duration
			for range 3 {
				bd, err := harness.Start(ctx, harness.WithBoard(slug), quiet)
				must(b, err)
				must(b, bd.Close())
				totals = append(totals, addRestoreStages(b, slug, bd, stages))
			}
			benchReport(b, slug+": restore to ready", median(totals), slug+"-restore-s")
			printStages(stages, "  %-43s %8.2fs\n")
		}
	}
}

// benchBoards are the boards in SOCBOX_BOARDS, or all of them.
func benchBoards() []string {
	if s := os.Getenv("SOCBOX_BOARDS"); s != "" && s != "all" {
		return strings.Split(s, ",")
	}
	var out []string
	for _, p := range boards.All() {
		out = append(out, p.Slug)
	}
	return out
}

// BenchmarkContainer measures only the cost of a container on a warm
// (restored) board, phase by phase:
//
//	go test -run '^$' -bench Container -benchtime 1x ./scenarios/
func BenchmarkContainer(b *testing.B) {
	slug := "raspi4b-fast"
	if s := os.Getenv("SOCBOX_BOARDS"); s != "" && s != "all" {
		slug = s
	}
	for i := 0; i < b.N; i++ {
		fmt.Println("runc (the default):")
		bd, err := harness.Start(context.Background(), harness.WithBoard(slug), harness.WithLogf(func(string, ...any) {}))
		must(b, err)
		runc := benchContainers(b, bd, "container-s")
		must(b, bd.Close())

		fmt.Println("crun (WithCrun):")
		bd, err = harness.Start(context.Background(), harness.WithBoard(slug), harness.WithCrun(), harness.WithLogf(func(string, ...any) {}))
		must(b, err)
		crun := benchContainers(b, bd, "container-crun-s")
		must(b, bd.Close())
		fmt.Printf("%-45s %.1fx\n", "container speed-up (runc / crun)", runc.Seconds()/crun.Seconds())
	}
}

// benchContainers runs `true` ten times on bd and prints the median time
// of a run and of each of its phases.
func benchContainers(b *testing.B, bd *harness.Board, metric string) time.Duration {
	var runs []time.Duration
	phases := map[string][]time.Duration{}
	var order []string
	for j := 0; j < 10; j++ {
		start := time.Now()
		res, err := bd.Run(context.Background(), harness.Container{Cmd: []string{"true"}})
		must(b, err)
		if res.ExitCode != 0 {
			b.Fatalf("true exited %d", res.ExitCode)
		}
		runs = append(runs, time.Since(start))
		for _, p := range res.Phases {
			if _, seen := phases[p.Name]; !seen {
				order = append(order, p.Name)
			}
			phases[p.Name] = append(phases[p.Name], p.Duration)
		}
	}
	m := median(runs)
	benchReport(b, "container on a warm board (median of 10)", m, metric)
	for _, name := range order {
		fmt.Printf("  %-43s %8.2fs\n", name, median(phases[name]).Seconds())
	}
	return m
}

// tenScenarios is the bundled scenarios repeated to ten.
func tenScenarios() []scenario.Scenario {
	var out []scenario.Scenario
	for len(out) < 10 {
		for _, s := range Bundled() {
			if len(out) < 10 {
				out = append(out, s)
			}
		}
	}
	return out
}

// readyStages are the stages from a restore to a ready board, in order.
var readyStages = []string{"restore", "ssh", "containerd", "network"}

// addRestoreStages adds a restored board's ready stages to stages and
// returns their sum; it fails b when the board did not restore.
func addRestoreStages(b *testing.B, slug string, bd *harness.Board, stages map[string][]time.Duration) time.Duration {
	b.Helper()
	st := stageSeconds(bd)
	if _, ok := st["restore"]; !ok {
		b.Fatalf("%s did not restore from a snapshot: stages %v", slug, st)
	}
	var total time.Duration
	for _, name := range readyStages {
		if v, ok := st[name]; ok {
			stages[name] = append(stages[name], secs(v))
			total += secs(v)
		}
	}
	return total
}

// printStages prints, with format, the median of each stage measured.
func printStages(stages map[string][]time.Duration, format string) {
	for _, name := range readyStages {
		if len(stages[name]) > 0 {
			fmt.Printf(format, name, median(stages[name]).Seconds())
		}
	}
}

func stageSeconds(bd *harness.Board) map[string]float64 {
	out := map[string]float64{}
	for _, t := range bd.Timings() {
		out[string(t.Stage)] += t.Seconds
	}
	return out
}

// median of ds, which it sorts.
func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func benchReport(b *testing.B, what string, d time.Duration, metric string) {
	b.ReportMetric(d.Seconds(), metric)
	fmt.Printf("%-45s %8.2fs\n", what, d.Seconds())
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkColdImageAndBoot measures the default image's cold build, phase
// by phase, into an empty cache; the same image made again for another
// SSH key (Debian's base root then comes from the cache, so only socbox's
// customisation is made); and three cold boots to SSH, their median and
// each boot's stages:
//
//	go test -run '^$' -bench ColdImageAndBoot -benchtime 1x -timeout 60m ./scenarios/
//
// The host's load average is printed with each figure: on a shared host
// the figures move with it.
func BenchmarkColdImageAndBoot(b *testing.B) {
	slug := "raspi4b-fast"
	if s := os.Getenv("SOCBOX_BOARDS"); s != "" && s != "all" {
		slug = s
	}
	ctx := context.Background()
	prof, err := boards.Lookup(slug)
	must(b, err)
	for i := 0; i < b.N; i++ {
		cache := b.TempDir()
		b.Setenv("SOCBOX_CACHE", cache)
		build := func(keyFile string) *images.Image {
			signer, err := sshx.LoadOrCreateKey(filepath.Join(cache, keyFile))
			must(b, err)
			im, err := images.BuildDefault(ctx, images.DefaultSpec{Board: prof, AuthorizedKey: sshx.AuthorizedKey(signer),
				Archive: &debarchive.Client{CacheDir: filepath.Join(cache, "debs")}})
			must(b, err)
			return im
		}
		fmt.Printf("load before the cold build: %s\n", loadAverage())
		// Another key first: the one harness.Start uses then gets an image
		// made from the cached base, which is what a changed key costs.
		im := build("other-key/id_ed25519")
		benchReport(b, "cold image build (empty cache)", secs(im.BuildSec), "image-build-s")
		fmt.Print(images.FormatPhases(im.BuildPhases))
		im = build("ssh/id_ed25519")
		benchReport(b, "image for another key (base root cached)", secs(im.BuildSec), "image-rekey-s")
		fmt.Print(images.FormatPhases(im.BuildPhases))

		var boots []time.Duration
		for j := 0; j < 3; j++ {
			load := loadAverage()
			bd, err := harness.Start(ctx, harness.WithBoard(slug), harness.WithoutSnapshot(), harness.WithoutContainerd(),
				harness.WithLogf(func(string, ...any) {}))
			must(b, err)
			st := stageSeconds(bd)
			must(b, bd.Close())
			d := secs(st["qemu"] + st["kernel"] + st["ssh"])
			boots = append(boots, d)
			fmt.Printf("  cold boot %d to ssh: %.2fs (qemu %.2fs, kernel %.2fs, ssh %.2fs; load %s)\n",
				j+1, d.Seconds(), st["qemu"], st["kernel"], st["ssh"], load)
		}
		benchReport(b, "cold boot to ssh (median of 3)", median(boots), "boot-to-ssh-s")
	}
}

// loadAverage is the host's 1-, 5- and 15-minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
