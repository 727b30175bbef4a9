package debarchive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/socbox/socbox/harness/proc"
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
	cmd := proc.CommandContext(ctx, gpgv, "--quiet", "--status-fd", "2",
		"--keyring", keyring, "--output", "-", "-")
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := proc.Run(cmd)
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

// checkGPGStatus reads gpgv's --status-fd output and accepts it the way
// apt does (methods/gpgv.cc): a signature counts only when gpgv says
// GOODSIG for it and VALIDSIG with a strong digest. gpgv also says VALIDSIG
// (and exits 0) for a signature by an expired or revoked key, so VALIDSIG
// alone proves nothing. At least one signature must count; any BADSIG, or a
// signature by a revoked key (REVKEYSIG), refuses the file whatever else
// it carries. Signatures by an expired key (EXPKEYSIG), expired signatures
// (EXPSIG), and ones gpgv could not check (ERRSIG, NO_PUBKEY) never count;
// like apt, socbox ignores them next to a good one, since Debian signs
// each Release with several keys and an older keyring lacks the newest.
func checkGPGStatus(status string) error {
	sigs := gpgSignatures(status)
	good := 0
	var why []string
	for _, s := range sigs {
		switch {
		case s.bad != "":
			return fmt.Errorf("bad signature by key %s", s.bad)
		case s.revoked != "":
			return fmt.Errorf("signature by key %s, which is revoked", s.revoked)
		case s.good():
			good++
		default:
			why = append(why, s.why())
		}
	}
	if good > 0 {
		return nil
	}
	if len(why) == 0 {
		return errors.New("no signature")
	}
	return fmt.Errorf("no good signature: %s", strings.Join(why, "; "))
}

// gpgSignature is what gpgv said about one signature.
type gpgSignature struct {
	goodKey    string   // GOODSIG's key ID
	validFprs  []string // VALIDSIG's fingerprints with a strong digest
	weakDigest string   // VALIDSIG's fingerprint with a weak one
	bad        string   // BADSIG's key ID
	revoked    string   // REVKEYSIG's key ID
	expiredKey string   // EXPKEYSIG's key ID
	expiredSig string   // EXPSIG's key ID
	missingKey string   // NO_PUBKEY's key ID
	errorKey   string   // ERRSIG's key ID
}

// gpgSignatures splits gpgv's status output into one record per signature:
// gpgv starts each with NEWSIG.
func gpgSignatures(status string) []*gpgSignature {
	var sigs []*gpgSignature
	cur := func() *gpgSignature {
		if len(sigs) == 0 {
			sigs = append(sigs, &gpgSignature{})
		}
		return sigs[len(sigs)-1]
	}
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "[GNUPG:] ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if f[0] == "NEWSIG" {
			sigs = append(sigs, &gpgSignature{})
			continue
		}
		s := cur()
		arg := ""
		if len(f) > 1 {
			arg = strings.ToUpper(f[1])
		}
		switch f[0] {
		case "GOODSIG":
			s.goodKey = arg
		case "VALIDSIG":
			// VALIDSIG fpr date ts expire version reserved pkalgo hashalgo …
			if len(f) > 8 {
				switch f[8] {
				case "1", "2", "3": // MD5, SHA1, RIPEMD160: apt refuses them too
					s.weakDigest = arg
					continue
				}
			}
			s.validFprs = append(s.validFprs, arg)
		case "BADSIG":
			s.bad = arg
		case "REVKEYSIG":
			s.revoked = arg
		case "EXPKEYSIG":
			s.expiredKey = arg
		case "EXPSIG":
			s.expiredSig = arg
		case "NO_PUBKEY":
			s.missingKey = arg
		case "ERRSIG":
			s.errorKey = arg
		}
	}
	return sigs
}

// good says whether gpgv vouched for the signature: GOODSIG, and a
// strong-digest VALIDSIG by the same key (VALIDSIG names the fingerprint,
// GOODSIG the key ID or fingerprint), and nothing against it.
func (s *gpgSignature) good() bool {
	if s.goodKey == "" || s.expiredKey != "" || s.expiredSig != "" || s.errorKey != "" || s.missingKey != "" {
		return false
	}
	for _, fpr := range s.validFprs {
		if strings.HasSuffix(fpr, s.goodKey) {
			return true
		}
	}
	return false
}

// why says why a signature does not count.
func (s *gpgSignature) why() string {
	switch {
	case s.expiredKey != "":
		return fmt.Sprintf("signed by key %s, which has expired", s.expiredKey)
	case s.expiredSig != "":
		return fmt.Sprintf("the signature by key %s has expired", s.expiredSig)
	case s.missingKey != "":
		return fmt.Sprintf("signed by key %s, which the keyring lacks (a newer debian-archive-keyring may have it)", s.missingKey)
	case s.errorKey != "":
		return fmt.Sprintf("gpgv could not check the signature by key %s", s.errorKey)
	case s.weakDigest != "":
		return fmt.Sprintf("the signature by key %s uses a weak digest (not a strong digest)", s.weakDigest)
	case s.goodKey == "":
		return "a signature gpgv did not call good"
	}
	return fmt.Sprintf("gpgv said GOODSIG for key %s but no VALIDSIG", s.goodKey)
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
		if err != nil || size < 0 {
			return nil, fmt.Errorf("parse InRelease: SHA256 entry %q: bad size", line)
		}
		if sum, err := hex.DecodeString(f[0]); err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("parse InRelease: SHA256 entry %q: not a SHA256", line)
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
