//go:build tamago && amd64

package microvm

import (
	"math"
	mathbits "math/bits"
	"runtime"
	"runtime/goos"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/amd64"
)

// Interrupt service. tamago's amd64 path (CPU.ServiceInterrupts) wakes its
// goroutine from the interrupt stub with runtime.WakeG, which in
// tamago-go1.26.0 looks for the goroutine's timer from the timer heap's
// last entry down to address 0 and writes beside the first word equal to
// the timer's address: when the timer is out of the heap array for a
// moment it corrupts memory below the heap (docs/boards.md, "Interrupts
// and idle"; the ARM boards' board/internal/armirq removes the same
// hazard). So the microvm has its own path for vectors 32-255
// (vector_amd64.s), which touches nothing of the runtime:
//
//   - a device vector (irqVectorBase + GSI, from the I/O APICs) sets its
//     bit in pending, counts itself in taken and returns without an EOI:
//     the local APIC keeps it in service, which holds back it and every
//     vector of its priority class and below;
//   - vector 255 (amd64.IRQ_WAKEUP: the idle governor's one-shot APIC
//     timer, also the spurious vector) is acknowledged and ignored;
//   - the service goroutine takes taken and pending, runs each pending
//     vector's handler and then writes one EOI per vector taken. It sleeps
//     at most irqPollMax and is woken at once from the idle hook (nothing
//     else runnable: it is parked in its sleep with its timer in the heap,
//     so runtime.Wake finds it).
//
// Every delivery is one vector in service and one count in taken, and the
// goroutine writes one EOI per count, so no vector stays in service. A
// device's interrupts in the meantime are latched by the APIC (edge) and
// delivered after the EOI. Handlers run in the service goroutine: they
// must quiesce their source (acknowledge the device) and hand work to
// other goroutines through channels, never block.
var (
	irqMu       sync.Mutex
	irqHandlers = map[int]func(){}
	irqStarted  bool

	pending [4]uint64 // a bit per vector taken and not yet served (written by take)
	taken   uint32    // vectors taken and not yet acknowledged (written by take)
	ticked  uint32    // vector 255 fired since idle armed the timer (written by tick)
	irqG    uint      // the service goroutine (runtime.GetG)
	asleep  atomic.Bool
)

// defined in vector_amd64.s
func table()
func tableAddr() uintptr
func codeByte(p uintptr) byte
func halt()
func sidt() uintptr
func setGate(p uintptr, lo, hi uint64)

// irqVectorBase is the first vector used for device interrupts: vector =
// irqVectorBase + GSI.
const irqVectorBase = 64

// irqPoll and irqPollMax bound the service goroutine's sleep: while the
// core is busy (the idle hook does not run) a taken interrupt waits at
// most that long. The sleep starts at irqPoll after an interrupt and
// doubles with every look that finds none, up to irqPollMax: an idle VM
// wakes about 25 times a second instead of 200 (under TCG each wake-up
// costs host CPU), and the NIC, the one device, bounds its own wait with
// rxwait.Poll (20 ms) whatever this goroutine does.
const (
	irqPoll    = 5 * time.Millisecond
	irqPollMax = 40 * time.Millisecond
)

// the jump table's layout (vector_amd64.s): one 5-byte CALL per vector
const (
	firstVector = 32
	callSize    = 5
	lapicEOI    = 0x0b0
)

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

// startInterrupts installs the jump table for vectors 32-255 in the IDT,
// starts the service goroutine, waits until it runs and installs the idle
// governor. Device interrupts are unmasked only later, by registerInterrupt.
func startInterrupts() {
	irqMu.Lock()
	defer irqMu.Unlock()

	if irqStarted {
		return
	}
	irqStarted = true

	installTable()

	ready := make(chan struct{})
	go serviceInterrupts(ready)
	<-ready

	goos.Idle = idle
}

// installTable points IDT entries 32-255 at the jump table, after checking
// that each entry is a CALL rel32 where take and tick expect it (a
// different layout would give wrong vectors, so it is a boot failure).
func installTable() {
	base := tableAddr()
	for v := firstVector; v < 256; v++ {
		if codeByte(base+uintptr((v-firstVector)*callSize)) != 0xe8 {
			panic("microvm: interrupt table entry " + strconv.Itoa(v) + " is not a CALL rel32")
		}
	}

	idt := sidt()
	for v := firstVector; v < 256; v++ {
		off := uint64(base) + uint64((v-firstVector)*callSize)
		lo := off&0xffff | 1<<3<<16 | uint64(amd64.InterruptGate)<<40 | (off>>16&0xffff)<<48
		setGate(idt+uintptr(v*16), lo, off>>32)
	}
}

// serviceInterrupts is the service goroutine.
func serviceInterrupts(ready chan<- struct{}) {
	irqG, _ = runtime.GetG()
	close(ready)

	poll := irqPoll
	for {
		if n := atomic.SwapUint32(&taken, 0); n != 0 {
			poll = irqPoll
			for w := range pending {
				bits := atomic.SwapUint64(&pending[w], 0)
				for bits != 0 {
					b := mathbits.TrailingZeros64(bits)
					bits &^= 1 << b
					serviceIRQ(w*64 + b)
				}
			}
			for ; n > 0; n-- {
				lapicWrite(lapicEOI, 0)
			}
			continue
		}

		asleep.Store(true)
		if atomic.LoadUint32(&taken) == 0 {
			time.Sleep(poll)
			poll = min(2*poll, irqPollMax)
		}
		asleep.Store(false)
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

// idle is the runtime's idle hook (runtime/goos.Idle): it runs on the
// scheduler when no goroutine is runnable, with pollUntil the runtime
// clock's next timer deadline (math.MaxInt64: none). It arms the local
// APIC timer in one-shot mode for that deadline (vector 255) and executes
// HLT; the timer or any device interrupt wakes the core. halt masks
// interrupts, skips HLT when an interrupt is already taken and otherwise
// executes STI; HLT, whose interrupt shadow makes the pair atomic, so no
// wake-up is lost between the check and the sleep. If an interrupt was
// taken it wakes the service goroutine before returning.
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
		atomic.StoreUint32(&ticked, 0)
		lapicWrite(lapicLVTTimer, amd64.IRQ_WAKEUP) // one-shot, unmasked
		lapicWrite(lapicInitCount, uint32(ticks))
	}

	halt()
	lapicWrite(lapicInitCount, 0)

	if atomic.LoadUint32(&taken) != 0 && asleep.Load() {
		runtime.Wake(irqG)
	}

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
