package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/socbox/socbox/harness/ctrd"
	"github.com/socbox/socbox/harness/sshx"
)

// Network is a bridge network in the guest that containers join by name;
// see ctrd.Network.
type Network = ctrd.Network

// File is a file copied into a container before it starts; see
// ctrd.File.
type File = ctrd.File

// DefaultPortTimeout bounds how long StartService waits for a service's ports to
// accept connections. Under TCG a server takes seconds to come up.
const DefaultPortTimeout = 2 * time.Minute

// stopGrace is how long a service has to end on SIGTERM before SIGKILL.
const stopGrace = 2 * time.Second

// background tracks what a board started in the background, so that Close
// removes what a test forgot.
type background struct {
	mu       sync.Mutex
	services []*Service
	networks []*Network
}

// Service is a container running in the background, started by
// Board.StartService, with its ports forwarded to this machine.
type Service struct {
	Name     string
	b        *Board
	rc       *ctrd.Running
	forwards map[int]*sshx.Forward
	once     sync.Once
	res      ContainerResult
	err      error
}

func (s *Service) label() string {
	if s.Name != "" {
		return s.Name
	}
	return s.rc.ID()
}

// exitedWith describes what a service that ended early left.
func exitedWith(res ContainerResult) string {
	if res.Runs == 0 {
		return ""
	}
	return fmt.Sprintf(" (it exited with code %d; stdout %q, stderr %q)", res.ExitCode, clip(res.Stdout), clip(res.Stderr))
}

// clip shortens what an error quotes of a container's output.
func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// publish forwards each port and waits until it answers from inside the
// guest.
func (s *Service) publish(ctx context.Context, c Container) error {
	host := s.rc.IP()
	if c.HostNetwork {
		host = "127.0.0.1"
	}
	for _, port := range c.Ports {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		wctx, cancel := context.WithTimeout(ctx, DefaultPortTimeout)
		start := time.Now()
		err := poll(wctx, requirement{
			desc: fmt.Sprintf("%s to accept connections on port %d", s.label(), port), interval: 250 * time.Millisecond,
			alive: func() error {
				if s.rc.Exited() {
					return errors.New("the container exited")
				}
				return nil
			},
			check: func(ctx context.Context) error {
				conn, err := s.b.SSH.DialTCP(ctx, addr)
				if err == nil {
					conn.Close()
				}
				return err
			},
		})
		cancel()
		if err != nil {
			return err
		}
		f, err := s.b.SSH.Forward(addr)
		if err != nil {
			return err
		}
		s.forwards[port] = f
		s.b.life.logf("%s: port %d (%s in the guest) answers after %.1fs, forwarded to %s", s.label(), port, addr, time.Since(start).Seconds(), f.Addr)
	}
	return nil
}

// Endpoint is where this machine reaches the service's port: "127.0.0.1:N".
// It is empty for a port the container was not started with.
func (s *Service) Endpoint(port int) string {
	if f := s.forwards[port]; f != nil {
		return f.Addr
	}
	return ""
}

// IP is the service's address on its network, or "".
func (s *Service) IP() string { return s.rc.IP() }

// Stop ends the service (SIGTERM, then SIGKILL after two seconds), closes
// its forwards and removes it. It returns what the container did; calling
// it again returns the same.
func (s *Service) Stop(ctx context.Context) (ContainerResult, error) {
	s.once.Do(func() {
		var errs []error
		for _, f := range s.forwards {
			errs = append(errs, f.Close())
		}
		s.res, s.err = s.rc.Stop(ctx, stopGrace)
		s.err = errors.Join(append(errs, s.err)...)
	})
	return s.res, s.err
}

// addService and addNetwork remember what to stop on Close.
func (bg *background) addService(s *Service) {
	bg.mu.Lock()
	bg.services = append(bg.services, s)
	bg.mu.Unlock()
}

func (bg *background) addNetwork(n *Network) {
	bg.mu.Lock()
	bg.networks = append(bg.networks, n)
	bg.mu.Unlock()
}

// stop stops the services and removes the networks a test left.
func (bg *background) stop(ctx context.Context) error {
	bg.mu.Lock()
	services, networks := bg.services, bg.networks
	bg.services, bg.networks = nil, nil
	bg.mu.Unlock()
	var errs []error
	for i := len(services) - 1; i >= 0; i-- {
		_, err := services[i].Stop(ctx)
		errs = append(errs, err)
	}
	for _, n := range networks {
		errs = append(errs, n.Remove(ctx))
	}
	return errors.Join(errs...)
}

// closeGuest is the undo that stops what a test left in the guest — on an emulated board
// it would go with the machine anyway, on a shared one it must not stay —
// and closes the containerd and SSH connections.
func closeGuest(b *Board) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		if b.Runtime != nil {
			errs = append(errs, b.bg.stop(ctx))
			if b.Machine.Shared() {
				// A real board stays up: take the shim keeper and the
				// output files made ahead away too.
				errs = append(errs, b.Runtime.StopShimKeeper(ctx), b.Runtime.DropOutputs(ctx))
			}
			_ = b.Runtime.Close()
			b.Runtime = nil
		}
		if b.SSH != nil {
			_ = b.SSH.Close()
			b.SSH = nil
		}
		return errors.Join(errs...)
	}
}
