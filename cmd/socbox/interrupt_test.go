package main

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/socbox/socbox/harness/proc"
)

// syncBuffer is a bytes.Buffer safe to write from the signal goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The first Ctrl-C asks for a clean stop; the second must not be
// swallowed: it kills the children (QEMU) and exits at once.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	var stderr syncBuffer
	exited := make(chan int, 1)
	ctx, stop := onInterrupt(&stderr, func(code int) { exited <- code })
	defer stop()

	child := exec.Command("sleep", "100")
	require.NoError(t, proc.Start(child))
	waited := make(chan error, 1)
	go func() { waited <- child.Wait() }()

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first interrupt did not cancel")
	}
	select {
	case <-exited:
		t.Fatal("the first interrupt exited")
	case <-waited:
		t.Fatal("the first interrupt killed the child: teardown stops it")
	case <-time.After(200 * time.Millisecond):
	}

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
	select {
	case code := <-exited:
		require.Equal(t, 130, code)
	case <-time.After(5 * time.Second):
		t.Fatal("the second interrupt was swallowed")
	}
	select {
	case err := <-waited:
		require.Error(t, err, "killed")
	case <-time.After(5 * time.Second):
		t.Fatal("the child was not killed")
	}
	require.Contains(t, stderr.String(), "interrupted again: killed")
}
