//go:build !tamago || netstack

// Package netstack is the glue between an Ethernet frame device and
// gVisor's TCP/IP stack (IPv4, IPv6, ARP, UDP): static addresses, on-link
// routes, and UDP sockets shaped as the UDP shim's Device. It is what the
// bare-metal images use where the UDP shim needs UDP/IP and there is no
// kernel; hosted tests run it over a QEMU socket stream. It is not a
// general network stack: no DHCP, no TCP, no gateway routing.
//
// The data path, written once here:
//
// Receive: one goroutine (started by Start through Config.Runner) reads
// frames from the device into a single buffer, copies each into a gVisor
// packet buffer (buffer.MakeWithData takes a chunk from gVisor's pools)
// and hands it to the link's dispatcher, gVisor's ethernet.Endpoint, which
// strips the Ethernet header and delivers to ARP, IPv4 or IPv6. Delivery
// runs to completion in that goroutine (UDP queues the datagram on its
// socket), so the stack needs no extra goroutines of its own for receive.
//
// Transmit: gVisor calls WritePackets in the sending goroutine, already
// batched (a PacketBufferList); each packet's slices are gathered into a
// scratch buffer under a mutex and written with one WriteFrame. There is
// no transmit queue: back-pressure is the device's, and a failed write is
// counted as a drop, never returned to the sender.
//
// A board image has the stack (this file, link.go, udp.go: gVisor) only
// when built with the netstack tag, which make image adds for a
// configuration that uses it (router -image-tags); without it the package
// is the Mux alone, which every board link's driver uses, and gVisor is
// not linked (about 1 MB of an image, docs/benchmarks.md).
package netstack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// nicID is the stack's only NIC.
const nicID tcpip.NICID = 1

// Config configures a Stack.
type Config struct {
	// Addrs are the interface's static addresses, each with its on-link
	// prefix (127.0.10.1/24, fd00::1/64). At least one is required. Every
	// prefix becomes an on-link route.
	Addrs []netip.Prefix
	// Gateway4 and Gateway6, if valid, are default routes through an
	// on-link router.
	Gateway4, Gateway6 netip.Addr
	// Runner starts the receive goroutine (in a node, the kernel PD of
	// the component that owns the stack); required.
	Runner layer.Runner
}

// Stats are a Stack's link counters, always on.
type Stats struct {
	RxFrames, RxBytes uint64 // frames handed to the stack
	TxFrames, TxBytes uint64 // frames written to the device
	RxErrors          uint64 // device read errors (oversized frames, ...)
	TxDrops           uint64 // frames the device refused
	TxTooLong         uint64 // packets longer than the device's frame size
}

// Stack is a gVisor network stack on one Ethernet device.
type Stack struct {
	cfg  Config
	dev  eth.Device
	s    *stack.Stack
	link *link

	mu      sync.Mutex // guards started and stopped
	started bool
	stopped bool
	rxDone  chan struct{}
}

// New builds a stack on dev with cfg's addresses; Start starts receiving.
// The stack owns dev from here on and closes it on Stop.
//
// Addresses in 127.0.0.0/8 (and ::1) are accepted on this non-loopback NIC:
// gVisor drops "martian" loopback traffic arriving from a link unless the
// protocol option AllowExternalLoopbackTraffic is set, and New sets it when
// a configured address is a loopback address, so tests can run entirely in
// 127.0.0.0/8.
func New(dev eth.Device, cfg Config) (*Stack, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("netstack: no address: %w", flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("netstack")
	}
	loopback := false
	for _, p := range cfg.Addrs {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("netstack: address %v: %w", p, flow.ErrInvalid)
		}
		loopback = loopback || p.Addr().Unmap().IsLoopback()
	}
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: loopback}),
			ipv6.NewProtocolWithOptions(ipv6.Options{AllowExternalLoopbackTraffic: loopback}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	l := newLink(dev)
	if err := s.CreateNIC(nicID, ethernet.New(l)); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: create NIC: %s", err)
	}
	var routes []tcpip.Route
	for _, p := range cfg.Addrs {
		a := p.Addr().Unmap()
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		awp := tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: p.Bits()}
		if err := s.AddProtocolAddress(nicID, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: awp}, stack.AddressProperties{}); err != nil {
			s.Destroy()
			return nil, fmt.Errorf("netstack: address %v: %s", p, err)
		}
		routes = append(routes, tcpip.Route{Destination: awp.Subnet(), NIC: nicID})
	}
	for _, gw := range []netip.Addr{cfg.Gateway4, cfg.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		gw = gw.Unmap()
		dst := header4Any
		if gw.Is6() {
			dst = header6Any
		}
		routes = append(routes, tcpip.Route{Destination: dst, Gateway: tcpip.AddrFromSlice(gw.AsSlice()), NIC: nicID})
	}
	s.SetRouteTable(routes)
	return &Stack{cfg: cfg, dev: dev, s: s, link: l, rxDone: make(chan struct{})}, nil
}

// Default-route destinations.
var (
	header4Any = mustSubnet(make([]byte, 4))
	header6Any = mustSubnet(make([]byte, 16))
)

func mustSubnet(zero []byte) tcpip.Subnet {
	a := tcpip.AddrFromSlice(zero)
	s, err := tcpip.NewSubnet(a, tcpip.MaskFromBytes(zero))
	if err != nil {
		panic(err)
	}
	return s
}

// Start starts the receive goroutine.
func (s *Stack) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("netstack: start after stop: %w", flow.ErrClosed)
	}
	if s.started {
		return nil
	}
	s.started = true
	s.cfg.Runner.Go(func() {
		defer close(s.rxDone)
		s.link.receive()
	})
	return nil
}

// Stop closes the device, ends the receive goroutine and destroys the
// stack (closing its sockets). Idempotent.
func (s *Stack) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	s.link.closed.Store(true)
	s.dev.Close()
	if started {
		<-s.rxDone
	}
	s.s.Destroy()
}

// Stats returns the link counters.
func (s *Stack) Stats() Stats { return s.link.stats() }

// MAC returns the device's address.
func (s *Stack) MAC() string { return s.dev.MAC().String() }

// Addrs returns the configured addresses.
func (s *Stack) Addrs() []netip.Prefix { return append([]netip.Prefix(nil), s.cfg.Addrs...) }

// errStopped is returned by socket calls after Stop.
var errStopped = errors.New("netstack: stopped")
