//go:build tamago && arm

package raspberrypi

// The UART data path, written once here for both UARTs.
//
// Receive: the UART's interrupt handler (in the interrupt service
// goroutine) drains the hardware FIFO into a 4 KiB ring and signals the
// reader. When the ring is full it masks the receive interrupt and leaves
// bytes in the FIFO: QEMU then stops taking bytes from its chardev (back
// pressure, nothing lost); real hardware overruns and counts it. Read
// unmasks the interrupt once it has made room.
//
// Transmit: Write fills the FIFO; when the FIFO is full it enables the
// transmit interrupt and waits for the handler to signal room. Under QEMU
// the FIFO never fills (QEMU sends each byte to the chardev at once), so
// Write never waits.
//
// Readers, writers and the handler share the ring under mu; writers are
// serialised by wmu.

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// uartHW is the register interface of one UART.
type uartHW interface {
	// init configures 115200 8N1 with FIFOs, interrupts masked.
	init()
	// putcPoll waits for room and writes c (runtime output, pre-init).
	putcPoll(c byte)
	rxAvail() bool
	getc() byte
	txFull() bool
	putc(c byte)
	// setRxIRQ and setTxIRQ mask or unmask the interrupt sources;
	// clearTx forgets a transmit event already latched (PL011).
	setRxIRQ(on bool)
	setTxIRQ(on bool)
	txIRQ() bool
	clearTx()
	// overrun reports (and clears) a hardware receive overrun.
	overrun() bool
}

// UARTStats counts a UART's traffic since Init.
type UARTStats struct {
	RxBytes, TxBytes uint64
	// RxOverruns counts hardware FIFO overruns (bytes lost before the
	// handler ran); RxStalls counts times the ring filled up and receive
	// was paused until Read made room.
	RxOverruns, RxStalls uint64
	Interrupts           uint64
}

// UART is a serial port as an interrupt-driven byte stream
// (io.ReadWriteCloser, with SetReadDeadline). One reader and any number of
// writers may use it concurrently.
type UART struct {
	name string
	hw   uartHW
	irq  int

	mu       sync.Mutex // guards the fields below
	ring     [4096]byte
	head, n  int
	rxMasked bool
	closed   bool
	deadline time.Time

	wmu     sync.Mutex // serialises writers
	rxReady chan struct{}
	txReady chan struct{}
	done    chan struct{}

	rxBytes, txBytes, overruns, stalls, irqs atomic.Uint64
}

// ErrDeadline is returned by Read when the read deadline passed.
var ErrDeadline = os.ErrDeadlineExceeded

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("raspberrypi: UART closed")

func newUART(name string, hw uartHW, irq int) *UART {
	return &UART{
		name:    name,
		hw:      hw,
		irq:     irq,
		rxReady: make(chan struct{}, 1),
		txReady: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// start enables receive interrupts; the hardware is already initialised.
func (u *UART) start() {
	registerInterrupt(u.irq, u.handle)
	u.mu.Lock()
	u.hw.setRxIRQ(true)
	u.mu.Unlock()
}

// Name is the UART's name ("PL011", "mini UART").
func (u *UART) Name() string { return u.name }

// handle is the interrupt handler.
func (u *UART) handle() {
	u.irqs.Add(1)
	u.mu.Lock()
	got := 0
	for u.n < len(u.ring) && u.hw.rxAvail() {
		u.ring[(u.head+u.n)%len(u.ring)] = u.hw.getc()
		u.n++
		got++
	}
	if u.n == len(u.ring) && u.hw.rxAvail() && !u.rxMasked {
		u.hw.setRxIRQ(false)
		u.rxMasked = true
		u.stalls.Add(1)
	}
	if u.hw.overrun() {
		u.overruns.Add(1)
	}
	if u.hw.txIRQ() {
		u.hw.setTxIRQ(false)
		signal(u.txReady)
	}
	u.mu.Unlock()
	if got > 0 {
		u.rxBytes.Add(uint64(got))
		signal(u.rxReady)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read blocks until at least one byte has arrived, the read deadline
// passes (ErrDeadline) or the UART is closed (ErrClosed), and copies what
// is buffered into p (the caller's; not retained). One reader at a time.
func (u *UART) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		u.mu.Lock()
		if u.n > 0 {
			k := 0
			for k < len(p) && u.n > 0 {
				c := copy(p[k:], u.ring[u.head:min(u.head+u.n, len(u.ring))])
				k += c
				u.head = (u.head + c) % len(u.ring)
				u.n -= c
			}
			if u.rxMasked {
				u.rxMasked = false
				u.hw.setRxIRQ(true)
			}
			u.mu.Unlock()
			return k, nil
		}
		closed, dl := u.closed, u.deadline
		u.mu.Unlock()
		if closed {
			return 0, ErrClosed
		}
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, ErrDeadline
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-u.rxReady:
		case <-u.done:
		case <-expired:
		}
	}
}

// SetReadDeadline makes a blocked and any later Read return ErrDeadline
// after t; the zero time means no deadline.
func (u *UART) SetReadDeadline(t time.Time) error {
	u.mu.Lock()
	u.deadline = t
	u.mu.Unlock()
	signal(u.rxReady)
	return nil
}

// txWait bounds one wait for the transmit interrupt, so that a lost
// interrupt costs a pause rather than a hang.
const txWait = 50 * time.Millisecond

// Write transmits all of p (the caller's; not retained), waiting while the
// FIFO is full. Safe for concurrent use; concurrent writes do not
// interleave.
func (u *UART) Write(p []byte) (int, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	n := 0
	for n < len(p) {
		select {
		case <-u.done:
			return n, ErrClosed
		default:
		}
		for n < len(p) && !u.hw.txFull() {
			u.hw.putc(p[n])
			n++
		}
		if n == len(p) {
			break
		}
		u.mu.Lock()
		u.hw.clearTx()
		u.hw.setTxIRQ(true)
		if !u.hw.txFull() {
			u.hw.setTxIRQ(false)
			u.mu.Unlock()
			continue
		}
		u.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(txWait)
		} else {
			timer.Reset(txWait)
		}
		select {
		case <-u.txReady:
		case <-timer.C:
		case <-u.done:
		}
	}
	u.txBytes.Add(uint64(n))
	return n, nil
}

// Close unblocks Read and Write and makes them fail from now on; the
// hardware keeps running (the console, for one, must).
func (u *UART) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		close(u.done)
	}
	return nil
}

// Stats returns the UART's counters.
func (u *UART) Stats() UARTStats {
	return UARTStats{
		RxBytes:    u.rxBytes.Load(),
		TxBytes:    u.txBytes.Load(),
		RxOverruns: u.overruns.Load(),
		RxStalls:   u.stalls.Load(),
		Interrupts: u.irqs.Load(),
	}
}
