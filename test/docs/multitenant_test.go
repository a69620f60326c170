package docs_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMultiTenantShowsTheSamples keeps the samples in docs/multi-tenant.md
// identical to config/samples/providers, which the test suites apply.
func TestMultiTenantShowsTheSamples(t *testing.T) {
	root := repoRoot(t)
	doc := readFile(t, filepath.Join(root, "docs", "multi-tenant.md"))
	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "providers", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for _, s := range samples {
		if filepath.Base(s) == "kustomization.yaml" {
			continue
		}
		shown++
		if !strings.Contains(doc, "```yaml\n"+readFile(t, s)+"```") {
			t.Errorf("docs/multi-tenant.md does not show config/samples/providers/%s verbatim in a yaml block", filepath.Base(s))
		}
	}
	if shown < 4 {
		t.Fatalf("found %d provider samples in config/samples/providers, want at least 4", shown)
	}
}
