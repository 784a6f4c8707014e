//go:build linux

package main

// TestQEMUSelftest builds the self-test image for the USB armory, boots
// it under QEMU's mcimx6ul-evk and checks its report: one line per item,
// each with the outcome QEMU allows (the PHY is emulated, so enet-phy
// passes; the key engines, LEDs, USB controller and baud divisor are not
// there), the summary, and exit code 0; then again with the NIC's link
// down, where enet-phy must fail and the image exit 1. It runs with
// OURO_QEMU_TEST=1 (make qemu-test) and skips with "SKIP:" when the
// TamaGo toolchain or qemu-system-arm is missing.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/images/internal/qemutest"
)

func TestQEMUSelftest(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tamago := qemutest.Tamago(t, "qemu-system-arm", "qemu-system-arm")
	elf := filepath.Join(t.TempDir(), "selftest-usbarmory.elf")
	build := exec.Command("nice", tamago, "build", "-trimpath", "-tags", "usbarmory",
		"-ldflags", "-T 0x80010000 -R 0x1000 -w", "-o", elf, ".")
	build.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=arm", "GOARM=7")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("tamago build: %v\n%s", err, out)
	}
	t.Run("link", func(t *testing.T) {
		out, code := bootSelftest(t, elf, false)
		checkReport(t, out, code, 0, map[string]string{"enet-phy": pass}, "1 PASS, 0 FAIL, 4 not testable here")
	})
	// the same with the NIC's link down (QEMU's monitor: set_link before
	// the guest runs): the PHY reports no link, the item fails, the
	// image exits 1
	t.Run("no-link", func(t *testing.T) {
		out, code := bootSelftest(t, elf, true)
		checkReport(t, out, code, 1, map[string]string{"enet-phy": "FAIL"}, "0 PASS, 1 FAIL, 4 not testable here")
	})
}

// bootSelftest boots the image with its ENET on a QEMU hub port, with
// the link down if linkDown, and returns the console and QEMU's exit code.
func bootSelftest(t *testing.T, elf string, linkDown bool) (string, int) {
	t.Helper()
	mon := filepath.Join(t.TempDir(), "monitor.sock")
	args := []string{"60", "qemu-system-arm", "-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-serial", "null", "-serial", "stdio", "-nic", "hubport,hubid=0,id=n0,model=imx.enet",
		"-semihosting-config", "enable=on,target=native,arg=selftest", "-kernel", elf}
	if linkDown {
		args = append(args, "-S", "-monitor", "unix:"+mon+",server=on,wait=off")
	} else {
		args = append(args, "-monitor", "none")
	}
	qemu := exec.Command("timeout", args...)
	var out strings.Builder
	qemu.Stdout = &out
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	if linkDown {
		var c net.Conn
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err = net.Dial("unix", mon); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			qemu.Process.Kill()
			t.Fatalf("QEMU monitor: %v", err)
		}
		fmt.Fprint(c, "set_link n0 off\n")
		time.Sleep(200 * time.Millisecond) // the monitor handles one line at a time
		fmt.Fprint(c, "cont\n")
		defer c.Close()
	}
	err := qemu.Wait()
	t.Logf("console:\n%s", out.String())
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// checkReport checks one line per item: the outcomes in items, "not
// testable here" for the others; the summary; QEMU's exit code.
func checkReport(t *testing.T, out string, code, wantCode int, items map[string]string, summary string) {
	t.Helper()
	want := map[string]string{"dcp-key": notTestable, "leds": notTestable, "usb-gadget": notTestable, "uart": notTestable}
	for k, v := range items {
		want[k] = v
	}
	line := regexp.MustCompile(`(?m)^selftest: ([a-z-]+): (PASS|FAIL|not testable here) \(.+\)\r?$`)
	got := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(out, -1) {
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
	if !strings.Contains(out, "selftest: done: "+summary) {
		t.Errorf("no summary line %q", summary)
	}
	if code != wantCode {
		t.Errorf("QEMU exit code %d, want %d", code, wantCode)
	}
}

const pass, notTestable = "PASS", "not testable here"
