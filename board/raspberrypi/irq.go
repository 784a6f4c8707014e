//go:build tamago && arm

package raspberrypi

import (
	"runtime/goos"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/board/internal/armirq"
)

// Interrupt service: the vector and the service goroutine are
// board/internal/armirq's (why not TamaGo's arm.ServiceInterrupts:
// there). serviceIRQ runs in that goroutine with IRQs masked; it asks the
// model which source fired (timer, GPU controller) and calls the handlers
// of the pending GPU interrupts. Handlers must quiesce their source and
// never block for long.

// BCM2835 ARM Peripherals, 7.5: the GPU ("ARM") interrupt controller.
// GPU interrupts 0-31 are in the "1" registers, 32-63 in the "2" ones.
const (
	icBase     = 0xb200
	icPending1 = icBase + 0x04
	icPending2 = icBase + 0x08
	icEnable1  = icBase + 0x10
	icDisable1 = icBase + 0x1c

	// GPU interrupt numbers (BCM2835 ARM Peripherals, 7.5, table "ARM
	// peripherals interrupts")
	irqAUX   = 29 // mini UART (and SPI1/2)
	irqUART0 = 57 // PL011
)

var (
	irqMu       sync.Mutex
	irqHandlers = map[int]func(){}
	irqStarted  bool
)

func enableGPUInterrupt(id int) {
	write32(periph(icEnable1)+uint32(id/32)*4, 1<<(id%32))
}

// registerInterrupt routes GPU interrupt id to fn and enables it.
func registerInterrupt(id int, fn func()) {
	irqMu.Lock()
	irqHandlers[id] = fn
	irqMu.Unlock()
	enableGPUInterrupt(id)
}

func serviceIRQ() {
	_, gpu := modelPending()
	if !gpu {
		return
	}
	p := [2]uint32{read32(periph(icPending1)), read32(periph(icPending2))}
	if p[0]|p[1] == 0 {
		return
	}
	irqMu.Lock()
	defer irqMu.Unlock()
	for id, fn := range irqHandlers {
		if p[id/32]&(1<<(id%32)) != 0 {
			fn()
		}
	}
}

// startInterrupts routes the timer and GPU interrupts, installs the idle
// governor and starts the service goroutine; once, from Board.Init.
func startInterrupts() {
	irqMu.Lock()
	defer irqMu.Unlock()
	if irqStarted {
		return
	}
	irqStarted = true
	modelInitInterrupts()
	goos.Idle = idle
	armirq.Start(ARM, serviceIRQ)
}

// idle is the runtime's idle hook (runtime/goos.Idle): it runs when no
// goroutine is runnable, with pollUntil the runtime time of the next
// timer (0 or MaxInt64: none). It arms the board timer for that deadline
// and executes WFI; the timer or any device interrupt wakes the core.
func idle(pollUntil int64) {
	if !armirq.Pending() {
		t := nanotime()
		modelIdle(pollUntil)
		idleWakeups.Add(1)
		idleNanos.Add(uint64(nanotime() - t))
	}
	armirq.Idle() // wakes the service goroutine if an interrupt is pending
}

var idleWakeups, idleNanos atomic.Uint64

// IdleStats reports how often the idle governor woke from WFI and how long
// the core spent in it since boot.
func (b *Board) IdleStats() (wakeups uint64, asleep time.Duration) {
	return idleWakeups.Load(), time.Duration(idleNanos.Load())
}
