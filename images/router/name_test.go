package main

import (
	"regexp"
	"testing"

	"github.com/ouronet/ouro/images/internal/node"
)

// nodeTable is what nodeTableEnd implements.
var nodeTable = regexp.MustCompile(`(?m)^[ \t]*\[node\][ \t]*(#.*)?$`)

var nodeTableCases = []string{
	"",
	"[node]",
	"[node]\n",
	"[[ipcp]]\nkind = \"eth\"\n",
	"  \t[node]  # the node\nmetrics = \"\"\n",
	"[nodes]\n[node]\n",
	"[node] x\n[node]\n",
	"[node]\r\n",
	"[node]#c\r\n",
	"# [node]\n",
	"a = 1\n\n[node]",
	"[ node ]\n",
	"[node.x]\n",
}

// TestNodeTableEnd: nodeTableEnd finds the line the regular expression it
// replaces finds.
func TestNodeTableEnd(t *testing.T) {
	for _, s := range nodeTableCases {
		want := -1
		if loc := nodeTable.FindStringIndex(s); loc != nil {
			want = loc[1]
		}
		if got := nodeTableEnd(s); got != want {
			t.Errorf("nodeTableEnd(%q) = %d, want %d", s, got, want)
		}
	}
}

// FuzzNodeTableEnd: as TestNodeTableEnd, for any text.
func FuzzNodeTableEnd(f *testing.F) {
	for _, s := range nodeTableCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := -1
		if loc := nodeTable.FindStringIndex(s); loc != nil {
			want = loc[1]
		}
		if got := nodeTableEnd(s); got != want {
			t.Fatalf("nodeTableEnd(%q) = %d, the regular expression says %d", s, got, want)
		}
	})
}

// TestWithName: a board's name goes into the [node] table (made if there
// is none), and a name the configuration gives is kept.
func TestWithName(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"no table", "[[app]]\nkind = \"echo\"\n", "vm-1"},
		{"empty table", "[node] # here\n\n[[app]]\nkind = \"echo\"\n", "vm-1"},
		{"named", "[node]\nname = \"given\"\n", "given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, err := withName(tc.text, "vm-1")
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := node.ParseConfig([]byte(text))
			if err != nil {
				t.Fatalf("%v in\n%s", err, text)
			}
			if cfg.Node.Name != tc.want {
				t.Fatalf("name %q, want %q in\n%s", cfg.Node.Name, tc.want, text)
			}
		})
	}
	if _, err := withName("[node", "vm-1"); err == nil {
		t.Fatal("withName accepted text that is not TOML")
	}
}
