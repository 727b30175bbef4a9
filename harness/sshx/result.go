package sshx

import "time"

// Result is what a command run in the guest produced. A non-zero exit status
// is a Result, not an error: errors are reserved for transport failures.
type Result struct {
	Command  string
	ExitCode int
	// Stdout and Stderr hold the head of each stream, at most the Run's
	// output limit (DefaultOutputLimit unless WithOutputLimit);
	// StdoutSize and StderrSize count every byte the command wrote.
	Stdout     []byte
	Stderr     []byte
	StdoutSize int64
	StderrSize int64
	Duration   time.Duration
}

// Truncated reports whether either stream was cut at the output limit.
func (r Result) Truncated() bool {
	return r.StdoutSize > int64(len(r.Stdout)) || r.StderrSize > int64(len(r.Stderr))
}
