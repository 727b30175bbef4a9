package scenarios

import (
	"flag"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The boards of TestBundledScenarios run at once: eachBoard's subtests
// are parallel. Nothing boots here; fn only waits for the other board.
func TestEachBoardRunsBoardsAtOnce(t *testing.T) {
	if n, _ := strconv.Atoi(flag.Lookup("test.parallel").Value.String()); n < 2 {
		t.Skipf("go test -parallel %d runs one subtest at a time", n)
	}
	saved := *boardFlag
	*boardFlag = "raspi4b-fast,raspi3b-fast"
	t.Cleanup(func() { *boardFlag = saved })

	var mu sync.Mutex
	var ran []string
	both := make(chan struct{})
	t.Run("suite", func(t *testing.T) {
		eachBoard(t, func(t *testing.T, slug string) {
			require.Equal(t, "TestEachBoardRunsBoardsAtOnce/suite/"+slug, t.Name())
			mu.Lock()
			ran = append(ran, slug)
			if len(ran) == 2 {
				close(both)
			}
			mu.Unlock()
			select {
			case <-both:
			case <-time.After(10 * time.Second):
				t.Errorf("%s ran alone: the other board did not start meanwhile", slug)
			}
		})
	})
	require.ElementsMatch(t, []string{"raspi4b-fast", "raspi3b-fast"}, ran)
}
