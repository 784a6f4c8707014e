package udp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// PacketConn adapts a net.PacketConn (gVisor netstack's gonet.UDPConn on
// bare metal, or any other) to Device. Writes to the same peer as the
// previous write reuse its net.Addr, so a flow's transmit path does not
// allocate for it; the wrapped conn's own allocations are its business.
type PacketConn struct {
	c net.PacketConn

	mu   sync.Mutex // guards the cached destination
	last netip.AddrPort
	addr *net.UDPAddr
}

var _ Device = (*PacketConn)(nil)

// NewPacketConn wraps c.
func NewPacketConn(c net.PacketConn) *PacketConn { return &PacketConn{c: c} }

// ReadFromUDPAddrPort implements Device.
func (p *PacketConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, a, err := p.c.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	switch a := a.(type) {
	case *net.UDPAddr:
		return n, a.AddrPort(), nil
	case interface{ AddrPort() netip.AddrPort }:
		return n, a.AddrPort(), nil
	}
	ap, perr := netip.ParseAddrPort(a.String())
	if perr != nil {
		return n, netip.AddrPort{}, fmt.Errorf("udp: source address %v: %w", a, perr)
	}
	return n, ap, nil
}

// WriteToUDPAddrPort implements Device.
func (p *PacketConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	p.mu.Lock()
	if p.addr == nil || addr != p.last {
		p.last, p.addr = addr, net.UDPAddrFromAddrPort(addr)
	}
	a := p.addr
	p.mu.Unlock()
	return p.c.WriteTo(b, a)
}

// LocalAddr implements Device.
func (p *PacketConn) LocalAddr() net.Addr { return p.c.LocalAddr() }

// Close implements Device.
func (p *PacketConn) Close() error { return p.c.Close() }
