package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// Mux shares one Ethernet device between the Ethernet shim and a Stack:
// frames of EtherType ARP, IPv4 and IPv6 go to the IP port, all others to
// the shim port (which filters its own EtherType). Both ports write
// straight to the device.
//
// The Mux is the receive half of a board's NIC driver: Run, called by the
// driver's own component (in a node, a kernel component of its own,
// restarted by its supervisor after a fault), reads the device into a
// scratch buffer and hands each frame to its port. A port is either a
// Sink given to RunTo (in a node, a kernel ring to the shim's component:
// images/internal/node/driver.go) or, without one, the port's bounded
// queue read through a MuxPort (queueLen buffers of the device's frame
// size, allocated once; ReadFrame copies the frame out and recycles the
// buffer: two copies per frame, no allocation). Either way a full port
// drops the frame and counts it, so a slow port cannot stall the other.
//
// The queues outlive both sides: Run may end (its component faulted or
// was killed) and run again without the ports noticing more than a gap,
// and a port handle may be closed and the port opened again (its shim
// restarted) without the device or the other port noticing.
type Mux struct {
	dev   eth.Device
	ports [2]*portQueue
	buf   []byte // Run's scratch buffer: one Run at a time

	running atomic.Bool
	endOnce sync.Once
	ended   chan struct{} // closed when the device ends or Close closes it

	rxFrames, rxErrors, runs atomic.Uint64
}

// Port indexes of a Mux.
const (
	PortShim = 0 // everything that is not IP
	PortIP   = 1 // ARP, IPv4, IPv6
)

// queueLen is each port's receive queue length in frames.
const queueLen = 64

// ErrWoken is what a Waker's device returns from ReadFrame when Wake
// interrupted it: no frame, nothing wrong.
var ErrWoken = errors.New("netstack: device read woken")

// Waker is a device whose blocked ReadFrame can be interrupted: Wake makes
// a ReadFrame blocked now, or the next one, return ErrWoken. Safe to call
// from any goroutine, at any time.
type Waker interface {
	Wake()
}

// portQueue is one port's receive queue; it lives as long as the Mux.
type portQueue struct {
	free chan []byte
	full chan muxFrame

	mu  sync.Mutex // guards cur
	cur *MuxPort   // the open handle, or nil

	drops atomic.Uint64
}

type muxFrame struct {
	b []byte
	n int
}

// MuxPort is an open handle on one port of a Mux; it satisfies
// eth.Device. One reader at a time.
type MuxPort struct {
	m      *Mux
	q      *portQueue
	closed chan struct{}
	once   sync.Once
}

var _ eth.Device = (*MuxPort)(nil)

// NewMux splits dev; nothing is read until Run. The Mux owns dev from here
// on: Close closes it.
func NewMux(dev eth.Device) *Mux {
	size := eth.EthLen + dev.MTU() + 4
	m := &Mux{dev: dev, ended: make(chan struct{}), buf: make([]byte, size+64)}
	for i := range m.ports {
		q := &portQueue{free: make(chan []byte, queueLen), full: make(chan muxFrame, queueLen)}
		for range queueLen {
			q.free <- make([]byte, size)
		}
		m.ports[i] = q
	}
	return m
}

// Open opens port i (PortShim or PortIP). A port has one handle at a
// time: Open fails while the last one is open. Frames queued while no
// handle was open are dropped.
func (m *Mux) Open(i int) (*MuxPort, error) {
	if i < 0 || i >= len(m.ports) {
		return nil, fmt.Errorf("netstack: mux: port %d: %w", i, flow.ErrInvalid)
	}
	q := m.ports[i]
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cur != nil {
		return nil, fmt.Errorf("netstack: mux: port %d already open: %w", i, flow.ErrInvalid)
	}
	for drained := false; !drained; {
		select {
		case f := <-q.full:
			q.free <- f.b
		default:
			drained = true
		}
	}
	p := &MuxPort{m: m, q: q, closed: make(chan struct{})}
	q.cur = p
	return p, nil
}

// Run reads the device and hands each frame to its port until ctx is done
// (it returns nil) or the device ends (an error wrapping io.EOF or
// net.ErrClosed; the ports then see io.EOF). A Run blocked in the
// device's ReadFrame sees ctx only when a frame arrives or, if the device
// is a Waker, when Wake is called: the caller calls Wake once ctx is
// done. One Run at a time; a panic in Run (a fault of its caller's
// component) leaves the Mux whole for the next Run.
func (m *Mux) Run(ctx context.Context) error { return m.RunTo(ctx, [2]Sink{}) }

// Sink takes one port's frames from RunTo instead of the port's queue (in
// a node, a kernel ring to the shim's component).
type Sink interface {
	// Deliver copies frame (RunTo's scratch buffer, valid only during the
	// call) and reports whether it was taken; false: dropped (the Mux
	// counts it). It must not block.
	Deliver(frame []byte) bool
}

// RunTo is Run delivering port i's frames to sinks[i] where it is not
// nil, to the port's queue otherwise.
func (m *Mux) RunTo(ctx context.Context, sinks [2]Sink) error {
	if !m.running.CompareAndSwap(false, true) {
		return fmt.Errorf("netstack: mux: Run already running: %w", flow.ErrInvalid)
	}
	defer m.running.Store(false)
	m.runs.Add(1)
	buf := m.buf
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := m.dev.ReadFrame(buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, ErrWoken):
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
				m.end()
				return fmt.Errorf("netstack: mux: device ended: %w", err)
			default:
				m.rxErrors.Add(1) // an oversized frame, a listening stream between peers
			}
			continue
		}
		if n < eth.EthLen {
			m.rxErrors.Add(1)
			continue
		}
		// The driver's receive path: a test-only fault hook (a no-op
		// without the build tag faultinject).
		faultinject.Check("nic/rx", buf[:n])
		m.rxFrames.Add(1)
		port := PortShim
		switch binary.BigEndian.Uint16(buf[12:14]) {
		case 0x0800, 0x0806, 0x86dd: // IPv4, ARP, IPv6
			port = PortIP
		}
		q := m.ports[port]
		if sk := sinks[port]; sk != nil {
			if !sk.Deliver(buf[:n]) {
				q.drops.Add(1)
			}
			continue
		}
		select {
		case b := <-q.free:
			copy(b, buf[:n])
			q.full <- muxFrame{b, n}
		default:
			q.drops.Add(1)
		}
	}
}

// Wake interrupts a Run blocked in the device's ReadFrame, if the device
// is a Waker; otherwise it does nothing.
func (m *Mux) Wake() {
	if w, ok := m.dev.(Waker); ok {
		w.Wake()
	}
}

func (m *Mux) end() { m.endOnce.Do(func() { close(m.ended) }) }

// Close closes the device: open ports see io.EOF, and Run ends. For the
// node's shutdown; a Mux cannot be reopened.
func (m *Mux) Close() error {
	m.end()
	err := m.dev.Close()
	m.Wake()
	return err
}

// WriteFrame writes b to the device in the caller's goroutine (for ports
// that are not MuxPorts: a node's ring ports).
func (m *Mux) WriteFrame(b []byte) error {
	select {
	case <-m.ended:
		return fmt.Errorf("netstack: mux: device ended: %w", io.EOF)
	default:
	}
	return m.dev.WriteFrame(b)
}

// BatchWriter is a device that sends several frames in one call (a
// board NIC's Transmit: one doorbell for the batch).
type BatchWriter interface {
	// WriteFrames sends frames in order and returns how many it sent; it
	// stops at the first it cannot send (the error says why). The frames
	// are the caller's again when it returns.
	WriteFrames(frames [][]byte) (int, error)
}

// WriteFrames writes frames to the device in the caller's goroutine, in
// one call if the device is a BatchWriter, and returns how many it wrote;
// it stops at the first error.
func (m *Mux) WriteFrames(frames [][]byte) (int, error) {
	select {
	case <-m.ended:
		return 0, fmt.Errorf("netstack: mux: device ended: %w", io.EOF)
	default:
	}
	if bw, ok := m.dev.(BatchWriter); ok {
		return bw.WriteFrames(frames)
	}
	for i, f := range frames {
		if err := m.dev.WriteFrame(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// MAC returns the device's address.
func (m *Mux) MAC() net.HardwareAddr { return m.dev.MAC() }

// MTU returns the device's MTU.
func (m *Mux) MTU() int { return m.dev.MTU() }

// Ended is closed once the device has ended (or Close closed it).
func (m *Mux) Ended() <-chan struct{} { return m.ended }

// MuxStats are a Mux's counters, always on.
type MuxStats struct {
	RxFrames uint64    // frames handed to a port's queue or dropped there
	RxErrors uint64    // device read errors and runt frames
	Drops    [2]uint64 // frames dropped on a full port queue, by port
	Runs     uint64    // calls of Run: 1 + restarts of the driver
}

// Stats returns the counters.
func (m *Mux) Stats() MuxStats {
	return MuxStats{
		RxFrames: m.rxFrames.Load(), RxErrors: m.rxErrors.Load(), Runs: m.runs.Load(),
		Drops: [2]uint64{m.ports[0].drops.Load(), m.ports[1].drops.Load()},
	}
}

// ReadFrame implements eth.Device.
func (p *MuxPort) ReadFrame(b []byte) (int, error) {
	q := p.q
	select {
	case f := <-q.full:
		return p.copyOut(b, f)
	case <-p.closed:
		return 0, fmt.Errorf("netstack: mux: %w", net.ErrClosed)
	case <-p.m.ended:
		select {
		case f := <-q.full: // drain what arrived before the end
			return p.copyOut(b, f)
		default:
		}
		return 0, fmt.Errorf("netstack: mux: device ended: %w", io.EOF)
	}
}

func (p *MuxPort) copyOut(b []byte, f muxFrame) (int, error) {
	n := copy(b, f.b[:f.n])
	p.q.free <- f.b
	if n < f.n {
		return 0, fmt.Errorf("netstack: mux: %d-byte frame for a %d-byte buffer: %w", f.n, len(b), flow.ErrTruncated)
	}
	return n, nil
}

// WriteFrame implements eth.Device: it writes to the device in the
// caller's goroutine.
func (p *MuxPort) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return fmt.Errorf("netstack: mux: %w", net.ErrClosed)
	default:
	}
	return p.m.WriteFrame(b)
}

// MAC implements eth.Device.
func (p *MuxPort) MAC() net.HardwareAddr { return p.m.dev.MAC() }

// MTU implements eth.Device.
func (p *MuxPort) MTU() int { return p.m.dev.MTU() }

// Drops returns how many frames for this port were dropped on a full queue.
func (p *MuxPort) Drops() uint64 { return p.q.drops.Load() }

// Close implements eth.Device: it closes this handle (a blocked ReadFrame
// returns net.ErrClosed) and frees the port for the next Open; the device
// stays open.
func (p *MuxPort) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.q.mu.Lock()
		if p.q.cur == p {
			p.q.cur = nil
		}
		p.q.mu.Unlock()
	})
	return nil
}
