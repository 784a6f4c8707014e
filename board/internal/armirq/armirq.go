//go:build tamago && arm

// Package armirq is the IRQ exception path of the ARM boards (USB armory,
// Raspberry Pi): an exception vector that touches nothing of the Go
// runtime and a service goroutine woken from the idle hook.
//
// TamaGo's own path (arm.ServiceInterrupts) wakes its goroutine from the
// IRQ exception with runtime.WakeG, which in tamago-go1.26.0 looks for the
// goroutine's timer from the timer heap's last entry down to address 0:
// when the timer is out of the heap array for a moment (another timer's
// deleteMin sifts it down from the root in a local variable, and a timer
// that sleeps for ever is often the last entry) it writes beside the
// first word that equals the timer's address, anywhere below
// (docs/boards.md, "Interrupts and idle").
//
// Here the vector only records that an interrupt is pending and returns
// with IRQs masked. The service goroutine runs the board's serve function
// (take what is pending from the interrupt controller, run handlers) and
// unmasks IRQs again; it is woken at once from the idle hook (Idle: no
// timer code runs there and, nothing being runnable, the goroutine is
// parked in its sleep with its timer in the heap, so runtime.Wake finds
// it) and otherwise looks every Poll. Handlers run in that goroutine with
// IRQs masked: they must quiesce their source and hand work to other
// goroutines through channels, never block.
package armirq

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usbarmory/tamago/arm"
)

// Poll is the longest the service goroutine sleeps: while the core is
// busy (the idle hook does not run) a pending interrupt waits at most
// this long.
const Poll = 5 * time.Millisecond

// The one IRQ path of the core (board-level state: one CPU, one vector).
var (
	pending uint32      // 1: the vector took an interrupt (written by vector)
	g       uint        // the service goroutine (runtime.GetG), set before IRQs are unmasked
	asleep  atomic.Bool // the service goroutine sleeps (or is about to)
)

// defined in vector_arm.s
func vector()

// Start installs the vector on cpu (whose interrupt controller the
// caller has set up) and starts the service goroutine, which calls serve
// for every interrupt the vector took and then unmasks IRQs. It returns
// once the goroutine runs; call it once.
func Start(cpu *arm.CPU, serve func()) {
	t := arm.SystemVectorTable()
	t.IRQ = vector
	cpu.SetVectorTable(t)

	started := make(chan struct{})
	go service(cpu, serve, started)
	<-started
}

func service(cpu *arm.CPU, serve func(), started chan<- struct{}) {
	g, _ = runtime.GetG()
	close(started)

	cpu.EnableInterrupts(false)

	for {
		if atomic.SwapUint32(&pending, 0) != 0 {
			serve()
			cpu.EnableInterrupts(false) // the vector masked them
			continue
		}

		asleep.Store(true)
		if atomic.LoadUint32(&pending) == 0 {
			time.Sleep(Poll)
		}
		asleep.Store(false)
	}
}

// Pending reports whether the vector took an interrupt not yet served: an
// idle hook skips its WFI then.
func Pending() bool { return atomic.LoadUint32(&pending) != 0 }

// Idle is for the end of the board's idle hook (runtime/goos.Idle), after
// its WFI: if an interrupt is pending it wakes the service goroutine now.
func Idle() {
	if atomic.LoadUint32(&pending) != 0 && asleep.Load() {
		runtime.Wake(g)
	}
}
