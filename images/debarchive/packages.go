package debarchive

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Package is one binary package of a Packages index: the fields socbox needs
// to resolve dependencies and to download and verify the .deb.
type Package struct {
	Name         string
	Version      string
	Architecture string // the guest's architecture, or "all"
	Source       string // source package name, without its version
	Priority     string // required, important, standard, optional, extra
	Essential    bool
	Depends      []Alternatives
	PreDepends   []Alternatives
	Provides     []Relation
	Filename     string // path below the mirror: pool/main/…/x_1.0_arm64.deb
	Size         int64
	SHA256       string // lower-case hex
}

// String renders the package as name=version (the form apt-get accepts).
func (p Package) String() string { return p.Name + "=" + p.Version }

// Alternatives is one comma-separated item of a Depends field: "a | b" is
// satisfied by any of its relations, preferably the first.
type Alternatives []Relation

// Relation is one package name with an optional version constraint, as in
// "libc6 (>= 2.34)" or "python3:any".
type Relation struct {
	Name    string
	Arch    string // qualifier after ':' ("any", "native"), usually empty
	Op      string // <<, <=, =, >=, >> or empty
	Version string
}

func (r Relation) String() string {
	s := r.Name
	if r.Arch != "" {
		s += ":" + r.Arch
	}
	if r.Op != "" {
		s += " (" + r.Op + " " + r.Version + ")"
	}
	return s
}

func (a Alternatives) String() string {
	parts := make([]string, len(a))
	for i, r := range a {
		parts[i] = r.String()
	}
	return strings.Join(parts, " | ")
}

// ParseRelations parses a Depends-style field: comma-separated groups of
// '|'-separated relations. Architecture lists ("[amd64]") and build profiles
// ("<!nocheck>"), which only appear in source packages, are ignored.
func ParseRelations(field string) ([]Alternatives, error) {
	var out []Alternatives
	for _, group := range strings.Split(field, ",") {
		if strings.TrimSpace(group) == "" {
			continue
		}
		var alts Alternatives
		for _, item := range strings.Split(group, "|") {
			r, err := parseRelation(item)
			if err != nil {
				return nil, err
			}
			alts = append(alts, r)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseRelation(s string) (Relation, error) {
	s = strings.TrimSpace(s)
	var r Relation
	name := s
	if k := strings.IndexAny(s, "([<"); k >= 0 {
		name = strings.TrimSpace(s[:k])
		// "[arch …]" and "<profile …>" restrictions are dropped.
		if s[k] == '(' {
			end := strings.IndexByte(s[k:], ')')
			if end < 0 {
				return r, fmt.Errorf("relation %q: unbalanced parenthesis", s)
			}
			c := strings.TrimSpace(s[k+1 : k+end])
			for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
				if strings.HasPrefix(c, op) {
					r.Op, r.Version = op, strings.TrimSpace(c[len(op):])
					break
				}
			}
			if r.Op == "" || r.Version == "" {
				return r, fmt.Errorf("relation %q: bad version constraint", s)
			}
		}
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name, r.Arch = name[:i], name[i+1:]
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return r, fmt.Errorf("relation %q: bad package name", s)
	}
	r.Name = name
	return r, nil
}

// ParsePackages parses a (decompressed) Packages index.
func ParsePackages(r io.Reader) ([]Package, error) {
	var pkgs []Package
	err := parseStanzas(r, packageFields, func(s stanza) error {
		p, err := packageFromStanza(s)
		if err != nil {
			return err
		}
		pkgs = append(pkgs, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse Packages: %w", err)
	}
	return pkgs, nil
}

// packageFields are the fields of a Packages stanza that Package keeps.
var packageFields = []string{"Package", "Version", "Architecture", "Source", "Priority", "Essential",
	"Depends", "Pre-Depends", "Provides", "Filename", "Size", "SHA256"}

func packageFromStanza(s stanza) (Package, error) {
	p := Package{
		Name:         s.get("Package"),
		Version:      s.get("Version"),
		Architecture: s.get("Architecture"),
		Priority:     s.get("Priority"),
		Essential:    s.get("Essential") == "yes",
		Filename:     s.get("Filename"),
		SHA256:       strings.ToLower(s.get("SHA256")),
	}
	if p.Name == "" || p.Version == "" {
		return p, fmt.Errorf("stanza without Package or Version (Package: %q)", p.Name)
	}
	p.Source, _, _ = strings.Cut(s.get("Source"), " ")
	if p.Source == "" {
		p.Source = p.Name
	}
	if v := s.get("Size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return p, fmt.Errorf("package %s: bad Size %q", p.Name, v)
		}
		p.Size = n
	}
	var err error
	if p.Depends, err = ParseRelations(s.get("Depends")); err != nil {
		return p, fmt.Errorf("package %s: Depends: %w", p.Name, err)
	}
	if p.PreDepends, err = ParseRelations(s.get("Pre-Depends")); err != nil {
		return p, fmt.Errorf("package %s: Pre-Depends: %w", p.Name, err)
	}
	provides, err := ParseRelations(s.get("Provides"))
	if err != nil {
		return p, fmt.Errorf("package %s: Provides: %w", p.Name, err)
	}
	for _, alts := range provides {
		p.Provides = append(p.Provides, alts...)
	}
	return p, nil
}

// Index is the verified list of binary packages of one suite and
// architecture (component main).
type Index struct {
	Suite    string // as asked for: "trixie", "stable", …
	Arch     string
	Codename string    // from InRelease: "trixie"
	Version  string    // from InRelease: "13.8"; empty for testing/unstable
	Date     time.Time // when the archive published this index
	// FetchedAt is when the index was last checked against the mirror.
	FetchedAt time.Time
	// Stale is set when the mirror could not be reached and a cached index
	// older than the client's IndexMaxAge was used instead.
	Stale bool

	byName    map[string][]*Package // newest version first
	providers map[string][]*Package // virtual name → providing packages
	count     int
	release   *release // nil for an index built with NewIndex
}

// NewIndex builds an index from parsed packages. Index normally does this;
// tests and callers with their own Packages file use it directly.
func NewIndex(suite, arch string, pkgs []Package) *Index {
	idx := &Index{
		Suite:     suite,
		Arch:      arch,
		byName:    make(map[string][]*Package, len(pkgs)),
		providers: make(map[string][]*Package),
		count:     len(pkgs),
	}
	for i := range pkgs {
		p := &pkgs[i]
		idx.byName[p.Name] = append(idx.byName[p.Name], p)
		for _, pr := range p.Provides {
			idx.providers[pr.Name] = append(idx.providers[pr.Name], p)
		}
	}
	for _, vs := range idx.byName {
		if len(vs) > 1 {
			sort.SliceStable(vs, func(i, j int) bool { return CompareVersions(vs[i].Version, vs[j].Version) > 0 })
		}
	}
	return idx
}

// Len is the number of package stanzas in the index.
func (idx *Index) Len() int { return idx.count }

// Lookup returns the newest version of the package called name. Virtual
// packages (names only Provided) are not returned: Resolve handles those.
func (idx *Index) Lookup(name string) (Package, bool) {
	vs := idx.byName[name]
	if len(vs) == 0 {
		return Package{}, false
	}
	return *vs[0], true
}

// Versions returns every version of name in the index, newest first.
func (idx *Index) Versions(name string) []Package {
	var out []Package
	for _, p := range idx.byName[name] {
		out = append(out, *p)
	}
	return out
}

// Providers returns the packages that Provide the virtual package name,
// sorted by name.
func (idx *Index) Providers(name string) []Package {
	var out []Package
	for _, p := range idx.providers[name] {
		out = append(out, *p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Required returns the names of the packages every Debian system has: the
// Essential ones, those of Priority required, and everything they depend
// on, i.e. what `debootstrap --variant=minbase` installs (apt aside). It
// stands in for a guest's installed set when that cannot be asked for (see
// ParseInstalled). Since trixie libraries such as libc6 are no longer
// Priority required, so the dependencies matter.
func (idx *Index) Required() map[string]bool {
	var roots []string
	for name, vs := range idx.byName {
		if p := vs[0]; p.Essential || p.Priority == "required" {
			roots = append(roots, name)
		}
	}
	sort.Strings(roots)
	r := &resolver{idx: idx, chosen: map[string]bool{}}
	for _, name := range roots {
		// A dependency missing from the index leaves the set short of it;
		// the rest is still right.
		_ = r.visit(idx.byName[name][0], nil)
	}
	return r.chosen
}

func (idx *Index) where() string { return idx.Suite + "/" + idx.Arch }
