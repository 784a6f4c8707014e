// Package ipnet carries IP over flows: a Bridge reads IP packets from a
// device (a TUN interface), finds the ouro name that serves each
// packet's destination prefix, and writes the packet as one SDU on a
// flow to that name, allocated on demand and closed when idle; packets
// arriving on the flows peers allocated to the Bridge's own name are
// written to the device. Unchanged TCP/IP programs then reach each other
// across an Ouroboros network (docs/ipnet.md).
//
// Each direction has its own flows: a Bridge writes only on flows it
// allocated and reads only from flows it accepted. A flow is
// best-effort by default (TCP above does its own recovery); a Sealed QoS
// makes the tunnel encrypted between the two nodes.
package ipnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Device is the IP side: one whole packet per Read and per Write (a TUN
// interface without packet information).
type Device interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
}

// Runner starts the Bridge's goroutines (in a node, its component's
// kernel PD; a hosted program passes one that runs plain goroutines).
type Runner interface{ Go(f func()) }

// Route sends packets for Prefix to the Bridge serving Name.
type Route struct {
	Prefix netip.Prefix
	Name   string
}

// ParseRoute parses "PREFIX=NAME" (an address alone is a /32 or /128).
func ParseRoute(s string) (Route, error) {
	i := strings.LastIndexByte(s, '=')
	if i < 0 || i == len(s)-1 {
		return Route{}, fmt.Errorf("ipnet: route %q: want PREFIX=NAME: %w", s, flow.ErrInvalid)
	}
	p, name := s[:i], s[i+1:]
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		a, aerr := netip.ParseAddr(p)
		if aerr != nil {
			return Route{}, fmt.Errorf("ipnet: route %q: %w: %w", s, flow.ErrInvalid, err)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	return Route{Prefix: pfx.Masked(), Name: name}, nil
}

// Config configures a Bridge.
type Config struct {
	Broker flow.Broker // required
	Dev    Device      // required
	Runner Runner      // required
	// Name is bound: peers' flows to it carry packets for this side.
	// Required.
	Name   string
	Routes []Route
	// QoS of the flows the Bridge allocates (default best effort).
	QoS flow.QoS
	// Idle closes a flow that carried nothing this long (default 60 s).
	Idle time.Duration
	// Queue is how many packets wait for a flow being allocated or
	// written, per destination name (default 256); more are dropped.
	Queue int
	Logf  func(format string, args ...any)
}

// MaxPacket is the largest packet the Bridge reads.
const MaxPacket = 65535

// maxFailedWrites is how many writes in a row may fail on a flow (full,
// timing out) before the Bridge gives it up and allocates another.
const maxFailedWrites = 16

// Stats are a route's counters: those of its name (routes to one name
// share them).
type Stats struct {
	Prefix, Name string
	PktsOut      uint64 // packets sent on its flow
	BytesOut     uint64
	Drops        uint64 // queue full, no flow (allocation failed), or too big for the flow
	TooBig       uint64 // of the drops: larger than the flow's SDU limit (answered with ICMP "too big")
	Allocs       uint64 // flows allocated
	AllocErrors  uint64
}

type counters struct {
	pktsOut, bytesOut, drops, tooBig, allocs, allocErrors atomic.Uint64
}

// peer is the outgoing side toward one name: a queue and the goroutine
// that allocates and writes its flow.
type peer struct {
	name string
	q    chan []byte
	c    *counters
}

// Bridge is an IP bridge. Create it with New, run it with Run.
type Bridge struct {
	cfg    Config
	routes []Route // longest prefix first
	byName map[string]*counters

	free chan []byte // packet buffers

	mu    sync.Mutex
	peers map[string]*peer

	noRoute, inPkts, inBytes, inDrops atomic.Uint64
}

// New checks cfg and returns a Bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.Broker == nil || cfg.Dev == nil || cfg.Runner == nil || cfg.Name == "" {
		return nil, fmt.Errorf("ipnet: config needs a broker, a device, a runner and a name: %w", flow.ErrInvalid)
	}
	if cfg.QoS == (flow.QoS{}) {
		cfg.QoS = flow.BestEffort()
	}
	if cfg.QoS.NeedsFRCT() {
		return nil, fmt.Errorf("ipnet: QoS with ordering or reliability: IP carries its own (%w)", flow.ErrInvalid)
	}
	if cfg.Idle == 0 {
		cfg.Idle = time.Minute
	}
	if cfg.Queue == 0 {
		cfg.Queue = 256
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	b := &Bridge{cfg: cfg, byName: make(map[string]*counters), peers: make(map[string]*peer), free: make(chan []byte, 2*cfg.Queue)}
	b.routes = slices.Clone(cfg.Routes)
	slices.SortStableFunc(b.routes, func(x, y Route) int { return y.Prefix.Bits() - x.Prefix.Bits() })
	for _, r := range b.routes {
		if !r.Prefix.IsValid() || r.Name == "" {
			return nil, fmt.Errorf("ipnet: route %v=%q: %w", r.Prefix, r.Name, flow.ErrInvalid)
		}
		if b.byName[r.Name] == nil {
			b.byName[r.Name] = new(counters)
		}
	}
	return b, nil
}

// Dst returns the destination address of an IPv4 or IPv6 packet.
func Dst(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 1 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}

// route returns the name serving dst.
func (b *Bridge) route(dst netip.Addr) (string, bool) {
	for _, r := range b.routes {
		if r.Prefix.Contains(dst) {
			return r.Name, true
		}
	}
	return "", false
}

func (b *Bridge) getBuf() []byte {
	select {
	case p := <-b.free:
		return p[:MaxPacket]
	default:
		return make([]byte, MaxPacket)
	}
}

func (b *Bridge) putBuf(p []byte) {
	select {
	case b.free <- p:
	default:
	}
}

// Run binds the Bridge's name and moves packets until the device's Read
// fails: to stop it, cancel ctx and close the device (a nil error then).
// It unbinds and closes its flows before returning.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.cfg.Broker.Bind(ctx, b.cfg.Name); err != nil {
		return fmt.Errorf("ipnet: bind %q: %w", b.cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	b.cfg.Runner.Go(func() { defer wg.Done(); b.acceptLoop(ctx, &wg) })
	err := b.readLoop(ctx, &wg)
	cancel()
	uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
	b.cfg.Broker.Unbind(uctx, b.cfg.Name)
	ucancel()
	wg.Wait()
	return err
}

// readLoop moves packets from the device to the peers' queues.
func (b *Bridge) readLoop(ctx context.Context, wg *sync.WaitGroup) error {
	for {
		buf := b.getBuf()
		n, err := b.cfg.Dev.Read(buf)
		if err != nil {
			b.putBuf(buf)
			if ctx.Err() != nil {
				return nil // the owner closed the device to stop
			}
			return fmt.Errorf("ipnet: device: %w", err)
		}
		pkt := buf[:n]
		dst, ok := Dst(pkt)
		name := ""
		if ok {
			name, ok = b.route(dst)
		}
		if !ok {
			b.noRoute.Add(1)
			b.putBuf(buf)
			continue
		}
		p := b.peer(ctx, wg, name)
		select {
		case p.q <- pkt:
		default:
			p.c.drops.Add(1)
			b.putBuf(buf)
		}
	}
}

// peer returns the outgoing side toward name, starting it if need be.
func (b *Bridge) peer(ctx context.Context, wg *sync.WaitGroup, name string) *peer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.peers[name]; p != nil {
		return p
	}
	p := &peer{name: name, q: make(chan []byte, b.cfg.Queue), c: b.byName[name]}
	b.peers[name] = p
	wg.Add(1)
	b.cfg.Runner.Go(func() { defer wg.Done(); b.send(ctx, p) })
	return p
}

// send allocates p's flow when packets wait, writes them, and closes the
// flow after Idle without any.
func (b *Bridge) send(ctx context.Context, p *peer) {
	var (
		port   flow.Port
		limit  int
		retry  time.Time // no allocation before this (the last one failed)
		failed int       // writes failed in a row on port
	)
	idle := time.NewTimer(b.cfg.Idle)
	defer idle.Stop()
	closeFlow := func() {
		if port != nil {
			port.Close()
			port = nil
		}
		failed = 0
	}
	defer closeFlow()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case pkt := <-p.q:
					b.putBuf(pkt)
				default:
					return
				}
			}
		case <-idle.C:
			if port != nil {
				b.cfg.Logf("ipnet: flow to %s idle for %v: closed", p.name, b.cfg.Idle)
			}
			closeFlow()
		case pkt := <-p.q:
			idle.Reset(b.cfg.Idle)
			if port == nil && time.Now().After(retry) {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				fp, info, err := b.cfg.Broker.Alloc(actx, p.name, b.cfg.QoS)
				cancel()
				if err != nil {
					p.c.allocErrors.Add(1)
					retry = time.Now().Add(time.Second)
					b.cfg.Logf("ipnet: flow to %s: %v (packets to it dropped for 1 s)", p.name, err)
				} else {
					port, limit = fp, info.SDULimit()
					p.c.allocs.Add(1)
					b.cfg.Logf("ipnet: flow %d to %s in layer %s, SDUs up to %d bytes%s", info.ID, p.name, info.Layer, limit, sealedNote(info))
				}
			}
			switch {
			case port == nil:
				p.c.drops.Add(1)
			case len(pkt) > limit:
				p.c.drops.Add(1)
				p.c.tooBig.Add(1)
				if msg := tooBig(pkt, limit); msg != nil { // the sender's path MTU comes down
					b.cfg.Dev.Write(msg)
				}
			default:
				if err := port.Write(pkt, time.Now().Add(time.Second)); err != nil {
					p.c.drops.Add(1)
					failed++
					// A closed flow, or one that took nothing for a while:
					// allocate again for the next packet.
					if !errors.Is(err, flow.ErrBusy) && !errors.Is(err, flow.ErrTimeout) || failed >= maxFailedWrites {
						b.cfg.Logf("ipnet: flow to %s: %v after %d failed writes: closed", p.name, err, failed)
						closeFlow()
					}
				} else {
					failed = 0
					p.c.pktsOut.Add(1)
					p.c.bytesOut.Add(uint64(len(pkt)))
				}
			}
			b.putBuf(pkt)
		}
	}
}

func sealedNote(info flow.Info) string {
	if info.Peer == nil {
		return ""
	}
	return ", sealed with " + info.Peer.String()
}

// acceptLoop takes the flows peers allocate to this Bridge's name and
// writes what they carry to the device.
func (b *Bridge) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	for {
		port, info, err := b.cfg.Broker.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.cfg.Logf("ipnet: accept: %v", err)
			}
			return
		}
		b.cfg.Logf("ipnet: flow %d from %s in layer %s%s", info.ID, orDash(info.Remote), info.Layer, sealedNote(info))
		wg.Add(1)
		b.cfg.Runner.Go(func() { defer wg.Done(); b.receive(ctx, port) })
	}
}

// receive writes the packets of one accepted flow to the device.
func (b *Bridge) receive(ctx context.Context, port flow.Port) {
	stop := context.AfterFunc(ctx, func() { port.Close() })
	defer stop()
	defer port.Close()
	buf := make([]byte, flow.MaxSDU)
	for {
		n, err := port.Read(buf, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				b.inDrops.Add(1)
				continue
			}
			return
		}
		if _, ok := Dst(buf[:n]); !ok {
			b.inDrops.Add(1)
			continue
		}
		if _, err := b.cfg.Dev.Write(buf[:n]); err != nil {
			b.inDrops.Add(1)
			continue
		}
		b.inPkts.Add(1)
		b.inBytes.Add(uint64(n))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Stats returns each route's counters, in route order (longest prefix
// first), and the Bridge's: packets with no route, and those received.
func (b *Bridge) Stats() (routes []Stats, noRoute, in, inBytes, inDrops uint64) {
	for _, r := range b.routes {
		c := b.byName[r.Name]
		routes = append(routes, Stats{
			Prefix: r.Prefix.String(), Name: r.Name,
			PktsOut: c.pktsOut.Load(), BytesOut: c.bytesOut.Load(), Drops: c.drops.Load(), TooBig: c.tooBig.Load(),
			Allocs: c.allocs.Load(), AllocErrors: c.allocErrors.Load(),
		})
	}
	return routes, b.noRoute.Load(), b.inPkts.Load(), b.inBytes.Load(), b.inDrops.Load()
}
