// Package state is socbox's store of saved boards: a board caught right
// after it became containerd-ready, kept in the cache so that later boards
// of the same kind start from it instead of booting and installing again.
//
// One key (Inputs: the image, the QEMU build and every argument that shapes
// the machine, the containerd choice) has up to three slots:
//
//   - Full: the machine state (vmstate: RAM and devices, saved through QEMU
//     migration) and the disk overlay as it was then. A later board starts
//     QEMU with -incoming over a fresh overlay on that disk and is ready in
//     about a second.
//   - Disk: the disk alone, with containerd installed, for boards whose
//     state QEMU cannot save with their NIC (raspi3b's usb-net). Later
//     boards boot it, but skip the install.
//   - Serial: a machine state saved on top of Disk by a board booted
//     without its NIC and reached over its UART; later boards restore it,
//     log in over the UART at once and get the NIC plugged in.
//
// Entries are built in temporary directories and published atomically
// (cachefs), are private to the user, never written once published, and
// may be deleted at any time. Whoever provisions, restores or removes an
// entry holds its key's lock.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socbox/socbox/boards"
	"github.com/socbox/socbox/images/cachefs"
)

// Version changes whenever what a saved board holds, or how its key is
// made, changes. 2: the shim keeper runs in it. 3: no path in the key or
// the entry (the boot files by their digest, a saved disk's backing file
// relative to it), so a cache restored at another path is used.
const Version = 3

// serialVersion changes whenever what a state saved without the NIC holds
// changes, beyond the board's SerialSSH.
const serialVersion = 1

// Inputs are what a saved board is made from: anything that changes what
// it holds must be in them, and nothing that depends on where the cache
// is (name a file in it by FileDigest), so that a cache restored at
// another path or on another runner finds its entries.
type Inputs struct {
	Version    int      `json:"version"`
	Image      string   `json:"image"`
	ImageBuilt string   `json:"image_built"`
	Board      string   `json:"board"`
	QEMU       string   `json:"qemu"`
	Args       []string `json:"args"`
	Containerd string   `json:"containerd"`
	// Busybox is what the busybox image imported at provisioning holds,
	// which a restored board keeps.
	Busybox string `json:"busybox"`
}

// Slot is one of a key's entries.
type Slot string

const (
	// None is no slot: nothing restored, booted from or saved.
	None   Slot = ""
	Full   Slot = "full"
	Disk   Slot = "disk"
	Serial Slot = "serial"
)

// Files of an entry.
const (
	VMState = "vmstate"
	DiskImg = "disk.qcow2"
	// stateMeta marks a Full or Serial entry, diskMeta a Disk one; each is
	// written into the entry before it is published.
	stateMeta = "snapshot.json"
	diskMeta  = "disk.json"
)

// Meta is what an entry says about itself.
type Meta struct {
	Inputs    Inputs    `json:"inputs"`
	CreatedAt time.Time `json:"created_at"`
	SaveSec   float64   `json:"save_seconds"`
	StateMiB  float64   `json:"state_mib"`
	DiskOnly  bool      `json:"disk_only,omitempty"`
	// SerialSSH says the provisioned disk has the serial sshd enabled, so
	// a board booting it can be reached, and saved, without its NIC.
	SerialSSH bool `json:"serial_ssh,omitempty"`
}

// Store is the saved boards under one directory (the cache's snapshots/).
type Store struct {
	Dir  string
	Logf func(format string, args ...any)
}

// Key is where one kind of board's entries live.
type Key struct {
	store  *Store
	inputs Inputs
	dir    string // the Full or Disk entry
	serial string // the Serial entry
}

// Key is the key of in for board p: the Serial entry is kept apart for
// each SerialSSH setting of the board.
func (s *Store) Key(in Inputs, p boards.Profile) (Key, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Key{}, err
	}
	if err := os.Chmod(s.Dir, 0o700); err != nil {
		return Key{}, err
	}
	blob, _ := json.Marshal(in)
	dir := filepath.Join(s.Dir, p.Slug+"-"+shortHash(blob))
	serial, _ := json.Marshal(struct {
		Version int
		Serial  boards.SerialSSH
	}{serialVersion, p.SerialSSH})
	return Key{store: s, inputs: in, dir: dir, serial: dir + "-serial-" + shortHash(serial)}, nil
}

func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// Dir is where the slot's entry lives.
func (k Key) Dir(slot Slot) string {
	if slot == Serial {
		return k.serial
	}
	return k.dir
}

// Lock takes the key's lock, waiting for a process that provisions or
// restores it; onWait is called before waiting.
func (k Key) Lock(onWait func()) (unlock func(), err error) {
	return cachefs.Lock(LockFile(k.dir), onWait)
}

// LockFile is the lock a process holds while it provisions, saves or
// restores the entry in dir; a Serial entry shares its disk's. Whoever
// removes an entry takes it first.
func LockFile(dir string) string {
	base, _, _ := strings.Cut(filepath.Base(dir), "-serial-")
	return filepath.Join(filepath.Dir(dir), base+".lock")
}

// Have is what the store holds for a key.
type Have struct {
	Full, Disk, Serial bool
	// DiskSerialSSHD says the Disk entry has the serial sshd enabled.
	DiskSerialSSHD bool
}

// Has says whether the slot's entry is there.
func (h Have) Has(slot Slot) bool {
	switch slot {
	case Full:
		return h.Full
	case Disk:
		return h.Disk
	case Serial:
		return h.Serial
	}
	return false
}

// Without is h without the slot's entry.
func (h Have) Without(slot Slot) Have {
	switch slot {
	case Full:
		h.Full = false
	case Disk:
		h.Disk, h.DiskSerialSSHD = false, false
	case Serial:
		h.Serial = false
	}
	return h
}

// Find says what the store holds for k. Take the key's lock first: what
// it finds may be gone or replaced otherwise.
func (k Key) Find() Have {
	var h Have
	if m, ok := readMeta(k.dir, stateMeta); ok {
		h.Full = !m.DiskOnly
	}
	if m, ok := readMeta(k.dir, diskMeta); ok {
		h.Disk, h.DiskSerialSSHD = true, m.SerialSSH
	}
	_, h.Serial = readMeta(k.serial, stateMeta)
	return h
}

func readMeta(dir, name string) (Meta, bool) {
	blob, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return Meta{}, false
	}
	var m Meta
	return m, json.Unmarshal(blob, &m) == nil
}

// File is the path of one of the slot's files.
func (k Key) File(slot Slot, name string) string { return filepath.Join(k.Dir(slot), name) }

// Drop removes the slot's entry: one that would not load.
func (k Key) Drop(slot Slot) error { return os.RemoveAll(k.Dir(slot)) }
