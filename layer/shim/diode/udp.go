package diode

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/ouronet/ouro/layer/shim/internal/sockbuf"
)

// UDPSender is a Sender over a connected UDP socket that is only written:
// hosted, the sending end of a one-way link (a data diode passes only the
// packets this side sends; nothing is read back).
type UDPSender struct{ c *net.UDPConn }

var _ Sender = (*UDPSender)(nil)

// DialUDP returns a Sender to addr, from local (the zero AddrPort: any).
func DialUDP(local, addr netip.AddrPort) (*UDPSender, error) {
	var la *net.UDPAddr
	if local.IsValid() {
		la = net.UDPAddrFromAddrPort(local)
	}
	c, err := net.DialUDP("udp", la, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("diode: dial %s: %w", addr, err)
	}
	c.SetWriteBuffer(4 << 20) // best effort: bursts of a block at a time
	return &UDPSender{c}, nil
}

// Send implements Sender.
func (s *UDPSender) Send(b []byte) error {
	_, err := s.c.Write(b)
	return err
}

// Close implements Sender.
func (s *UDPSender) Close() error { return s.c.Close() }

// UDPReceiver is a Receiver over a UDP socket that is only read.
type UDPReceiver struct{ c *net.UDPConn }

var _ Receiver = (*UDPReceiver)(nil)

// ListenUDP returns a Receiver bound to addr. Anyone may send to it:
// the block signatures decide what is accepted.
func ListenUDP(addr netip.AddrPort) (*UDPReceiver, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("diode: listen %s: %w", addr, err)
	}
	// best effort, past net.core.rmem_max where the process may: nothing
	// can slow the sender down, and a burst the socket cannot hold is
	// lost beyond what the FEC repairs
	if rc, err := c.SyscallConn(); err != nil || sockbuf.SetRecv(rc, 8<<20) != nil {
		c.SetReadBuffer(8 << 20)
	}
	return &UDPReceiver{c}, nil
}

// Addr returns the bound address.
func (r *UDPReceiver) Addr() netip.AddrPort { return r.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// Recv implements Receiver.
func (r *UDPReceiver) Recv(b []byte) (int, error) {
	n, _, err := r.c.ReadFromUDPAddrPort(b)
	return n, err
}

// Close implements Receiver.
func (r *UDPReceiver) Close() error { return r.c.Close() }
