package ociimage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

func pathHint(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (a relative path is taken from the working directory in Go, from the scenario file's directory in YAML)", err)
	}
	return err
}

// localName is the name of an image from a file that does not name itself:
// socbox.local/<file name without extensions>:<tag, else latest>.
func localName(path, tag string) string {
	base := strings.ToLower(filepath.Base(path))
	for _, ext := range []string{".gz", ".tgz", ".tar", ".oci"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(nonRepoChars.ReplaceAllString(base, "-"), "-._")
	if base == "" {
		base = "image"
	}
	if !validTag.MatchString(tag) {
		tag = "latest"
	}
	return "socbox.local/" + base + ":" + tag
}

// canonicalName writes ref the way containerd names images: Docker Hub as
// docker.io, with the tag or digest.
func canonicalName(ref name.Reference) string {
	reg := ref.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	repo := reg + "/" + ref.Context().RepositoryStr()
	switch r := ref.(type) {
	case name.Digest:
		return repo + "@" + r.DigestStr()
	case name.Tag:
		return repo + ":" + r.TagStr()
	}
	return ref.Name()
}
