package docs_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestProvidersShowTheSamples keeps the samples in docs/providers.md
// identical to config/samples, so that what users copy from the page is what
// the test suites apply.
func TestProvidersShowTheSamples(t *testing.T) {
	root := repoRoot(t)
	doc := readFile(t, filepath.Join(root, "docs", "providers.md"))
	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "flow-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 4 {
		t.Fatalf("found %d flow samples in config/samples, want at least 4", len(samples))
	}
	for _, s := range samples {
		if !strings.Contains(doc, "```yaml\n"+readFile(t, s)+"```") {
			t.Errorf("docs/providers.md does not show config/samples/%s verbatim in a yaml block", filepath.Base(s))
		}
	}
}
