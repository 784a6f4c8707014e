package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// Mux shares one Ethernet device between the Ethernet shim and a Stack:
// frames of EtherType ARP, IPv4 and IPv6 go to the IP port, all others to
// the shim port (which filters its own EtherType). Both ports write
// straight to the device.
//
// One goroutine reads the device into a scratch buffer and copies each
// frame into a free buffer of its port's bounded queue (queueLen buffers
// of the device's frame size, allocated once); a full queue drops the
// frame and counts it, so a slow port cannot stall the other. ReadFrame
// copies the frame out and recycles the buffer: two copies per frame, no
// allocation.
type Mux struct {
	dev   eth.Device
	run   layer.Runner
	ports [2]*MuxPort

	startOnce sync.Once
	done      chan struct{}
	open      atomic.Int32 // ports not yet closed
}

// Port indexes of a Mux.
const (
	PortShim = 0 // everything that is not IP
	PortIP   = 1 // ARP, IPv4, IPv6
)

// queueLen is each port's receive queue length in frames.
const queueLen = 64

// MuxPort is one side of a Mux; it satisfies eth.Device.
type MuxPort struct {
	m      *Mux
	free   chan []byte
	full   chan muxFrame
	closed chan struct{}
	once   sync.Once

	drops atomic.Uint64
}

type muxFrame struct {
	b []byte
	n int
}

var _ eth.Device = (*MuxPort)(nil)

// NewMux splits dev. The reader starts with the first ReadFrame on either
// port, through r (in a node, the kernel PD of the component that opened
// the device first: a panic in the reader is a fault of that component,
// and both ports then see the device end); dev is closed when both ports
// are.
func NewMux(dev eth.Device, r layer.Runner) (*Mux, error) {
	if r == nil {
		return nil, layer.NeedRunner("netstack: mux")
	}
	m := &Mux{dev: dev, run: r, done: make(chan struct{})}
	size := eth.EthLen + dev.MTU() + 4
	for i := range m.ports {
		p := &MuxPort{m: m, free: make(chan []byte, queueLen), full: make(chan muxFrame, queueLen), closed: make(chan struct{})}
		for range queueLen {
			p.free <- make([]byte, size)
		}
		m.ports[i] = p
	}
	m.open.Store(int32(len(m.ports)))
	return m, nil
}

// Port returns port i (PortShim or PortIP).
func (m *Mux) Port(i int) *MuxPort { return m.ports[i] }

func (m *Mux) start() {
	m.startOnce.Do(func() { m.run.Go(m.read) })
}

func (m *Mux) read() {
	defer close(m.done)
	buf := make([]byte, eth.EthLen+m.dev.MTU()+4+64)
	for {
		n, err := m.dev.ReadFrame(buf)
		if err != nil {
			if m.open.Load() == 0 || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return // both ports closed, or the device ended: ports see io.EOF
			}
			continue // an oversized frame, or a listening stream between peers
		}
		if n < eth.EthLen {
			continue
		}
		p := m.ports[PortShim]
		switch binary.BigEndian.Uint16(buf[12:14]) {
		case 0x0800, 0x0806, 0x86dd: // IPv4, ARP, IPv6
			p = m.ports[PortIP]
		}
		select {
		case b := <-p.free:
			copy(b, buf[:n])
			p.full <- muxFrame{b, n}
		default:
			p.drops.Add(1)
		}
	}
}

// ReadFrame implements eth.Device.
func (p *MuxPort) ReadFrame(b []byte) (int, error) {
	p.m.start()
	select {
	case f := <-p.full:
		n := copy(b, f.b[:f.n])
		p.free <- f.b
		if n < f.n {
			return 0, fmt.Errorf("netstack: mux: %d-byte frame for a %d-byte buffer: %w", f.n, len(b), flow.ErrTruncated)
		}
		return n, nil
	case <-p.closed:
		return 0, fmt.Errorf("netstack: mux: %w", net.ErrClosed)
	case <-p.m.done:
		select {
		case f := <-p.full: // drain what arrived before the end
			n := copy(b, f.b[:f.n])
			p.free <- f.b
			return n, nil
		default:
		}
		return 0, fmt.Errorf("netstack: mux: device ended: %w", io.EOF)
	}
}

// WriteFrame implements eth.Device.
func (p *MuxPort) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return fmt.Errorf("netstack: mux: %w", net.ErrClosed)
	default:
	}
	return p.m.dev.WriteFrame(b)
}

// MAC implements eth.Device.
func (p *MuxPort) MAC() net.HardwareAddr { return p.m.dev.MAC() }

// MTU implements eth.Device.
func (p *MuxPort) MTU() int { return p.m.dev.MTU() }

// Drops returns how many frames for this port were dropped on a full queue.
func (p *MuxPort) Drops() uint64 { return p.drops.Load() }

// Close implements eth.Device; closing the second port closes the device.
func (p *MuxPort) Close() error {
	p.once.Do(func() {
		close(p.closed)
		if p.m.open.Add(-1) == 0 {
			p.m.dev.Close()
		}
	})
	return nil
}
