//go:build tamago && arm && (pizero || pi1)

package raspberrypi

import (
	"math"
)

// Raspberry Pi Zero and Pi 1: BCM2835, one ARM1176JZF-S core.
const (
	// BCM2835 ARM Peripherals, 1.2.3: peripherals at 0x20000000 in the
	// ARM physical map.
	peripheralBase = 0x20000000

	// 512 MiB (Zero, Pi 1 B rev 2, B+) less the default 64 MiB GPU split,
	// from ramStart (1 MiB). A 256 MiB Pi 1 (A, early B) needs a smaller
	// value: not supported.
	modelRAMSize = 0x1c000000 - 0x00100000

	// The VideoCore sees ARM memory through its L2-cached alias on the
	// BCM2835 (the firmware enables the L2 for the ARM).
	busAlias = 0x40000000
)

// BCM2835 ARM Peripherals, 12.1: the system timer, a free-running 1 MHz
// counter with four compare registers; the GPU uses compares 0 and 2, so
// the idle governor uses compare 1 (GPU interrupt 1).
const (
	stBase = 0x3000
	stCS   = stBase + 0x00
	stCLO  = stBase + 0x04
	stCHI  = stBase + 0x08
	stC1   = stBase + 0x10
	stM1   = 1 << 1

	irqTimer1 = 1
)

func modelInitCPU() { setXP() }

func setXP()

func modelInitTimer() {
	ARM.TimerMultiplier = 1000
}

func modelNanotime() int64 {
	return int64(systimer())*1000 + ARM.TimerOffset
}

// systimer reads the 64-bit counter, retrying if the high word moved.
func systimer() uint64 {
	for {
		hi := read32(periph(stCHI))
		lo := read32(periph(stCLO))
		if read32(periph(stCHI)) == hi {
			return uint64(hi)<<32 | uint64(lo)
		}
	}
}

func modelInitInterrupts() {
	write32(periph(stCS), stM1)
	enableGPUInterrupt(irqTimer1)
}

func modelPending() (timer, gpu bool) {
	if read32(periph(stCS))&stM1 != 0 {
		write32(periph(stCS), stM1)
		timer = true
	}
	return timer, true
}

// modelIdle sets compare 1 for pollUntil and waits for an interrupt.
func modelIdle(pollUntil int64) {
	if pollUntil != 0 && pollUntil != math.MaxInt64 {
		d := (pollUntil - nanotime()) / 1000
		if d < 2 {
			d = 2
		} else if d > math.MaxInt32 {
			d = math.MaxInt32
		}
		write32(periph(stC1), read32(periph(stCLO))+uint32(d))
	}
	wfi()
}

func wfi()
func cleanInvalidateDCache()

func cleanDCache() {
	cleanInvalidateDCache()
}
