//go:build tamago && arm

package usbarmory

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/usbarmory/tamago/board/usbarmory/mk2"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
	"github.com/usbarmory/tamago/soc/nxp/uart"
)

// Board is the USB armory Mk II, or QEMU's mcimx6ul-evk standing in for it.
// The hardware is a singleton: an image holds one Board and calls Init once.
type Board struct {
	// ARMFrequency, in MHz, is set by Init on real i.MX6ULL/ULZ boards
	// (tamago's imx6ul.SetARMFreq: 198, 396, 528, 792 or 900); 0 keeps the
	// boot ROM's frequency. Ignored under QEMU.
	ARMFrequency uint32

	initOnce sync.Once
	initErr  error
	dcpOnce  sync.Once
	console  *Console
	nic      *NIC
}

// Init starts the interrupt service and the idle governor (see the package
// doc), and applies the configuration. Hardware initialisation proper (SoC,
// clocks, UART2, LED pads) already happened when the runtime started.
func (b *Board) Init() error {
	b.initOnce.Do(func() {
		if imx6ul.Native && b.ARMFrequency != 0 {
			if err := imx6ul.SetARMFreq(b.ARMFrequency); err != nil {
				b.initErr = fmt.Errorf("usbarmory: ARM frequency %d MHz: %w", b.ARMFrequency, err)
				return
			}
		}

		b.console = &Console{uart: mk2.UART2}

		if !imx6ul.Native {
			if err := seedFromHost(); err != nil {
				print(err.Error(), "\n")
			}
		}

		startInterrupts()
	})

	return b.initErr
}

// Emulated reports whether the board is QEMU's mcimx6ul-evk rather than
// real silicon (QEMU reports SoC silicon revision 0.0).
func (b *Board) Emulated() bool {
	return !imx6ul.Native
}

// Name describes the board and SoC, e.g. "USB armory UA-MKII-LAN (i.MX6ULL)"
// or "QEMU mcimx6ul-evk (i.MX6UL, emulated)".
func (b *Board) Name() string {
	if !imx6ul.Native {
		return fmt.Sprintf("QEMU mcimx6ul-evk (%s, emulated)", imx6ul.Model())
	}

	_, model := mk2.Model()

	return fmt.Sprintf("USB armory %s (%s)", model, imx6ul.Model())
}

// Console is the serial console: UART2, which on the Mk II is reached
// through the debug accessory (β/γ) or test pads (LAN), and under QEMU is
// the SECOND -serial back end (run with "-serial null -serial stdio").
// Standard output and standard error go to the same UART.
type Console struct {
	uart *uart.UART
}

// Console returns the console; nil before Init.
func (b *Board) Console() *Console {
	return b.console
}

// Write transmits p, waiting for room in the UART FIFO. It is safe for
// concurrent use only in the sense that bytes are never lost; concurrent
// writers interleave.
func (c *Console) Write(p []byte) (int, error) {
	return c.uart.Write(p)
}

// Read returns the bytes already received, waiting (polling every
// consolePoll) until at least one is available. The UART has no receive
// interrupt wired here: console input is for humans, not for data.
func (c *Console) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}

	for {
		n := 0

		for n < len(p) {
			ch, ok := c.uart.Rx()
			if !ok {
				break
			}
			p[n] = ch
			n++
		}

		if n > 0 {
			return n, nil
		}

		time.Sleep(consolePoll)
	}
}

const consolePoll = 20 * time.Millisecond

// Entropy returns the board's random source. It is crypto/rand.Reader,
// which TamaGo wires to the SoC: the RNGB TRNG on the i.MX6ULL/ULZ, a
// CAAM-seeded AES-CTR DRBG on the i.MX6UL, and under QEMU an AES-CTR DRBG
// that Init keys from the host's /dev/urandom through semihosting (without
// it TamaGo's QEMU seed is the boot timer: the same bytes on every run and
// every node; see EntropySource).
func (b *Board) Entropy() io.Reader {
	return rand.Reader
}

// EntropySource names what Entropy draws from.
func (b *Board) EntropySource() string {
	switch {
	case !imx6ul.Native:
		return emulatedEntropy()
	case imx6ul.RNGB != nil:
		return "RNGB TRNG"
	case imx6ul.CAAM != nil:
		return "CAAM TRNG-seeded DRBG"
	default:
		return "unknown"
	}
}

// LED names accepted by Board.LED: the Mk II's white and blue LEDs and, on
// the UA-MKII-LAN, the Ethernet jack's green and yellow LEDs.
const (
	LEDWhite  = "white"
	LEDBlue   = "blue"
	LEDGreen  = "green"
	LEDYellow = "yellow"
)

// ErrNoLED is returned by LED for a name the board does not have.
var ErrNoLED = errors.New("usbarmory: no such LED")

// LED switches an LED on or off. Under QEMU every LED is a no-op that
// returns nil: the emulated machine has none.
func (b *Board) LED(name string, on bool) error {
	if !imx6ul.Native {
		switch name {
		case LEDWhite, LEDBlue, LEDGreen, LEDYellow:
			return nil
		}
		return ErrNoLED
	}

	if err := mk2.LED(name, on); err != nil {
		return ErrNoLED
	}

	return nil
}

// Reset restarts the SoC (a software reset through the watchdog).
func (b *Board) Reset() {
	imx6ul.Reset()
}
