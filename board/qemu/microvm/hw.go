//go:build tamago && amd64

package microvm

import (
	"math/bits"
	"runtime/goos"
	_ "unsafe"

	"github.com/usbarmory/tamago/amd64"
	"github.com/usbarmory/tamago/amd64/lapic"
	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/soc/intel/ioapic"
	"github.com/usbarmory/tamago/soc/intel/uart"
)

// Memory map. tamago's amd64 package fixes RamStart at 0x10000000 (the
// image is linked at 0x10010000); the runtime gets 192 MiB above it and the
// DMA region (virtqueues, frame buffers) the 64 MiB after that, so the
// whole image fits in QEMU's -m 512M (RAM at 0-0x1fffffff).
const (
	ramSizeBytes = 0x0c000000
	dmaStart     = 0x1c000000
	dmaSize      = 0x04000000
)

// Peripherals of QEMU's microvm machine (hw/i386/microvm.c, QEMU 7.2).
const (
	// COM1 is the first 16550 UART, QEMU's first -serial.
	COM1 = 0x3f8

	// IOAPIC0Base and IOAPIC1Base are the two I/O APICs (GSI 0-23, 24-47;
	// microvm's ioapic2=on, the default).
	IOAPIC0Base = 0xfec00000
	IOAPIC1Base = 0xfec10000

	// VirtioMMIOBase is the first of microvm's 24 virtio-mmio slots, 0x200
	// bytes each, on GSIs 24-47 (with ioapic2). QEMU fills them from the
	// last one down, so the first -device virtio-*-device is slot 23.
	VirtioMMIOBase = 0xfeb00000
	// VirtioNet0Base and VirtioNet0IRQ are the first virtio device's
	// registers and GSI: a virtio-net-device when it is the only one.
	VirtioNet0Base = VirtioMMIOBase + 23*0x200
	VirtioNet0IRQ  = 24 + 23

	// debugExitPort is QEMU's isa-debug-exit device (iobase=0xf4).
	debugExitPort = 0xf4
)

// Hardware instances, initialised at Hwinit1 (before main).
var (
	// CPU is the bootstrap processor. Only the fields tamago's interrupt
	// code needs are set: this package keeps time itself (see nanotime).
	CPU = &amd64.CPU{TimerMultiplier: 1, LAPIC: &lapic.LAPIC{Base: amd64.LAPIC_BASE}}

	IOAPIC0 = &ioapic.IOAPIC{Index: 0, Base: IOAPIC0Base, GSIBase: 0}
	IOAPIC1 = &ioapic.IOAPIC{Index: 1, Base: IOAPIC1Base, GSIBase: 24}

	// UART0 is COM1, the console.
	UART0 = &uart.UART{Index: 1, Base: COM1}
)

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint64 = ramSizeBytes

//go:linkname printk runtime/goos.Printk
func printk(c byte) {
	UART0.Tx(c)
}

// Time base: nanoseconds since calibration = (TSC - tsc0) * tscMult >> 32.
// Zero until Hwinit1 has calibrated the TSC.
var (
	tsc0    uint64
	tscMult uint64 // nanoseconds per TSC tick, 32.32 fixed point
	tscHz   uint64
)

//go:linkname nanotime runtime/goos.Nanotime
//go:nosplit
func nanotime() int64 {
	if tscMult == 0 {
		return 0
	}
	hi, lo := bits.Mul64(rdtsc()-tsc0, tscMult)
	return int64(hi<<32 | lo>>32)
}

// Init is the runtime's Hwinit1 hook: it runs once, early, before package
// initialisation (no allocation).
//
//go:linkname hwinit1 runtime/goos.Hwinit1
func hwinit1() {
	goos.Exit = exit

	enableLAPIC()
	calibrate()

	IOAPIC0.Init()
	IOAPIC1.Init()
	UART0.Init()
}

func init() {
	// processor exceptions (vectors 0-31) print and panic
	CPU.EnableExceptions()
	// the DMA region for virtqueues and frame buffers
	dma.Init(dmaStart, dmaSize)
}

// Local APIC registers (Intel SDM Vol. 3A, 11.4.1 Table 11-1 and 11.5.4
// APIC Timer).
const (
	lapicSVR        = 0x0f0
	lapicLVTTimer   = 0x320
	lapicInitCount  = 0x380
	lapicCurCount   = 0x390
	lapicDivide     = 0x3e0
	lapicMasked     = 1 << 16
	lapicDivideBy16 = 0b0011
	// spurious vector 0xff (tamago's IDT acknowledges and returns) and
	// the APIC software enable bit
	lapicSVRValue = 0xff | 1<<lapic.SVR_ENABLE
)

// Device registers are at their physical addresses: tamago maps the first
// 4 GiB flat, 0xc0000000 and up uncached.

func lapicRead(off uint32) uint32 {
	return mmioRead32(amd64.LAPIC_BASE + off)
}

func lapicWrite(off, v uint32) {
	mmioWrite32(amd64.LAPIC_BASE+off, v)
}

func enableLAPIC() {
	lapicWrite(lapicSVR, lapicSVRValue)
	lapicWrite(lapicDivide, lapicDivideBy16)
	lapicWrite(lapicLVTTimer, lapicMasked|amd64.IRQ_WAKEUP)
	lapicWrite(lapicInitCount, 0)
}
