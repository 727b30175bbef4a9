package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
)

// Container says what to run.
type Container struct {
	// Name prefixes the container's ID, which gets a random suffix so that
	// runs never collide; "socbox" if empty. Letters, digits and . _ - only.
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
	// Privileged gives the container every capability, access to all
	// devices, a writable /sys and no seccomp, AppArmor or masked paths.
	Privileged bool
	// MemoryLimit caps the container's memory, in bytes, through its
	// cgroup; swap is not allowed on top. Zero means no limit.
	MemoryLimit int64
	// HostNetwork runs the container in the guest's network namespace,
	// with the guest's /etc/hosts and /etc/resolv.conf.
	HostNetwork bool
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
	// ExitCode is the process's exit status, or 128+n if signal n killed it.
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	// Duration is from the task's start to its exit, measured on the host.
	Duration time.Duration
	// OOMKilled is set when the kernel's OOM killer ended the container
	// (ExitCode is then 137): with a MemoryLimit, because the container
	// went over it. Read from the cgroup v2 memory.events of the container.
	OOMKilled bool
}

// Run creates a container from c, starts it, waits for it to exit and
// removes it (task, container and root filesystem snapshot) before
// returning, whatever happened. If ctx ends first, the container is killed
// and removed, and the error wraps ctx's cause; the result then holds what
// the container wrote until then.
func (r *Runtime) Run(ctx context.Context, c Container) (ContainerResult, error) {
	prefix := c.Name
	if prefix == "" {
		prefix = "socbox"
	}
	id := prefix + "-" + randomSuffix()
	res := ContainerResult{ID: id}
	if err := identifiers.Validate(id); err != nil {
		return res, fmt.Errorf("run container %q: invalid name: %w", c.Name, err)
	}
	if c.Image == "" {
		return res, fmt.Errorf("run container %s: no image", id)
	}
	if err := c.validate(); err != nil {
		return res, fmt.Errorf("run container %s: %w", id, err)
	}
	if err := r.run(r.withNamespace(ctx), c, &res); err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// Over gRPC the deadline often comes back as the server's
			// status ("Unknown desc = context deadline exceeded"), which
			// errors.Is does not see through.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return res, fmt.Errorf("run container %s (image %s): %w", id, c.Image, err)
	}
	return res, nil
}

func (r *Runtime) run(ctx context.Context, c Container, res *ContainerResult) (err error) {
	// Teardown runs on its own context: it must happen even, and above
	// all, when ctx has been cancelled. Its time starts with the teardown,
	// not with the run: a container may run for longer than teardown may
	// take.
	base := ctx // ctx gets a lease below
	var cleanupCtx context.Context
	var cancelCleanup context.CancelFunc
	startCleanup := func() {
		if cleanupCtx == nil {
			cleanupCtx, cancelCleanup = context.WithTimeout(context.WithoutCancel(base), cleanupTimeout)
		}
	}
	defer func() {
		if cancelCleanup != nil {
			cancelCleanup()
		}
	}()
	var cleanups []func() error // run in reverse
	defer func() {
		startCleanup()
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		if cerr := errors.Join(errs...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()

	// A lease keeps the garbage collector off the new snapshot until the
	// container record refers to it.
	ctx, doneLease, err := r.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("create lease: %w", err)
	}
	cleanups = append(cleanups, func() error { return doneLease(cleanupCtx) })

	image, err := r.image(ctx, c.Image)
	if err != nil {
		return err
	}

	var cgroupsPath string
	specOpts := append(containerSpecOpts(image, c), recordCgroupsPath(&cgroupsPath))
	container, err := r.client.NewContainer(ctx, res.ID,
		client.WithImage(image),
		client.WithSnapshotter(r.snapshotter),
		client.WithNewSnapshot(res.ID, image),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	cleanups = append(cleanups, func() error {
		// A task whose creation was cut short by ctx may exist without
		// this side having its handle: it would block the Delete.
		if task, err := container.Task(cleanupCtx, nil); err == nil {
			if _, err := task.Delete(cleanupCtx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("remove task: %w", err)
			}
		}
		if err := container.Delete(cleanupCtx, client.WithSnapshotCleanup); err != nil {
			return fmt.Errorf("remove container: %w", err)
		}
		return nil
	})

	out := newGuestOutput(r.stateDir, res.ID)
	// Removing the files must come after reading them, which comes after
	// the task is deleted: push in reverse order.
	removed := false
	cleanups = append(cleanups, func() error {
		if removed {
			return nil
		}
		if err := out.remove(cleanupCtx, r.sh); err != nil {
			return fmt.Errorf("remove output files: %w", err)
		}
		return nil
	})
	if err := out.create(ctx, r.sh); err != nil {
		return fmt.Errorf("create output files in the guest: %w", err)
	}
	cleanups = append(cleanups, func() error {
		var err error
		// One SSH session reads both files and removes them: each session
		// costs a process start in an emulated guest.
		res.Stdout, res.Stderr, err = out.readAndRemove(cleanupCtx, r.sh)
		if err != nil {
			return fmt.Errorf("read output: %w", err)
		}
		removed = true
		return nil
	})

	task, err := container.NewTask(ctx, out.creator())
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	cleanups = append(cleanups, func() error {
		// WithProcessKill kills the task if it still runs. Delete returns
		// once the shim has finished copying the output.
		if _, err := task.Delete(cleanupCtx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove task: %w", err)
		}
		return nil
	})

	// Wait before Start, so that an exit that comes at once is not missed.
	exitCh, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait for task: %w", err)
	}
	start := time.Now()
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start task: %w", err)
	}

	select {
	case status := <-exitCh:
		code, _, err := status.Result()
		res.Duration = time.Since(start)
		if err == nil {
			// It exited, even if ctx ended at the same time.
			res.ExitCode = int(code)
			if res.ExitCode == 128+int(syscall.SIGKILL) {
				// The cgroup goes with the task: ask before the
				// deferred Delete.
				res.OOMKilled = r.oomKilled(ctx, cgroupsPath)
			}
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && ctx.Err() == nil && time.Until(dl) < time.Second {
			// The deadline travels with the gRPC call and may fire on the
			// daemon's side a moment before ours does.
			<-ctx.Done()
		}
		if ctx.Err() == nil {
			return fmt.Errorf("wait for exit: %w", err)
		}
	case <-ctx.Done():
	}
	// Wait's call ended with ctx: kill, and wait anew.
	startCleanup()
	res.ExitCode, res.Duration = killTask(cleanupCtx, task, start)
	return context.Cause(ctx)
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

// image looks up name and makes sure it is unpacked for the runtime's
// platform and snapshotter.
func (r *Runtime) image(ctx context.Context, name string) (client.Image, error) {
	meta, err := r.client.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s is not in the guest's containerd (namespace %s): import it first: %w", name, r.namespace, err)
	}
	if err != nil {
		return nil, fmt.Errorf("look up image %s: %w", name, err)
	}
	match := matcher(r.platform)
	ok, err := hasPlatform(ctx, r.client.ContentStore(), meta.Target, match)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: image %s has nothing for %s", ErrPlatformMismatch, name, r.platform)
	}
	image := client.NewImageWithPlatform(r.client, meta, match)
	unpacked, err := image.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: %w", name, r.platform, err)
	}
	if !unpacked {
		if err := image.Unpack(ctx, r.snapshotter); err != nil {
			return nil, fmt.Errorf("unpack image %s for %s: %w", name, r.platform, err)
		}
	}
	return image, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// HasImage reports whether the guest's containerd has the image, unpacked
// for the runtime's platform.
func (r *Runtime) HasImage(ctx context.Context, name string) bool {
	_, err := r.image(ctx, name)
	return err == nil
}
