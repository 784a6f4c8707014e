package main

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// withName sets [node] name in the TOML text unless it is set already:
// a board image's name when its configuration gives none.
func withName(text, name string) (string, error) {
	var probe struct {
		Node struct {
			Name string `toml:"name"`
		} `toml:"node"`
	}
	if _, err := toml.Decode(text, &probe); err != nil {
		return "", err
	}
	if probe.Node.Name != "" {
		return text, nil
	}
	line := fmt.Sprintf("name = %q\n", name)
	if end := nodeTableEnd(text); end >= 0 {
		return text[:end] + "\n" + line + text[end:], nil
	}
	return "[node]\n" + line + text, nil
}

// nodeTableEnd returns the offset of the end of the first line of text
// that is a [node] table header (spaces or tabs around it, and a comment
// after it, allowed), or -1: what the regular expression
// (?m)^[ \t]*\[node\][ \t]*(#.*)?$ finds, written out so that board
// images do not link package regexp (TestNodeTableEnd compares them).
func nodeTableEnd(text string) int {
	for start := 0; start <= len(text); {
		end := strings.IndexByte(text[start:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += start
		}
		rest, ok := strings.CutPrefix(strings.TrimLeft(text[start:end], " \t"), "[node]")
		if rest = strings.TrimLeft(rest, " \t"); ok && (rest == "" || rest[0] == '#') {
			return end
		}
		start = end + 1
	}
	return -1
}
