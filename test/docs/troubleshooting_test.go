package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestTroubleshootingCoversEveryFailure requires a section of its own in
// docs/troubleshooting.md ("### <Reason>", so that reference.md and the
// other pages can link to #<reason>) for every failure reason of the one
// table in internal/failure: a new Degraded reason fails until it is
// explained there.
func TestTroubleshootingCoversEveryFailure(t *testing.T) {
	root := repoRoot(t)
	doc := readFile(t, filepath.Join(root, "docs", "troubleshooting.md"))
	var headings []string
	for _, line := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			headings = append(headings, strings.TrimSpace(h))
		}
	}
	reasons := failureReasons(t, filepath.Join(root, "internal", "failure"))
	if len(reasons) < 8 {
		t.Fatalf("found only %d failure reasons in internal/failure (%v); the collector is probably broken", len(reasons), reasons)
	}
	for _, r := range reasons {
		if !slices.Contains(headings, r) {
			t.Errorf("docs/troubleshooting.md has no section \"### %s\" (a failure reason of internal/failure)", r)
		}
	}
}

// failureReasons returns the values of the constants of type Reason in the
// non-test files of dir.
func failureReasons(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, path := range goFiles(t, dir) {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
					continue
				}
				for _, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, s)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
