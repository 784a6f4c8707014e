//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQEMUNoTCP: an armory image built without a part its configuration
// needs stops at start with the reason and how to build it, and a
// non-zero exit, rather than running without what it was asked for:
// without gVisor (no netstack tag, which make image adds only when the
// configuration uses the node's own TCP/IP stack), and with gVisor but
// without its TCP (no ipstack_tcp tag, added only when the configuration
// serves a status page). (Built with the tags, as make image and
// buildImage do, the same configuration serves the page:
// TestQEMUMeasured.)
func TestQEMUNoTCP(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	for _, tc := range []struct {
		name, tags, want string
	}{
		{"no netstack", "usbarmory", "router: FAIL: the configuration uses the node's own TCP/IP stack ([ipcp.udp.netstack] or [[ipnet]] netstack) but this image was built without it"},
		{"no tcp", "usbarmory,netstack", "router: FAIL: the configuration serves a status page ([[ipnet]] status) but this image was built without TCP"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			elf := filepath.Join(t.TempDir(), "router-usbarmory.elf")
			ld := "-T 0x80010000 -R 0x1000 -w -X main.config=" + base64.StdEncoding.EncodeToString([]byte(measuredVMConfig))
			cmd := exec.Command("nice", boardBuild(tool.tamago, tc.tags, ld, elf)...)
			cmd.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=arm", "GOARM=7")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tamago build: %v\n%s", err, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			q := exec.CommandContext(ctx, "qemu-system-arm", "-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
				"-nographic", "-monitor", "none", "-serial", "null", "-serial", "stdio", "-net", "none",
				"-semihosting-config", "enable=on,target=native,arg=router,arg=name=vm", "-kernel", elf)
			out, err := q.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("the image did not stop within 60 s; console:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("console lacks %q:\n%s", tc.want, out)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Fatalf("QEMU exited with %v, want a non-zero exit", err)
			}
			if strings.Contains(string(out), "ready") {
				t.Fatalf("the node came up:\n%s", out)
			}
		})
	}
}
