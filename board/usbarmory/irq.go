//go:build tamago && arm

package usbarmory

import (
	"math"
	"runtime/goos"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/arm"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/ouronet/ouro/board/internal/armirq"
)

// Interrupt service: the vector and the service goroutine are
// board/internal/armirq's (why not TamaGo's arm.ServiceInterrupts: there).
// serveIRQs, in that goroutine with IRQs masked, takes every interrupt
// pending at the GIC and calls the handler registered for its ID. Handlers
// must quiesce their source (clear the device's event bits) and hand work
// to other goroutines through channels, never block.
var (
	irqMu       sync.Mutex
	irqHandlers = map[int]func(){}
	irqStarted  bool
)

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

// startInterrupts initialises the GIC, enables the timer interrupt, installs
// the idle governor and starts the interrupt service (armirq). It is called
// once by Board.Init.
func startInterrupts() {
	irqMu.Lock()
	defer irqMu.Unlock()

	if irqStarted {
		return
	}
	irqStarted = true

	imx6ul.GIC.Init(true, false)
	imx6ul.GIC.EnableInterrupt(arm.TIMER_IRQ, true)

	goos.Idle = idle

	armirq.Start(imx6ul.ARM, serveIRQs)
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

	if !armirq.Pending() {
		t := imx6ul.ARM.GetTime()
		imx6ul.ARM.WaitInterrupt()

		idleWakeups.Add(1)
		idleNanos.Add(uint64(imx6ul.ARM.GetTime() - t))
	}

	armirq.Idle() // wakes the service goroutine if an interrupt is pending
}

var idleWakeups, idleNanos atomic.Uint64

// IdleStats reports how often the idle governor woke from WFI and how long
// the core spent in it since boot.
func (b *Board) IdleStats() (wakeups uint64, asleep time.Duration) {
	return idleWakeups.Load(), time.Duration(idleNanos.Load())
}
