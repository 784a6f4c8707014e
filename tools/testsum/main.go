// Command testsum runs the steps of "make test" and says, at the end, what
// ran: packages and tests passed, failed and skipped (each skip with its
// reason), and which QEMU suites ran or were skipped and why.
//
//	testsum run -dir DIR -step NAME -- COMMAND [ARGS...]
//	testsum report -dir DIR
//
// run runs COMMAND, passes its output through (a "go test -json" stream
// is shown as go test shows it: a line per package, the output of tests
// that fail), records the step in DIR and exits with COMMAND's status.
// Lines that are not test events are scanned for "SKIP: reason" (the
// make targets' way to say a suite could not run) and "--- PASS/FAIL/SKIP"
// (a suite's verbose go test). report prints the summary of every step
// recorded in DIR and exits 1 if any step failed.
//
// It is a small tool of its own, not gotestsum: the summary spans steps
// that are not go test runs (gofmt, vet, the ARM build, the QEMU suites'
// make targets), and it needs nothing outside the standard library.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "bin/test-summary", "where the steps are recorded")
	step := fs.String("step", "", "the step's name (run)")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "run":
		if *step == "" || fs.NArg() == 0 {
			usage()
		}
		os.Exit(run(*dir, *step, fs.Args(), os.Stdout))
	case "report":
		steps, err := load(*dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
			os.Exit(1)
		}
		if !report(os.Stdout, steps) {
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testsum run -dir DIR -step NAME -- COMMAND [ARGS...]\n       testsum report -dir DIR")
	os.Exit(2)
}

// Step is what one step did, as recorded in DIR/NN-NAME.json.
type Step struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Exit    int      `json:"exit"`
	Seconds float64  `json:"seconds"`

	// From go test -json events.
	Packages int      `json:"packages"` // packages with tests that ran
	PkgFail  int      `json:"pkg_fail"`
	NoTests  int      `json:"no_tests"` // packages without test files
	Passed   int      `json:"passed"`   // tests and subtests
	Failed   int      `json:"failed"`
	Skips    []Skip   `json:"skips,omitempty"`
	Failures []string `json:"failures,omitempty"`  // package and test
	PassList []string `json:"pass_list,omitempty"` // package and test of each test passed

	// From other lines.
	SkipLines []string `json:"skip_lines,omitempty"` // "SKIP: ..." said by a make target or a suite
	TextPass  int      `json:"text_pass"`            // "--- PASS" lines
	TextFail  int      `json:"text_fail"`
	TextFails []string `json:"text_fails,omitempty"` // the tests of the "--- FAIL" lines

	// Why is the end of each failed test's output, by "package test"
	// (JSON steps) or test name (text steps): the summary repeats it, so
	// that a log cut to its tail still says why.
	Why map[string][]string `json:"why,omitempty"`

	current string              // text steps: the test the last "=== " line named
	outputs map[string][]string // text steps: recent output by test
}

// Skip is one skipped test and why.
type Skip struct {
	Package string `json:"package"`
	Test    string `json:"test"`
	Reason  string `json:"reason"`
}

// event is a go test -json event (go doc test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
	Elapsed    float64
}

var (
	skipLine = regexp.MustCompile(`(?:^|: )SKIP: (.*)$`)
	textTest = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	textRun  = regexp.MustCompile(`^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)`)
	filePos  = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)
	elided   = regexp.MustCompile(`^\s*\.\.\. \((\d+) lines\)$`) // compact's mark
)

// run runs the step's command and records it.
func run(dir, name string, argv []string, out io.Writer) int {
	start := time.Now()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		return 1
	}
	st := &Step{Name: name, Command: argv}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %s: %v\n", name, err)
		st.Exit = 127
	} else {
		st.scan(pipe, out)
		err = cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			st.Exit = ee.ExitCode()
		case err != nil:
			st.Exit = 1
		}
	}
	if st.Exit == 0 && (st.Failed > 0 || st.PkgFail > 0 || st.TextFail > 0) {
		st.Exit = 1
	}
	st.Seconds = time.Since(start).Seconds()
	if err := st.save(dir); err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		return 1
	}
	return st.Exit
}

// scan reads the command's output: test events are tallied and shown as
// go test shows them; other lines pass through.
func (st *Step) scan(r io.Reader, out io.Writer) {
	type key struct{ pkg, test string }
	outputs := map[key][]string{} // output of running tests (and packages)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil || e.Action == "" {
			st.text(line)
			fmt.Fprintln(out, line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "output":
			outputs[k] = append(outputs[k], e.Output)
		case "pass", "fail", "skip":
			lines := outputs[k]
			delete(outputs, k)
			if e.Test == "" { // the package
				if e.Action == "fail" {
					// Tests that never ended: the package timed out or
					// crashed while they ran; their output says where.
					var running []key
					for rk := range outputs {
						if rk.pkg == e.Package && rk.test != "" {
							running = append(running, rk)
						}
					}
					slices.SortFunc(running, func(a, b key) int { return strings.Compare(a.test, b.test) })
					for _, rk := range running {
						rl := outputs[rk]
						delete(outputs, rk)
						name := e.Package + " " + rk.test + " (still running)"
						st.Failed++
						st.Failures = append(st.Failures, name)
						st.why(name, rl)
						for _, l := range rl {
							fmt.Fprint(out, l)
						}
					}
				}
				st.pkgDone(e, lines, out)
				continue
			}
			switch e.Action {
			case "pass":
				st.Passed++
				st.PassList = append(st.PassList, e.Package+" "+e.Test)
			case "fail":
				st.Failed++
				st.Failures = append(st.Failures, e.Package+" "+e.Test)
				st.why(e.Package+" "+e.Test, lines)
				for _, l := range lines {
					fmt.Fprint(out, l)
				}
			case "skip":
				st.Skips = append(st.Skips, Skip{Package: e.Package, Test: e.Test, Reason: skipReason(lines)})
			}
		}
	}
}

// pkgDone shows a package's result as go test does: ok, FAIL with its
// own output (build failures, panics outside tests), nothing for a
// package without tests.
func (st *Step) pkgDone(e event, lines []string, out io.Writer) {
	switch e.Action {
	case "pass":
		st.Packages++
		fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		st.NoTests++
	case "fail":
		st.Packages++
		st.PkgFail++
		for _, l := range lines {
			fmt.Fprint(out, l)
		}
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "FAIL") {
			fmt.Fprintf(out, "FAIL\t%s\n", e.Package)
		}
	}
}

// whyLines is how much of a failed test's output the summary repeats.
const whyLines = 12

// why records the end of a failed test's output: its messages, not the
// run and result lines.
func (st *Step) why(test string, lines []string) {
	var keep []string
	for _, l := range lines {
		t := strings.TrimRight(l, "\n")
		if s := strings.TrimSpace(t); s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- PASS") || strings.HasPrefix(s, "--- SKIP") {
			continue
		}
		if len(t) > 300 {
			t = t[:297] + "..."
		}
		keep = append(keep, t)
	}
	if len(keep) == 0 {
		return
	}
	if st.Why == nil {
		st.Why = map[string][]string{}
	}
	keep = compact(keep)
	st.Why[test] = keep[max(0, len(keep)-whyLines):]
}

// msgLines is how many of a long message's continuation lines compact
// keeps (its last ones, below its first line).
const msgLines = 4

// compact shortens each long message in a test's output (a "file.go:N:"
// line and the more deeply indented lines that continue it, such as a
// VM's console logged as the test ends) to its first line and its last
// msgLines lines, so that the messages before it, among them often the
// failure itself, stay within the lines the summary repeats.
func compact(lines []string) []string {
	out := make([]string, 0, len(lines))
	for i := 0; i < len(lines); {
		out = append(out, lines[i])
		depth := indent(lines[i])
		j := i + 1
		if filePos.MatchString(lines[i]) {
			for j < len(lines) && indent(lines[j]) > depth && !filePos.MatchString(lines[j]) {
				j++
			}
		}
		if cont := lines[i+1 : j]; len(cont) > msgLines+1 {
			left := 0 // lines left out, counting what an earlier pass left out
			for _, l := range cont[:len(cont)-msgLines] {
				if m := elided.FindStringSubmatch(l); m != nil {
					n, _ := strconv.Atoi(m[1])
					left += n
				} else {
					left++
				}
			}
			out = append(out, fmt.Sprintf("%s... (%d lines)", strings.Repeat(" ", depth+4), left))
			out = append(out, cont[len(cont)-msgLines:]...)
		} else {
			out = append(out, cont...)
		}
		i = j
	}
	return out
}

// indent is how many leading blanks (tabs as four) a line has.
func indent(l string) int {
	n := 0
	for _, c := range l {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 4
		default:
			return n
		}
	}
	return n
}

// text tallies a line that is not a test event; for go test -v output it
// keeps each test's recent lines, to say why one failed.
func (st *Step) text(line string) {
	if m := textTest.FindStringSubmatch(line); m != nil {
		switch m[1] {
		case "PASS":
			st.TextPass++
		case "FAIL":
			st.TextFail++
			st.TextFails = append(st.TextFails, m[2])
			st.why(m[2], st.outputs[m[2]])
		}
		return
	}
	if m := textRun.FindStringSubmatch(line); m != nil {
		st.current = m[1]
	} else if st.current != "" {
		if st.outputs == nil {
			st.outputs = map[string][]string{}
		}
		o := append(st.outputs[st.current], line)
		if len(o) > 4*whyLines {
			o = compact(o)
			o = append(o[:0], o[max(0, len(o)-2*whyLines):]...)
		}
		st.outputs[st.current] = o
	}
	if m := skipLine.FindStringSubmatch(line); m != nil {
		st.SkipLines = append(st.SkipLines, strings.TrimSpace(m[1]))
	}
}

// skipReason is what a skipped test said, without the run and result
// lines and the file:line prefixes.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		parts = append(parts, strings.TrimSpace(filePos.ReplaceAllString(t, "")))
	}
	r := strings.Join(parts, " / ")
	if r == "" {
		return "(no reason given)"
	}
	if len(r) > 200 {
		r = r[:197] + "..."
	}
	return r
}

func (st *Step) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.json", len(old)+1, st.Name)), b, 0o644)
}

// load reads the steps recorded in dir, in the order they ran.
func load(dir string) ([]*Step, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no steps recorded in %s", dir)
	}
	sort.Strings(files)
	var steps []*Step
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var st Step
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		steps = append(steps, &st)
	}
	return steps, nil
}

// status is a step's result: ok, FAILED, or skipped (a make target that
// ran nothing and said why).
func (st *Step) status() string {
	switch {
	case st.Exit != 0:
		return "FAILED"
	case len(st.SkipLines) > 0 && st.Packages == 0 && st.TextPass == 0:
		return "skipped"
	}
	return "ok"
}

// detail is the step's line in the summary.
func (st *Step) detail() string {
	var parts []string
	if st.Packages+st.NoTests > 0 {
		p := fmt.Sprintf("%d packages", st.Packages)
		if st.PkgFail > 0 {
			p += fmt.Sprintf(" (%d FAILED)", st.PkgFail)
		}
		if st.NoTests > 0 {
			p += fmt.Sprintf(", %d without tests", st.NoTests)
		}
		parts = append(parts, p, fmt.Sprintf("%d tests passed", st.Passed))
		if st.Failed > 0 {
			parts = append(parts, fmt.Sprintf("%d FAILED", st.Failed))
		}
		parts = append(parts, fmt.Sprintf("%d skipped", len(st.Skips)))
	}
	if st.TextPass+st.TextFail > 0 {
		t := fmt.Sprintf("%d tests passed", st.TextPass)
		if st.TextFail > 0 {
			t += fmt.Sprintf(", %d FAILED", st.TextFail)
		}
		parts = append(parts, t)
	}
	if st.status() == "skipped" || len(parts) > 0 && len(st.SkipLines) > 0 {
		parts = append(parts, strings.Join(st.SkipLines, "; "))
	}
	if len(parts) == 0 && st.Exit != 0 {
		parts = append(parts, fmt.Sprintf("exit status %d", st.Exit))
	}
	return strings.Join(parts, ", ")
}

// isSuite reports whether a step is a QEMU suite.
func (st *Step) isSuite() bool { return strings.HasPrefix(st.Name, "qemu") }

// report prints the summary; false if a step failed.
func report(w io.Writer, steps []*Step) bool {
	fmt.Fprintln(w, "\n== summary")
	width := 0
	for _, st := range steps {
		width = max(width, len(st.Name))
	}
	var failed, suitesRun, suitesSkipped []string
	pkgs, passed, skipped := 0, 0, 0
	for _, st := range steps {
		s := st.status()
		line := fmt.Sprintf("  %-*s  %-7s %7s  %s", width, st.Name, s, fmtSeconds(st.Seconds), st.detail())
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		pkgs += st.Packages
		passed += st.Passed + st.TextPass
		skipped += len(st.Skips)
		switch {
		case s == "FAILED":
			failed = append(failed, st.Name)
		case st.isSuite() && s == "skipped":
			suitesSkipped = append(suitesSkipped, st.Name)
		case st.isSuite():
			suitesRun = append(suitesRun, st.Name)
		}
	}
	// A test skipped in one step may run in another (the allocation
	// tests skip under -race and run in allocs).
	passedIn := map[string][]string{}
	for _, st := range steps {
		for _, t := range st.PassList {
			passedIn[t] = append(passedIn[t], st.Name)
		}
	}
	var skips []string
	for _, st := range steps {
		for _, s := range st.Skips {
			line := fmt.Sprintf("  %-6s %s %s: %s", st.Name, s.Package, s.Test, s.Reason)
			if in := passedIn[s.Package+" "+s.Test]; len(in) > 0 {
				line += " (passed in " + strings.Join(in, ", ") + ")"
			}
			skips = append(skips, line)
		}
	}
	if len(skips) > 0 {
		fmt.Fprintf(w, "skipped tests (%d):\n%s\n", len(skips), strings.Join(skips, "\n"))
	}
	var fails []string
	for _, st := range steps {
		all := append(slices.Clip(st.Failures), st.TextFails...)
		for _, f := range all {
			fails = append(fails, "  "+st.Name+" "+f)
			if slices.ContainsFunc(all, func(g string) bool { return strings.HasPrefix(g, f+"/") }) {
				continue // a parent: its failed subtest says why
			}
			for _, l := range st.Why[f] {
				fails = append(fails, "      | "+strings.TrimSpace(l))
			}
		}
	}
	if len(fails) > 0 {
		fmt.Fprintf(w, "failed tests (%d):\n%s\n", len(fails), strings.Join(fails, "\n"))
	}
	suites := fmt.Sprintf("QEMU suites: %d run, %d skipped", len(suitesRun), len(suitesSkipped))
	if len(suitesRun) > 0 {
		suites += " (ran " + strings.Join(suitesRun, ", ") + ")"
	}
	result := "PASS"
	if len(failed) > 0 {
		result = "FAIL (" + strings.Join(failed, ", ") + ")"
	}
	fmt.Fprintf(w, "%s: %d steps, %d packages tested, %d tests passed, %d skipped; %s\n",
		result, len(steps), pkgs, passed, skipped, suites)
	return len(failed) == 0
}

func fmtSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
