package plugin

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// krewManifest is the part of krew's Plugin (v1alpha2) that the test reads.
type krewManifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestKrewManifest: the manifest names one archive per platform that
// `make plugin-dist` builds, with the binary krew must link.
func TestKrewManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.Root(), "plugins", "krew", "tokenwarden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m krewManifest
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatalf("not a krew Plugin manifest: %v", err)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "tokenwarden" {
		t.Errorf("header: %s %s %s", m.APIVersion, m.Kind, m.Metadata.Name)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(m.Spec.Version) || m.Spec.ShortDescription == "" || m.Spec.Description == "" || m.Spec.Homepage == "" {
		t.Errorf("version %q or shortDescription missing", m.Spec.Version)
	}
	mk, err := os.ReadFile(filepath.Join(testenv.Root(), "hack", "make", "plugin.mk"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		goos, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		platform := goos + "/" + arch
		seen[platform] = true
		if !strings.Contains(string(mk), platform) {
			t.Errorf("%s: not built by make plugin-dist (PLUGIN_PLATFORMS)", platform)
		}
		archive := "/" + m.Spec.Version + "/kubectl-tokenwarden_" + goos + "_" + arch + ".tar.gz"
		if !strings.HasSuffix(p.URI, archive) {
			t.Errorf("%s: uri %s does not end in %s", platform, p.URI, archive)
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(p.SHA256) {
			t.Errorf("%s: sha256 %q is not 64 hex digits", platform, p.SHA256)
		}
		if p.Bin != "kubectl-tokenwarden" {
			t.Errorf("%s: bin %q", platform, p.Bin)
		}
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"} {
		if !seen[want] {
			t.Errorf("no entry for %s", want)
		}
	}
}
