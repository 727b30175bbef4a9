package debarchive

import (
	"fmt"
	"strings"
)

// MissingPackageError says that a package, or a dependency of one, is not
// in the index. NeededBy is the chain from the package asked for down to
// the one whose dependency could not be met; it is empty for a package
// asked for by name.
type MissingPackageError struct {
	Name     string // the relation that could not be met: "libfoo (>= 1)" or "a | b"
	Where    string // suite/arch
	NeededBy []string
}

func (e *MissingPackageError) Error() string {
	if len(e.NeededBy) == 0 {
		return fmt.Sprintf("no package %s in %s", e.Name, e.Where)
	}
	return fmt.Sprintf("no package %s in %s (needed by %s)", e.Name, e.Where, strings.Join(e.NeededBy, " → "))
}

// Resolve returns the packages named plus everything they Depend or
// Pre-Depend on, recursively, leaving out names in installed (what the guest
// already has; nil for nothing). Dependencies come before the packages that
// need them, in a stable order.
//
// The choices are simple and predictable rather than apt's: for "a | b" a
// relation already installed or already chosen wins, else the first one the
// index has; a virtual package is satisfied by an installed or chosen
// provider, else the provider with the highest Priority (then name). Version
// constraints only pick among several versions of a package (the newest that
// satisfies, else the newest): they never make Resolve fail.
// Recommends and Suggests are not followed.
func (idx *Index) Resolve(names []string, installed map[string]bool) ([]Package, error) {
	r := &resolver{idx: idx, installed: installed, chosen: map[string]bool{}}
	for _, name := range names {
		rel, err := parseRelation(name)
		if err != nil {
			return nil, err
		}
		if r.satisfied(rel) {
			continue
		}
		p := r.candidate(rel)
		if p == nil {
			return nil, &MissingPackageError{Name: name, Where: idx.where()}
		}
		if err := r.visit(p, nil); err != nil {
			return nil, err
		}
	}
	return r.order, nil
}

type resolver struct {
	idx       *Index
	installed map[string]bool
	chosen    map[string]bool
	order     []Package
}

func (r *resolver) visit(p *Package, chain []string) error {
	if r.chosen[p.Name] {
		return nil
	}
	// Mark before descending so dependency cycles (libc6 ↔ libgcc-s1) end.
	r.chosen[p.Name] = true
	chain = append(chain[:len(chain):len(chain)], p.Name)
	for _, field := range [][]Alternatives{p.PreDepends, p.Depends} {
		for _, alts := range field {
			dep, err := r.pick(alts, chain)
			if err != nil {
				return err
			}
			if dep != nil {
				if err := r.visit(dep, chain); err != nil {
					return err
				}
			}
		}
	}
	r.order = append(r.order, *p)
	return nil
}

// pick returns the package to add for one Depends item, or nil if the item
// is already satisfied.
func (r *resolver) pick(alts Alternatives, chain []string) (*Package, error) {
	for _, rel := range alts {
		if r.satisfied(rel) {
			return nil, nil
		}
	}
	for _, rel := range alts {
		if p := r.candidate(rel); p != nil {
			return p, nil
		}
	}
	return nil, &MissingPackageError{Name: alts.String(), Where: r.idx.where(), NeededBy: chain}
}

// satisfied reports whether rel is met by a package installed or chosen,
// directly or through Provides.
func (r *resolver) satisfied(rel Relation) bool {
	if r.installed[rel.Name] || r.chosen[rel.Name] {
		return true
	}
	for _, p := range r.idx.providers[rel.Name] {
		if r.installed[p.Name] || r.chosen[p.Name] {
			return true
		}
	}
	return false
}

// candidate returns the package that best meets rel, or nil.
func (r *resolver) candidate(rel Relation) *Package {
	if vs := r.idx.byName[rel.Name]; len(vs) > 0 {
		for _, p := range vs {
			if satisfies(p.Version, rel.Op, rel.Version) {
				return p
			}
		}
		return vs[0]
	}
	provs := r.idx.providers[rel.Name]
	if len(provs) == 0 {
		return nil
	}
	best := provs[0]
	for _, p := range provs[1:] {
		if rp, rb := priorityRank(p.Priority), priorityRank(best.Priority); rp < rb || (rp == rb && p.Name < best.Name) {
			best = p
		}
	}
	return best
}

func priorityRank(p string) int {
	switch p {
	case "required":
		return 0
	case "important":
		return 1
	case "standard":
		return 2
	case "optional":
		return 3
	}
	return 4
}

// KernelPackage returns the versioned kernel image package that the
// metapackage meta (linux-image-arm64, linux-image-armmp, …) depends on,
// e.g. linux-image-6.12.117+deb13-arm64. On arm64 that is the package built
// by linux-signed-arm64, which has the same kernel and modules as the
// "-unsigned" one but a kernel signed for Secure Boot; the "-unsigned"
// package is used if the signed one is missing. A versioned package passed
// as meta is returned as is.
//
// Download and ExtractDeb the result for vmlinuz and the modules: resolving
// the metapackage would also pull initramfs-tools and its dependencies,
// which a host-built initrd does not need.
func KernelPackage(idx *Index, meta string) (Package, error) {
	p, ok := idx.Lookup(meta)
	if !ok {
		return Package{}, &MissingPackageError{Name: meta, Where: idx.where()}
	}
	seen := map[string]bool{}
	for depth := 0; depth < 5; depth++ {
		seen[p.Name] = true
		next, want, found := kernelDependency(idx, p, seen)
		if !found && want != "" {
			return Package{}, &MissingPackageError{Name: want, Where: idx.where(), NeededBy: []string{p.Name}}
		}
		if !found {
			if depth == 0 && !isVersionedKernel(p.Name) {
				return Package{}, fmt.Errorf("kernel package %s in %s: %s is not a metapackage of a linux-image-<version> package", meta, idx.where(), meta)
			}
			return p, nil
		}
		p = next
	}
	return Package{}, fmt.Errorf("kernel package %s in %s: metapackages nest too deep", meta, idx.where())
}

// kernelDependency finds the linux-image-* package p depends on. If p names
// one the index lacks, want is its name.
func kernelDependency(idx *Index, p Package, seen map[string]bool) (_ Package, want string, found bool) {
	for _, alts := range p.Depends {
		for _, rel := range alts {
			if !strings.HasPrefix(rel.Name, "linux-image-") || seen[rel.Name] {
				continue
			}
			if want == "" {
				want = rel.Name
			}
			names := []string{rel.Name}
			if !strings.HasSuffix(rel.Name, "-unsigned") {
				names = append(names, rel.Name+"-unsigned")
			}
			for _, name := range names {
				vs := idx.byName[name]
				for _, v := range vs {
					if satisfies(v.Version, rel.Op, rel.Version) {
						return *v, "", true
					}
				}
				if len(vs) > 0 {
					return *vs[0], "", true
				}
			}
		}
	}
	return Package{}, want, false
}

// isVersionedKernel reports whether name looks like linux-image-6.12…: a
// real kernel package rather than a metapackage.
func isVersionedKernel(name string) bool {
	rest, ok := strings.CutPrefix(name, "linux-image-")
	return ok && rest != "" && isDigit(rest[0])
}
