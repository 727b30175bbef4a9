package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Two processes writing reports into one directory must each leave a
// whole file: a shared temporary name let one rename the other's half
// written file, or find it gone.
func TestWriteJSONConcurrently(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &Run{Host: Host{Hostname: strings.Repeat(fmt.Sprint(w), 200<<10)}}
			for range 50 {
				if _, err := r.WriteJSON(dir); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var r Run
	require.NoError(t, json.Unmarshal(b, &r))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")
}

func TestNewRunDirIsUniquePerRun(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "socbox-results")
	now := time.Date(2026, 11, 29, 20, 1, 2, 0, time.UTC)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir, err := NewRunDir(parent, now)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			require.False(t, seen[dir], "%s handed out twice", dir)
			seen[dir] = true
		}()
	}
	wg.Wait()
	require.Len(t, seen, 8)
	require.True(t, seen[filepath.Join(parent, "20261129-200102")])
	require.True(t, seen[filepath.Join(parent, "20261129-200102-8")])
}
