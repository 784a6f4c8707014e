//go:build linux

package main

// The bare-metal router on QEMU's microvm (x86-64, TCG), wired to hosted
// nodes in this process: the microvm counterpart of TestQEMU
// (qemu_test.go), whose helpers it shares.
//
// TestQEMUMicrovm builds the router image for GOARCH=amd64 with the config
// embedded, boots it under qemu-system-x86_64 -accel tcg -machine microvm
// with its virtio-net on a QEMU socket stream to 127.0.0.1, and from a
// hosted node allocates flows to the VM's echo app over the Ethernet shim
// and over the UDP shim on both sides' netstacks; each path runs ping and
// perf, then the same traffic against a hosted node in the VM's place, and
// ends the VM through its halt app (QEMU exits (42<<1)|1 = 85 through
// isa-debug-exit).
//
// It runs only with OURO_QEMU_TEST=1 (make qemu-test-microvm) and skips
// with a "SKIP:" message when the toolchain or qemu-system-x86_64 is
// missing. OURO_QEMU_FIGURES=FILE appends the figures as text lines.

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/images/internal/qemutest"
)

// microvmQEMU is the machine: TCG (KVM is not assumed), the PIT for TSC
// calibration, isa-debug-exit for the exit code, modern virtio-mmio.
var microvmQEMU = []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "max",
	"-machine", "microvm,x-option-roms=on,pit=on,pic=off,rtc=on", "-m", "512M",
	"-nographic", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	"-global", "virtio-mmio.force-legacy=false"}

// microvmStatus is QEMU's exit status for a guest exit code
// (isa-debug-exit: (code<<1)|1).
func microvmStatus(code int) int { return code<<1 | 1 }

func TestQEMUMicrovm(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test-microvm)")
	}
	tool := findMicrovmToolchain(t)
	elf := buildMicrovmImage(t, tool, fmt.Sprintf(vmConfig, "board = true", "board = true"))

	ethHosted := func(port int) string {
		return fmt.Sprintf("[node]\nname = \"host\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nqemu_listen = \"127.0.0.1:%d\"\n", port)
	}
	udpHosted := func(port int) string {
		return fmt.Sprintf(`[node]
name = "host"
[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
addr = "127.0.10.1:3435"
dir = { echo = "127.0.10.2:3435", halt = "127.0.10.2:3435" }
[ipcp.udp.netstack]
addrs = ["127.0.10.1/24"]
qemu_listen = "127.0.0.1:%d"
`, port)
	}
	paths := []struct {
		name   string
		hosted func(port int) string
		peer   func(port int) string
	}{
		{"eth", ethHosted, func(port int) string {
			return "[node]\nname = \"peer\"\n" + fmt.Sprintf(vmConfig,
				fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port), "qemu_listen = \"127.0.0.1:0\"")
		}},
		{"udp-netstack", udpHosted, func(port int) string {
			return "[node]\nname = \"peer\"\n" + fmt.Sprintf(vmConfig,
				"qemu_listen = \"127.0.0.1:0\"", fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port))
		}},
	}

	var all []figures
	var perf []string // ouro perf against the microvm's perf app
	for _, p := range paths {
		t.Run(p.name+"/microvm", func(t *testing.T) {
			port := freePort(t)
			client := startHosted(t, p.hosted(port), nil)
			vm := bootMicrovm(t, elf, "vm", port)
			vm.checkIdentity(t, "vm", elf)
			all = append(all, exercise(t, client, p.name+" to microvm"))
			if p.name == "eth" {
				perf = perfApp2(t, client, "microvm", 4000)
			}
			halt(t, client)
			if code := vm.wait(t, 20*time.Second); code != microvmStatus(haltCode) {
				t.Fatalf("QEMU exit status %d, want %d (halt %d)", code, microvmStatus(haltCode), haltCode)
			}
		})
		t.Run(p.name+"/hosted", func(t *testing.T) {
			port := freePort(t)
			client := startHosted(t, p.hosted(port), nil)
			halted := make(chan int, 1)
			startHosted(t, p.peer(port), func(code int) { halted <- code })
			all = append(all, exercise(t, client, p.name+" to hosted"))
			if p.name == "eth" { // the baseline of the VM's perf figures
				perf = append(perf, perfApp2(t, client, "hosted peer", 4000)...)
			}
			halt(t, client)
			select {
			case code := <-halted:
				if code != haltCode {
					t.Fatalf("halt code %d, want %d", code, haltCode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hosted peer did not halt")
			}
		})
	}

	// A - microvm - B through a unicast layer (qemu_test.go's
	// uniSubtests): the virtio-net device on a QEMU hub with a socket
	// stream to each hosted node.
	uniElf := buildMicrovmImage(t, tool, uniVMConfig("board = true", "board = true"))
	all = append(all, uniSubtests(t, "microvm", func(t *testing.T, pa, pb int) *vm {
		return bootMicrovmNet(t, uniElf, "vm", microvmHubNet("02:00:00:00:00:02", pa, pb)...)
	}, microvmStatus(haltCode))...)

	for _, f := range all {
		t.Log(f)
	}
	if out := os.Getenv("OURO_QEMU_FIGURES"); out != "" {
		if fh, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%s microvm image %s\n", time.Now().Format(time.RFC3339), elfSize(elf))
			for _, f := range all {
				fmt.Fprintln(fh, f)
			}
			for _, l := range perf {
				fmt.Fprintln(fh, l)
			}
			fh.Close()
		}
	}
}

// findMicrovmToolchain locates the tamago command and qemu-system-x86_64
// or skips.
func findMicrovmToolchain(t *testing.T) toolchain {
	t.Helper()
	return toolchain{tamago: qemutest.Tamago(t, "qemu-system-x86_64", "qemu-system-x86")}
}

// microvmLDFlags is mk/microvm.mk's MICROVM_LDFLAGS.
const microvmLDFlags = "-funcalign 1"

// buildMicrovmImage builds images/router for microvm with cfg embedded
// (mk/microvm.mk's command line) and returns the ELF's path.
func buildMicrovmImage(t *testing.T, tc toolchain, cfg string) string {
	t.Helper()
	return buildMicrovmImageTags(t, tc, cfg, "")
}

// buildMicrovmImageTags is buildMicrovmImage with build tags.
func buildMicrovmImageTags(t *testing.T, tc toolchain, cfg, tags string) string {
	t.Helper()
	elf := filepath.Join(t.TempDir(), "router-microvm.elf")
	ld := "-T 0x10010000 -R 0x1000 -w " + microvmLDFlags + " -X main.config=" + base64.StdEncoding.EncodeToString([]byte(cfg))
	cmd := exec.Command("nice", boardBuild(tc.tamago, strings.TrimPrefix(tags+configTags(t, cfg), ","), ld, elf)...)
	cmd.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=amd64")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tamago build: %v\n%s", err, out)
	}
	if err := stripImage(elf, "objcopy"); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", elfSize(elf), time.Since(start).Round(100*time.Millisecond))
	return elf
}

// bootMicrovm starts the image under timeout with its virtio-net connected
// to a hosted node listening on 127.0.0.1:port, and waits for "ouro node
// NAME ready". The console goes to the test log when the test ends.
func bootMicrovm(t *testing.T, elf, name string, port int) *vm {
	t.Helper()
	return bootMicrovmNet(t, elf, name,
		"-netdev", fmt.Sprintf("socket,id=n0,connect=127.0.0.1:%d", port),
		"-device", "virtio-net-device,netdev=n0,mac=02:00:00:00:00:02")
}

// microvmHubNet puts the virtio-net device on QEMU hub 0 with one socket
// stream per port (connecting to hosted nodes listening on 127.0.0.1):
// the microvm counterpart of hubNet, for the A - VM - B topology.
func microvmHubNet(mac string, ports ...int) []string {
	args := []string{"-netdev", "hubport,id=nic0,hubid=0", "-device", "virtio-net-device,netdev=nic0,mac=" + mac}
	for i, p := range ports {
		args = append(args,
			"-netdev", fmt.Sprintf("socket,id=s%d,connect=127.0.0.1:%d", i, p),
			"-netdev", fmt.Sprintf("hubport,id=h%d,hubid=0,netdev=s%d", i, i))
	}
	return args
}

// bootMicrovmNet is bootMicrovm with arbitrary QEMU network arguments.
func bootMicrovmNet(t *testing.T, elf, name string, netArgs ...string) *vm {
	t.Helper()
	v := &vm{ready: make(chan time.Duration, 1), done: make(chan struct{})}
	args := append([]string{"120"}, microvmQEMU...)
	args = append(args, netArgs...)
	args = append(args,
		"-fw_cfg", "name=opt/ouro/args,string=name="+name+" exit-after=90s",
		"-kernel", elf)
	v.cmd = exec.Command("timeout", args...)
	startVM(t, v, name)
	return v
}
