package debarchive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrVerify marks every failure to verify something fetched from the
// archive: a bad or missing signature, an expired Release file, a size or
// SHA256 that does not match. Such a failure is never papered over with a
// cached copy.
var ErrVerify = errors.New("archive verification failed")

// release is the signed part of an InRelease file.
type release struct {
	Suite, Codename, Version string
	Date, ValidUntil         time.Time
	AcquireByHash            bool
	files                    map[string]fileSum // path below dists/<suite>/ → size+sha256
}

type fileSum struct {
	Size   int64
	SHA256 string
}

// verifyInRelease checks the clearsigned InRelease data with the host's
// gpgv against keyring and returns the text that was signed. Only that text
// is ever parsed: anything outside the signature is ignored by construction.
func verifyInRelease(ctx context.Context, keyring string, data []byte) ([]byte, error) {
	gpgv, err := exec.LookPath("gpgv")
	if err != nil {
		return nil, errors.New("gpgv not found on the host: install it (apt-get install gpgv debian-archive-keyring) to verify Debian's archive")
	}
	if _, err := os.Stat(keyring); err != nil {
		return nil, fmt.Errorf("keyring %s: %w (install debian-archive-keyring, or set Client.Keyring)", keyring, err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) ||
		bytes.Count(data, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) != 1 {
		return nil, fmt.Errorf("%w: InRelease is not a single clearsigned message", ErrVerify)
	}
	// --keyring turns off gpgv's default keyring (~/.gnupg/trustedkeys.kbx),
	// so only the keys asked for are trusted.
	cmd := exec.CommandContext(ctx, gpgv, "--quiet", "--status-fd", "2",
		"--keyring", keyring, "--output", "-", "-")
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := checkGPGStatus(stderr.String()); err != nil {
		return nil, fmt.Errorf("%w: InRelease signature: %v%s", ErrVerify, err, gpgvMessages(stderr.String()))
	}
	// A signature by a key we do not have next to a good one makes gpgv exit
	// non-zero; apt accepts that too, as long as one strong signature is good.
	if runErr != nil && stdout.Len() == 0 {
		return nil, fmt.Errorf("%w: gpgv: %v%s", ErrVerify, runErr, gpgvMessages(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// checkGPGStatus accepts gpg --status-fd output with at least one good
// signature made with a strong digest, and no bad one.
func checkGPGStatus(status string) error {
	good := 0
	var missing []string
	for _, line := range strings.Split(status, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "[GNUPG:] "))
		if !strings.HasPrefix(line, "[GNUPG:] ") || len(f) == 0 {
			continue
		}
		switch f[0] {
		case "BADSIG":
			return fmt.Errorf("bad signature by key %s", strings.Join(f[1:], " "))
		case "VALIDSIG":
			// VALIDSIG fpr date ts expire version reserved pkalgo hashalgo …
			if len(f) > 8 {
				switch f[8] {
				case "1", "2", "3": // MD5, SHA1, RIPEMD160: apt refuses them too
					continue
				}
			}
			good++
		case "NO_PUBKEY":
			if len(f) > 1 {
				missing = append(missing, f[1])
			}
		}
	}
	if good > 0 {
		return nil
	}
	if len(missing) > 0 {
		return fmt.Errorf("signed by key(s) %s, which the keyring lacks (a newer debian-archive-keyring may have them)", strings.Join(missing, ", "))
	}
	return errors.New("no good signature with a strong digest")
}

// gpgvMessages returns gpgv's human-readable lines (not its status lines),
// to explain a failure.
func gpgvMessages(stderr string) string {
	var msgs []string
	for _, line := range strings.Split(stderr, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "[GNUPG:]") {
			msgs = append(msgs, line)
		}
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// parseRelease reads the signed text of an InRelease file.
func parseRelease(text []byte) (*release, error) {
	var st stanza
	err := parseStanzas(bytes.NewReader(text), nil, func(s stanza) error {
		if st == nil {
			st = s
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse InRelease: %w", err)
	}
	if st == nil {
		return nil, errors.New("parse InRelease: empty")
	}
	r := &release{
		Suite:         st.get("Suite"),
		Codename:      st.get("Codename"),
		Version:       st.get("Version"),
		AcquireByHash: st.get("Acquire-By-Hash") == "yes",
		files:         map[string]fileSum{},
	}
	if v := st.get("Date"); v != "" {
		if r.Date, err = parseReleaseTime(v); err != nil {
			return nil, fmt.Errorf("parse InRelease: Date: %w", err)
		}
	}
	if v := st.get("Valid-Until"); v != "" {
		if r.ValidUntil, err = parseReleaseTime(v); err != nil {
			return nil, fmt.Errorf("parse InRelease: Valid-Until: %w", err)
		}
	}
	for _, line := range strings.Split(st.get("SHA256"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse InRelease: SHA256 entry %q: %w", line, err)
		}
		r.files[f[2]] = fileSum{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(r.files) == 0 {
		return nil, errors.New("parse InRelease: no SHA256 file list")
	}
	return r, nil
}

// parseReleaseTime parses Release dates: RFC 2822 with the zone as "UTC"
// or as a numeric offset.
func parseReleaseTime(s string) (time.Time, error) {
	var firstErr error
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		t, err := time.Parse(layout, s)
		if err == nil {
			return t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return time.Time{}, firstErr
}

// check refuses a Release file for another suite (a replay of a signed file
// from elsewhere in the archive) or one that has expired.
func (r *release) check(suite string, now time.Time) error {
	if suite != r.Suite && suite != r.Codename {
		return fmt.Errorf("%w: InRelease for %s is for suite %q (codename %q)", ErrVerify, suite, r.Suite, r.Codename)
	}
	if err := r.checkValidUntil(now); err != nil {
		return fmt.Errorf("%w: %v", ErrVerify, err)
	}
	return nil
}

func (r *release) checkValidUntil(now time.Time) error {
	if !r.ValidUntil.IsZero() && now.After(r.ValidUntil) {
		return fmt.Errorf("InRelease expired on %s (Valid-Until); is the host clock right?", r.ValidUntil.UTC().Format(time.RFC1123))
	}
	return nil
}
