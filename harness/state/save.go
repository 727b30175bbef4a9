package state

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/images/cachefs"
	"github.com/socbox/socbox/images/reclaim"
)

// Entry is a slot's entry being saved. Write its files into Dir, then
// Publish it; Discard it in any case (a deferred Discard after Publish
// does nothing).
type Entry struct {
	Dir   string
	key   Key
	slot  Slot
	tmp   *cachefs.Temp
	start time.Time
}

// Save starts saving the slot's entry, in a temporary directory beside it
// that a later process reclaims if this one is killed meanwhile.
func (k Key) Save(slot Slot) (*Entry, error) {
	tmp, err := cachefs.NewTemp(k.Dir(slot))
	if err != nil {
		return nil, err
	}
	return &Entry{Dir: tmp.Dir, key: k, slot: slot, tmp: tmp, start: time.Now()}, nil
}

// Discard drops an entry that was not published.
func (e *Entry) Discard() { e.tmp.Discard() }

// Publish writes the entry's metadata, makes its files read-only for
// their owner alone and puts it in place of what was there; then removes
// the entries it supersedes (see Prune). serialSSHD, for a Disk entry,
// says its disk has the serial sshd enabled.
func (e *Entry) Publish(serialSSHD bool) (Meta, error) {
	m := Meta{Inputs: e.key.inputs, CreatedAt: time.Now().UTC(), SaveSec: time.Since(e.start).Seconds()}
	files, meta := []string{VMState, DiskImg}, stateMeta
	if e.slot == Disk {
		files, meta = []string{DiskImg}, diskMeta
		m.DiskOnly, m.SerialSSH = true, serialSSHD
	} else if st, err := os.Stat(filepath.Join(e.Dir, VMState)); err == nil {
		m.StateMiB = float64(st.Size()) / (1 << 20)
	}
	blob, _ := json.MarshalIndent(m, "", "  ")
	if err := cachefs.WriteFile(filepath.Join(e.Dir, meta), blob, 0o600); err != nil {
		return m, err
	}
	if err := e.tmp.Publish(0o700, 0o400, files...); err != nil {
		return m, err
	}
	e.key.Prune(e.slot)
	return m, nil
}

// Prune removes the entries that the one just saved in slot supersedes, so
// that the cache does not grow with every socbox or QEMU upgrade: those of
// the same board, image and containerd choice under another key, and states
// saved on top of a provisioned disk that was saved again (their disk
// changed under them). Other choices (a suite, crun, WithSMP) are other
// images, containerd strings or -smp values and stay. A board running from
// a removed entry goes on: QEMU keeps its files open; one being restored
// holds the entry's lock, and that entry is kept.
func (k Key) Prune(slot Slot) {
	saved := k.Dir(slot)
	parent, savedName := filepath.Dir(saved), filepath.Base(saved)
	baseName, _, _ := strings.Cut(savedName, "-serial-")
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	logf := k.store.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	held := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == savedName || name == baseName || strings.Contains(name, ".tmp-") {
			continue
		}
		stale := strings.HasPrefix(name, baseName+"-serial-")
		if !stale {
			in, ok := readInputs(filepath.Join(parent, name))
			stale = ok && in.Board == k.inputs.Board && in.Image == k.inputs.Image && in.Containerd == k.inputs.Containerd &&
				argValue(in.Args, "-smp") == argValue(k.inputs.Args, "-smp")
		}
		if !stale {
			continue
		}
		// A restore holds the entry's lock; this process holds its own
		// (the states on its disk share it), and those it took here for
		// an entry before (a disk and the states on it share theirs).
		if lock := LockFile(filepath.Join(parent, name)); lock != LockFile(saved) && !held[lock] {
			unlock, free := reclaim.TryLock(lock)
			if !free {
				logf("snapshot: kept %s, superseded by %s, while another process uses it", name, savedName)
				continue
			}
			held[lock] = true
			defer unlock()
		}
		if err := os.RemoveAll(filepath.Join(parent, name)); err == nil {
			logf("snapshot: removed %s, superseded by %s", name, savedName)
		}
	}
}

// readInputs reads what an entry was made from.
func readInputs(dir string) (Inputs, bool) {
	for _, f := range []string{stateMeta, diskMeta} {
		if m, ok := readMeta(dir, f); ok {
			return m.Inputs, true
		}
	}
	return Inputs{}, false
}

// argValue is the value after flag in args, or "".
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}
