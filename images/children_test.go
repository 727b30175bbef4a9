package images

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every host process images/ runs (qemu-img, mmdebstrap, xz, tar, mke2fs,
// debugfs, depmod, gpgv, dpkg-deb) must go through harness/proc, whose
// Start gives it a process group of its own and a parent-death signal tied
// to a thread that outlives it: a socbox killed with SIGKILL must not
// leave an mmdebstrap or an xz running. Looked for in the source, since a
// plain exec.Cmd started here would work in every other respect.
func TestChildProcessesDieWithSocbox(t *testing.T) {
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// imagetest makes fixtures for tests, and is never part of socbox.
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "imagetest") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, _ := sel.X.(*ast.Ident)
			switch {
			case x != nil && x.Name == "exec" && strings.HasPrefix(sel.Sel.Name, "Command"):
				found = append(found, fset.Position(call.Pos()).String()+": exec."+sel.Sel.Name+" (use proc.CommandContext)")
			case x != nil && x.Name != "proc" && len(call.Args) == 0 &&
				(sel.Sel.Name == "Start" || sel.Sel.Name == "Run" || sel.Sel.Name == "Output" || sel.Sel.Name == "CombinedOutput") &&
				strings.Contains(strings.ToLower(x.Name), "cmd"):
				found = append(found, fset.Position(call.Pos()).String()+": "+x.Name+"."+sel.Sel.Name+" (use proc."+sel.Sel.Name+")")
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, found, "child processes started without a parent-death signal")
}
