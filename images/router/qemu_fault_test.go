//go:build linux && faultinject

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// TestQEMUFaultNIC: the armory image built with the tag faultinject (a
// frame carrying faultinject.Poison panics the board NIC driver's
// receive path, netstack.Mux.Run in the driver.enet component) gets one
// poison frame on its Ethernet segment while a hosted node has a flow to
// its echo app over the UDP shim on the netstack (the driver's IP
// port). The node survives, the IRM
// restarts the driver component, which re-initialises the ENET
// (usbarmory.NIC.Reset) before it reads again: the faultinject build
// wedges the ENET at the driver's fault (MAC disabled, interrupts masked:
// usbarmory.NIC.Wedge), and without the reset no ping comes back. The
// same flow's pings resume within
// 1 s, and the fault is in the VM's log and in the driver's counters
// (which its shims' "stats" carry; the image prints them at exit).
//
// It runs with OURO_QEMU_TEST=1 and the tag faultinject:
//
//	OURO_QEMU_TEST=1 go test -tags faultinject -run TestQEMUFaultNIC -v ./images/router
func TestQEMUFaultNIC(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1")
	}
	tool := findToolchain(t)
	cfg := "[node]\nlog = true\n" + fmt.Sprintf(vmConfig, "board = true", "board = true")
	elf := buildImageTags(t, tool, cfg, "usbarmory,faultinject")
	faultNIC(t, func(pa, pb int) *vm {
		return bootVMNet(t, elf, "vm", hubNet("02:00:00:00:00:02", pa, pb)...)
	}, haltCode)
}

// TestQEMUFaultNICMicrovm is TestQEMUFaultNIC on the microvm image: its
// driver re-initialises the virtio-net device (microvm.NIC.Reset) that
// the faultinject build wedges at the fault (microvm.NIC.Wedge: the
// device reset and left so).
//
//	OURO_QEMU_TEST=1 go test -tags faultinject -run TestQEMUFaultNICMicrovm -v ./images/router
func TestQEMUFaultNICMicrovm(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1")
	}
	tool := findMicrovmToolchain(t)
	cfg := "[node]\nlog = true\n" + fmt.Sprintf(vmConfig, "board = true", "board = true")
	elf := buildMicrovmImageTags(t, tool, cfg, "faultinject")
	faultNIC(t, func(pa, pb int) *vm {
		return bootMicrovmNet(t, elf, "vm", microvmHubNet("02:00:00:00:00:02", pa, pb)...)
	}, microvmStatus(haltCode))
}

// faultNIC is the fault test against a VM that boot starts with its NIC
// on a hub with streams to 127.0.0.1:pa (the hosted node) and :pb (the
// injector); the VM exits with status halted when halted.
func faultNIC(t *testing.T, boot func(pa, pb int) *vm, halted int) {
	pa, pb := freePort(t), freePort(t)
	// The hosted node reaches the VM's echo over the UDP shim on both
	// sides' netstacks (the VM's on the driver's IP port). Not over the
	// Ethernet shim: the hub hands the poison frame to every stream, and
	// this process's Ethernet shim, built with the tag too, would fault
	// on it (eth/input); its netstack drops a non-IP frame unseen.
	client := startHosted(t, fmt.Sprintf(`[node]
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
`, pa), nil)
	// The injector: a second stream on the VM's segment (a QEMU hub).
	inj, err := eth.ListenQEMU(fmt.Sprintf("127.0.0.1:%d", pb), net.HardwareAddr{2, 0, 0, 0, 0, 0x66})
	if err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	go func() { // accept and drain the hub's copies of the VM's frames
		buf := make([]byte, 2048)
		for {
			if _, err := inj.ReadFrame(buf); err != nil {
				return
			}
		}
	}()
	v := boot(pa, pb)

	p := alloc(t, client, "echo")
	defer p.Close()
	buf := make([]byte, flow.MaxSDU)
	seq := byte(0)
	// echo sends one SDU and waits up to d for its echo.
	echo := func(d time.Duration) bool {
		seq++
		msg := []byte{seq, 'p', 'i', 'n', 'g'}
		t0 := time.Now()
		if err := p.Write(msg, t0.Add(d)); err != nil {
			t.Fatalf("write: %v", err)
		}
		for {
			n, err := p.Read(buf, t0.Add(d))
			if errors.Is(err, flow.ErrTimeout) {
				return false
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if n == len(msg) && buf[0] == seq {
				return true
			}
		}
	}
	for i := range 5 {
		if !echo(2 * time.Second) {
			t.Fatalf("before the fault: ping %d lost", i)
		}
	}

	frame := make([]byte, 80)
	copy(frame, eth.Broadcast[:])
	copy(frame[6:], inj.MAC())
	frame[12], frame[13] = 0x88, 0xb5 // local experimental: no shim's
	copy(frame[20:], faultinject.Poison)
	// The VM reads the stream once QEMU has connected to the injector.
	deadline := time.Now().Add(10 * time.Second)
	for inj.WriteFrame(frame) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the VM did not connect to the injector's stream in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	const faultLine = "faulted=driver.enet"
	if !v.waitConsole(faultLine, 10*time.Second) {
		t.Fatalf("no %q in the VM's log 10s after the poison frame", faultLine)
	}
	for !echo(100 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("pings did not resume in 10s after the driver's fault")
		}
	}
	took := time.Since(start)
	t.Logf("pings resumed %v after the poison frame (same flow, driver restarted)", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("pings resumed after %v, want within 1s", took.Round(time.Millisecond))
	}
	lost := 0
	for range 20 {
		if !echo(time.Second) {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("after the restart: %d of 20 pings lost", lost)
	}
	log := v.consoleText()
	for _, want := range []string{"poison at nic/rx", "faulted=driver.enet", "restart=1 "} {
		if !strings.Contains(log, want) {
			t.Errorf("the VM's log lacks %q", want)
		}
	}
	halt(t, client)
	if code := v.wait(t, 20*time.Second); code != halted {
		t.Fatalf("VM exit status %d, want %d (halt): the node did not survive", code, halted)
	}
	log = v.consoleText()
	if !strings.Contains(log, "driver.enet: incarnations 2, faults 1, last fault faultinject: poison at nic/rx; device resets 1;") {
		t.Errorf("the VM's driver summary at exit does not show one fault, one restart and the NIC re-initialised once (by the restart)")
	}
	// The stop kills the driver, whose blocked Receive must be woken
	// (NIC.Wake) for the kernel's Stop to return.
	if strings.Contains(log, "stop took over 2s") {
		t.Errorf("the node's stop hung (the driver's Receive was not woken?)")
	}
}

// waitConsole waits up to d for a console line containing s.
func (v *vm) waitConsole(s string, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		if strings.Contains(v.consoleText(), s) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// consoleText is the console so far.
func (v *vm) consoleText() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.console, "\n")
}
