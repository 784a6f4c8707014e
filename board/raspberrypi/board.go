//go:build tamago && arm

package raspberrypi

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"
)

// Board is a Raspberry Pi (the model chosen by build tag) or QEMU's
// emulation of it. The hardware is a singleton: an image holds one Board
// and calls Init once.
type Board struct {
	// NoSemihosting stops Exit and Args from using semihosting under QEMU
	// (for a QEMU started without -semihosting: Exit then only prints
	// ExitMarker and halts).
	NoSemihosting bool

	initOnce sync.Once
	serial   uint64
	revision uint32
	console  *UART
	linkOnce sync.Once
	link     *UART
}

// emulated is set by Init: QEMU reports board serial 0.
var emulated bool

// Init asks the firmware for the board serial and revision, starts the
// interrupt service and the idle governor, and makes the console UART
// interrupt driven. CPU, MMU, timer and the console's registers were set
// up when the runtime started (Hwinit1).
func (b *Board) Init() error {
	b.initOnce.Do(func() {
		var v [2]uint32
		if err := property(tagBoardSerial, v[:]); err == nil {
			b.serial = uint64(v[1])<<32 | uint64(v[0])
		}
		if err := property(tagBoardRevision, v[:1]); err == nil {
			b.revision = v[0]
		}
		emulated = b.serial == 0
		useSemihosting = emulated && !b.NoSemihosting
		startInterrupts()
		b.console = newUART("PL011", pl011{}, irqUART0)
		b.console.start()
	})
	return nil
}

// Emulated reports whether the board is QEMU (which reports serial 0).
func (b *Board) Emulated() bool { return emulated }

// Name describes the board, e.g. "Raspberry Pi 2 (BCM2836) rev a21041".
func (b *Board) Name() string {
	if emulated {
		return fmt.Sprintf("%s rev %x", qemuName, b.revision)
	}
	return fmt.Sprintf("%s rev %x", modelName, b.revision)
}

// Serial is the board serial number the firmware reports (0 under QEMU).
func (b *Board) Serial() uint64 { return b.serial }

// Revision is the board revision code the firmware reports.
func (b *Board) Revision() uint32 { return b.revision }

// Console is the PL011 (UART0) on GPIO 14/15, 115200 8N1; under QEMU the
// FIRST -serial. Runtime output (print, fmt to os.Stdout) goes to the same
// UART, polled. Nil before Init.
func (b *Board) Console() *UART { return b.console }

// LinkUART is the mini UART (UART1), interrupt driven, 115200 8N1, for a
// serial link; under QEMU the SECOND -serial. On a real board its only
// pins on the 40-pin header are GPIO 14/15, the console's: the first call
// switches them to the mini UART (ALT5), after which the console has no
// pins (see docs/boards-pi.md).
func (b *Board) LinkUART() *UART {
	b.linkOnce.Do(func() {
		miniUART{}.init()
		if !emulated {
			gpioFunction1415(fnALT5)
		}
		b.link = newUART("mini UART", miniUART{}, irqAUX)
		b.link.start()
	})
	return b.link
}

// Entropy returns crypto/rand.Reader, which draws on the BCM2835 hardware
// RNG (under QEMU: QEMU's model of it, fed from the host's getrandom).
func (b *Board) Entropy() io.Reader { return rand.Reader }

// EntropySource names what Entropy draws from.
func (b *Board) EntropySource() string {
	if emulated {
		return "BCM2835 RNG (QEMU: host getrandom)"
	}
	return "BCM2835 hardware RNG"
}

// Watchdog registers (not in the public manual; as Linux's
// drivers/watchdog/bcm2835_wdt.c).
const (
	pmRSTC           = 0x10001c
	pmWDOG           = 0x100024
	pmPassword       = 0x5a000000
	pmRSTCFullReset  = 0x20
	pmRSTCWRCFGClear = 0xffffffcf
	pmWDOGResetTicks = 10
)

// Reset restarts the SoC through the watchdog.
func (b *Board) Reset() {
	write32(periph(pmWDOG), pmPassword|pmWDOGResetTicks)
	write32(periph(pmRSTC), pmPassword|read32(periph(pmRSTC))&pmRSTCWRCFGClear|pmRSTCFullReset)
	halt()
}
