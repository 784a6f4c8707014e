package lint

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Where a go statement may appear: every goroutine of a node's component
// must be started through the kernel (kernel.PD.Go, or a layer.Runner
// that is one), so that a panic is a fault of the component and not a
// crash of the node. The kernel itself, the boards (drivers below any
// component), host tools, test code and the test-only packages start
// their own.
var (
	// allowedTrees are module-relative directories where go statements
	// are allowed, with everything below them.
	allowedTrees = []string{"kernel", "board", "tools", "images/boottest"}

	// allowedFiles are single files outside those trees where go
	// statements are allowed, each with the reason. An entry whose file
	// no longer has a go statement fails the test: keep it short.
	allowedFiles = map[string]string{
		"flow/socket_linux.go":         "the hosted program's side of the node socket: it runs in a program outside any node",
		"flow/flow.go":                 "goVia's fallback for a Port or Broker without a Go method: a hosted program's socket, outside any node",
		"images/router/main_tamago.go": "the bare-metal image's main: the stop watchdog runs after the node, outside any component",
		"flow/probe/ping.go":           "the ping client's receiver: only hosted tools (ouro ping) run a ping client; the node's perf app serves, which starts no goroutine",
	}
)

// TestGoStatements fails if a non-test .go file of the repository has a
// go statement outside the places above. It parses every file, whatever
// its build tags.
func TestGoStatements(t *testing.T) {
	root := moduleRoot(t)
	modPath := modulePath(t, root)
	seen := map[string]bool{}
	var bad []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			base := d.Name()
			if rel != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "testdata" || base == "vendor") {
				return filepath.SkipDir
			}
			if allowedTree(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		if strings.HasSuffix(path.Join(modPath, path.Dir(rel)), "test") {
			return nil // flowtest, unicasttest, layertest, ...: fakes for tests
		}
		lines, err := goStatements(p)
		if err != nil {
			return err
		}
		if len(lines) == 0 {
			return nil
		}
		if _, ok := allowedFiles[rel]; ok {
			seen[rel] = true
			return nil
		}
		for _, l := range lines {
			bad = append(bad, rel+":"+l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Errorf("%s: go statement in component code: start it through the component's layer.Runner (kernel.PD.Go), or add the file to allowedFiles with a reason", b)
	}
	for f := range allowedFiles {
		if !seen[f] {
			t.Errorf("allowedFiles lists %s, which has no go statement (any more): remove the entry", f)
		}
	}
}

func allowedTree(rel string) bool {
	for _, a := range allowedTrees {
		if rel == a || strings.HasPrefix(rel, a+"/") {
			return true
		}
	}
	return false
}

// goStatements returns the line:column of every go statement in the file.
func goStatements(file string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if g, ok := n.(*ast.GoStmt); ok {
			pos := fset.Position(g.Pos())
			out = append(out, fmt.Sprintf("%d:%d", pos.Line, pos.Column))
		}
		return true
	})
	return out, nil
}

// moduleRoot is the directory of the go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

// modulePath reads the module path from root's go.mod.
func modulePath(t *testing.T, root string) string {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return f[1]
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}
