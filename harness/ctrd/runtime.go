// Package ctrd drives containerd in a guest through its Go client,
// tunnelled over the guest's SSH connection: import images built on the host,
// run containers to completion and collect their exit code and output.
//
// Everything the daemon needs from the client side (the gRPC socket, the
// container's standard output and error) is reached through a Shell, so the
// same code runs against a QEMU guest, a flashed board or, in tests, a local
// daemon.
package ctrd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/harness/sshx"
)

// Shell is what the runtime needs from a guest: commands, file transfer and
// a way to reach a unix socket. *sshx.Client satisfies it.
type Shell interface {
	Run(ctx context.Context, cmd string, opts ...sshx.RunOption) (sshx.Result, error)
	Upload(ctx context.Context, r io.Reader, remotePath string, mode os.FileMode) error
	Download(ctx context.Context, remotePath string, w io.Writer) error
	// ReadAndTruncate returns the head of each file, in order, at most
	// limit bytes of each, and empties them once all were read.
	ReadAndTruncate(ctx context.Context, limit int64, paths ...string) ([]sshx.Head, error)
	DialUnix(ctx context.Context, path string) (net.Conn, error)
}

var _ Shell = (*sshx.Client)(nil)

// Defaults for Connect.
const (
	DefaultSocket      = "/run/containerd/containerd.sock"
	DefaultNamespace   = "socbox"
	DefaultSnapshotter = "overlayfs"
	// DefaultStateDir is where, in the guest, containers' output files live
	// while they run. /run is a tmpfs, so nothing survives a reboot.
	DefaultStateDir = "/run/socbox"
)

// cleanupTimeout bounds the teardown of a container after its run, which
// must go on even when the caller's context has ended. A guest under TCG is
// slow, but not this slow.
const cleanupTimeout = 30 * time.Second

// Option configures Connect.
type Option func(*options) error

type options struct {
	socket      string
	namespace   string
	snapshotter string
	stateDir    string
	platform    *boards.Platform
	ociRuntime  string
	sharedGuest bool
}

// WithSocket sets the path of containerd's socket in the guest.
func WithSocket(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("empty socket path")
		}
		o.socket = path
		return nil
	}
}

// WithNamespace sets the containerd namespace every call runs in.
func WithNamespace(ns string) Option {
	return func(o *options) error {
		if ns == "" {
			return errors.New("empty namespace")
		}
		o.namespace = ns
		return nil
	}
}

// WithSnapshotter sets the snapshotter images are unpacked into and
// containers' root filesystems are made with.
func WithSnapshotter(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("empty snapshotter name")
		}
		o.snapshotter = name
		return nil
	}
}

// WithStateDir sets the directory in the guest that holds, per container, the
// files its standard output and error are written to.
func WithStateDir(dir string) Option {
	return func(o *options) error {
		if len(dir) < 2 || dir[0] != '/' {
			return fmt.Errorf("state dir %q: must be an absolute path other than /", dir)
		}
		o.stateDir = dir
		return nil
	}
}

// WithOCIRuntime makes the runc shim run containers with another OCI
// runtime binary in the guest, such as /usr/bin/crun, instead of runc.
func WithOCIRuntime(binary string) Option {
	return func(o *options) error {
		if !path.IsAbs(binary) {
			return fmt.Errorf("OCI runtime %q: give the absolute path of the binary in the guest", binary)
		}
		o.ociRuntime = binary
		return nil
	}
}

// WithPlatform sets the platform containers run as, which picks the manifest
// of a multi-platform image. Without it, the platform is the one the guest's
// containerd reports for its task runtime.
func WithPlatform(p boards.Platform) Option {
	return func(o *options) error {
		o.platform = &p
		return nil
	}
}

// WithSharedGuest says other sessions may use the guest's containerd at the
// same time (a real board reached with --target): KeepShimWarm then starts
// a keeper of this session's own instead of sharing one that another
// session may remove.
func WithSharedGuest() Option {
	return func(o *options) error {
		o.sharedGuest = true
		return nil
	}
}

// Runtime is a connection to containerd in one guest.
type Runtime struct {
	sh          Shell
	client      *client.Client
	namespace   string
	snapshotter string
	stateDir    string
	platform    boards.Platform
	// ociRuntime is the runtime binary the shim runs, "" for runc.
	ociRuntime string

	// version is what the daemon said it was when connected.
	version string

	mu       sync.Mutex
	networks int // made so far, for their subnets
	// outputs are output files made ahead of time for later containers.
	outputs []guestOutput
	// sandbox is the shim keeper's ID while it runs (see KeepShimWarm).
	sandbox string
	// hostFiles are the files host-network containers mount, once made.
	hostFiles attachment
	// etcDir is where the guest's hosts and resolv.conf are: /etc.
	etcDir string
	// ownKeeper is the keeper this Runtime started, the only one
	// StopShimKeeper removes.
	ownKeeper   string
	sharedGuest bool
	// checkedImages are images found usable for the board (platform,
	// unpacked) by name, with the content they had then.
	checkedImages map[string]knownImage
}

// Connect opens a containerd client over sh and checks that the daemon
// answers. The gRPC connection is made through sh.DialUnix, and redialled
// through it if it drops; it needs no transport security of its own since
// the shell's transport (SSH) already has it.
func Connect(ctx context.Context, sh Shell, opts ...Option) (*Runtime, error) {
	o := options{
		socket:      DefaultSocket,
		namespace:   DefaultNamespace,
		snapshotter: DefaultSnapshotter,
		stateDir:    DefaultStateDir,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("connect to containerd: %w", err)
		}
	}

	socket := o.socket
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		return sh.DialUnix(ctx, socket)
	}
	retry := backoff.DefaultConfig
	retry.MaxDelay = 5 * time.Second
	conn, err := grpc.NewClient("passthrough:///"+socket,
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: retry, MinConnectTimeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize),
			grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
		// NewWithConn does not apply a default namespace; these make sure
		// every call, including those the client makes on its own, has one.
		grpc.WithChainUnaryInterceptor(namespaceUnary(o.namespace)),
		grpc.WithChainStreamInterceptor(namespaceStream(o.namespace)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", socket, err)
	}
	c, err := client.NewWithConn(conn, client.WithDefaultNamespace(o.namespace))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to containerd at %s: %w", socket, err)
	}
	r := &Runtime{
		sh:          sh,
		client:      c,
		namespace:   o.namespace,
		snapshotter: o.snapshotter,
		stateDir:    o.stateDir,
		ociRuntime:  o.ociRuntime,
		sharedGuest: o.sharedGuest,
		etcDir:      "/etc",
	}
	// grpc.NewClient connects lazily: ask for the version now so that a
	// daemon that is not there fails here, with a hint, and not in the
	// first Import.
	if r.version, err = r.Version(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to containerd at %s (is containerd installed and running in the guest?): %w", socket, err)
	}
	if o.platform != nil {
		r.platform = *o.platform
	} else if r.platform, err = r.daemonPlatform(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to containerd at %s: %w (set it with ctrd.WithPlatform)", socket, err)
	}
	return r, nil
}

// DaemonVersion is the daemon's version as Connect found it, without asking
// again.
func (r *Runtime) DaemonVersion() string { return r.version }

// Version returns the daemon's version, e.g. "1.6.20~ds1".
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.withNamespace(ctx))
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return v.Version, nil
}

// Platform is the platform containers run as.
func (r *Runtime) Platform() boards.Platform { return r.platform }

// Close closes the client's connection. Containers the Runtime started have
// all been removed by then: Run does not return before its container is gone.
func (r *Runtime) Close() error {
	if r == nil || r.client == nil {
		return nil
	}
	return r.client.Close()
}

// withNamespace puts the runtime's namespace on ctx unless it has one.
func (r *Runtime) withNamespace(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok {
		return ctx
	}
	return namespaces.WithNamespace(ctx, r.namespace)
}

func namespaceUnary(ns string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := namespaces.Namespace(ctx); !ok {
			ctx = namespaces.WithNamespace(ctx, ns)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func namespaceStream(ns string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if _, ok := namespaces.Namespace(ctx); !ok {
			ctx = namespaces.WithNamespace(ctx, ns)
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// daemonPlatform asks containerd which platform its task runtime runs.
func (r *Runtime) daemonPlatform(ctx context.Context) (boards.Platform, error) {
	resp, err := r.client.IntrospectionService().Plugins(r.withNamespace(ctx), `type=="io.containerd.runtime.v2"`)
	if err != nil {
		return boards.Platform{}, fmt.Errorf("ask containerd for its platform: %w", err)
	}
	for _, plugin := range resp.Plugins {
		if plugin.InitErr != nil || len(plugin.Platforms) == 0 {
			continue
		}
		p := plugin.Platforms[0]
		return boards.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
	}
	return boards.Platform{}, errors.New("containerd reports no task runtime with a platform")
}
