//go:build tamago && arm && pi2

package raspberrypi

import (
	"math"
)

// Raspberry Pi 2 Model B: BCM2836, four Cortex-A7 cores, 1 GiB.
const (
	modelName = "Raspberry Pi 2 (BCM2836)"
	qemuName  = "QEMU raspi2b (BCM2836, emulated)"

	// BCM2836 ARM-local peripherals manual, 1.2: the BCM2835 peripherals
	// move to 0x3f000000 in the ARM physical map.
	peripheralBase = 0x3f000000

	// 1 GiB less the firmware's default 64 MiB GPU split (config.txt
	// gpu_mem=64), from ramStart (1 MiB).
	modelRAMSize = 0x3c000000 - 0x00100000

	// The VideoCore sees ARM memory through its L2-uncached alias.
	busAlias = 0xc0000000
)

// BCM2836 ARM-local peripherals ("QA7_rev3.4", sections 4.6, 4.10, 4.11):
// per-core timer interrupt control and interrupt source registers.
const (
	localBase         = 0x40000000
	localGPURouting   = localBase + 0x0c
	localCore0TimerIC = localBase + 0x40
	localCore0IRQSrc  = localBase + 0x60

	// source bits: CNTPSIRQ, CNTPNSIRQ, CNTHPIRQ, CNTVIRQ, then GPU
	localSrcTimers = 0xf
	localSrcGPU    = 1 << 8
)

func modelInitCPU() {
	// Cortex-A7: coherency before caches and MMU (TRM r0p5, 4.3.31)
	ARM.EnableSMP()
}

func modelInitTimer() {
	// CNTFRQ was set by the firmware (19.2 MHz) or QEMU (62.5 MHz)
	ARM.InitGenericTimers(0, 0)
}

func modelNanotime() int64 {
	return ARM.GetTime()
}

// modelInitInterrupts routes the GPU interrupts (the BCM2835 controller)
// and core 0's physical timer to core 0's IRQ.
func modelInitInterrupts() {
	write32(localGPURouting, 0)
	// both physical timers: which one CNTP_* reaches depends on the
	// security state the firmware (or QEMU) left the core in
	write32(localCore0TimerIC, 0x3)
}

// modelPending reports whether the timer fired (and quiesces it) and
// whether the GPU controller has a pending interrupt.
func modelPending() (timer, gpu bool) {
	src := read32(localCore0IRQSrc)
	if src&localSrcTimers != 0 {
		ARM.SetAlarm(0)
		timer = true
	}
	return timer, src&localSrcGPU != 0
}

// modelIdle arms the physical timer for pollUntil (runtime clock) and
// waits for an interrupt. WFI wakes on a pending interrupt even while
// CPSR.I masks it (ARMv7-A ARM, B1.8.13), so none is lost in between.
func modelIdle(pollUntil int64) {
	if pollUntil != 0 && pollUntil != math.MaxInt64 {
		// SetAlarm takes counter time: undo the runtime clock's offset
		ARM.SetAlarm(pollUntil - ARM.TimerOffset)
	}
	ARM.WaitInterrupt()
}

// cleanDCache makes a buffer written by the CPU visible to the VideoCore
// and, after it answered, drops stale lines (clean and invalidate).
func cleanDCache() {
	ARM.FlushDataCache()
}
