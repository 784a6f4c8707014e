//go:build !tamago || ipstack_tcp

package ipstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// HasTCP reports whether this build of the stack has TCP (Listen, Dial):
// hosted always; a board image (GOOS tamago) only when built with the
// ipstack_tcp tag, which make image adds when the image's configuration
// serves a status page (router -image-tags; docs/boards.md). gVisor's TCP
// is about 0.4 MB of a board image.
const HasTCP = true

var transports = []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol}

// tuneTCP sets the stack's TCP to recover losses by SACK alone (RFC 6675),
// without gVisor's RACK-TLP loss detection, its default. Across a bridge
// whose queue drops part of a burst (the bridge is a router: it drops when
// its queue is full), RACK stalled in a cycle of retransmission timeouts at
// the minimum RTO: in 365 runs of TestHTTPAcrossFlows under the race
// detector 2 stalled for the test's 30 s (144 timeouts, one segment per
// timeout) and 4 more took 3–15 s; with SACK recovery alone 400 runs took
// at most 2.2 s.
func tuneTCP(s *stack.Stack) error {
	r := tcpip.TCPRecovery(0)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &r); err != nil {
		return fmt.Errorf("ipstack: TCP loss recovery: %s", err)
	}
	return nil
}

// Listen listens for TCP connections to port on the stack's address.
func (s *Stack) Listen(port uint16) (net.Listener, error) {
	l, err := gonet.ListenTCP(s.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(s.addr.Addr().AsSlice()), Port: port}, s.proto())
	if err != nil {
		return nil, fmt.Errorf("ipstack: listen on port %d: %w", port, err)
	}
	return l, nil
}

// Dial opens a TCP connection from the stack to addr.
func (s *Stack) Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	a := addr.Addr().Unmap()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	c, err := gonet.DialContextTCP(ctx, s.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: addr.Port()}, proto)
	if err != nil {
		return nil, fmt.Errorf("ipstack: dial %v: %w", addr, err)
	}
	return c, nil
}
