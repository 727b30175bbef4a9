package sshx

import "time"

// Result is what a command run in the guest produced. A non-zero exit status
// is a Result, not an error: errors are reserved for transport failures.
type Result struct {
	Command  string
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
}
