package qemu

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pkgRow is one line of pkgsizes.sh's table.
type pkgRow struct{ bytes, code, rodata, data int }

// runPkgSizes runs tools/qemu/pkgsizes.sh on elf and returns its rows by
// package and its total of all symbols.
func runPkgSizes(t *testing.T, elf string, n int) (map[string]pkgRow, int) {
	t.Helper()
	out, err := exec.Command("./pkgsizes.sh", elf, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("pkgsizes.sh: %v\n%s", err, out)
	}
	rows, total := map[string]pkgRow{}, 0
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "package") {
		t.Fatalf("pkgsizes.sh printed no table:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if strings.HasPrefix(f[1], "(all") {
			total, _ = strconv.Atoi(f[0])
			continue
		}
		if strings.HasPrefix(f[1], "(") {
			continue
		}
		if len(f) != 5 {
			t.Fatalf("row %q: want bytes, code, rodata, data and a package", l)
		}
		var r pkgRow
		for i, p := range []*int{&r.bytes, &r.code, &r.rodata, &r.data} {
			if *p, err = strconv.Atoi(f[i]); err != nil {
				t.Fatalf("row %q: %v", l, err)
			}
		}
		rows[f[4]] = r
	}
	return rows, total
}

// buildProg builds testdata/pkgsizes, a Go program with its symbols (a
// test binary has none), and returns its path.
func buildProg(t *testing.T) string {
	t.Helper()
	prog := filepath.Join(t.TempDir(), "pkgsizes")
	if out, err := exec.Command("go", "build", "-o", prog, "./testdata/pkgsizes").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return prog
}

// TestPkgSizes runs the script on testdata/pkgsizes: every row's columns
// add up, the runtime is among the largest, no package name keeps a
// generic argument or a method's receiver, and the program's generic
// function, instantiated with os/exec.Cmd, counts for package main.
func TestPkgSizes(t *testing.T) {
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("SKIP: readelf missing: apt-get install binutils")
	}
	self := buildProg(t)
	rows, total := runPkgSizes(t, self, 1000)
	sum := 0
	for p, r := range rows {
		if r.code+r.rodata+r.data != r.bytes {
			t.Errorf("%s: code %d + rodata %d + data %d != %d", p, r.code, r.rodata, r.data, r.bytes)
		}
		if p != "(other)" && strings.ContainsAny(p, "[]() *;") {
			t.Errorf("package %q: a symbol's name was not cut to its package", p)
		}
		sum += r.bytes
	}
	if sum != total {
		t.Errorf("rows add up to %d, the total line says %d", sum, total)
	}
	if rows["runtime"].code < 100_000 {
		t.Errorf("runtime: %d bytes of code, want the runtime's (over 100 KB)", rows["runtime"].code)
	}
	if rows["main"].code == 0 {
		t.Errorf("no code counted for package main (main.keep[os/exec.Cmd] is): %v", rows)
	}
	if _, ok := rows["os/exec.Cmd"]; ok {
		t.Errorf("a generic argument counted as a package: %v", rows)
	}
	top, _ := runPkgSizes(t, self, 3)
	if len(top) != 3 {
		t.Errorf("pkgsizes.sh ELF 3 printed %d packages, want 3", len(top))
	}
	for p, r := range top {
		for q, s := range rows {
			if _, in := top[q]; !in && s.bytes > r.bytes {
				t.Errorf("top 3 has %s (%d B) but not %s (%d B)", p, r.bytes, q, s.bytes)
			}
		}
	}
}

// TestPkgSizesStripped: a stripped ELF (make image without DEBUG=1) has
// no symbols to sum; the script says so and fails.
func TestPkgSizesStripped(t *testing.T) {
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("SKIP: objcopy missing: apt-get install binutils")
	}
	self := buildProg(t)
	stripped := filepath.Join(t.TempDir(), "stripped")
	if out, err := exec.Command("objcopy", "--strip-all", self, stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	out, err := exec.Command("./pkgsizes.sh", stripped).CombinedOutput()
	if err == nil {
		t.Fatalf("pkgsizes.sh on a stripped ELF succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "DEBUG=1") {
		t.Fatalf("pkgsizes.sh on a stripped ELF: %q does not say to build with DEBUG=1", out)
	}
}
