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

// CreateNetwork makes a bridge network on the board: containers on it
// (Container.Network) reach each other by name and the board at "gateway".
// It is removed when the board is closed, or earlier with its Remove once
// its containers are gone.
func (b *Board) CreateNetwork(ctx context.Context, name string) (*Network, error) {
	if b.Runtime == nil {
		return nil, fmt.Errorf("create network on %s: containerd is not ready", b.Profile.Slug)
	}
	n, err := b.Runtime.CreateNetwork(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Profile.Slug, err)
	}
	b.bg.mu.Lock()
	b.bg.networks = append(b.bg.networks, n)
	b.bg.mu.Unlock()
	return n, nil
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

// StartService starts a container in the background and returns once each of its
// Ports accepts connections (Container.Ports needs a Network or
// HostNetwork). Each port is forwarded to 127.0.0.1 on this machine through
// the SSH connection: see Endpoint. Stop it when done; Close stops what is
// left.
func (b *Board) StartService(ctx context.Context, c Container) (*Service, error) {
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBoardFailed, err)
	}
	if b.Runtime == nil {
		return nil, fmt.Errorf("start on %s: containerd is not ready (board booted WithoutContainerd?)", b.Profile.Slug)
	}
	var err error
	if c, err = b.resolveImage(ctx, c); err != nil {
		return nil, err
	}
	rc, err := b.Runtime.Start(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("start on %s: %w", b.Profile.Slug, err)
	}
	s := &Service{Name: c.Name, b: b, rc: rc, forwards: map[int]*sshx.Forward{}}
	b.bg.mu.Lock()
	b.bg.services = append(b.bg.services, s)
	b.bg.mu.Unlock()
	if err := s.publish(ctx, c); err != nil {
		res, serr := s.Stop(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("start %s on %s: %w%s", s.label(), b.Profile.Slug, err, exitedWith(res)), serr)
	}
	return s, nil
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
		s.b.logf("%s: port %d (%s in the guest) answers after %.1fs, forwarded to %s", s.label(), port, addr, time.Since(start).Seconds(), f.Addr)
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

// stopBackground stops the services and removes the networks a test left.
func (b *Board) stopBackground(ctx context.Context) error {
	b.bg.mu.Lock()
	services, networks := b.bg.services, b.bg.networks
	b.bg.services, b.bg.networks = nil, nil
	b.bg.mu.Unlock()
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
