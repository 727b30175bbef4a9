package scenarios

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness"
	"github.com/socbox/socbox/harness/report"
	"github.com/socbox/socbox/harness/state"
	"github.com/socbox/socbox/images"
)

// TestRelocatedCache checks that a cache restored at another path — by a
// CI cache step, on another runner — is used as it is: the board restores
// its saved state there instead of booting, and no image is built. The
// board is made ready in this cache first (restored, if it was saved
// before), then only what it needs — its image, its saved state, the SSH
// key the image trusts — is put into a new cache directory (hard links:
// the files of a published entry are never written), and the board is
// started with $SOCBOX_CACHE pointing there.
func TestRelocatedCache(t *testing.T) {
	bootsVM(t)
	slug := oneBoard(t)
	skipUnlessQEMUHasMachine(t, slug)
	src, im := warmBoard(t, slug)
	dst := movedCache(t, src, im, slug)

	t.Setenv("SOCBOX_CACHE", dst)
	moved := harness.Boot(t, slug, suiteOption()...)
	require.True(t, strings.HasPrefix(moved.Image.Dir, dst+string(filepath.Separator)), "the image was not found in the new cache: %s", moved.Image.Dir)
	var stages []harness.Stage
	for _, st := range moved.Timings() {
		stages = append(stages, st.Stage)
	}
	require.Contains(t, stages, harness.StageRestore, "%s booted instead of restoring from the moved cache: stages %v", slug, moved.Timings())
	require.NotContains(t, stages, harness.StageKernel, "stages %v", moved.Timings())
	for _, s := range Bundled() {
		if s.Name == "arch" && s.AppliesTo(moved.Profile) {
			res := moved.RunScenario(t.Context(), s)
			require.Empty(t, res.Failures, "scenario %s on %s restored from the moved cache (stdout %q, stderr %q)", s.Name, slug, clip(res.Stdout), clip(res.Stderr))
		}
	}
}

// TestShardsOnMovedCaches runs the bundled scenarios on one board as two
// shards, each a separate socbox process with its own copy of the cache at
// a path of its own (as two CI runners restore it), and merges their
// results: every planned unit has exactly one result, and neither shard
// booted the board or built its image.
func TestShardsOnMovedCaches(t *testing.T) {
	bootsVM(t)
	slug := oneBoard(t)
	skipUnlessQEMUHasMachine(t, slug)
	src, im := warmBoard(t, slug)
	bin := filepath.Join(t.TempDir(), "socbox")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/socbox").CombinedOutput()
	require.NoError(t, err, "build socbox: %s", out)
	var shards []string
	sharded := 0
	for k := 1; k <= 2; k++ {
		cache := movedCache(t, src, im, slug)
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("shard-%d", k))
		args := []string{"run", "--board", slug, "--shard", fmt.Sprintf("%d/2", k), "--out", dir}
		if s := suite(); s != images.DefaultSuite {
			args = append(args, "--suite", s)
		}
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), "SOCBOX_CACHE="+cache)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "socbox %s:\n%s", strings.Join(args, " "), out)
		run, err := report.ReadJSON(filepath.Join(dir, "results.json"))
		require.NoError(t, err)
		n := 0
		for _, b := range run.Boards {
			n += len(b.Scenarios)
		}
		require.NotZero(t, n, "shard %d/2 ran nothing", k)
		t.Logf("shard %d/2 on its own cache: %d scenario results", k, n)
		sharded += n
		for _, b := range run.Boards {
			var stages []string
			for _, st := range b.Stages {
				stages = append(stages, st.Name)
			}
			require.Contains(t, stages, string(harness.StageRestore), "shard %d/2 booted %s instead of restoring it from its cache", k, b.Board)
			require.NotContains(t, stages, string(harness.StageKernel), "shard %d/2: stages %v", k, stages)
		}
		shards = append(shards, dir)
	}
	merged := filepath.Join(t.TempDir(), "merged")
	out, err = exec.Command(bin, append([]string{"report", "merge", "-o", merged}, shards...)...).CombinedOutput()
	require.NoError(t, err, "socbox report merge: every planned unit must have exactly one result:\n%s", out)
	run, err := report.ReadJSON(filepath.Join(merged, "results.json"))
	require.NoError(t, err)
	var results int
	for _, b := range run.Boards {
		results += len(b.Scenarios)
	}
	require.Equal(t, sharded, results, "the merged run has every shard's results, once:\n%s", out)
	t.Logf("merged: %s", strings.TrimSpace(string(out)))
}

// warmBoard makes board slug ready in this process's cache — restored, if
// it was saved before; booted and saved otherwise — and says where that
// cache is and the image the board booted.
func warmBoard(t *testing.T, slug string) (string, *images.Image) {
	src, err := images.CacheDir()
	require.NoError(t, err)
	b, err := harness.Start(t.Context(), append(suiteOption(), harness.WithBoard(slug), harness.WithLogf(t.Logf))...)
	if b != nil {
		defer b.Close()
	}
	require.NoError(t, err)
	im := b.Image
	require.NoError(t, b.Close())
	return src, im
}

// movedCache is a new cache directory, at a path of its own, holding what
// board slug needs of the cache src: its image im, its saved states and the
// SSH key the image trusts, hard-linked (the files of a published entry are
// never written). It checks that each saved disk resolves to the image in
// the new cache, not to the one it was saved beside.
func movedCache(t *testing.T, src string, im *images.Image, slug string) string {
	dst := filepath.Join(t.TempDir(), "restored", "socbox-cache")
	rel, err := filepath.Rel(src, im.Dir)
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(rel, ".."), "the board's image %s is not in the cache %s", im.Dir, src)
	linkTree(t, im.Dir, filepath.Join(dst, rel))
	linkTree(t, filepath.Join(src, "ssh"), filepath.Join(dst, "ssh"))
	entries := savedEntries(t, filepath.Join(src, "snapshots"), slug, im.Key)
	require.NotEmpty(t, entries, "no saved state of %s on %s in %s", slug, im.Name, src)
	for _, e := range entries {
		linkTree(t, e, filepath.Join(dst, "snapshots", filepath.Base(e)))
		backing, err := images.BackingFile(filepath.Join(dst, "snapshots", filepath.Base(e), state.DiskImg))
		require.NoError(t, err)
		real, err := filepath.EvalSymlinks(backing)
		require.NoError(t, err, "the saved disk's backing file %s is not in the new cache", backing)
		require.True(t, strings.HasPrefix(real, dst+string(filepath.Separator)), "the saved disk in the new cache is backed by %s", real)
	}
	return dst
}

// savedEntries are the published entries in the store at dir of board
// slug on the image with key imageKey, made by this socbox's store.
func savedEntries(t *testing.T, dir, slug, imageKey string) []string {
	var out []string
	children, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, c := range children {
		if !c.IsDir() || strings.Contains(c.Name(), ".tmp-") {
			continue
		}
		for _, meta := range []string{"snapshot.json", "disk.json"} {
			blob, err := os.ReadFile(filepath.Join(dir, c.Name(), meta))
			if err != nil {
				continue
			}
			var m state.Meta
			if json.Unmarshal(blob, &m) == nil && m.Inputs.Board == slug && m.Inputs.Image == imageKey && m.Inputs.Version == state.Version {
				out = append(out, filepath.Join(dir, c.Name()))
				break
			}
		}
	}
	return out
}

// linkTree makes dst a copy of the directory src, with its modes: files
// hard-linked where both are on one file system, else copied sparse. Lock
// files and unfinished builds are left out.
func linkTree(t *testing.T, src, dst string) {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(d.Name(), ".lock") || strings.Contains(d.Name(), ".tmp-") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm()|0o700)
		case !d.Type().IsRegular():
			return nil
		}
		if err := os.Link(p, to); err == nil || !errors.Is(err, syscall.EXDEV) {
			return err
		}
		out, err := exec.Command("cp", "-a", "--sparse=always", p, to).CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	})
	require.NoError(t, err, "copy %s to %s", src, dst)
}
