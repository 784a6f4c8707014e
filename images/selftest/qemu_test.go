//go:build linux

package main

// TestQEMUSelftest builds the self-test image for the USB armory, boots
// it under QEMU's mcimx6ul-evk and checks its report: one line per item,
// each with the outcome QEMU allows (the PHY is emulated, so enet-phy
// passes; the key engines, LEDs, USB controller and baud divisor are not
// there), the summary, and exit code 0. It runs with OURO_QEMU_TEST=1
// (make qemu-test) and skips with "SKIP:" when the TamaGo toolchain or
// qemu-system-arm is missing.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestQEMUSelftest(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tamago, err := exec.Command("go", "tool", "-n", "github.com/usbarmory/tamago/cmd/tamago").Output()
	if err != nil {
		t.Skipf("SKIP: the tamago tool does not resolve: %v", err)
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
	if _, err := exec.LookPath("qemu-system-arm"); err != nil {
		t.Skip("SKIP: qemu-system-arm missing: apt-get install qemu-system-arm")
	}
	elf := filepath.Join(t.TempDir(), "selftest-usbarmory.elf")
	build := exec.Command("nice", strings.TrimSpace(string(tamago)), "build", "-trimpath", "-tags", "usbarmory",
		"-ldflags", "-T 0x80010000 -R 0x1000 -w", "-o", elf, ".")
	build.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=arm", "GOARM=7")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("tamago build: %v\n%s", err, out)
	}
	qemu := exec.Command("timeout", "60", "qemu-system-arm", "-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none", "-serial", "null", "-serial", "stdio", "-net", "none",
		"-semihosting-config", "enable=on,target=native,arg=selftest", "-kernel", elf)
	out, err := qemu.Output()
	t.Logf("console:\n%s", out)
	if err != nil {
		t.Fatalf("QEMU: %v (want exit code 0: nothing failed)", err)
	}
	const pass, notTestable = "PASS", "not testable here"
	want := map[string]string{
		"dcp-key":    notTestable,
		"enet-phy":   pass,
		"leds":       notTestable,
		"usb-gadget": notTestable,
		"uart":       notTestable,
	}
	line := regexp.MustCompile(`(?m)^selftest: ([a-z-]+): (PASS|FAIL|not testable here) \(.+\)\r?$`)
	got := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		if _, dup := got[m[1]]; dup {
			t.Errorf("item %s reported twice", m[1])
		}
		got[m[1]] = m[2]
	}
	for item, outcome := range want {
		if got[item] != outcome {
			t.Errorf("%s: got %q, want %q", item, got[item], outcome)
		}
	}
	if len(got) != len(want) {
		t.Errorf("items reported: %v, want %v", got, want)
	}
	if !strings.Contains(string(out), "selftest: done: 1 PASS, 0 FAIL, 4 not testable here") {
		t.Error("no summary line, or a different count")
	}
}
