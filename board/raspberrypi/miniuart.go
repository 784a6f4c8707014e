//go:build tamago && arm

package raspberrypi

// The mini UART (UART1) of the auxiliary peripherals: BCM2835 ARM
// Peripherals, 2.1 and 2.2 (with the errata's corrections: IER bit 0
// enables the receive interrupt, bit 1 the transmit one, as on a 16550;
// LCR 3 selects 8 bits).
const (
	auxEnables = 0x215004
	muIO       = 0x215040
	muIER      = 0x215044
	muIIR      = 0x215048
	muLCR      = 0x21504c
	muMCR      = 0x215050
	muLSR      = 0x215054
	muCNTL     = 0x215060
	muBAUD     = 0x215068

	ierRX = 1 << 0
	ierTX = 1 << 1

	lsrDataReady = 1 << 0
	lsrOverrun   = 1 << 1
	lsrTxEmpty   = 1 << 5 // room for at least one byte

	// 115200 baud from a 250 MHz core clock (config.txt core_freq=250):
	// baud = clk / (8 * (BAUD + 1)), so BAUD = 270 (2.2.1)
	muBaud115200 = 270
)

type miniUART struct{}

var _ uartHW = miniUART{}

func (miniUART) init() {
	write32(periph(auxEnables), read32(periph(auxEnables))|1)
	write32(periph(muCNTL), 0)
	write32(periph(muIER), 0)
	write32(periph(muLCR), 3)
	write32(periph(muMCR), 0)
	write32(periph(muIIR), 0xc6) // clear both FIFOs
	write32(periph(muBAUD), muBaud115200)
	write32(periph(muCNTL), 3) // receiver and transmitter on
}

func (m miniUART) putcPoll(c byte) {
	for m.txFull() {
	}
	m.putc(c)
}

func (miniUART) rxAvail() bool { return read32(periph(muLSR))&lsrDataReady != 0 }
func (miniUART) getc() byte    { return byte(read32(periph(muIO))) }
func (miniUART) txFull() bool  { return read32(periph(muLSR))&lsrTxEmpty == 0 }
func (miniUART) putc(c byte)   { write32(periph(muIO), uint32(c)) }
func (miniUART) clearTx()      {}

// txIRQ: the transmit interrupt is a level ("FIFO empty"); it counts as
// pending when it is enabled and the FIFO has room.
func (m miniUART) txIRQ() bool {
	return read32(periph(muIER))&ierTX != 0 && !m.txFull()
}

func (miniUART) setRxIRQ(on bool) { muMask(ierRX, on) }
func (miniUART) setTxIRQ(on bool) { muMask(ierTX, on) }

func muMask(bits uint32, on bool) {
	v := read32(periph(muIER))
	if on {
		v |= bits
	} else {
		v &^= bits
	}
	write32(periph(muIER), v)
}

// overrun: LSR bit 1 clears on read.
func (miniUART) overrun() bool { return read32(periph(muLSR))&lsrOverrun != 0 }
