package ctrd

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/opencontainers/image-spec/identity"

	"github.com/socbox/socbox/harness/sshx"
)

// Container says what to run.
type Container struct {
	// Name prefixes the container's ID, which gets a random suffix so that
	// runs never collide; "socbox" if empty. Letters, digits and . _ - only.
	// On a Network it is also the container's host name there.
	Name string
	// Image is the name of an image already in the guest (see Import).
	Image string
	// Cmd replaces the image's Cmd (the Entrypoint stays); the image's Cmd
	// if empty.
	Cmd []string
	// Env is added to the image's environment, replacing variables of the
	// same name.
	Env []string
	// WorkingDir replaces the image's working directory if set.
	WorkingDir string
	// Mounts are bind mounts of guest paths into the container.
	Mounts []Mount
	// Files are copied into the container's root filesystem before it
	// starts.
	Files []File
	// Collect names files (absolute paths in the container) to copy out
	// of its root filesystem once it has exited, into
	// ContainerResult.Files.
	Collect []string
	// Privileged gives the container every capability, access to all
	// devices, a writable /sys and no seccomp, AppArmor or masked paths.
	Privileged bool
	// SeccompUnconfined turns off the default seccomp profile (the one
	// Docker and nerdctl apply), which a container otherwise runs under.
	SeccompUnconfined bool
	// MemoryLimit caps the container's memory, in bytes, through its
	// cgroup; swap is not allowed on top. Zero means no limit.
	MemoryLimit int64
	// HostNetwork runs the container in the guest's network namespace,
	// with copies of the guest's /etc/hosts and /etc/resolv.conf (a
	// default /etc/hosts where the guest has none, as Docker writes).
	HostNetwork bool
	// Network puts the container on a bridge network (see CreateNetwork)
	// instead of a namespace of its own with only loopback.
	Network *Network
	// Ports are TCP ports the container serves; the runtime only checks
	// that they can be reached (a Network or HostNetwork). The harness
	// forwards them to the host.
	Ports []int
	// Restarts is how many times the container's process is started again
	// after it exits, in the same container with the same root
	// filesystem, as a restarted container is. Its output accumulates
	// over the runs; the exit code is the last run's.
	Restarts int
	// OutputLimit is how much of each of stdout, stderr and every
	// Collect file is brought back to this machine: the head, the rest
	// counted in ContainerResult.Truncated. Zero means
	// sshx.DefaultOutputLimit (16 MiB).
	OutputLimit int64
	// Timeout, when set, is a hard limit on the container's run, from its
	// first start to its last exit: a container still running then is
	// killed (SIGKILL to every process of its task) and removed, and
	// Wait returns a *TimeoutError with the output written until then.
	// Zero means no limit but the context's.
	Timeout time.Duration
	// OutputLines, when set, gets each line the container writes to
	// stdout or stderr (stream says which) while it runs, without its
	// newline and made safe to print, one call at a time; the last
	// lines may come when it is waited for or stopped. It costs a tail
	// process in the guest per stream. The captured output is the same
	// with it as without.
	OutputLines func(stream, line string) `json:"-"`
}

// TimeoutError is what Wait returns for a container killed at its
// Container.Timeout.
type TimeoutError struct {
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s and was killed", e.Limit)
}

// outputLimit is c.OutputLimit or its default.
func (c Container) outputLimit() int64 {
	if c.OutputLimit > 0 {
		return c.OutputLimit
	}
	return sshx.DefaultOutputLimit
}

// Mount is a bind mount of a path in the guest into a container.
type Mount struct {
	// Source is a path in the guest (not on the host running socbox).
	Source string
	// Target is where it appears in the container.
	Target   string
	ReadOnly bool
}

// ContainerResult is what a container did. A non-zero exit is a result, not
// an error.
type ContainerResult struct {
	ID string
	// IP is the container's address on its Network, if it had one.
	IP string
	// ExitCode is the process's exit status, or 128+n if signal n killed it.
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	// Duration is from the first start to the last exit, measured on the
	// host.
	Duration time.Duration
	// Runs is how many times the process ran: 1 + the restarts done.
	Runs int
	// OOMKilled is set when the kernel's OOM killer ended the container
	// (ExitCode is then 137): with a MemoryLimit, because the container
	// went over it. Read from the cgroup v2 memory.events of the container.
	OOMKilled bool
	// Files holds the Collect files the container left, by path; a file
	// that was not there is missing.
	Files map[string][]byte
	// Truncated names what was cut at the Container's OutputLimit
	// ("stdout", "stderr" or a Collect path) with its whole size: Stdout,
	// Stderr and Files hold only the head of it.
	Truncated map[string]int64
	// Phases is where the time went, in order: what a container costs on
	// a board beyond its own run.
	Phases []Phase
}

// truncated notes in r.Truncated that what, read as h, was cut.
func (r *ContainerResult) truncated(what string, h sshx.Head) {
	if !h.Truncated() {
		return
	}
	if r.Truncated == nil {
		r.Truncated = map[string]int64{}
	}
	r.Truncated[what] = h.Size
}

// Phase is one step of a container's life and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

// phase records the time since the last phase under name.
func (rc *Running) phase(name string) {
	now := time.Now()
	if rc.mark.IsZero() {
		rc.mark = now
	}
	rc.res.Phases = append(rc.res.Phases, Phase{Name: name, Duration: now.Sub(rc.mark)})
	rc.mark = now
}

// Run creates a container from c, starts it, waits for it to exit and
// removes it (task, container and root filesystem snapshot) before
// returning, whatever happened. If ctx ends first, the container is killed
// and removed, and the error wraps ctx's cause; the result then holds what
// the container wrote until then.
func (r *Runtime) Run(ctx context.Context, c Container) (ContainerResult, error) {
	rc, err := r.Start(ctx, c)
	if err != nil {
		return rc.result(), err
	}
	return rc.Wait(ctx)
}

// Running is a started container. Wait for it or Stop it: either removes
// it, and only one of them may be called.
type Running struct {
	r     *Runtime
	c     Container
	res   ContainerResult
	ctr   client.Container
	task  client.Task
	exit  <-chan client.ExitStatus
	start time.Time
	out   guestOutput
	// outRead is set once the output files have been read and handed back
	// to the pool.
	outRead bool
	// exitSeen is set once the task's exit status has come.
	exitSeen bool
	// mounts are the root filesystem's, from the snapshot's creation.
	mounts []mount.Mount
	// taskMayExist is set from the moment a task is asked for until it
	// is deleted: only then can one exist in the guest.
	taskMayExist bool
	// cgroupsPath is the task's cgroup, for the OOM count.
	cgroupsPath string
	// cleanups run in reverse, once, on their own context.
	cleanups []func(ctx context.Context) error
	done     bool
	// mark is when the last phase ended.
	mark time.Time
	// follow passes on the output's lines as they come (OutputLines).
	follow *follower
}

// ID is the container's ID in the guest.
func (rc *Running) ID() string { return rc.res.ID }

// IP is the container's address on its Network, or "".
func (rc *Running) IP() string { return rc.res.IP }

// Exited reports, without waiting, whether the container's process has
// ended; Wait or Stop then collect it.
func (rc *Running) Exited() bool {
	if rc.done || rc.task == nil {
		return true
	}
	select {
	case st := <-rc.exit:
		// Put it back for Wait or Stop.
		ch := make(chan client.ExitStatus, 1)
		ch <- st
		rc.exit = ch
		return true
	default:
		return false
	}
}

func (rc *Running) result() ContainerResult {
	if rc == nil {
		return ContainerResult{}
	}
	return rc.res
}

// Start creates a container from c and starts its process. It returns once
// the process runs; on error, nothing is left in the guest.
func (r *Runtime) Start(ctx context.Context, c Container) (*Running, error) {
	prefix := c.Name
	if prefix == "" {
		prefix = "socbox"
	}
	rc := &Running{r: r, c: c, res: ContainerResult{ID: prefix + "-" + randomSuffix()}, mark: time.Now()}
	id := rc.res.ID
	if err := identifiers.Validate(id); err != nil {
		return rc, fmt.Errorf("run container %q: invalid name: %w", c.Name, err)
	}
	if c.Image == "" {
		return rc, fmt.Errorf("run container %s: no image", id)
	}
	if err := c.validate(); err != nil {
		return rc, fmt.Errorf("run container %s: %w", id, err)
	}
	if err := rc.create(r.withNamespace(ctx)); err != nil {
		err = withCause(ctx, err)
		cerr := rc.cleanup(ctx)
		return rc, errors.Join(fmt.Errorf("run container %s (image %s): %w", id, c.Image, err), cerr)
	}
	return rc, nil
}

// withCause makes sure an error that came from ctx ending says so.
func withCause(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		// Over gRPC the deadline often comes back as the server's
		// status ("Unknown desc = context deadline exceeded"), which
		// errors.Is does not see through.
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// cleanup runs the cleanups, on a context of their own: they must happen
// even, and above all, when ctx has been cancelled. Their time starts with
// the teardown, not with the run.
func (rc *Running) cleanup(ctx context.Context) error {
	if rc.done {
		return nil
	}
	rc.done = true
	cctx, cancel := context.WithTimeout(rc.r.withNamespace(context.WithoutCancel(ctx)), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(rc.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, rc.cleanups[i](cctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up container %s: %w", rc.res.ID, err)
	}
	return nil
}

func (rc *Running) create(ctx context.Context) error {
	r, c, id := rc.r, rc.c, rc.res.ID
	// A lease keeps the garbage collector off the new snapshot until the
	// container record refers to it.
	ctx, doneLease, err := r.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("create lease: %w", err)
	}
	defer func() { _ = doneLease(context.WithoutCancel(ctx)) }()

	image, err := r.image(ctx, c.Image)
	if err != nil {
		return err
	}
	rc.phase("image")

	var att *attachment
	if c.Network != nil {
		a, err := c.Network.attach(ctx, id, c.Name)
		if err != nil {
			return err
		}
		att = &a
		rc.res.IP = a.ip.String()
		rc.cleanups = append(rc.cleanups, func(ctx context.Context) error { return c.Network.detach(ctx, id, c.Name) })
		rc.phase("network")
	} else if c.HostNetwork {
		a, err := r.hostNetwork(ctx)
		if err != nil {
			return err
		}
		att = &a
	}

	specOpts := append(containerSpecOpts(image, c, r.platform, att), recordCgroupsPath(&rc.cgroupsPath))
	ctrOpts := []client.NewContainerOpts{
		client.WithImage(image),
		rc.withNewSnapshot(image),
		client.WithNewSpec(specOpts...),
		r.withRuntime(),
	}
	if sb := r.shimSandbox(); sb != "" {
		ctrOpts = append(ctrOpts, client.WithSandbox(sb))
	}
	rc.ctr, err = r.client.NewContainer(ctx, id, ctrOpts...)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	rc.phase("create container")
	rc.cleanups = append(rc.cleanups, func(ctx context.Context) error {
		// A task whose creation was cut short may exist without this
		// side having its handle: it would block the Delete. Where no
		// creation was asked since the last delete, there is none,
		// and the guest is not asked.
		if rc.taskMayExist {
			if task, err := rc.ctr.Task(ctx, nil); err == nil {
				if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					return fmt.Errorf("remove task: %w", err)
				}
			}
		}
		return rc.deleteContainer(ctx)
	})
	if len(c.Files) > 0 {
		if err := r.copyIn(ctx, id, c.Files); err != nil {
			return err
		}
		rc.phase("copy files in")
	}

	if rc.out, err = r.takeOutput(ctx); err != nil {
		return fmt.Errorf("create output files in the guest: %w", err)
	}
	rc.cleanups = append(rc.cleanups, func(ctx context.Context) error {
		if rc.outRead {
			return nil
		}
		if err := rc.out.remove(ctx, r.sh); err != nil {
			return fmt.Errorf("remove output files: %w", err)
		}
		return nil
	})
	rc.phase("output files")
	if c.OutputLines != nil {
		rc.follow = follow(ctx, r.sh, rc.out, c.OutputLines)
		rc.cleanups = append(rc.cleanups, func(context.Context) error { rc.follow.finish(nil, nil); return nil })
	}
	rc.start = time.Now()
	return rc.startTask(ctx)
}

// startTask creates and starts the container's process. The output files
// are opened for appending, so a restart adds to them.
func (rc *Running) startTask(ctx context.Context) error {
	rc.taskMayExist = true
	task, err := rc.newTask(ctx)
	if err != nil {
		if id := rc.r.shimSandbox(); id != "" && !rc.r.keeperRunning(ctx, id) {
			// The keeper is gone (which is why the task could not be
			// made in its shim): later containers start a shim again.
			rc.r.setShimSandbox("")
		}
		return fmt.Errorf("create task: %w", err)
	}
	rc.task, rc.exitSeen = task, false
	rc.phase("create task")
	// Wait before Start, so that an exit that comes at once is not missed.
	if rc.exit, err = task.Wait(ctx); err != nil {
		return fmt.Errorf("wait for task: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start task: %w", err)
	}
	rc.phase("start task")
	rc.res.Runs++
	return nil
}

// deleteTask removes the exited process; the runc shim's Delete returns
// once it has copied the last of the output into the files. A task whose
// exit was not seen is killed first; one that exited has nothing left to
// kill (its PID namespace went with its first process), which spares two
// round trips to the guest.
func (rc *Running) deleteTask(ctx context.Context) error {
	if rc.task == nil {
		return nil
	}
	var err error
	if rc.exitSeen {
		// The client's Delete would ask for the task's status first,
		// one more round trip, to learn what the exit already said.
		_, err = rc.r.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: rc.res.ID})
		err = errgrpc.ToNative(err)
	} else {
		_, err = rc.task.Delete(ctx, client.WithProcessKill)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove task: %w", err)
	}
	rc.task, rc.taskMayExist = nil, false
	return nil
}

// newTask creates the container's task with one call to the guest's
// containerd, and a second for the client's handle. The client's NewTask
// reads the container record three times and the snapshot's mounts once
// more, for what this side knows: the mounts came with the snapshot, no
// SELinux label is set, and no task options are given.
func (rc *Running) newTask(ctx context.Context) (client.Task, error) {
	id := rc.res.ID
	cfg := rc.out.config()
	req := &tasks.CreateTaskRequest{ContainerID: id, Stdout: cfg.Stdout, Stderr: cfg.Stderr}
	for _, m := range rc.mounts {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if _, err := rc.r.client.TaskService().Create(ctx, req); err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return rc.ctr.Task(ctx, nil)
}

// Wait waits for the container to exit (and restarts it as often as asked),
// then collects its files and output and removes it. If ctx ends first, the
// container is killed and removed, and the error wraps ctx's cause.
func (rc *Running) Wait(ctx context.Context) (ContainerResult, error) {
	if rc.done {
		return rc.res, fmt.Errorf("container %s: already waited for or stopped", rc.res.ID)
	}
	wctx := rc.r.withNamespace(ctx)
	if rc.c.Timeout > 0 {
		// The limit counts from the first start, not from this call.
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadlineCause(wctx, rc.start.Add(rc.c.Timeout), &TimeoutError{Limit: rc.c.Timeout})
		defer cancel()
	}
	err := rc.wait(wctx)
	if err != nil {
		err = fmt.Errorf("run container %s (image %s): %w", rc.res.ID, rc.c.Image, withCause(ctx, err))
	}
	return rc.finish(ctx, err)
}

func (rc *Running) wait(ctx context.Context) error {
	for {
		select {
		case status := <-rc.exit:
			code, _, err := status.Result()
			rc.res.Duration = time.Since(rc.start)
			rc.phase("run")
			if err == nil {
				// It exited, even if ctx ended at the same time.
				rc.exitSeen = true
				rc.res.ExitCode = int(code)
				if rc.res.ExitCode == 128+int(syscall.SIGKILL) {
					// The cgroup goes with the task: ask before
					// deleting it.
					rc.res.OOMKilled = rc.r.oomKilled(ctx, rc.cgroupsPath)
				}
				if rc.res.Runs > rc.c.Restarts || ctx.Err() != nil {
					return nil
				}
				if err := rc.deleteTask(ctx); err != nil {
					return err
				}
				rc.phase("remove task")
				if err := rc.startTask(ctx); err != nil {
					return fmt.Errorf("restart (run %d): %w", rc.res.Runs+1, err)
				}
				continue
			}
			if dl, ok := ctx.Deadline(); ok && ctx.Err() == nil && time.Until(dl) < time.Second {
				// The deadline travels with the gRPC call and may fire
				// on the daemon's side a moment before ours does.
				<-ctx.Done()
			}
			if ctx.Err() == nil {
				return fmt.Errorf("wait for exit: %w", err)
			}
		case <-ctx.Done():
		}
		// Wait's call ended with ctx: kill, and wait anew.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		rc.res.ExitCode, rc.res.Duration = killTask(cctx, rc.task, rc.start)
		cancel()
		return context.Cause(ctx)
	}
}

// Stop ends the container: SIGTERM, then SIGKILL after grace, and then
// collects and removes it as Wait does. Its exit code is what the signal
// left (143 for a process that ends on SIGTERM).
func (rc *Running) Stop(ctx context.Context, grace time.Duration) (ContainerResult, error) {
	if rc.done {
		return rc.res, nil
	}
	ctx = rc.r.withNamespace(ctx)
	var err error
	if rc.task != nil {
		if kerr := rc.task.Kill(ctx, syscall.SIGTERM, client.WithKillAll); kerr != nil && !errdefs.IsNotFound(kerr) && !errdefs.IsFailedPrecondition(kerr) {
			err = fmt.Errorf("stop container %s: %w", rc.res.ID, kerr)
		}
		select {
		case status := <-rc.exit:
			code, _, serr := status.Result()
			rc.res.Duration = time.Since(rc.start)
			rc.res.ExitCode = int(code)
			if serr != nil {
				rc.res.ExitCode = -1
			}
		case <-time.After(grace):
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			rc.res.ExitCode, rc.res.Duration = killTask(cctx, rc.task, rc.start)
			cancel()
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			rc.res.ExitCode, rc.res.Duration = killTask(cctx, rc.task, rc.start)
			cancel()
			err = errors.Join(err, context.Cause(ctx))
		}
	}
	return rc.finish(ctx, err)
}

// finish deletes the task, reads the output and the Collect files, and
// removes everything; err is the run's error so far.
func (rc *Running) finish(ctx context.Context, err error) (ContainerResult, error) {
	cctx, cancel := context.WithTimeout(rc.r.withNamespace(context.WithoutCancel(ctx)), cleanupTimeout)
	defer cancel()
	var errs []error
	if derr := rc.deleteTask(cctx); derr != nil {
		errs = append(errs, derr)
	} else if rc.phase("remove task"); len(rc.c.Collect) > 0 {
		files, cerr := rc.r.copyOut(cctx, rc.res.ID, rc.c.Collect, rc.c.outputLimit())
		errs = append(errs, cerr)
		rc.res.Files = make(map[string][]byte, len(files))
		for p, h := range files {
			rc.res.Files[p] = h.Data
			rc.res.truncated(p, h)
		}
		rc.phase("copy files out")
	}
	if rc.out.dir != "" {
		// The tails end before the files are emptied; what they had not
		// passed on yet is taken from what is read.
		rc.follow.stop()
		// Read and emptied for a later container through the
		// connection's SFTP session: no process starts in the guest.
		stdout, stderr, rerr := rc.out.readAndReset(cctx, rc.r.sh, rc.c.outputLimit())
		rc.follow.finish(stdout.Data, stderr.Data)
		if rerr != nil {
			errs = append(errs, fmt.Errorf("read output: %w", rerr))
		} else {
			rc.r.mu.Lock()
			rc.r.outputs = append(rc.r.outputs, rc.out)
			rc.r.mu.Unlock()
		}
		rc.res.Stdout, rc.res.Stderr = stdout.Data, stderr.Data
		rc.res.truncated("stdout", stdout)
		rc.res.truncated("stderr", stderr)
		rc.outRead = rerr == nil
		rc.phase("read output")
	}
	if cerr := errors.Join(errs...); cerr != nil {
		err = errors.Join(err, fmt.Errorf("container %s: %w", rc.res.ID, cerr))
	}
	err = errors.Join(err, rc.cleanup(ctx))
	rc.phase("remove container")
	return rc.res, err
}

// killTask sends SIGKILL to every process of task and waits for its exit.
// The exit code is -1 if it could not be learnt.
func killTask(ctx context.Context, task client.Task, start time.Time) (exitCode int, ran time.Duration) {
	exitCh, err := task.Wait(ctx)
	if err != nil {
		return -1, time.Since(start)
	}
	// Not found or failed precondition: it has already exited.
	err = task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return -1, time.Since(start)
	}
	select {
	case status := <-exitCh:
		code, _, err := status.Result()
		if err != nil {
			return -1, time.Since(start)
		}
		return int(code), time.Since(start)
	case <-ctx.Done():
		return -1, time.Since(start)
	}
}

// withNewSnapshot makes the container's root filesystem, a snapshot named
// after it over the image's layers, and keeps its mounts for the task. The
// client's WithNewSnapshot reads the image's config and asks the
// snapshotter's capabilities (for user namespace remapping, which socbox
// does not use) on every container.
func (rc *Running) withNewSnapshot(image knownImage) client.NewContainerOpts {
	return func(ctx context.Context, _ *client.Client, c *containers.Container) error {
		diffIDs, err := image.RootFS(ctx)
		if err != nil {
			return err
		}
		snap := rc.r.snapshotter
		rc.mounts, err = rc.r.client.SnapshotService(snap).Prepare(ctx, rc.res.ID, identity.ChainID(diffIDs).String())
		if err != nil {
			return fmt.Errorf("root filesystem: %w", err)
		}
		c.Snapshotter, c.SnapshotKey, c.Image = snap, rc.res.ID, image.Name()
		return nil
	}
}

// deleteContainer removes the container record, then its snapshot. The
// client's Delete asks for the record and for a task first, which this
// side knows of (a task that may exist is removed before).
func (rc *Running) deleteContainer(ctx context.Context) error {
	if err := rc.r.client.ContainerService().Delete(ctx, rc.res.ID); err != nil {
		return fmt.Errorf("remove container: %w", errgrpc.ToNative(err))
	}
	if err := rc.r.client.SnapshotService(rc.r.snapshotter).Remove(ctx, rc.res.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container's root filesystem: %w", err)
	}
	return nil
}

// withRuntime names the runc shim, with the OCI runtime binary when one
// other than runc is asked for.
func (r *Runtime) withRuntime() client.NewContainerOpts {
	if r.ociRuntime == "" {
		return client.WithRuntime(plugins.RuntimeRuncV2, nil)
	}
	return client.WithRuntime(plugins.RuntimeRuncV2, &runcoptions.Options{BinaryName: r.ociRuntime})
}

// HasImage reports whether the guest's containerd has the image, unpacked
// for the runtime's platform.
func (r *Runtime) HasImage(ctx context.Context, name string) bool {
	_, err := r.image(ctx, name)
	return err == nil
}
