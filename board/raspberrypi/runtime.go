//go:build tamago && arm

package raspberrypi

import (
	"sync"
	_ "unsafe"

	"github.com/usbarmory/tamago/arm"
)

// The runtime/goos hooks (tamago goos package). TamaGo's arm package
// provides Hwinit0 (arm.Init) and, without linkcpuinit, cpuinit; this
// package provides everything else.

//go:linkname ramStart runtime/goos.RamStart
var ramStart uint = 0x00100000

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint = modelRAMSize

//go:linkname ramStackOffset runtime/goos.RamStackOffset
var ramStackOffset uint = 0x100

// ARM is the CPU. TimerMultiplier must be non-zero before Hwinit1 (the
// runtime reads the clock in schedinit); Hwinit1 sets the real one.
var ARM = &arm.CPU{TimerMultiplier: 16}

// Hwinit1 runs once the world has started: vector table, MMU and caches,
// the timer, then the console UART.
//
//go:linkname hwinit1 runtime/goos.Hwinit1
func hwinit1() {
	ARM.Init(uint32(ramStart))
	ARM.EnableVFP()
	modelInitCPU()
	ARM.InitMMU()
	ARM.EnableCache()
	modelInitTimer()
	pl011{}.init()
	installExit()
}

//go:linkname nanotime runtime/goos.Nanotime
func nanotime() int64 {
	return modelNanotime()
}

// printk writes one byte of runtime output (print, panics) to the console
// UART, polling: it runs before the world starts and inside the runtime.
//
//go:linkname printk runtime/goos.Printk
func printk(c byte) {
	pl011{}.putcPoll(c)
}

// The BCM2835 hardware RNG (the same block in the BCM2836; not in the
// public BCM2835 ARM Peripherals manual, offsets as in Linux's
// drivers/char/hw_random/bcm2835-rng.c).
const (
	rngBase    = 0x104000
	rngCtrl    = rngBase + 0x0
	rngStatus  = rngBase + 0x4
	rngData    = rngBase + 0x8
	rngCtrlEn  = 1
	rngWarmup  = 0x40000 // words discarded after enabling
	rngCountSh = 24      // RNG_STATUS[31:24]: words available
)

var rngMu sync.Mutex

// initRNG enables the RNG. The runtime calls it from schedinit, before
// mallocinit and Hwinit1; the peripheral base is a constant, so the
// registers are reachable already.
//
//go:linkname initRNG runtime/goos.InitRNG
func initRNG() {
	if read32(periph(rngCtrl))&rngCtrlEn != 0 {
		return
	}
	write32(periph(rngStatus), rngWarmup)
	write32(periph(rngCtrl), rngCtrlEn)
}

// getRandomData fills b from the RNG (crypto/rand.Reader ends here). It
// must not allocate: the runtime calls it before mallocinit.
//
//go:linkname getRandomData runtime/goos.GetRandomData
func getRandomData(b []byte) {
	rngMu.Lock()
	for i := 0; i < len(b); {
		for read32(periph(rngStatus))>>rngCountSh == 0 {
		}
		w := read32(periph(rngData))
		for s := 0; s < 32 && i < len(b); s += 8 {
			b[i] = byte(w >> s)
			i++
		}
	}
	rngMu.Unlock()
}

// periph is the address of a peripheral register given its offset from
// the peripheral base (0x7e000000 on the VideoCore bus).
func periph(off uint32) uint32 {
	return peripheralBase + off
}

func read32(addr uint32) uint32
func write32(addr uint32, val uint32)
