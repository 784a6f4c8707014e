// Package broadcast is the broadcast IPCP: members of a broadcast layer
// flood every SDU to each other over N-1 flows that they allocate, like
// any application, through a flow.Broker. Programs Join the layer (the
// IRM hands the IPCP a port per joined program); nothing is allocated in
// it. It is not a reliable multicast: SDUs are best effort, deduplicated.
//
// Data path: one goroutine per port (joined program or neighbour) reads
// SDUs into its own buffer. From a program: a Header (own origin id, next
// sequence number, TTL) goes in front, and the packet is written to every
// neighbour and the payload to every other joined program. From a
// neighbour: a packet seen before (origin, sequence number) is dropped;
// otherwise its payload goes to every joined program and, with the TTL
// decremented, the packet to every other neighbour. The set of ports is a
// copy-on-write slice behind an atomic pointer, so forwarding takes no
// lock but the seen-set's, and allocates nothing.
package broadcast

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
)

var (
	_ ipcp.IPCP    = (*IPCP)(nil)
	_ ipcp.Joiner  = (*IPCP)(nil)
	_ ipcp.Manager = (*IPCP)(nil)
)

// Registrar registers a name in a lower layer, so that neighbours'
// allocations to it arrive through the broker. The node adapts the IRM's
// "reg" command to it.
type Registrar interface {
	// Reg registers name in layer. It may block until ctx ends; it is
	// called from Start only. Already registered is not an error.
	Reg(ctx context.Context, name, layer string) error
}

// Defaults of Config.
const (
	DefaultTTL          = 16
	DefaultWriteTimeout = 50 * time.Millisecond
	DefaultRetry        = time.Second
	DefaultMaxOrigins   = 1024
)

// Config configures a broadcast IPCP.
type Config struct {
	Layer string // the layer's name; required
	Name  string // the IPCP's own name, bound so that neighbours reach it; required
	// Neighbours are the IPCP names this member allocates N-1 flows to;
	// it also accepts flows from members that list it. List each
	// adjacency at one end only: two flows between a pair carry each
	// packet twice (the duplicate is suppressed, the bandwidth is spent).
	Neighbours []string
	// Lower are the layers to register Name in (through the Registrar).
	Lower []string
	// QoS of the N-1 flows (default flow.BestEffort()).
	QoS *flow.QoS
	// TTL is the hops a packet may travel (default 16).
	TTL uint8
	// WriteTimeout bounds how long forwarding waits on a full port before
	// it drops the packet for that port (default 50 ms). While it waits,
	// the port it reads from waits too.
	WriteTimeout time.Duration
	// Retry is the pause before re-allocating a failed or closed flow to
	// a neighbour, and after a failed Accept (default 1 s).
	Retry time.Duration
	// MaxOrigins bounds the seen-set (default 1024 origins).
	MaxOrigins int
	// Log logs notable events, with the IPCP's name as "ipcp" and its
	// layer as "layer"; nil discards them.
	Log *slog.Logger
	// Runner starts the IPCP's goroutines (in a node, its component's
	// kernel PD); required.
	Runner layer.Runner
}

// Stats are the IPCP's counters, always on.
type Stats struct {
	FromMembers   uint64 `json:"from_members"`   // SDUs joined programs wrote
	FromNeighbors uint64 `json:"from_neighbors"` // packets neighbours sent
	ToMembers     uint64 `json:"to_members"`     // SDUs delivered to joined programs
	ToNeighbors   uint64 `json:"to_neighbors"`   // packets sent to neighbours
	Duplicates    uint64 `json:"duplicates"`     // packets seen before (or older than the window)
	Own           uint64 `json:"own"`            // own packets flooded back
	Invalid       uint64 `json:"invalid"`        // packets without a valid header
	TTLExpired    uint64 `json:"ttl_expired"`    // packets delivered but not forwarded: TTL 1
	TooBig        uint64 `json:"too_big"`        // SDUs over MaxPayload (or truncated reads)
	Dropped       uint64 `json:"dropped"`        // writes that failed (port full past WriteTimeout, or closed)
	Members       int    `json:"members"`        // joined programs
	Neighbors     int    `json:"neighbors"`      // N-1 flows up
}

type counters struct {
	fromMembers, fromNeighbors, toMembers, toNeighbors, dups, own atomic.Uint64
	invalid, ttlExpired, tooBig, dropped                          atomic.Uint64
}

// port is a joined program's flow or a neighbour's N-1 flow.
type port struct {
	p         flow.Port
	id        uint64 // numbers the IPCP's ports as they come up (captures)
	neighbour bool
	name      string // the neighbour's name; "" for a program
	in, out   atomic.Uint64
	closeOnce sync.Once
}

func (p *port) close() { p.closeOnce.Do(func() { p.p.Close() }) }

// IPCP is a broadcast IPC process. Create it with New.
type IPCP struct {
	cfg    Config
	qos    flow.QoS
	broker flow.Broker
	reg    Registrar
	state  layer.Lifecycle
	c      counters

	ctx    context.Context // ends at Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex              // serialises changes to ports
	ports  atomic.Pointer[[]*port] // copy-on-write: readers load, never lock
	nports uint64                  // ports added so far, guarded by mu

	// capt taps the packets on the neighbours' N-1 flows (header and SDU)
	// when a capture runs (the capture management command).
	capt capture.Point

	seenMu sync.Mutex // guards seen, origin, seq
	seen   *seenSet
	origin uint64 // this incarnation's origin id
	seq    uint32 // last sequence number sent
}

// New returns an IPCP in state "init". broker is the IPCP's own broker for
// its N-1 flows (it is not closed by Stop); reg may be nil if cfg.Lower is
// empty.
func New(cfg Config, broker flow.Broker, reg Registrar) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("broadcast: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	if broker == nil {
		return nil, fmt.Errorf("broadcast: %s: no broker: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("broadcast: " + cfg.Name)
	}
	if reg == nil && len(cfg.Lower) > 0 {
		return nil, fmt.Errorf("broadcast: %s: lower layers but no registrar: %w", cfg.Name, flow.ErrInvalid)
	}
	if slices.Contains(cfg.Neighbours, cfg.Name) {
		return nil, fmt.Errorf("broadcast: %s: is its own neighbour: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.MaxOrigins <= 0 {
		cfg.MaxOrigins = DefaultMaxOrigins
	}
	cfg.Log = logx.Or(cfg.Log).With("ipcp", cfg.Name, "layer", cfg.Layer)
	q := flow.BestEffort()
	if cfg.QoS != nil {
		q = *cfg.QoS
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &IPCP{cfg: cfg, qos: q, broker: broker, reg: reg, ctx: ctx, cancel: cancel, seen: newSeenSet(cfg.MaxOrigins)}
	p.ports.Store(new([]*port))
	p.newOrigin()
	return p, nil
}

// newOrigin draws a fresh origin id (seenMu held, or before any use). A
// random id per incarnation means a restarted member's sequence numbers
// never collide with its previous life's in others' seen-sets.
func (p *IPCP) newOrigin() {
	var b [8]byte
	for p.origin == 0 {
		crand.Read(b[:])
		p.origin = binary.BigEndian.Uint64(b[:])
	}
	p.seq = 0
}

// Start binds the IPCP's name, registers it in the lower layers, and
// starts accepting flows from neighbours and allocating flows to them.
func (p *IPCP) Start() error {
	if !p.state.CompareAndSwap(layer.StateInit, layer.StateOperational) {
		return fmt.Errorf("broadcast: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	if err := p.broker.Bind(p.ctx, p.cfg.Name); err != nil && !errors.Is(err, flow.ErrExists) {
		p.state.Store(layer.StateShutdown)
		return fmt.Errorf("broadcast: %s: bind: %w", p.cfg.Name, err)
	}
	for _, l := range p.cfg.Lower {
		if err := p.reg.Reg(p.ctx, p.cfg.Name, l); err != nil && !errors.Is(err, flow.ErrExists) {
			p.broker.Unbind(context.Background(), p.cfg.Name)
			p.state.Store(layer.StateShutdown)
			return fmt.Errorf("broadcast: %s: register in %s: %w", p.cfg.Name, l, err)
		}
	}
	p.wg.Add(1 + len(p.cfg.Neighbours))
	p.cfg.Runner.Go(p.accept)
	for _, n := range p.cfg.Neighbours {
		p.cfg.Runner.Go(func() { p.connect(n) })
	}
	return nil
}

// Stop closes every flow, ends the goroutines and waits for them, and
// unbinds the name. Idempotent.
func (p *IPCP) Stop() {
	if p.state.Swap(layer.StateShutdown) == layer.StateShutdown {
		return
	}
	p.cancel()
	p.mu.Lock()
	for _, pt := range *p.ports.Load() {
		pt.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p.broker.Unbind(ctx, p.cfg.Name)
}

// pause waits d or until Stop; it reports whether to go on.
func (p *IPCP) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// accept takes N-1 flows from members that list this one as a neighbour.
func (p *IPCP) accept() {
	defer p.wg.Done()
	for p.ctx.Err() == nil {
		fp, info, err := p.broker.Accept(p.ctx)
		if err != nil {
			if p.ctx.Err() == nil {
				p.cfg.Log.Warn("accept failed", "err", err)
				p.pause(p.cfg.Retry)
			}
			continue
		}
		pt := &port{p: fp, neighbour: true, name: info.Remote}
		if !p.add(pt) {
			return
		}
		p.wg.Add(1)
		p.cfg.Runner.Go(func() {
			defer p.wg.Done()
			p.serve(pt)
		})
	}
}

// connect keeps an N-1 flow to neighbour up until Stop.
func (p *IPCP) connect(neighbour string) {
	defer p.wg.Done()
	for p.ctx.Err() == nil {
		fp, _, err := p.broker.Alloc(p.ctx, neighbour, p.qos)
		if err != nil {
			if p.ctx.Err() == nil {
				p.cfg.Log.Warn("flow to neighbour failed", "peer", neighbour, "err", err)
				p.pause(p.cfg.Retry)
			}
			continue
		}
		pt := &port{p: fp, neighbour: true, name: neighbour}
		if !p.add(pt) {
			return
		}
		p.serve(pt)
		if !p.pause(p.cfg.Retry) {
			return
		}
	}
}

// add puts pt in the port set; false (pt closed) after Stop.
func (p *IPCP) add(pt *port) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() == layer.StateShutdown {
		pt.close()
		return false
	}
	p.nports++
	pt.id = p.nports
	old := *p.ports.Load()
	next := make([]*port, len(old), len(old)+1)
	copy(next, old)
	next = append(next, pt)
	p.ports.Store(&next)
	return true
}

func (p *IPCP) remove(pt *port) {
	pt.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.ports.Load()
	next := slices.DeleteFunc(slices.Clone(old), func(x *port) bool { return x == pt })
	p.ports.Store(&next)
}

// Join implements ipcp.Joiner: port is a program's membership, until it
// closes it.
func (p *IPCP) Join(_ context.Context, fp flow.Port) error {
	if fp == nil {
		return fmt.Errorf("broadcast: %s: join: nil port: %w", p.cfg.Name, flow.ErrInvalid)
	}
	switch p.state.Load() {
	case layer.StateInit:
		return fmt.Errorf("broadcast: %s: join: not started: %w", p.cfg.Name, flow.ErrInvalid)
	case layer.StateShutdown:
		return fmt.Errorf("broadcast: %s: join: stopped: %w", p.cfg.Name, flow.ErrClosed)
	}
	pt := &port{p: fp}
	if !p.add(pt) {
		return fmt.Errorf("broadcast: %s: join: stopped: %w", p.cfg.Name, flow.ErrClosed)
	}
	p.wg.Add(1)
	p.cfg.Runner.Go(func() {
		defer p.wg.Done()
		p.serve(pt)
	})
	return nil
}

// serve reads pt until it closes, then removes it.
func (p *IPCP) serve(pt *port) {
	defer p.remove(pt)
	buf := make([]byte, HeaderLen+flow.MaxSDU)
	for {
		var err error
		if pt.neighbour {
			err = p.fromNeighbour(pt, buf)
		} else {
			err = p.fromMember(pt, buf)
		}
		if err != nil {
			return
		}
	}
}

// fromMember reads one SDU a program wrote and floods it.
func (p *IPCP) fromMember(pt *port, buf []byte) error {
	n, err := pt.p.Read(buf[HeaderLen:], time.Time{})
	if errors.Is(err, flow.ErrTruncated) {
		p.c.tooBig.Add(1)
		return nil
	}
	if err != nil {
		return err
	}
	pt.in.Add(1)
	p.c.fromMembers.Add(1)
	if n > MaxPayload {
		p.c.tooBig.Add(1)
		return nil
	}
	p.seenMu.Lock()
	if p.seq == ^uint32(0) {
		p.origin = 0
		p.newOrigin()
	}
	p.seq++
	seq, origin := p.seq, p.origin
	p.seenMu.Unlock()
	pkt := Header(buf[:HeaderLen+n])
	pkt.Encode(p.cfg.TTL, seq, origin)
	p.flood(pt, pkt)
	return nil
}

// fromNeighbour reads one packet from a neighbour and, if it is new,
// delivers and forwards it.
func (p *IPCP) fromNeighbour(pt *port, buf []byte) error {
	n, err := pt.p.Read(buf, time.Time{})
	if errors.Is(err, flow.ErrTruncated) {
		p.c.invalid.Add(1)
		return nil
	}
	if err != nil {
		return err
	}
	pt.in.Add(1)
	p.c.fromNeighbors.Add(1)
	if s := p.capt.Session(); s != nil {
		s.Add(capture.In, capture.Bcast, pt.id, buf[:n])
	}
	pkt := Header(buf[:n])
	if !pkt.IsValid() || pkt.TTL() == 0 || pkt.Seq() == 0 {
		p.c.invalid.Add(1)
		return nil
	}
	p.seenMu.Lock()
	own := pkt.Origin() == p.origin
	fresh := !own && p.seen.fresh(pkt.Origin(), pkt.Seq())
	p.seenMu.Unlock()
	switch {
	case own:
		p.c.own.Add(1)
		return nil
	case !fresh:
		p.c.dups.Add(1)
		return nil
	}
	pkt.SetTTL(pkt.TTL() - 1)
	p.flood(pt, pkt)
	return nil
}

// flood writes pkt to every neighbour but from (unless its TTL is spent)
// and its payload to every program but from.
func (p *IPCP) flood(from *port, pkt Header) {
	deadline := time.Now().Add(p.cfg.WriteTimeout)
	forward := pkt.TTL() > 0
	s := p.capt.Session()
	if !forward {
		p.c.ttlExpired.Add(1)
	}
	for _, pt := range *p.ports.Load() {
		if pt == from {
			continue
		}
		var err error
		if pt.neighbour {
			if !forward {
				continue
			}
			if s != nil {
				s.Add(capture.Out, capture.Bcast, pt.id, pkt)
			}
			err = pt.p.Write(pkt, deadline)
		} else {
			err = pt.p.Write(pkt.Payload(), deadline)
		}
		if err != nil {
			p.c.dropped.Add(1)
			continue
		}
		pt.out.Add(1)
		if pt.neighbour {
			p.c.toNeighbors.Add(1)
		} else {
			p.c.toMembers.Add(1)
		}
	}
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "broadcast", State: p.state.Load().String()}
}

// Register implements ipcp.IPCP: names are not registered in a broadcast
// layer (programs join it), so it is flow.ErrInvalid.
func (p *IPCP) Register(_ context.Context, name string) error {
	return fmt.Errorf("broadcast: %s: register %q: broadcast layers are joined: %w", p.cfg.Name, name, flow.ErrInvalid)
}

// Unregister implements ipcp.IPCP: there is nothing to unregister.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	return fmt.Errorf("broadcast: %s: unregister %q: %w", p.cfg.Name, name, flow.ErrNotFound)
}

// Query implements ipcp.IPCP: only the layer's own name is reachable.
func (p *IPCP) Query(_ context.Context, name string) error {
	if name != p.cfg.Layer {
		return fmt.Errorf("broadcast: %s: query %q: %w", p.cfg.Name, name, flow.ErrNotFound)
	}
	return nil
}

// Alloc implements ipcp.IPCP: flows are not allocated in a broadcast layer
// (programs join it), so it is flow.ErrInvalid.
func (p *IPCP) Alloc(_ context.Context, req ipcp.AllocReq, _ flow.Port) error {
	return fmt.Errorf("broadcast: %s: alloc %q: broadcast layers are joined, not allocated: %w", p.cfg.Name, req.Dst, flow.ErrInvalid)
}

// Stats returns the counters.
func (p *IPCP) Stats() Stats {
	s := Stats{
		FromMembers: p.c.fromMembers.Load(), FromNeighbors: p.c.fromNeighbors.Load(),
		ToMembers: p.c.toMembers.Load(), ToNeighbors: p.c.toNeighbors.Load(),
		Duplicates: p.c.dups.Load(), Own: p.c.own.Load(), Invalid: p.c.invalid.Load(),
		TTLExpired: p.c.ttlExpired.Load(), TooBig: p.c.tooBig.Load(), Dropped: p.c.dropped.Load(),
	}
	for _, pt := range *p.ports.Load() {
		if pt.neighbour {
			s.Neighbors++
		} else {
			s.Members++
		}
	}
	return s
}

// Mgmt implements ipcp.Manager: "stats" (the counters), "ports" (each
// program and neighbour flow with its packet counts) and "capture"
// (layer/capture: the packets on the neighbours' flows).
func (p *IPCP) Mgmt(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	switch req.Cmd {
	case "stats":
		s := p.Stats()
		t := ipcp.Table{Columns: []string{"counter", "value"}}
		for _, kv := range []struct {
			k string
			v uint64
		}{
			{"from_members", s.FromMembers}, {"from_neighbors", s.FromNeighbors},
			{"to_members", s.ToMembers}, {"to_neighbors", s.ToNeighbors},
			{"duplicates", s.Duplicates}, {"own", s.Own}, {"invalid", s.Invalid},
			{"ttl_expired", s.TTLExpired}, {"too_big", s.TooBig}, {"dropped", s.Dropped},
			{"members", uint64(s.Members)}, {"neighbors", uint64(s.Neighbors)},
		} {
			t.Rows = append(t.Rows, []string{kv.k, strconv.FormatUint(kv.v, 10)})
		}
		return ipcp.MgmtResp{Table: t}, nil
	case "ports":
		t := ipcp.Table{Columns: []string{"kind", "name", "pkts_in", "pkts_out"}}
		for _, pt := range *p.ports.Load() {
			kind, name := "member", "-"
			if pt.neighbour {
				kind, name = "neighbor", pt.name
			}
			t.Rows = append(t.Rows, []string{kind, name, strconv.FormatUint(pt.in.Load(), 10), strconv.FormatUint(pt.out.Load(), 10)})
		}
		return ipcp.MgmtResp{Table: t}, nil
	case capture.Cmd:
		return p.capt.Mgmt(p.cfg.Name, capture.LayerBroadcast, req.Args)
	}
	return ipcp.MgmtResp{}, fmt.Errorf("broadcast: %s: unknown command %q (want stats, ports or capture): %w", p.cfg.Name, req.Cmd, flow.ErrInvalid)
}
