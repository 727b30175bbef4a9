package sshx

import (
	"fmt"
	"net"
	"strconv"
)

// Endpoint is where a board's SSH server can be reached: for a QEMU guest a
// port forward on 127.0.0.1, for a flashed board its address on the LAN. It is
// a plain description; Dial is what connects to it.
type Endpoint struct {
	Host string
	Port int
	User string
}

// String gives user@host:port, the form used in logs and error messages.
func (e Endpoint) String() string {
	return fmt.Sprintf("%s@%s", e.User, e.Addr())
}

// Addr gives host:port, bracketing IPv6 literals.
func (e Endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}
