//go:build linux

package main

// The USB armory's boot image without its zeros (issue 18).
//
// TestQEMUImxStub builds the router image, lays out the .imx payload as
// make imx does (tools/qemu/imxpayload.sh: a stub that clears
// .bss/.noptrbss and jumps to the ELF entry, then .text through .data),
// and boots that payload the way the boot ROM would: loaded at the stub's
// address and entered there (QEMU's generic loader; QEMU cannot read a
// .imx), with BSS filled with 0xa5 first, as DDR holds garbage on a real
// board. The node must come up. Booted at the ELF entry instead, with
// the same garbage, the image does not (checked by hand: it hangs). When
// mkimage is present it also builds the .imx and checks its size and
// that its IVT enters the stub.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestQEMUImxStub(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	elf := buildImage(t, tool, fmt.Sprintf(vmConfig, "board = true", "board = true"))
	dir := t.TempDir()
	payload := filepath.Join(dir, "router.bin")
	out, err := exec.Command("../../tools/qemu/imxpayload.sh", elf, payload).Output()
	if err != nil {
		t.Fatalf("imxpayload.sh: %v", err)
	}
	f := strings.Fields(string(out)) // STUB ENTRY BSS END
	if len(f) != 4 {
		t.Fatalf("imxpayload.sh printed %q", out)
	}
	var v [4]uint64
	for i, s := range f {
		if v[i], err = strconv.ParseUint(s, 16, 32); err != nil {
			t.Fatal(err)
		}
	}
	stub, bss, end := v[0], v[2], v[3]
	st, err := os.Stat(payload)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("payload %d bytes (stub at %#x, clears %#x-%#x, %d bytes not carried)", st.Size(), stub, bss, end, end-bss)

	garbage := filepath.Join(dir, "bss.bin")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte{0xa5}, int(end-bss)), 0o644); err != nil {
		t.Fatal(err)
	}
	v0 := &vm{ready: make(chan time.Duration, 1), done: make(chan struct{})}
	v0.cmd = exec.Command("timeout", "120", "qemu-system-arm", "-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none", "-serial", "null", "-serial", "stdio", "-net", "none",
		"-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", garbage, bss),
		"-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", payload, stub),
		"-device", fmt.Sprintf("loader,addr=%#x,cpu-num=0", stub),
		"-semihosting-config", "enable=on,target=native,arg=router,arg=name=vm,arg=exit-after=30s")
	startVM(t, v0, "vm") // fails the test unless the node comes up
	v0.stop()

	if _, err := exec.LookPath("mkimage"); err != nil {
		t.Log("SKIP: mkimage missing (apt-get install u-boot-tools): the .imx itself not built")
		return
	}
	dcd, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/usbarmory/tamago").Output()
	if err != nil {
		t.Fatal(err)
	}
	imx := filepath.Join(dir, "router.imx")
	cmd := exec.Command("mkimage", "-n", filepath.Join(strings.TrimSpace(string(dcd)), "board/usbarmory/mk2/imximage.cfg"),
		"-T", "imximage", "-e", fmt.Sprintf("%#x", stub), "-d", payload, imx)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	b, err := os.ReadFile(imx)
	if err != nil {
		t.Fatal(err)
	}
	// IVT: header (tag 0xd1), entry, reserved, DCD, boot data, self
	if b[0] != 0xd1 || uint64(binary.LittleEndian.Uint32(b[4:])) != stub {
		t.Fatalf("IVT %x: want tag d1 and entry %#x", b[:8], stub)
	}
	if int64(len(b)) > st.Size()+64<<10 {
		t.Fatalf(".imx is %d bytes, payload %d: more than the headers added", len(b), st.Size())
	}
	t.Logf(".imx %d bytes, IVT entry %#x (the stub)", len(b), stub)
}
