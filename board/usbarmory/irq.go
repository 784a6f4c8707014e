//go:build tamago && arm

package usbarmory

import (
	"math"
	"runtime"
	"runtime/goos"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/arm"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// Interrupt service. TamaGo's own (arm.ServiceInterrupts) wakes its
// goroutine from the IRQ exception with runtime.WakeG, which in
// tamago-go1.26.0 looks for the goroutine's timer from the heap's last
// entry down to address 0: when the timer is out of the heap array for a
// moment (another timer's deleteMin sifts it down from the root in a local
// variable) it writes beside the first word that equals the timer's
// address, anywhere below (docs/boards.md, "Interrupts and idle"). So the
// vector here is ours (irqVector, irq_arm.s): it only records that an
// interrupt is pending and returns with IRQs masked. The service goroutine
// takes the interrupts from the GIC, calls the handler registered for each
// ID and unmasks IRQs again; it is woken early from the idle hook (no timer
// code runs there, and with nothing runnable it is parked in its sleep, its
// timer in the heap) and otherwise looks every irqPoll. Handlers run in
// that goroutine with IRQs masked: they must quiesce their source (clear
// the device's event bits) and hand work to other goroutines through
// channels, never block.
var (
	irqMu       sync.Mutex
	irqHandlers = map[int]func(){}
	irqStarted  bool

	irqPending uint32      // 1: the vector took an interrupt (written by irqVector)
	irqG       uint        // the service goroutine (runtime.GetG), set before IRQs are unmasked
	irqAsleep  atomic.Bool // the service goroutine sleeps (or is about to)
	irqServed  atomic.Uint64
)

// irqPoll is the longest the service goroutine sleeps: while the core is
// busy (the idle hook does not run) a pending interrupt waits at most this
// long.
const irqPoll = 5 * time.Millisecond

// defined in irq_arm.s
func irqVector()

// registerInterrupt routes interrupt id to fn and enables it at the GIC
// (as a secure, group 0, interrupt: TamaGo runs in the secure world).
func registerInterrupt(id int, fn func()) {
	irqMu.Lock()
	irqHandlers[id] = fn
	irqMu.Unlock()

	imx6ul.GIC.EnableInterrupt(id, true)
}

// serveIRQs takes every interrupt pending at the GIC and runs its handler.
func serveIRQs() {
	for {
		id := imx6ul.GIC.GetInterrupt(true)
		if id >= 1020 { // 1023: none pending
			return
		}
		irqServed.Add(1)

		if id == arm.TIMER_IRQ {
			// the idle governor's alarm: disarm it, the wake-up was the point
			imx6ul.ARM.SetAlarm(0)
			continue
		}

		irqMu.Lock()
		fn := irqHandlers[id]
		irqMu.Unlock()

		if fn != nil {
			fn()
		}
	}
}

// serviceInterrupts is the interrupt service goroutine.
func serviceInterrupts(started chan<- struct{}) {
	irqG, _ = runtime.GetG()
	close(started)

	imx6ul.ARM.EnableInterrupts(false)

	for {
		if atomic.SwapUint32(&irqPending, 0) != 0 {
			serveIRQs()
			imx6ul.ARM.EnableInterrupts(false) // the vector masked them
			continue
		}

		irqAsleep.Store(true)
		if atomic.LoadUint32(&irqPending) == 0 {
			time.Sleep(irqPoll)
		}
		irqAsleep.Store(false)
	}
}

// startInterrupts initialises the GIC, enables the timer interrupt, installs
// the IRQ vector and the idle governor and starts the interrupt service
// goroutine. It is called once by Board.Init.
func startInterrupts() {
	irqMu.Lock()
	defer irqMu.Unlock()

	if irqStarted {
		return
	}
	irqStarted = true

	imx6ul.GIC.Init(true, false)
	imx6ul.GIC.EnableInterrupt(arm.TIMER_IRQ, true)

	t := arm.SystemVectorTable()
	t.IRQ = irqVector
	imx6ul.ARM.SetVectorTable(t)

	goos.Idle = idle

	started := make(chan struct{})
	go serviceInterrupts(started)
	<-started
}

// idle is the runtime's idle hook (runtime/goos.Idle): it runs on the
// scheduler when no goroutine is runnable, with pollUntil the absolute time
// (nanoseconds, runtime clock) of the next timer, or 0 when there is none.
// It arms the secure physical timer (PPI 29, arm.TIMER_IRQ) for
// that deadline and executes WFI; any enabled interrupt (the timer, a NIC)
// wakes the core. WFI wakes on a pending interrupt even while CPSR.I masks
// it (ARMv7-A ARM, "Wait For Interrupt"), so no wake-up is lost between
// arming and sleeping.
func idle(pollUntil int64) {
	if pollUntil != 0 && pollUntil != math.MaxInt64 {
		// SetAlarm takes counter time: undo the runtime clock's offset
		imx6ul.ARM.SetAlarm(pollUntil - imx6ul.ARM.TimerOffset)
	}

	if atomic.LoadUint32(&irqPending) == 0 {
		t := imx6ul.ARM.GetTime()
		imx6ul.ARM.WaitInterrupt()

		idleWakeups.Add(1)
		idleNanos.Add(uint64(imx6ul.ARM.GetTime() - t))
	}

	// An interrupt is pending (taken by the vector, or masked since one
	// was): wake the service goroutine now. With nothing runnable it is
	// parked in its sleep, its timer in the heap, and no timer code is
	// running: runtime.Wake is safe here, unlike in the vector.
	if atomic.LoadUint32(&irqPending) != 0 && irqAsleep.Load() {
		runtime.Wake(irqG)
	}
}

var idleWakeups, idleNanos atomic.Uint64

// IdleStats reports how often the idle governor woke from WFI and how long
// the core spent in it since boot.
func (b *Board) IdleStats() (wakeups uint64, asleep time.Duration) {
	return idleWakeups.Load(), time.Duration(idleNanos.Load())
}
