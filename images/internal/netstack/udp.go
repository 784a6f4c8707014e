//go:build !tamago || netstack

package netstack

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ouronet/ouro/flow"
	shimudp "github.com/ouronet/ouro/layer/shim/udp"
)

// UDPConn is a UDP socket of a Stack, shaped as the UDP shim's Device. It
// talks to gVisor's endpoint directly (not through gonet), so addresses
// stay netip values.
type UDPConn struct {
	ep    tcpip.Endpoint
	wq    waiter.Queue
	v6    bool
	local *net.UDPAddr

	rEntry, wEntry waiter.Entry
	readable       chan struct{}
	writable       chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
}

var _ shimudp.Device = (*UDPConn)(nil)

// ListenUDP binds a UDP socket to addr (an unspecified address binds every
// address of its family; an IPv6 socket also carries IPv4 as v4-mapped).
func (s *Stack) ListenUDP(addr netip.AddrPort) (*UDPConn, error) {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return nil, errStopped
	}
	a := addr.Addr().Unmap()
	c := &UDPConn{v6: a.Is6(), closed: make(chan struct{})}
	proto := ipv4.ProtocolNumber
	if c.v6 {
		proto = ipv6.ProtocolNumber
	}
	ep, terr := s.s.NewEndpoint(udp.ProtocolNumber, proto, &c.wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: udp %v: %s", addr, terr)
	}
	var bind tcpip.FullAddress
	bind.Port = addr.Port()
	if !a.IsUnspecified() {
		bind.Addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	if terr := ep.Bind(bind); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack: udp bind %v: %s", addr, terr)
	}
	c.ep = ep
	la, _ := ep.GetLocalAddress()
	c.local = &net.UDPAddr{IP: net.IP(a.AsSlice()), Port: int(la.Port)}
	if la.Addr.Len() > 0 {
		c.local.IP = net.IP(la.Addr.AsSlice())
	}
	c.rEntry, c.readable = waiter.NewChannelEntry(waiter.ReadableEvents)
	c.wEntry, c.writable = waiter.NewChannelEntry(waiter.WritableEvents)
	c.wq.EventRegister(&c.rEntry)
	c.wq.EventRegister(&c.wEntry)
	return c, nil
}

// ReadFromUDPAddrPort implements the shim's Device: it blocks until a
// datagram arrives and copies it into b (truncating). One reader at a time.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		w := tcpip.SliceWriter(b)
		res, err := c.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if err == nil {
			return res.Count, addrPort(res.RemoteAddr), nil
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return 0, netip.AddrPort{}, c.opErr("read", err)
		}
		select {
		case <-c.readable:
		case <-c.closed:
			return 0, netip.AddrPort{}, fmt.Errorf("netstack: udp read: %w", net.ErrClosed)
		}
	}
}

// WriteToUDPAddrPort implements the shim's Device: it sends b (copied) as
// one datagram to addr. An unresolved next hop queues the datagram inside
// the stack until ARP or NDP answers. Safe for concurrent use.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	switch {
	case c.v6 && ip.Is4():
		ip = netip.AddrFrom16(ip.As16())
	case !c.v6 && !ip.Is4():
		return 0, fmt.Errorf("netstack: udp write to %v from an IPv4 socket: %w", addr, flow.ErrInvalid)
	}
	to := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(ip.AsSlice()), Port: addr.Port()}
	var r bytes.Reader
	for {
		r.Reset(b)
		n, err := c.ep.Write(&r, tcpip.WriteOptions{To: &to})
		if err == nil {
			return int(n), nil
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return 0, c.opErr("write", err)
		}
		// Several writers share one notification: wake up now and then
		// in case another writer took it.
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-c.writable:
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return 0, fmt.Errorf("netstack: udp write: %w", net.ErrClosed)
		}
		t.Stop()
	}
}

// LocalAddr implements the shim's Device.
func (c *UDPConn) LocalAddr() net.Addr { return c.local }

// Close implements the shim's Device: it closes the socket and unblocks a
// blocked read. Idempotent.
func (c *UDPConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.wq.EventUnregister(&c.rEntry)
		c.wq.EventUnregister(&c.wEntry)
		c.ep.Close()
	})
	return nil
}

func (c *UDPConn) opErr(op string, err tcpip.Error) error {
	select {
	case <-c.closed:
		return fmt.Errorf("netstack: udp %s: %w", op, net.ErrClosed)
	default:
	}
	if _, ok := err.(*tcpip.ErrClosedForReceive); ok {
		return fmt.Errorf("netstack: udp %s: %w", op, net.ErrClosed)
	}
	return fmt.Errorf("netstack: udp %s: %s", op, err)
}

func addrPort(fa tcpip.FullAddress) netip.AddrPort {
	a, _ := netip.AddrFromSlice(fa.Addr.AsSlice())
	return netip.AddrPortFrom(a.Unmap(), fa.Port)
}
