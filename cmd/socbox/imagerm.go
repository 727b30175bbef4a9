package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/socbox/socbox/harness/state"
	"github.com/socbox/socbox/images"
	"github.com/socbox/socbox/images/cachefs"
)

func cmdImageRm(args []string, stdout, stderr io.Writer) error {
	fs := newFlags(command{name: "image rm", args: "NAME... | --all",
		synopsis: "Delete cached images, and the provisioned snapshots made from them. They are rebuilt on demand.\n" +
			"NAME is as `socbox image ls` prints it.",
		examples: "  socbox image rm debian-trixie-arm64-0123456789ab\n  socbox image rm --all\n"}, stderr)
	all := fs.Bool("all", false, "delete every cached image")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *all == (fs.NArg() > 0) {
		return usageError(fs, stderr, "name the images to delete, or give --all")
	}
	list, err := images.ListImages()
	if err != nil {
		return err
	}
	byName := map[string]*images.Image{}
	for _, im := range list {
		byName[im.Name] = im
	}
	targets := list
	if !*all {
		targets = nil
		var unknown []string
		for _, name := range fs.Args() {
			if im, ok := byName[name]; ok {
				targets = append(targets, im)
			} else {
				unknown = append(unknown, name)
			}
		}
		if len(unknown) > 0 {
			return fmt.Errorf("no cached image %s (see `socbox image ls`)", strings.Join(unknown, ", "))
		}
	}
	var errs []error
	for _, im := range targets {
		if err := removeImage(im, stderr); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "removed %s\n", im.Name)
	}
	return errors.Join(errs...)
}

// removeImage deletes an image's directory, holding the lock a build of the
// same image takes, and the snapshots whose disks it backs.
func removeImage(im *images.Image, stderr io.Writer) error {
	unlock, err := cachefs.Lock(im.Dir+".lock", func() {
		fmt.Fprintf(stderr, "waiting for another socbox using %s\n", im.Name)
	})
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, snap := range snapshotsOf(im) {
		errs = append(errs, removeSnapshot(snap, stderr))
	}
	// The lock file stays: a process waiting on it holds it open.
	errs = append(errs, os.RemoveAll(im.Dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove %s: %w", im.Name, err)
	}
	return nil
}

// removeSnapshot deletes a snapshot directory holding its lock, which a
// process restoring from it holds until QEMU has its files open.
func removeSnapshot(dir string, stderr io.Writer) error {
	unlock, err := cachefs.Lock(state.LockFile(dir), func() {
		fmt.Fprintf(stderr, "waiting for another socbox using snapshot %s\n", filepath.Base(dir))
	})
	if err != nil {
		return err
	}
	defer unlock()
	return os.RemoveAll(dir)
}

// snapshotsOf finds the provisioned snapshots made on im: their disks are
// overlays on im's disk and cannot be restored without it.
func snapshotsOf(im *images.Image) []string {
	cache, err := images.CacheDir()
	if err != nil {
		return nil
	}
	// snapshot.json: machine state and disk; disk.json: the provisioned
	// disk alone, for boards whose state QEMU cannot save.
	metas, _ := filepath.Glob(filepath.Join(cache, "snapshots", "*", "snapshot.json"))
	disks, _ := filepath.Glob(filepath.Join(cache, "snapshots", "*", "disk.json"))
	var out []string
	for _, p := range append(metas, disks...) {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var meta struct {
			Inputs struct {
				Image string `json:"image"`
			} `json:"inputs"`
		}
		if json.Unmarshal(data, &meta) == nil && meta.Inputs.Image != "" && meta.Inputs.Image == im.Key {
			out = append(out, filepath.Dir(p))
		}
	}
	return out
}
