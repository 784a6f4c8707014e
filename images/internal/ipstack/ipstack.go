// Package ipstack is a node's own TCP/IP stack whose only network
// interface is an IP bridge over ouro flows (flow/ipnet): gVisor's
// netstack (IPv4, IPv6, TCP, UDP) on a channel link endpoint. What the
// stack sends is read by the bridge as whole IP packets and carried to
// the bridge serving the destination's prefix; what the bridge receives
// is injected into the stack. The node's TCP/IP services on it (its
// status page) are reachable only across the Ouroboros network, hosted
// and on bare metal alike (docs/ipnet.md).
//
// One exception to the rule that a component's goroutines run under the
// kernel: gVisor's TCP starts its own processor goroutines (one per
// GOMAXPROCS) when the stack is made; a panic in them is not a fault the
// component's supervisor sees.
package ipstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ouronet/ouro/flow"
)

// nicID is the stack's only NIC.
const nicID tcpip.NICID = 1

// queueLen is how many packets the stack may have sent that the bridge
// has not read yet; more are dropped (TCP sends them again).
const queueLen = 512

// Stack is a TCP/IP stack with one address, whose link is read and
// written by an IP bridge (it is the bridge's ipnet.Device).
type Stack struct {
	addr netip.Prefix
	s    *stack.Stack
	ep   *channel.Endpoint
	ctx  context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	closed bool
}

// New makes a stack with address addr (its prefix is on link: every
// address in it is reached through the bridge) and the link's MTU.
func New(addr netip.Prefix, mtu int) (*Stack, error) {
	if !addr.IsValid() || addr.Addr().Zone() != "" || addr.Addr().IsUnspecified() {
		return nil, fmt.Errorf("ipstack: address %v: %w", addr, flow.ErrInvalid)
	}
	if mtu < 576 || mtu > flow.MaxSDU {
		return nil, fmt.Errorf("ipstack: mtu %d: want 576 to %d: %w", mtu, flow.MaxSDU, flow.ErrInvalid)
	}
	a := addr.Addr().Unmap()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: transports, // ipstack_tcp.go, ipstack_notcp.go
	})
	if err := tuneTCP(s); err != nil {
		s.Destroy()
		return nil, err
	}
	ep := channel.New(queueLen, uint32(mtu), "")
	if err := s.CreateNIC(nicID, ep); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("ipstack: create NIC: %s", err)
	}
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: addr.Bits()}
	if err := s.AddProtocolAddress(nicID, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: awp}, stack.AddressProperties{}); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("ipstack: address %v: %s", addr, err)
	}
	// Every destination goes out through the bridge: its routes say
	// which flow carries it.
	any4, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
	any6, _ := tcpip.NewSubnet(tcpip.AddrFrom16([16]byte{}), tcpip.MaskFromBytes(make([]byte, 16)))
	s.SetRouteTable([]tcpip.Route{{Destination: any4, NIC: nicID}, {Destination: any6, NIC: nicID}})
	ctx, stop := context.WithCancel(context.Background())
	return &Stack{addr: netip.PrefixFrom(a, addr.Bits()), s: s, ep: ep, ctx: ctx, stop: stop}, nil
}

// Addr is the stack's address.
func (s *Stack) Addr() netip.Addr { return s.addr.Addr() }

// Read implements ipnet.Device: the next packet the stack sends, whole.
// It blocks until there is one or the stack is closed (io.EOF then).
func (s *Stack) Read(p []byte) (int, error) {
	pkt := s.ep.ReadContext(s.ctx)
	if pkt == nil {
		return 0, net.ErrClosed
	}
	defer pkt.DecRef()
	n := 0
	for _, v := range pkt.AsSlices() {
		if n+len(v) > len(p) {
			return 0, fmt.Errorf("ipstack: a packet of %d bytes, buffer %d: %w", pkt.Size(), len(p), flow.ErrTooBig)
		}
		n += copy(p[n:], v)
	}
	return n, nil
}

// Write implements ipnet.Device: p, one IPv4 or IPv6 packet, is injected
// into the stack. A packet that is neither is dropped with an error.
func (s *Stack) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, fmt.Errorf("ipstack: empty packet: %w", flow.ErrInvalid)
	}
	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(p) {
	case header.IPv4Version:
		proto = ipv4.ProtocolNumber
	case header.IPv6Version:
		proto = ipv6.ProtocolNumber
	default:
		return 0, fmt.Errorf("ipstack: not an IP packet: %w", flow.ErrInvalid)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
	s.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
	return len(p), nil
}

func (s *Stack) proto() tcpip.NetworkProtocolNumber {
	if s.addr.Addr().Is6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// Close ends Read (the bridge's read loop) and destroys the stack,
// closing its connections and listeners. Idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.ep.Close()
	s.s.Destroy()
	return nil
}
