// Package ethtest provides a channel-backed fake Ethernet segment for
// testing the eth shim without NICs; it is for tests only.
package ethtest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// Hub is a fake Ethernet hub: every frame written by one port is delivered
// to every other port (address filtering is the receivers' business, as on
// a shared segment). Safe for concurrent use.
type Hub struct {
	mu    sync.Mutex
	ports []*Port
	next  byte
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{} }

// Port is one NIC on a Hub; it implements eth.Device.
type Port struct {
	hub    *Hub
	mac    net.HardwareAddr
	mtu    int
	rx     chan []byte
	once   sync.Once
	closed chan struct{}
	// Dropped counts frames this port's queue had no room for.
	Dropped atomic.Uint64
}

// QueueLen is how many frames a port holds before dropping.
const QueueLen = 512

// NewPort attaches a port with the next address 02:00:00:00:00:NN and an
// MTU of 1500.
func (h *Hub) NewPort() *Port {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	p := &Port{
		hub:    h,
		mac:    net.HardwareAddr{2, 0, 0, 0, 0, h.next},
		mtu:    1500,
		rx:     make(chan []byte, QueueLen),
		closed: make(chan struct{}),
	}
	h.ports = append(h.ports, p)
	return p
}

// NewPair returns two ports on a new hub.
func NewPair() (a, b *Port) {
	h := NewHub()
	return h.NewPort(), h.NewPort()
}

var errClosed = errors.New("ethtest: port closed")

// ReadFrame blocks until a frame arrives or the port closes (then an error
// wrapping net.ErrClosed). A frame longer than b is truncated.
func (p *Port) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-p.rx:
		return copy(b, f), nil
	case <-p.closed:
		return 0, errors.Join(errClosed, net.ErrClosed)
	}
}

// WriteFrame copies b to every other open port, never blocking.
func (p *Port) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return errors.Join(errClosed, net.ErrClosed)
	default:
	}
	p.hub.mu.Lock()
	ports := p.hub.ports
	p.hub.mu.Unlock()
	for _, q := range ports {
		if q == p {
			continue
		}
		select {
		case q.rx <- append([]byte(nil), b...):
		default:
			q.Dropped.Add(1)
		}
	}
	return nil
}

// MAC returns the port's address.
func (p *Port) MAC() net.HardwareAddr { return p.mac }

// MTU returns 1500.
func (p *Port) MTU() int { return p.mtu }

// Close detaches the port and unblocks ReadFrame. Idempotent.
func (p *Port) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.hub.mu.Lock()
		defer p.hub.mu.Unlock()
		for i, q := range p.hub.ports {
			if q == p {
				p.hub.ports = append(p.hub.ports[:i:i], p.hub.ports[i+1:]...)
				break
			}
		}
	})
	return nil
}
