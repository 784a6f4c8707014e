//go:build !tamago

// The plain-UDP baseline needs a host network stack (not on bare metal).

package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/ouronet/ouro/flow"
)

// UDPPort is a flow.Port over a connected UDP socket, one datagram per
// SDU: the plain-IP baseline the probes measure flows against. Errors
// wrap the flow sentinels (ErrTimeout, ErrClosed, ErrBusy for a full
// socket buffer, ErrRefused when nothing listens at the address).
type UDPPort struct {
	c  *net.UDPConn
	pc *ipv4.PacketConn // batches: sendmmsg(2) where the kernel has it
	ms []ipv4.Message   // WriteBatch's reused headers

	gsoBuf, gsoOOB []byte // a GSO run and its control message (udpgso_linux.go)
	noGSO          bool   // no runs ($OURO_UDP_RUNS), or the kernel refused a GSO send
}

var _ flow.Port = (*UDPPort)(nil)

// DialUDP returns a UDPPort connected to addr (host:port).
func DialUDP(addr string) (*UDPPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("probe: udp %s: %w", addr, err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("probe: udp %s: %w", addr, err)
	}
	return &UDPPort{c: c, pc: ipv4.NewPacketConn(c), noGSO: !udpRuns()}, nil
}

// udpRuns reports whether the plain-UDP baseline moves runs
// ($OURO_UDP_RUNS=1): a flood's equal-sized batches as one GSO send, the
// server's socket taking GRO runs (udpgso_linux.go), as the UDP shim
// does. Off, it is the pair issue 14 names: sendmmsg(2) and recvmmsg(2)
// batches of single datagrams.
func udpRuns() bool { return os.Getenv("OURO_UDP_RUNS") == "1" }

// LocalAddr returns the socket's local address.
func (p *UDPPort) LocalAddr() net.Addr { return p.c.LocalAddr() }

func udpErr(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("udp %s: %w", op, flow.ErrTimeout)
	case errors.Is(err, net.ErrClosed):
		return fmt.Errorf("udp %s: %w", op, flow.ErrClosed)
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.EAGAIN):
		return fmt.Errorf("udp %s: %w", op, flow.ErrBusy)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("udp %s: nothing listens there: %w", op, flow.ErrRefused)
	}
	return fmt.Errorf("udp %s: %w", op, err)
}

// Read implements flow.Port.
func (p *UDPPort) Read(b []byte, deadline time.Time) (int, error) {
	if err := p.c.SetReadDeadline(deadline); err != nil {
		return 0, udpErr("read", err)
	}
	n, _, flags, _, err := p.c.ReadMsgUDP(b, nil)
	if err != nil {
		return 0, udpErr("read", err)
	}
	if flags&syscall.MSG_TRUNC != 0 {
		return n, fmt.Errorf("udp read into %d bytes: %w", len(b), flow.ErrTruncated)
	}
	return n, nil
}

// Write implements flow.Port.
func (p *UDPPort) Write(b []byte, deadline time.Time) error {
	if err := p.c.SetWriteDeadline(deadline); err != nil {
		return udpErr("write", err)
	}
	if _, err := p.c.Write(b); err != nil {
		return udpErr("write", err)
	}
	return nil
}

// WriteBatch implements BatchWriter: it sends the datagrams of bs with
// as few system calls as the platform allows (sendmmsg(2) on Linux, one
// write per datagram elsewhere) and returns how many were sent. A
// socket buffer that is full before the first datagram is ErrBusy; one
// that fills midway is a short count with a nil error. x/net's batch
// headers carry one address family's sockaddr, so the connected socket's
// (no address per message) works for IPv4 and IPv6 alike.
func (p *UDPPort) WriteBatch(bs [][]byte, deadline time.Time) (int, error) {
	if err := p.c.SetWriteDeadline(deadline); err != nil {
		return 0, udpErr("write", err)
	}
	if sent, err := p.writeGSO(bs); sent {
		if err != nil {
			return 0, udpErr("write", err)
		}
		return len(bs), nil
	}
	if cap(p.ms) < len(bs) {
		p.ms = make([]ipv4.Message, len(bs))
		for i := range p.ms {
			p.ms[i].Buffers = make([][]byte, 1)
		}
	}
	ms := p.ms[:len(bs)]
	for i, b := range bs {
		ms[i].Buffers[0] = b
	}
	n, err := p.pc.WriteBatch(ms, 0)
	if n > 0 {
		return n, nil
	}
	if err != nil {
		return 0, udpErr("write", err)
	}
	return 0, nil
}

// Close implements flow.Port.
func (p *UDPPort) Close() error {
	if err := p.c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// UDPPeerIdle is how long a UDP peer may stay silent before a server
// forgets it (and reports it as ended).
const UDPPeerIdle = 5 * time.Second

// PeerEvent tells a UDP server's caller about a peer: Open when its first
// datagram arrives, !Open when it went idle for UDPPeerIdle (or the
// server stopped), with what was counted.
type PeerEvent struct {
	Peer   netip.AddrPort
	Open   bool
	SDUs   uint64 // datagrams received from the peer
	Bytes  uint64
	Report Report // perf only: the perf counts
}

type udpPeer struct {
	last   time.Time
	sdus   uint64
	bytes  uint64
	server PerfServer
}

// ServeUDP answers probes on pc until ctx ends: with perf false it echoes
// every datagram to its sender (the UDP twin of an echo server), with
// perf true it runs a PerfServer per sender address (the twin of a perf
// server). onPeer, if not nil, is called from the serving goroutine as
// peers come and go. It returns nil when ctx ends.
func ServeUDP(ctx context.Context, pc *net.UDPConn, perf bool, onPeer func(PeerEvent)) error {
	start := time.Now()
	peers := map[netip.AddrPort]*udpPeer{}
	ended := func(a netip.AddrPort, p *udpPeer) {
		delete(peers, a)
		if onPeer != nil {
			onPeer(PeerEvent{Peer: a, SDUs: p.sdus, Bytes: p.bytes, Report: p.server.Report()})
		}
	}
	defer func() {
		for a, p := range peers {
			ended(a, p)
		}
	}()
	// recvmmsg(2) batches (x/net reads one at a time where the kernel
	// has no such call): a flood costs a system call per udpBatch
	// datagrams, not one each.
	bpc := ipv4.NewPacketConn(pc)
	gro := udpRuns() && enableGRO(pc) // coalesced runs, cut up below (udpgso_linux.go)
	ms := make([]ipv4.Message, udpBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, readBufSize)}
		if gro {
			ms[i].OOB = make([]byte, groOOB)
		}
	}
	out := make([]byte, ReportFullLen)
	sweep := time.Now().Add(time.Second)
	for ctx.Err() == nil {
		if now := time.Now(); now.After(sweep) {
			for a, p := range peers {
				if now.Sub(p.last) > UDPPeerIdle {
					ended(a, p)
				}
			}
			sweep = now.Add(time.Second)
		}
		if err := pc.SetReadDeadline(time.Now().Add(pollInterval)); err != nil {
			return fmt.Errorf("probe: udp serve: %w", err)
		}
		k, err := bpc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return fmt.Errorf("probe: udp serve: %w", err)
		}
		now := time.Now()
		for _, m := range ms[:k] {
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			in := m.Buffers[0][:m.N]
			p := peers[from]
			if p == nil {
				p = &udpPeer{}
				peers[from] = p
				if onPeer != nil {
					onPeer(PeerEvent{Peer: from, Open: true})
				}
			}
			p.last = now
			seg := 0
			if gro {
				seg = groSegment(m.OOB[:m.NN])
			}
			for {
				k := len(in)
				if seg > 0 && seg < k {
					k = seg
				}
				p.sdus++
				p.bytes += uint64(k)
				reply := in[:k]
				if perf {
					reply = p.server.Handle(in[:k], now.Sub(start), out)
				}
				if reply != nil {
					// A full socket buffer drops the answer, as the network would.
					pc.WriteToUDPAddrPort(reply, from)
				}
				if in = in[k:]; len(in) == 0 {
					break
				}
			}
		}
	}
	return nil
}
