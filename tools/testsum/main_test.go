package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stream is what "go test -json" prints for: a package whose test passes,
// skips with a reason, has a skipped subtest and fails; a package without
// tests; a package that does not build; and make's own lines around it.
const stream = `go test -json -race ./...
{"Action":"start","Package":"ex/a"}
{"Action":"run","Package":"ex/a","Test":"TestOK"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"ex/a","Test":"TestOK","Elapsed":0}
{"Action":"output","Package":"ex/a","Test":"TestRoot","Output":"=== RUN   TestRoot\n"}
{"Action":"output","Package":"ex/a","Test":"TestRoot","Output":"    a_test.go:9: SKIP: needs root (network namespaces)\n"}
{"Action":"output","Package":"ex/a","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}
{"Action":"skip","Package":"ex/a","Test":"TestRoot","Elapsed":0}
{"Action":"output","Package":"ex/a","Test":"TestPty/raw","Output":"    a_test.go:12: no pty: open /dev/ptmx: no such file\n"}
{"Action":"skip","Package":"ex/a","Test":"TestPty/raw","Elapsed":0}
{"Action":"pass","Package":"ex/a","Test":"TestPty","Elapsed":0}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"    a_test.go:20: got 1, want 2\n"}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"ex/a","Test":"TestBad","Elapsed":0}
{"Action":"output","Package":"ex/a","Output":"FAIL\n"}
{"Action":"fail","Package":"ex/a","Elapsed":0.5}
{"Action":"output","Package":"ex/none","Output":"?   \tex/none\t[no test files]\n"}
{"Action":"skip","Package":"ex/none","Elapsed":0}
{"ImportPath":"ex/broken [ex/broken.test]","Action":"build-output","Output":"broken/a.go:2:12: undefined: y\n"}
{"ImportPath":"ex/broken [ex/broken.test]","Action":"build-fail"}
{"Action":"output","Package":"ex/broken","Output":"FAIL\tex/broken [build failed]\n"}
{"Action":"fail","Package":"ex/broken","Elapsed":0}
make[1]: *** [Makefile:50: unit] Error 1
`

func TestScanJSON(t *testing.T) {
	var out bytes.Buffer
	st := &Step{Name: "unit", Exit: 2}
	st.scan(strings.NewReader(stream), &out)
	if st.Packages != 2 || st.PkgFail != 2 || st.NoTests != 1 || st.Passed != 2 || st.Failed != 1 || len(st.Skips) != 2 {
		t.Fatalf("tally: %+v", st)
	}
	wantSkips := []Skip{
		{"ex/a", "TestRoot", "SKIP: needs root (network namespaces)"},
		{"ex/a", "TestPty/raw", "no pty: open /dev/ptmx: no such file"},
	}
	for i, w := range wantSkips {
		if st.Skips[i] != w {
			t.Errorf("skip %d = %+v, want %+v", i, st.Skips[i], w)
		}
	}
	// What the console shows: the failing test's output, the build
	// error, the package results; not the passing tests' output.
	for _, w := range []string{"a_test.go:20: got 1, want 2", "--- FAIL: TestBad", "undefined: y", "FAIL\tex/broken [build failed]", "FAIL\n", "make[1]: ***"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("console lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "--- PASS: TestOK") || strings.Contains(out.String(), "no test files") {
		t.Errorf("console shows what go test would not:\n%s", out.String())
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		name string
		argv []string
	}{
		{"vet", []string{"sh", "-c", "echo vetting"}},
		{"unit", []string{"sh", "-c", `printf '%s\n' '{"Action":"output","Package":"ex/a","Test":"TestRoot","Output":"    a_test.go:9: SKIP: needs root\n"}' '{"Action":"skip","Package":"ex/a","Test":"TestRoot"}' '{"Action":"pass","Package":"ex/a","Test":"TestOK"}' '{"Action":"pass","Package":"ex/a","Elapsed":0.1}'`}},
		{"allocs", []string{"sh", "-c", `printf '%s\n' '{"Action":"pass","Package":"ex/a","Test":"TestRoot"}' '{"Action":"pass","Package":"ex/a","Elapsed":0.1}'`}},
		{"qemu-test", []string{"sh", "-c", "echo 'SKIP: TamaGo toolchain missing (~/.cache/tamago-go/tamago-go1.26.0/bin/go): see docs/boards.md'"}},
		{"qemu-test-pi", []string{"sh", "-c", "echo '--- PASS: TestQEMUPi (3.2s)'; echo '--- PASS: TestQEMUPiRouter (9.1s)'"}},
		{"arm", []string{"sh", "-c", "echo 'cannot build'; exit 3"}},
	}
	for _, s := range steps {
		var sink bytes.Buffer
		code := run(dir, s.name, s.argv, &sink)
		if want := map[bool]int{true: 3, false: 0}[s.name == "arm"]; code != want {
			t.Fatalf("run %s: exit %d, want %d", s.name, code, want)
		}
	}
	recorded, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if report(&out, recorded) {
		t.Error("report passed with a failed step")
	}
	for _, w := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  vet +ok +\S+$`),
		regexp.MustCompile(`(?m)^  unit +ok +\S+  1 packages, 1 tests passed, 1 skipped$`),
		regexp.MustCompile(`(?m)^  qemu-test +skipped +\S+  TamaGo toolchain missing \(.*\): see docs/boards.md$`),
		regexp.MustCompile(`(?m)^  qemu-test-pi +ok +\S+  2 tests passed$`),
		regexp.MustCompile(`(?m)^  arm +FAILED +\S+  exit status 3$`),
		regexp.MustCompile(`(?m)^skipped tests \(1\):\n  unit   ex/a TestRoot: SKIP: needs root \(passed in allocs\)$`),
		regexp.MustCompile(`(?m)^FAIL \(arm\): 6 steps, 2 packages tested, 4 tests passed, 1 skipped; QEMU suites: 1 run, 1 skipped \(ran qemu-test-pi\)$`),
	} {
		if !w.MatchString(out.String()) {
			t.Errorf("summary lacks %s:\n%s", w, out.String())
		}
	}
}

// TestWhyInSummary: the summary repeats why each test failed (the end of
// its output), for go test -json steps and for the QEMU suites' -v text,
// where the failing subtest's messages come long before its "--- FAIL"
// line; a parent that failed only through its subtest adds nothing.
func TestWhyInSummary(t *testing.T) {
	dir := t.TempDir()
	text := strings.Join([]string{
		"=== RUN   TestQEMU",
		"=== RUN   TestQEMU/eth/vm",
		"    qemu_test.go:120: VM exited (status 1) before ready 310ms after starting qemu; console ends:",
		"        qemu-system-x86_64: -netdev socket,id=s0,connect=127.0.0.1:20001: Connection refused",
		"=== RUN   TestQEMU/eth/hosted",
		"    qemu_test.go:200: eth to hosted ping ok",
		"=== NAME  TestQEMU",
		"    qemu_test.go:131: figures of the parent",
		"--- FAIL: TestQEMU (3.00s)",
		"    --- FAIL: TestQEMU/eth/vm (0.31s)",
		"    --- PASS: TestQEMU/eth/hosted (2.00s)",
		"FAIL",
	}, "\n")
	steps := map[string]string{
		"unit":      `printf '%s\n' '{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"=== RUN   TestBad\n"}' '{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"    a_test.go:20: got 1, want 2\n"}' '{"Action":"fail","Package":"ex/a","Test":"TestBad"}' '{"Action":"fail","Package":"ex/a","Elapsed":0.1}'; exit 1`,
		"qemu-test": "cat <<'END'\n" + text + "\nEND\nexit 1",
	}
	for _, name := range []string{"unit", "qemu-test"} {
		run(dir, name, []string{"sh", "-c", steps[name]}, &bytes.Buffer{})
	}
	recorded, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, recorded)
	for _, w := range []string{
		"  unit ex/a TestBad\n      | a_test.go:20: got 1, want 2\n",
		"  qemu-test TestQEMU\n  qemu-test TestQEMU/eth/vm\n      | qemu_test.go:120: VM exited (status 1) before ready",
		"      | qemu-system-x86_64: -netdev socket,id=s0,connect=127.0.0.1:20001: Connection refused\n",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, out.String())
		}
	}
	for _, nw := range []string{"figures of the parent", "eth to hosted ping ok"} {
		if strings.Contains(out.String(), nw) {
			t.Errorf("summary shows %q, which is not why anything failed:\n%s", nw, out.String())
		}
	}
}

// TestWhyBeforeConsole: a failure followed by a long message (a VM's
// console, logged as the test ends) still shows in the summary: the long
// message keeps its first line and its last lines. CI once showed only
// the console's last 12 lines of a QEMU test and not why it failed.
func TestWhyBeforeConsole(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		"=== RUN   TestQEMUMicrovm",
		"=== RUN   TestQEMUMicrovm/eth/microvm",
		"    qemu_microvm_test.go:95: perf against the microvm's perf app: probe: perf perf: no report from the perf server",
		"    qemu_test.go:437: VM console:",
	}
	for i := range 60 {
		lines = append(lines, fmt.Sprintf("        | console line %d", i))
	}
	lines = append(lines, "--- FAIL: TestQEMUMicrovm (58.00s)", "    --- FAIL: TestQEMUMicrovm/eth/microvm (58.00s)", "FAIL")
	run(dir, "qemu-test", []string{"sh", "-c", "cat <<'END'\n" + strings.Join(lines, "\n") + "\nEND\nexit 1"}, &bytes.Buffer{})
	recorded, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, recorded)
	for _, w := range []string{"no report from the perf server", "VM console:", "console line 59", "(56 lines)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "console line 10\n") {
		t.Errorf("summary keeps the middle of the console:\n%s", out.String())
	}
}

// TestStillRunningWhenPackageFails: a test binary killed by go test's
// timeout (or a crash) never ends its running test; the summary names
// that test and repeats the end of its output (the stack dump), which
// CI once lacked for a test hung for ten minutes.
func TestStillRunningWhenPackageFails(t *testing.T) {
	dir := t.TempDir()
	ev := func(action, test, output string) string {
		b, _ := json.Marshal(map[string]any{"Action": action, "Package": "ex/a", "Test": test, "Output": output})
		return "'" + string(b) + "'"
	}
	cmd := "printf '%s\\n' " + strings.Join([]string{
		ev("run", "TestHang", ""),
		ev("output", "TestHang", "=== RUN   TestHang\n"),
		ev("output", "TestHang", "goroutine 7 [select, 10 minutes]:\n"),
		ev("output", "TestHang", "ex/a.TestHang.func1()\n"),
		ev("output", "", "FAIL\tex/a\t600.0s\n"),
		ev("fail", "", ""),
	}, " ") + "; exit 1"
	run(dir, "unit", []string{"sh", "-c", cmd}, &bytes.Buffer{})
	recorded, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, recorded)
	for _, w := range []string{"unit ex/a TestHang (still running)", "goroutine 7 [select, 10 minutes]:", "ex/a.TestHang.func1()"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, out.String())
		}
	}
}

// TestRaceSkippedAllocTestsRunInAllocsStep: a test that measures
// allocations (testing.AllocsPerRun, or a helper over it whose name ends
// in Allocs) and skips under the race
// detector runs only in the allocs
// step (go test -run Allocs, without -race), so its name must say Allocs;
// else "0 allocations per forwarded packet" is checked nowhere.
func TestRaceSkippedAllocTestsRunInAllocsStep(t *testing.T) {
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(src, []byte("Allocs")) {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, src, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || !strings.HasPrefix(fn.Name.Name, "Test") {
				continue
			}
			var allocs, race bool
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					// a helper over AllocsPerRun, such as unicast's quietAllocs
					if id, ok := c.Fun.(*ast.Ident); ok && strings.HasSuffix(id.Name, "Allocs") {
						allocs = true
					}
				}
				if id, ok := n.(*ast.Ident); ok {
					allocs = allocs || id.Name == "AllocsPerRun"
					race = race || strings.Contains(strings.ToLower(id.Name), "race")
				}
				return true
			})
			if allocs && race {
				n++
				if !strings.Contains(fn.Name.Name, "Allocs") {
					t.Errorf("%s: %s measures allocations and depends on the race detector, but its name lacks \"Allocs\": the allocs step (make allocs) would not run it", path, fn.Name.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("found no allocation test that skips under -race: is the module where this test looks?")
	}
}
