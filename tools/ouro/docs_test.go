package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpInDocs keeps docs/tools.md's "ouro help" sample the tool's own
// output.
func TestHelpInDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "tools.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sample, ok := strings.Cut(string(b), "```\n$ ouro help\n")
	if !ok {
		t.Fatal("docs/tools.md has no \"$ ouro help\" sample")
	}
	sample, _, _ = strings.Cut(sample, "```")
	var out bytes.Buffer
	(&app{}).usage(&out)
	if out.String() != sample {
		t.Errorf("docs/tools.md's ouro help sample differs from the tool's:\n--- docs\n%s--- tool\n%s", sample, out.String())
	}
}
