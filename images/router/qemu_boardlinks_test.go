//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQEMUBoardLinkIdle: the armory image whose configuration uses only
// the ENET (both shims on board = true) has a driver component for each
// link the board has: driver.usb runs idle, its USB gadget not
// initialised (under QEMU ECM.Init would fail, ErrNoUSB: before, a link
// no configured IPCP used had no driver at all, and an initialisation
// at boot would have failed the start). A hosted node reaches the VM's
// echo over the Ethernet shim, and the VM's driver summary at exit shows
// driver.enet in its first incarnation and driver.usb not initialised.
//
// What it does not show: a shim created at run time on the idle link
// (the VM has no way to be told to: "ouro --via" refuses create, and no
// in-image app creates IPCPs); that is TestBoardLinkOnDemand's, hosted.
//
//	OURO_QEMU_TEST=1 go test -count=1 -run TestQEMUBoardLinkIdle -v ./images/router
func TestQEMUBoardLinkIdle(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1")
	}
	tool := findToolchain(t)
	elf := buildImage(t, tool, fmt.Sprintf(vmConfig, "board = true", "board = true"))
	pa := freePort(t)
	client := startHosted(t, fmt.Sprintf("[node]\nname = \"host\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nqemu_listen = \"127.0.0.1:%d\"\n", pa), nil)
	v := bootVMNet(t, elf, "vm", hubNet("02:00:00:00:00:02", pa)...)
	p := alloc(t, client, "echo")
	if err := p.Write([]byte("ping"), time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo over the board link: %q, %v", buf[:n], err)
	}
	p.Close()
	halt(t, client)
	if code := v.wait(t, 20*time.Second); code != haltCode {
		t.Fatalf("VM exit status %d, want %d (halt)", code, haltCode)
	}
	v.mu.Lock()
	log := strings.Join(v.console, "\n")
	v.mu.Unlock()
	for _, want := range []string{
		"driver.enet: incarnations 1, faults 0",
		"driver.usb: device not initialised (no IPCP used it); incarnations 1, faults 0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the VM's driver summary at exit lacks %q", want)
		}
	}
	if strings.Contains(log, "no USB device controller") {
		t.Errorf("the VM tried to initialise the USB gadget, which no IPCP used")
	}
}
