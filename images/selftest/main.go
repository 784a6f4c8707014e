//go:build tamago && arm

// Command selftest checks, on a USB armory Mk II, the hardware that the
// QEMU tests cannot reach, and prints one line per item on the console:
//
//	selftest: ITEM: PASS (detail)
//	selftest: ITEM: FAIL (detail)
//	selftest: ITEM: not testable here (why)
//	selftest: done: N PASS, N FAIL, N not testable here
//
// then exits 0 if no item failed, 1 otherwise (under QEMU through
// semihosting, so a host test reads the code; on a board the code is
// printed and the board halts). The items:
//
//   - dcp-key: the SoC's key derivation (DCP on the i.MX6ULL/ULZ, CAAM on
//     the i.MX6UL) through Board.UniqueKey: two derivations with one
//     diversifier agree, another diversifier gives another key, and the
//     key kind is OTPMK (secure boot closed) or NVTK (open: the test key
//     every SoC shares, so not secret; reported). QEMU has neither
//     engine (a fixed published test key is used): not testable.
//   - enet-phy: the Ethernet PHY found on the MDIO bus (the first
//     address answering with an identifier) and its link (basic status
//     register, link bit) after the NIC's Init, waiting up to 5 s for a
//     cable. Only the UA-MKII-LAN has the port (not testable on β/γ).
//     QEMU emulates an MDIO PHY, so under QEMU this runs against it.
//   - leds: each LED (white, blue; green, yellow on the LAN model) set on
//     and off three times; PASS means the SoC accepted it, the eye
//     confirms. QEMU has no LEDs: not testable.
//   - usb-gadget: the CDC-ECM gadget's data path: Init (the host must
//     enumerate it), then frames from the host are counted and sent back
//     for up to 30 s; PASS once one came in and went out. The host side
//     needs nothing but its interface up (its own router solicitations
//     are enough). QEMU has no USB OTG controller: not testable (its
//     descriptor self-check still runs, and a mismatch fails).
//   - uart: the console UART's baud rate as its divisor registers and
//     clock set it, within 2 % of 115200 (on a board, seeing this text
//     at 115200 8N1 confirms it). QEMU's UART model does not keep the
//     divisor (UBIR reads 0) and sends at host speed: not testable.
package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// Outcomes of an item.
const (
	pass        = "PASS"
	fail        = "FAIL"
	notTestable = "not testable here"
)

// result is an item's outcome and its detail.
type result struct{ outcome, detail string }

func main() {
	b := &usbarmory.Board{}
	if err := b.Init(); err != nil {
		fmt.Printf("selftest: board init: %v\n", err)
		usbarmory.Exit(1)
	}
	fmt.Printf("selftest: board %s (emulated: %v)\n", b.Name(), b.Emulated())
	items := []struct {
		name string
		run  func(*usbarmory.Board) result
	}{
		{"dcp-key", dcpKey},
		{"enet-phy", enetPHY},
		{"leds", leds},
		{"usb-gadget", usbGadget},
		{"uart", uartBaud},
	}
	counts := map[string]int{}
	for _, it := range items {
		r := it.run(b)
		counts[r.outcome]++
		fmt.Printf("selftest: %s: %s (%s)\n", it.name, r.outcome, r.detail)
	}
	fmt.Printf("selftest: done: %d PASS, %d FAIL, %d %s\n", counts[pass], counts[fail], counts[notTestable], notTestable)
	if counts[fail] > 0 {
		usbarmory.Exit(1)
	}
	usbarmory.Exit(0)
}

func dcpKey(b *usbarmory.Board) result {
	if b.Emulated() {
		return result{notTestable, "QEMU has no DCP or CAAM: the fixed published test key is used"}
	}
	k1, kind, err := b.UniqueKey([]byte("ouro selftest 1"))
	if err != nil {
		return result{fail, fmt.Sprintf("derivation: %v", err)}
	}
	k2, _, err := b.UniqueKey([]byte("ouro selftest 1"))
	if err != nil {
		return result{fail, fmt.Sprintf("second derivation: %v", err)}
	}
	k3, _, err := b.UniqueKey([]byte("ouro selftest 2"))
	if err != nil {
		return result{fail, fmt.Sprintf("derivation: %v", err)}
	}
	switch {
	case k1 != k2:
		return result{fail, "two derivations with one diversifier differ"}
	case k1 == k3:
		return result{fail, "two diversifiers gave one key"}
	case k1 == [usbarmory.UniqueKeySize]byte{}:
		return result{fail, "the key is all zeros"}
	}
	secret := "secret"
	if !kind.Secret() {
		secret = "not secret: secure boot is open, the SoC uses the test key every SoC shares"
	}
	return result{pass, fmt.Sprintf("%s key, stable, distinct per diversifier; %s", kind, secret)}
}

// MII registers (IEEE 802.3 22.2.4): basic status with its link bit, and
// the PHY identifier's first half.
const (
	miiBMSR     = 1
	miiPHYID1   = 2
	bmsrLink    = 1 << 2
	linkTimeout = 5 * time.Second
)

func enetPHY(b *usbarmory.Board) result {
	n, err := b.NIC()
	if errors.Is(err, usbarmory.ErrNoNIC) {
		return result{notTestable, "no Ethernet port: not a UA-MKII-LAN"}
	}
	if err != nil {
		return result{fail, fmt.Sprintf("NIC: %v", err)}
	}
	if err := n.Init(); err != nil {
		return result{fail, fmt.Sprintf("NIC init: %v", err)}
	}
	defer n.Close()
	where := "the board's PHY"
	if b.Emulated() {
		where = "QEMU's emulated PHY"
	}
	// the PHY's address: the first that answers with an identifier (a
	// bus without a PHY there reads all ones)
	addr := -1
	var id uint16
	for a := range 32 {
		if id = n.ENET.ReadPHYRegister(a, miiPHYID1); id != 0xffff && id != 0 {
			addr = a
			break
		}
	}
	if addr < 0 {
		return result{fail, fmt.Sprintf("no PHY answers on the MDIO bus (%s)", where)}
	}
	start := time.Now()
	for {
		// the link bit latches low: read twice for the current state
		n.ENET.ReadPHYRegister(addr, miiBMSR)
		s := n.ENET.ReadPHYRegister(addr, miiBMSR)
		if s&bmsrLink != 0 {
			return result{pass, fmt.Sprintf("%s (address %d, id %#04x) reports link up after %v (BMSR %#04x)", where, addr, id, time.Since(start).Round(time.Millisecond), s)}
		}
		if time.Since(start) > linkTimeout {
			return result{fail, fmt.Sprintf("%s (address %d, id %#04x) reports no link after %v (BMSR %#04x): is a cable plugged in?", where, addr, id, linkTimeout, s)}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leds(b *usbarmory.Board) result {
	if b.Emulated() {
		return result{notTestable, "QEMU has no LEDs (the calls are no-ops)"}
	}
	names := []string{usbarmory.LEDWhite, usbarmory.LEDBlue}
	if _, err := b.NIC(); err == nil {
		names = append(names, usbarmory.LEDGreen, usbarmory.LEDYellow)
	}
	for range 3 {
		for _, on := range []bool{true, false} {
			for _, l := range names {
				if err := b.LED(l, on); err != nil {
					return result{fail, fmt.Sprintf("LED %s: %v", l, err)}
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	return result{pass, fmt.Sprintf("%v blinked three times: check by eye", names)}
}

const usbTimeout = 30 * time.Second

func usbGadget(b *usbarmory.Board) result {
	e, err := b.ECM()
	if err != nil {
		return result{fail, fmt.Sprintf("ECM: %v", err)}
	}
	if err := e.Init(); errors.Is(err, usbarmory.ErrNoUSB) {
		return result{notTestable, "QEMU has no USB OTG controller; the descriptor self-check passed"}
	} else if err != nil {
		return result{fail, fmt.Sprintf("ECM init: %v", err)}
	}
	defer e.Close()
	fmt.Printf("selftest: usb-gadget: waiting up to %v for frames from the host (CDC-ECM, %v; bring the host's interface up)\n",
		usbTimeout, e.HostHardwareAddr())
	timer := time.AfterFunc(usbTimeout, e.Wake)
	defer timer.Stop()
	frames := [][]byte{make([]byte, 1536)}
	sizes := make([]int, 1)
	deadline := time.Now().Add(usbTimeout)
	for time.Now().Before(deadline) {
		n, err := e.Receive(frames, sizes)
		if err != nil {
			return result{fail, fmt.Sprintf("receive: %v", err)}
		}
		if n == 0 {
			continue // woken: the deadline
		}
		if _, err := e.Transmit([][]byte{frames[0][:sizes[0]]}); err != nil {
			return result{fail, fmt.Sprintf("a %d-byte frame came in; sending it back: %v", sizes[0], err)}
		}
		st := e.Stats()
		return result{pass, fmt.Sprintf("a %d-byte frame came in and went back (rx %d, tx %d frames)", sizes[0], st.RxFrames, st.TxFrames)}
	}
	st := e.Stats()
	return result{fail, fmt.Sprintf("no frame from the host in %v (rx %d frames): enumerated? interface up?", usbTimeout, st.RxFrames)}
}

// UART registers (i.MX6ULL reference manual, 55.15) and the divider
// field RFDIV of UFCR: input clock divided by 6, 5, 4, 3, 2, 1, 7.
const (
	uartUFCR  = 0x90
	uartUBIR  = 0xa4
	uartUBMR  = 0xa8
	wantBaud  = 115200
	baudSlack = 0.02
)

var rfdiv = [8]uint32{6, 5, 4, 3, 2, 1, 7, 1}

func uartBaud(b *usbarmory.Board) result {
	read := func(off uint32) uint32 {
		return atomic.LoadUint32((*uint32)(unsafe.Add(nil, uintptr(imx6ul.UART2_BASE+off))))
	}
	clk := imx6ul.GetUARTClock()
	div := rfdiv[read(uartUFCR)>>7&7]
	ubir, ubmr := read(uartUBIR)&0xffff, read(uartUBMR)&0xffff
	if clk == 0 || ubmr == 0 {
		return result{notTestable, fmt.Sprintf("divisor registers read back zero (clock %d Hz, UBIR %d, UBMR %d)", clk, ubir, ubmr)}
	}
	baud := float64(clk) / float64(div) * float64(ubir+1) / (16 * float64(ubmr+1))
	detail := fmt.Sprintf("UART2 at %.0f bps from a %d Hz clock /%d, UBIR %d, UBMR %d", baud, clk, div, ubir, ubmr)
	if b.Emulated() {
		return result{notTestable, "QEMU's UART ignores the divisor (it reads back " + detail + ")"}
	}
	if d := baud/wantBaud - 1; d > baudSlack || d < -baudSlack {
		return result{fail, fmt.Sprintf("%s: want %d", detail, wantBaud)}
	}
	return result{pass, detail}
}
