package sshx

import "time"

// SetKeepalive sets how often the client probes a connection and how
// long it waits for a reply, until the test ends.
func SetKeepalive(t interface{ Cleanup(func()) }, interval, timeout time.Duration) {
	oldInterval, oldTimeout := keepaliveInterval, keepaliveTimeout
	keepaliveInterval, keepaliveTimeout = interval, timeout
	t.Cleanup(func() { keepaliveInterval, keepaliveTimeout = oldInterval, oldTimeout })
}
