// Package qemutest is what the QEMU tests share: finding the TamaGo
// build tool and toolchain and the QEMU binary, or skipping with a
// "SKIP:" line that says what is missing (docs/boards.md).
package qemutest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tamago returns the path of the tamago build command, once it has
// checked that the TamaGo toolchain of go.mod's tamago version is in the
// user cache directory and that qemu (a binary name: qemu-system-arm,
// qemu-system-x86_64) is installed; else it skips t, saying why
// (installPkg: the Debian package that has qemu).
func Tamago(t testing.TB, qemu, installPkg string) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "github.com/usbarmory/tamago/cmd/tamago").Output()
	if err != nil {
		t.Skipf("SKIP: the tamago tool does not resolve (go tool -n github.com/usbarmory/tamago/cmd/tamago): %v", err)
	}
	ver, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/usbarmory/tamago").Output()
	if err != nil {
		t.Skipf("SKIP: go list -m github.com/usbarmory/tamago: %v", err)
	}
	cache, _ := os.UserCacheDir()
	goroot := filepath.Join(cache, "tamago-go", "tamago-go"+strings.TrimPrefix(strings.TrimSpace(string(ver)), "v"))
	if _, err := os.Stat(filepath.Join(goroot, "bin", "go")); err != nil {
		t.Skipf("SKIP: TamaGo toolchain missing (%s/bin/go); see docs/boards.md", goroot)
	}
	if _, err := exec.LookPath(qemu); err != nil {
		t.Skipf("SKIP: %s missing: apt-get install %s", qemu, installPkg)
	}
	return strings.TrimSpace(string(out))
}
