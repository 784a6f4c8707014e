//go:build tamago && amd64

package microvm

import (
	"math"
	"runtime/goos"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/amd64"
)

// Interrupt service: one goroutine (tamago's amd64 CPU.ServiceInterrupts)
// is woken by the interrupt stub, calls serviceIRQ with the vector, and
// then acknowledges the local APIC (EOI). Handlers run in that goroutine:
// they must quiesce their source (acknowledge the device) and hand work to
// other goroutines through channels, never block. Device interrupts reach
// the BSP through the I/O APICs as edge-triggered vectors from irqVectorBase
// up; vector 255 (amd64.IRQ_WAKEUP) is the idle governor's APIC timer,
// which tamago's IDT acknowledges and ignores.
var (
	irqMu       sync.Mutex
	irqHandlers = map[int]func(){}
	irqStarted  bool
)

// irqVectorBase is the first vector used for device interrupts: vector =
// irqVectorBase + GSI.
const irqVectorBase = 64

// registerInterrupt routes GSI gsi to fn and unmasks it at its I/O APIC.
func registerInterrupt(gsi int, fn func()) {
	irqMu.Lock()
	irqHandlers[irqVectorBase+gsi] = fn
	irqMu.Unlock()

	if gsi >= IOAPIC1.GSIBase {
		IOAPIC1.EnableInterrupt(gsi, irqVectorBase+gsi)
	} else {
		IOAPIC0.EnableInterrupt(gsi, irqVectorBase+gsi)
	}
}

func serviceIRQ(vector int) {
	irqMu.Lock()
	fn := irqHandlers[vector]
	irqMu.Unlock()

	if fn != nil {
		fn()
	}
}

// startInterrupts starts the interrupt service goroutine, waits until it
// has run, and installs the idle governor. The goroutine fills the IDT
// for vectors 32-255 and names itself the one interrupts wake when it
// first runs: a device interrupt taken before that (a NIC unmasked at
// once by its driver) faulted at boot (vector 13, once in CI, the service
// goroutine still runnable). It runs from the close of ready to its first sleep without
// yielding the single CPU, so the caller resumes after both.
func startInterrupts() {
	irqMu.Lock()
	defer irqMu.Unlock()

	if irqStarted {
		return
	}
	irqStarted = true

	ready := make(chan struct{})
	go func() {
		close(ready)
		CPU.ServiceInterrupts(serviceIRQ)
	}()
	<-ready

	goos.Idle = idle
}

// idle is the runtime's idle hook (runtime/goos.Idle): it runs on the
// scheduler when no goroutine is runnable, with pollUntil the runtime
// clock's next timer deadline (math.MaxInt64: none). It arms the local
// APIC timer in one-shot mode for that deadline (vector 255) and executes
// HLT; the timer or any device interrupt wakes the core. tamago's wfi
// masks interrupts, skips HLT when an interrupt is already pending service
// and otherwise executes STI; HLT, whose interrupt shadow makes the pair
// atomic, so no wake-up is lost between the check and the sleep.
func idle(pollUntil int64) {
	now := nanotime()

	if pollUntil != math.MaxInt64 {
		d := pollUntil - now
		if d <= 0 {
			return
		}
		// the 32-bit count lasts 68 s at 62.5 MHz: sleep at most
		// maxIdle and let the runtime call again
		ticks := uint64(min(d, maxIdle)) * lapicHz / 1e9
		if ticks > 0xffffffff {
			ticks = 0xffffffff
		}
		if ticks == 0 {
			ticks = 1
		}
		lapicWrite(lapicLVTTimer, amd64.IRQ_WAKEUP) // one-shot, unmasked
		lapicWrite(lapicInitCount, uint32(ticks))
	}

	CPU.WaitInterrupt()
	lapicWrite(lapicInitCount, 0)

	idleWakeups.Add(1)
	idleNanos.Add(uint64(nanotime() - now))
}

// maxIdle bounds one sleep of the idle governor.
const maxIdle = int64(10 * time.Second)

var idleWakeups, idleNanos atomic.Uint64

// IdleStats reports how often the idle governor woke from HLT and how long
// the core spent in it since boot.
func (b *Board) IdleStats() (wakeups uint64, asleep time.Duration) {
	return idleWakeups.Load(), time.Duration(idleNanos.Load())
}
