//go:build tamago && arm

package raspberrypi

// PL011 (UART0): BCM2835 ARM Peripherals, chapter 13, and the ARM
// PrimeCell UART (PL011) TRM (DDI 0183) for the register bits.
const (
	pl011Base = 0x201000
	pl011DR   = pl011Base + 0x00
	pl011RSR  = pl011Base + 0x04
	pl011FR   = pl011Base + 0x18
	pl011IBRD = pl011Base + 0x24
	pl011FBRD = pl011Base + 0x28
	pl011LCRH = pl011Base + 0x2c
	pl011CR   = pl011Base + 0x30
	pl011IFLS = pl011Base + 0x34
	pl011IMSC = pl011Base + 0x38
	pl011MIS  = pl011Base + 0x40
	pl011ICR  = pl011Base + 0x44

	frBUSY = 1 << 3
	frRXFE = 1 << 4
	frTXFF = 1 << 5

	rsrOE = 1 << 3

	lcrhFEN   = 1 << 4
	lcrhWLEN8 = 3 << 5

	crUARTEN = 1 << 0
	crTXE    = 1 << 8
	crRXE    = 1 << 9

	// interrupt bits of IMSC, MIS, ICR
	intRX = 1 << 4
	intTX = 1 << 5
	intRT = 1 << 6
	intOE = 1 << 10

	// IFLS: transmit at 1/8 full (TXIFLSEL 000), receive at 1/2 full
	// (RXIFLSEL 010, bits 5:3); the receive timeout covers the rest
	pl011IFLSValue = 0b010 << 3

	// 115200 baud from the 48 MHz UART clock (config.txt
	// init_uart_clock=48000000): 48e6 / (16 * 115200) = 26.042, so
	// IBRD 26, FBRD round(0.042 * 64) = 3 (PL011 TRM, 3.3.6)
	pl011IBRDValue = 26
	pl011FBRDValue = 3
)

// GPIO function select (BCM2835 ARM Peripherals, 6.1): GPFSEL1 holds
// GPIO 10-19, three bits each.
const (
	gpfsel1  = 0x200004
	fnALT0   = 0b100
	fnALT5   = 0b010
	gpio14Sh = (14 - 10) * 3
	gpio15Sh = (15 - 10) * 3
)

func gpioFunction1415(fn uint32) {
	v := read32(periph(gpfsel1))
	v &^= 7<<gpio14Sh | 7<<gpio15Sh
	v |= fn<<gpio14Sh | fn<<gpio15Sh
	write32(periph(gpfsel1), v)
}

// pl011 has no state: the registers are at constant addresses, so the
// runtime's printk can use it before anything is initialised.
type pl011 struct{}

var _ uartHW = pl011{}

func (pl011) init() {
	write32(periph(pl011CR), 0)
	for read32(periph(pl011FR))&frBUSY != 0 {
	}
	write32(periph(pl011LCRH), 0) // flushes the FIFOs
	write32(periph(pl011IMSC), 0)
	write32(periph(pl011ICR), 0x7ff)
	gpioFunction1415(fnALT0)
	write32(periph(pl011IBRD), pl011IBRDValue)
	write32(periph(pl011FBRD), pl011FBRDValue)
	write32(periph(pl011LCRH), lcrhWLEN8|lcrhFEN)
	write32(periph(pl011IFLS), pl011IFLSValue)
	write32(periph(pl011CR), crUARTEN|crTXE|crRXE)
}

func (pl011) putcPoll(c byte) {
	for read32(periph(pl011FR))&frTXFF != 0 {
	}
	write32(periph(pl011DR), uint32(c))
}

func (pl011) rxAvail() bool { return read32(periph(pl011FR))&frRXFE == 0 }
func (pl011) getc() byte    { return byte(read32(periph(pl011DR))) }
func (pl011) txFull() bool  { return read32(periph(pl011FR))&frTXFF != 0 }
func (pl011) putc(c byte)   { write32(periph(pl011DR), uint32(c)) }
func (pl011) txIRQ() bool   { return read32(periph(pl011MIS))&intTX != 0 }
func (pl011) clearTx()      { write32(periph(pl011ICR), intTX) }

func (pl011) setRxIRQ(on bool) {
	pl011Mask(intRX|intRT|intOE, on)
	// RX and RT stay asserted while data is in the FIFO; they need no
	// clearing. OE does.
	write32(periph(pl011ICR), intOE)
}

func (pl011) setTxIRQ(on bool) { pl011Mask(intTX, on) }

func pl011Mask(bits uint32, on bool) {
	v := read32(periph(pl011IMSC))
	if on {
		v |= bits
	} else {
		v &^= bits
	}
	write32(periph(pl011IMSC), v)
}

func (pl011) overrun() bool {
	if read32(periph(pl011RSR))&rsrOE == 0 {
		return false
	}
	write32(periph(pl011RSR), 0)
	write32(periph(pl011ICR), intOE)
	return true
}
