package images

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Paths inside a user's image are hostile: its symbolic links, its
// /etc/passwd and its directory names are whatever its maker wrote. socbox
// reads and writes the image with debugfs, whose requests are text, so a
// name with a newline or a quote in it could end its argument and start a
// request of its own ("dump" writes anywhere on the host; a line starting
// with '!' is a shell command). Everything here stands between such names
// and debugfs: names are checked, symbolic links are followed by socbox
// itself, inside the image's root, and arguments are quoted the one way
// debugfs reads them.

const (
	// maxGuestPath is Linux's PATH_MAX less its terminating NUL; no path
	// the guest could use is longer.
	maxGuestPath = 4095
	// maxGuestName is NAME_MAX: ext4 stores no longer name.
	maxGuestName = 255
	// maxSymlinkHops is Linux's MAXSYMLINKS.
	maxSymlinkHops = 40
	// maxResolveLookups bounds the debugfs runs one resolution costs: a
	// real path takes a dozen.
	maxResolveLookups = 256
	// maxDebugfsLine is the longest line of a debugfs script: debugfs reads
	// its script with fgets into a BUFSIZ buffer and runs whatever is left
	// of a longer line as a request of its own. BUFSIZ is 8192 with glibc
	// and 1024 with musl; 1023 leaves room for the newline on both.
	maxDebugfsLine = 1023
)

// nodeKind is what an inode in the image is.
type nodeKind int

const (
	nodeOther nodeKind = iota // device, FIFO, socket
	nodeRegular
	nodeDir
	nodeSymlink
)

// guestNode is what the image has at one path (symbolic links not
// followed).
type guestNode struct {
	exists bool
	kind   nodeKind
	size   int64
	target string // a symbolic link's target
}

// checkGuestName refuses a path component socbox will not follow or hand
// to debugfs: empty, "." or "..", too long, or with a control character
// or bytes that are not UTF-8 (file names socbox touches are plain text).
func checkGuestName(name string) error {
	switch {
	case name == "":
		return errors.New("an empty name")
	case name == "." || name == "..":
		return fmt.Errorf("a %q component", name)
	case len(name) > maxGuestName:
		return fmt.Errorf("a %d-byte name, longer than ext4's %d", len(name), maxGuestName)
	case strings.ContainsRune(name, '/'):
		return errors.New("a name with a slash in it")
	}
	return checkDebugfsText(name)
}

// checkDebugfsText refuses text that no debugfs argument can carry: control
// characters (a newline or carriage return ends a script line, NUL ends the
// string) and invalid UTF-8.
func checkDebugfsText(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Errorf("bytes that are not UTF-8 at byte %d", i)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return fmt.Errorf("a control character (%U) at byte %d", r, i)
		}
	}
	return nil
}

// splitGuestPath checks an absolute path given to socbox (a fixed path, or
// one read from the image such as a home directory in /etc/passwd) and
// returns its names. "." and repeated slashes are dropped; ".." is
// refused, since where it leads depends on symbolic links.
func splitGuestPath(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("not an absolute path")
	}
	if len(p) > maxGuestPath {
		return nil, fmt.Errorf("%d bytes long, more than PATH_MAX", len(p))
	}
	var names []string
	for _, n := range strings.Split(p, "/") {
		if n == "" || n == "." {
			continue
		}
		if err := checkGuestName(n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, nil
}

// resolveGuestPath follows the symbolic links in every component of p, as
// the guest's kernel would, without ever leaving the image's root: a
// link's ".." may climb back towards the root but not past it, and an
// absolute target starts again at the image's root. lookup reports what
// the image has at a path whose parent is already resolved. The result is
// absolute and clean, with no symbolic link before its last existing
// component; past a missing component the rest is joined as it is.
func resolveGuestPath(p string, lookup func(string) (guestNode, error)) (string, error) {
	todo, err := splitGuestPath(p)
	if err != nil {
		return "", err
	}
	var done []string // resolved names, each an existing directory unless missing
	missing := false  // a component of done does not exist (or is no directory)
	hops, lookups := 0, 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." { // only link targets bring these
			if len(done) == 0 {
				return "", errors.New("a symbolic link leads out of the image's root")
			}
			if missing {
				return "", fmt.Errorf("a symbolic link goes up through /%s, which does not exist", strings.Join(done, "/"))
			}
			done = done[:len(done)-1]
			continue
		}
		next := "/" + strings.Join(append(done, name), "/")
		if missing {
			done = append(done, name)
			continue
		}
		if lookups++; lookups > maxResolveLookups {
			return "", fmt.Errorf("more than %d lookups to resolve it", maxResolveLookups)
		}
		n, err := lookup(next)
		if err != nil {
			return "", err
		}
		switch {
		case !n.exists:
			missing = true
			done = append(done, name)
		case n.kind == nodeSymlink:
			if hops++; hops > maxSymlinkHops {
				return "", fmt.Errorf("more than %d symbolic links", maxSymlinkHops)
			}
			names, err := splitLinkTarget(n.target)
			if err != nil {
				return "", fmt.Errorf("symbolic link %s points to %q: %w", next, n.target, err)
			}
			if strings.HasPrefix(n.target, "/") {
				done = nil
			}
			todo = append(names, todo...)
		case n.kind != nodeDir && len(todo) > 0:
			// Nothing exists below a file.
			missing = true
			done = append(done, name)
		default:
			done = append(done, name)
		}
	}
	out := "/" + strings.Join(done, "/")
	if len(out) > maxGuestPath {
		return "", fmt.Errorf("it resolves to %d bytes, more than PATH_MAX", len(out))
	}
	return out, nil
}

// splitLinkTarget checks a symbolic link's target and returns its names,
// ".." included (resolveGuestPath climbs them).
func splitLinkTarget(target string) ([]string, error) {
	if target == "" {
		return nil, errors.New("an empty target")
	}
	if len(target) > maxGuestPath {
		return nil, fmt.Errorf("a %d-byte target, more than PATH_MAX", len(target))
	}
	var names []string
	for _, n := range strings.Split(target, "/") {
		switch n {
		case "", ".":
			continue
		case "..":
			names = append(names, n)
			continue
		}
		if err := checkGuestName(n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, nil
}

// debugfsRequest is one debugfs request: the command and its arguments,
// each quoted. debugfs splits requests with e2fsprogs' libss (lib/ss/
// parse.c): only spaces and tabs separate arguments, a double quote opens
// and closes a quoted part, and inside one a doubled quote stands for a
// quote. libss knows no backslash escapes, and nothing can carry a newline,
// carriage return or NUL, so text with control characters is refused.
// Arguments are always quoted, so none can start a request of its own or
// be read as debugfs's "<inode>" syntax.
func debugfsRequest(cmd string, args ...string) (string, error) {
	var b strings.Builder
	b.WriteString(cmd)
	for _, a := range args {
		if err := checkDebugfsText(a); err != nil {
			return "", fmt.Errorf("debugfs argument %q: %w", a, err)
		}
		b.WriteString(` "`)
		b.WriteString(strings.ReplaceAll(a, `"`, `""`))
		b.WriteString(`"`)
	}
	return b.String(), nil
}
