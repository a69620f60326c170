package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinksResolve follows every relative link of README.md and
// docs/*.md: the file must exist, and an anchor (#section) must be the slug
// of one of its headings as GitHub makes it, so that the links between the
// reference, the guides and troubleshooting do not rot when a heading is
// renamed.
func TestDocLinksResolve(t *testing.T) {
	root := repoRoot(t)
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"))
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		anchors[path] = headingSlugs(readFile(t, path))
		return anchors[path]
	}
	checked := 0
	for _, page := range pages {
		rel, _ := filepath.Rel(root, page)
		for _, l := range proseLines(readFile(t, page)) {
			n, line := l.n, l.text
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target, anchor, _ := strings.Cut(m[1], "#")
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path := page
				if target != "" {
					path = filepath.Join(filepath.Dir(page), target)
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s:%d links to %s, which does not exist", rel, n, target)
						continue
					}
				}
				checked++
				if anchor == "" || !strings.HasSuffix(path, ".md") {
					continue
				}
				if !anchorsOf(path)[anchor] {
					t.Errorf("%s:%d links to %s#%s, but no heading there has that anchor", rel, n, target, anchor)
				}
			}
		}
	}
	if checked < 50 {
		t.Fatalf("followed only %d links; the link pattern is probably broken", checked)
	}
}

// mdLink is an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^()\s]+)\)`)

// numberedLine is a line of a document and its number.
type numberedLine struct {
	n    int
	text string
}

// proseLines returns, in order, the lines outside fenced code blocks.
func proseLines(doc string) []numberedLine {
	var out []numberedLine
	fenced := false
	for i, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, numberedLine{i + 1, line})
		}
	}
	return out
}

// headingSlugs returns the anchors GitHub gives the headings of a Markdown
// document: lower case, punctuation other than '-' and '_' dropped, spaces
// as '-', and "-1", "-2", ... for repeated headings.
func headingSlugs(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range proseLines(doc) {
		line := l.text
		trimmed := strings.TrimLeft(line, "#")
		if trimmed == line || !strings.HasPrefix(trimmed, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(trimmed)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			out[slug+"-"+strconv.Itoa(n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}
