package ctrd

import (
	"context"
	"fmt"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
)

// Every container socbox runs is in one runc shim group: the runc v2 shim
// serves all the containers whose spec carries the same group annotation
// from one process, and lives as long as one of them does.
//
// Under TCG each Go program that starts costs a noticeable part of a
// second. A container of its own shim starts three (the shim's start
// command, the shim daemon, and after the task is gone its cleanup); in a
// group whose shim already runs, only the start command, which finds the
// running shim's socket and hands its address back. A keeper container
// (see KeepShimWarm) holds the group's shim up between runs.
//
// containerd 1.7 goes one further: a container that names a running task
// as its sandbox (its SandboxID) has its task created in that task's shim,
// which containerd finds in memory, without running the shim's start
// command at all. Every container names the keeper so. containerd 1.6 does
// not know the field and 2.x only honours sandboxes of its sandbox API;
// both fall back to the group.
const (
	shimGroupAnnotation = "io.containerd.runc.v2.group"
	shimGroup           = "socbox"
	// KeeperID is the container that keeps the shim up; on a shared
	// guest each session's keeper is KeeperID-<random>.
	KeeperID = "socbox-shim-keeper"
)

// KeepShimWarm starts, unless it runs already, a container from image
// that sleeps for as long as the guest is up, so that the group's shim
// does not exit between containers. A board's snapshot keeps it running.
// It takes a few MiB of the guest's memory. On a shared guest (see
// WithSharedGuest) the keeper is this session's own, never one found
// running: another session may remove that one while this one's
// containers name it as their sandbox.
func (r *Runtime) KeepShimWarm(ctx context.Context, image string) error {
	ctx = r.withNamespace(ctx)
	id := KeeperID
	if r.sharedGuest {
		id = KeeperID + "-" + randomSuffix()
	}
	// A restored board's keeper runs already: one call says so (the
	// client would read the container, then the task twice).
	if resp, err := r.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); err == nil &&
		resp.Process != nil && resp.Process.Status == tasktypes.Status_RUNNING {
		r.setShimSandbox(id)
		return nil
	}
	if ctr, err := r.client.LoadContainer(ctx, id); err == nil {
		if task, err := ctr.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status == client.Running {
				r.setShimSandbox(id)
				return nil
			}
			_, _ = task.Delete(ctx, client.WithProcessKill)
		}
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("keep the shim warm: remove the old keeper: %w", err)
		}
	}
	img, err := r.image(ctx, image)
	if err != nil {
		return fmt.Errorf("keep the shim warm: %w", err)
	}
	// The keeper's output goes nowhere: it prints nothing.
	ctr, err := r.client.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithSnapshotter(r.snapshotter),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(containerSpecOpts(img, Container{Cmd: []string{"sleep", "2147483647"}}, r.platform, nil)...),
	)
	if err != nil {
		return fmt.Errorf("keep the shim warm: create the keeper: %w", err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		cctx := context.WithoutCancel(ctx)
		if task != nil {
			_, _ = task.Delete(cctx, client.WithProcessKill)
		}
		_ = ctr.Delete(cctx, client.WithSnapshotCleanup)
		return fmt.Errorf("keep the shim warm: start the keeper: %w", err)
	}
	r.mu.Lock()
	r.sandbox, r.ownKeeper = id, id
	r.mu.Unlock()
	return nil
}

// keeperRunning asks containerd whether the keeper id still runs.
func (r *Runtime) keeperRunning(ctx context.Context, id string) bool {
	ctx = r.withNamespace(context.WithoutCancel(ctx))
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return false
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return false
	}
	st, err := task.Status(ctx)
	return err == nil && st.Status == client.Running
}

func (r *Runtime) shimSandbox() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sandbox
}

func (r *Runtime) setShimSandbox(id string) {
	r.mu.Lock()
	r.sandbox = id
	r.mu.Unlock()
}

// StopShimKeeper removes the keeper this Runtime started, on a board that
// stays up after socbox is done with it (a real board). A keeper it found
// running belongs to another session, which removes it.
func (r *Runtime) StopShimKeeper(ctx context.Context) error {
	r.mu.Lock()
	id := r.ownKeeper
	r.sandbox, r.ownKeeper = "", ""
	r.mu.Unlock()
	if id == "" {
		return nil
	}
	ctx = r.withNamespace(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop the shim keeper: %w", err)
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop the shim keeper: %w", err)
	}
	return nil
}
