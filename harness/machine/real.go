package machine

import (
	"context"

	"github.com/socbox/socbox/harness/guest"
	"github.com/socbox/socbox/harness/sshx"
)

// Real is a real board reached over SSH, as it described itself after
// login. socbox has no process or console of it, and never stops it.
type Real struct {
	// URL is the board as ssh://user@host:port.
	URL string
	SSH sshx.Endpoint
	// Identity is the key file socbox logged in with, or "ssh-agent".
	Identity string
	// KnownHosts is the known_hosts file the host key was checked against.
	KnownHosts string
	// Facts are what the board said it is.
	guest.Facts
	// ProfileFrom says how the board profile the results are compared
	// against was chosen: named, or detected from what.
	ProfileFrom string
}

func (r *Real) Alive() error               { return nil }
func (r *Real) ConsoleTail(int) []string   { return nil }
func (r *Real) Endpoint() Endpoint         { return Endpoint{SSH: r.SSH} }
func (r *Real) Shared() bool               { return true }
func (r *Real) HasNetwork() bool           { return true } // it is reached over it
func (r *Real) Stop(context.Context) error { return nil }
