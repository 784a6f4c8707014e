//go:build linux

package main

// The bare-metal router on QEMU's Raspberry Pi machines, linked by its
// UART to hosted nodes in this process (make qemu-test-pi).
//
// TestQEMUPiRouter builds images/router for the Pi (board/raspberrypi,
// config embedded as mk/pi.mk does), boots it on raspi2b (or raspi0 with
// OURO_PI_BOARD=pizero) with its link UART -- the mini UART, QEMU's
// second -serial -- on a chardev socket server on 127.0.0.1, and a hosted
// node whose serial shim dials that socket (tcp_connect) allocates a flow
// to the Pi's echo app: ping (RTT) and perf (echo throughput). It ends
// the VM through its halt app and checks QEMU's exit code (semihosting).
//
// TestQEMUPiArmory runs one unicast layer over two different shims and
// two VMs:
//
//	pi (raspi2b) --serial-- h1 --eth-- armory (mcimx6ul-evk) --eth-- h2
//
// h1 bootstraps the layer "uni" over its serial and Ethernet shims; the Pi
// and the armory enroll through h1; h2, on the armory's Ethernet segment
// (a QEMU hub: h1 and h2 each own one socket stream of it), enrolls
// through the armory. h2's client allocates a flow to the Pi's echo: it
// is found only in "uni" and crosses the armory (forwarding in its
// unicast IPCP), h1 and the serial link: both VMs and both shims. Then it
// halts both VMs and checks their exit codes.
//
// Both run only with OURO_QEMU_TEST=1 and skip with a "SKIP:" message
// when the toolchain or qemu-system-arm is missing. PI_FIGURES=FILE
// appends the figures as text lines.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer/ipcp"
)

// piBoards are the build settings and QEMU machine of each Pi model.
var piBoards = map[string]struct {
	goarm, machine string
}{
	"pi2":    {"7", "raspi2b"},
	"pizero": {"6", "raspi0"},
	"pi1":    {"6", "raspi1ap"},
}

// piVMConfig is the Pi's embedded configuration in TestQEMUPiRouter: the
// serial shim on the link UART, echo, perf and halt.
const piVMConfig = `
[[ipcp]]
kind = "serial"
layer = "serial"
[ipcp.serial]
board = true

[[app]]
kind = "echo"
[[app]]
kind = "perf"
[[app]]
kind = "halt"
`

func piBoard(t *testing.T) string {
	b := os.Getenv("OURO_PI_BOARD")
	if b == "" {
		b = "pi2"
	}
	if _, ok := piBoards[b]; !ok {
		t.Fatalf("OURO_PI_BOARD=%s: want pi2, pizero or pi1", b)
	}
	return b
}

func TestQEMUPiRouter(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test-pi)")
	}
	tool := findToolchain(t)
	board := piBoard(t)
	elf := buildPiImage(t, tool, board, piVMConfig)

	port := freePort(t)
	vm := bootPi(t, elf, board, "pi", port)
	client := startHosted(t, fmt.Sprintf(`[node]
name = "host"
[[ipcp]]
kind = "serial"
layer = "serial"
[ipcp.serial]
tcp_connect = "127.0.0.1:%d"
`, port), nil)
	t0 := time.Now()
	p, info, err := allocInfo(t, client, "echo")
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if info.Layer != "serial" {
		t.Fatalf("echo allocated in layer %q, want serial", info.Layer)
	}
	t.Logf("serial: first flow to the Pi's echo allocated %v after the hosted node started", time.Since(t0).Round(time.Millisecond))
	f := exercise(t, client, "serial to "+board)
	t.Log(f)
	perf := perfApp2(t, client, board, 30)
	halt(t, client)
	if code := vm.wait(t, 20*time.Second); code != haltCode {
		t.Fatalf("VM exit code %d, want %d (halt)", code, haltCode)
	}
	piFigures(t, elf, append([]string{f.String()}, perf...)...)
}

// TestQEMUPiArmory: one unicast layer over the serial and Ethernet shims,
// across a Pi and a USB armory VM (see the file comment).
func TestQEMUPiArmory(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test-pi)")
	}
	tool := findToolchain(t)
	board := piBoard(t)
	uni := func(name, lower, join string) string {
		return fmt.Sprintf(`
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = [%s]
%s
`, name, lower, join)
	}
	piCfg := `
[[ipcp]]
kind = "serial"
layer = "serial"
[ipcp.serial]
board = true
` + uni("pi", `"serial"`, `enroll = "h1.uni"`) + `
[[app]]
kind = "echo"
[[app]]
kind = "halt"
`
	armoryCfg := `
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
board = true
` + uni("armory", `"eth"`, `enroll = "h1.uni"`) + `
[[app]]
kind = "echo"
name = "echo-armory"
[[app]]
kind = "halt"
name = "halt-armory"
`
	piELF := make(chan string, 1)
	go func() {
		// the two builds share the go build cache; in parallel they
		// take about as long as the slower one
		defer close(piELF)
		piELF <- buildPiImage(t, tool, board, piCfg)
	}()
	armoryELF := buildImage(t, tool, armoryCfg)
	pelf, ok := <-piELF
	if !ok || pelf == "" {
		t.Fatal("Pi image build failed")
	}

	serialPort, h1Port, h2Port := freePort(t), freePort(t), freePort(t)
	start := time.Now()
	startHosted(t, fmt.Sprintf(`[node]
name = "h1"
[[ipcp]]
kind = "serial"
layer = "serial"
[ipcp.serial]
tcp_connect = "127.0.0.1:%d"
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
`, serialPort, h1Port)+uni("h1", `"serial", "eth"`, "bootstrap = true\nadmission = \"open\""), nil)
	h2 := startHosted(t, fmt.Sprintf(`[node]
name = "h2"
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
`, h2Port)+uni("h2", `"eth"`, `enroll = "armory.uni"`), nil)

	pi := bootPi(t, pelf, board, "pi", serialPort)
	armory := bootVMNet(t, armoryELF, "armory", hubNet("02:00:00:00:00:02", h1Port, h2Port)...)

	// The Pi's echo is registered in its serial layer and in uni; from
	// h2 only uni reaches it, through armory.uni and h1.uni.
	p, info, err := allocInfo(t, h2, "echo")
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if info.Layer != "uni" {
		t.Fatalf("echo allocated in layer %q, want uni", info.Layer)
	}
	t.Logf("uni: flow h2 -> armory -> h1 -> pi allocated %v after the nodes started", time.Since(start).Round(time.Millisecond))
	r, err := h2.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: "routes", IPCP: "h2.uni"})
	if err != nil || len(r.Table.Rows) != 3 {
		// armory, h1, pi; all through armory, h2's only neighbour
		t.Errorf("h2.uni routes: %v, %v; want 3 (armory, h1, pi)", r.Table.Rows, err)
	} else {
		t.Logf("h2.uni routes %v: %v", r.Table.Columns, r.Table.Rows)
	}
	f := exercise(t, h2, "uni h2-armory-h1-pi")
	t.Log(f)

	// the armory's own echo, one hop away in uni
	pa, info, err := allocInfo(t, h2, "echo-armory")
	if err != nil {
		t.Fatal(err)
	}
	pa.Close()
	t.Logf("echo-armory allocated in layer %s", info.Layer)

	haltName(t, h2, "halt", haltCode)
	if code := pi.wait(t, 20*time.Second); code != haltCode {
		t.Fatalf("Pi exit code %d, want %d (halt)", code, haltCode)
	}
	haltName(t, h2, "halt-armory", haltCode+1)
	if code := armory.wait(t, 20*time.Second); code != haltCode+1 {
		t.Fatalf("armory exit code %d, want %d (halt)", code, haltCode+1)
	}
	piFigures(t, pelf, f.String())
}

// allocInfo allocates a flow to name, retrying while it is not found, and
// returns the port and the flow's info (its layer).
func allocInfo(t *testing.T, b *irm.Broker, name string) (flow.Port, flow.Info, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for {
		p, info, err := b.Alloc(ctx, name, flow.BestEffort())
		if err == nil {
			return p, info, nil
		}
		if ctx.Err() != nil {
			return nil, info, fmt.Errorf("alloc %s: %w", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// haltName asks the halt app bound to name to end with code.
func haltName(t *testing.T, b *irm.Broker, name string, code int) {
	t.Helper()
	p, _, err := allocInfo(t, b, name)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Write([]byte(fmt.Sprintf("halt %d", code)), time.Now().Add(2*time.Second)); err != nil {
		t.Fatalf("halt %s: %v", name, err)
	}
	buf := make([]byte, 64)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, flow.ErrClosed) {
		t.Logf("halt %s reply: %q, %v", name, buf[:n], err)
	}
}

// buildPiImage builds images/router for a Pi model with cfg embedded
// (mk/pi.mk's command line) and returns the ELF's path.
func buildPiImage(t *testing.T, tc toolchain, board, cfg string) string {
	t.Helper()
	elf := filepath.Join(t.TempDir(), "router-"+board+".elf")
	ld := "-T 0x00110000 -R 0x1000 -w -X main.config=" + base64.StdEncoding.EncodeToString([]byte(cfg))
	cmd := exec.Command("nice", boardBuild(tc.tamago, board+",linkcpuinit"+configTags(t, cfg), ld, elf)...)
	cmd.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=arm", "GOARM="+piBoards[board].goarm)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("tamago build (%s): %v\n%s", board, err, out)
		return ""
	}
	if err := stripImage(elf, ""); err != nil {
		t.Error(err)
		return ""
	}
	t.Logf("built %s in %v", elfSize(elf), time.Since(start).Round(100*time.Millisecond))
	return elf
}

// bootPi starts the Pi image with its console (the PL011, first -serial)
// on stdio and its link UART (the mini UART, second -serial) on a chardev
// socket server at 127.0.0.1:port, and waits for "ouro node NAME ready".
func bootPi(t *testing.T, elf, board, name string, port int) *vm {
	t.Helper()
	args := []string{"timeout", "120", "qemu-system-arm", "-machine", piBoards[board].machine,
		"-nographic", "-monitor", "none",
		"-chardev", fmt.Sprintf("socket,id=l,host=127.0.0.1,port=%d,server=on,wait=off,nodelay=on", port),
		"-serial", "stdio", "-serial", "chardev:l",
		"-semihosting-config", "enable=on,target=native,arg=router,arg=name=" + name + ",arg=exit-after=90s",
		"-kernel", elf}
	v := &vm{ready: make(chan time.Duration, 1), done: make(chan struct{})}
	v.cmd = exec.Command(args[0], args[1:]...)
	startVM(t, v, name)
	return v
}

// piFigures appends lines to PI_FIGURES, if set.
func piFigures(t *testing.T, elf string, lines ...string) {
	out := os.Getenv("PI_FIGURES")
	if out == "" {
		return
	}
	fh, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("PI_FIGURES: %v", err)
		return
	}
	defer fh.Close()
	fmt.Fprintf(fh, "%s %s image %s\n", time.Now().Format(time.RFC3339), t.Name(), elfSize(elf))
	for _, l := range lines {
		fmt.Fprintln(fh, l)
	}
}
