// Package docs holds the documentation; its test checks that every
// relative link in docs/ and the README resolves: the file exists and, for
// a link with a #fragment, the file has a heading with that anchor.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	mdLink  = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	fence   = regexp.MustCompile("^\\s*(```|~~~)")
	code    = regexp.MustCompile("`[^`]*`")
)

// anchor is GitHub's anchor for a heading: lower case, punctuation other
// than '-' and '_' dropped, spaces as '-'.
func anchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127 && !strings.ContainsRune("—–“”’‘…·×→←", r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a markdown file's headings.
func anchors(text string) map[string]bool {
	m := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if fence.MatchString(l) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if h := heading.FindStringSubmatch(l); h != nil {
			a := anchor(h[1])
			if n := seen[a]; n > 0 {
				m[a+"-"+strconv.Itoa(n)] = true
			} else {
				m[a] = true
			}
			seen[a]++
		}
	}
	return m
}

// links returns the link targets of a markdown text, outside code.
func links(text string) []string {
	var out []string
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if fence.MatchString(l) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range mdLink.FindAllStringSubmatch(code.ReplaceAllString(l, ""), -1) {
			out = append(out, m[1])
		}
	}
	return out
}

func TestRelativeLinks(t *testing.T) {
	files := []string{filepath.Join("..", "README.md")}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{}
	read := func(p string) (string, bool) {
		p = filepath.Clean(p)
		if s, ok := texts[p]; ok {
			return s, true
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false
		}
		texts[p] = string(b)
		return texts[p], true
	}
	checked := 0
	for _, f := range files {
		text, _ := read(f)
		for _, l := range links(text) {
			if strings.Contains(l, "://") || strings.HasPrefix(l, "mailto:") {
				continue
			}
			checked++
			target, frag, _ := strings.Cut(l, "#")
			path := f
			if target != "" {
				path = filepath.Join(filepath.Dir(f), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link %s: %s does not exist", f, l, path)
					continue
				}
			}
			if frag == "" {
				continue
			}
			body, ok := read(path)
			if !ok || !strings.HasSuffix(path, ".md") {
				t.Errorf("%s: link %s: a #fragment in a file that is not markdown", f, l)
				continue
			}
			if !anchors(body)[frag] {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", f, l, path, frag)
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d relative links: is the documentation where this test looks?", checked)
	}
	t.Logf("%d relative links in %d files", checked, len(files))
}

func TestAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"Node configuration":                           "node-configuration",
		"`[ipcp.udp]` — the UDP shim":                  "ipcpudp--the-udp-shim",
		"Example: a unicast layer over UDP, A — B — C": "example-a-unicast-layer-over-udp-a--b--c",
		"The toolchain":                                "the-toolchain",
	} {
		if got := anchor(in); got != want {
			t.Errorf("anchor(%q) = %q, want %q", in, got, want)
		}
	}
}
