// Package engine is the flow allocator and data path that the
// point-to-point shims (udp, eth) share: the flow table, the control
// protocol, the per-flow transmit goroutines and the name-query cache. It
// knows nothing of sockets or headers; the shims bring those.
//
// The pipeline, written once here:
//
//   - receive: the shim's single receive goroutine reads a packet into its
//     preallocated buffer, validates its header and calls Input(payload,
//     from, eid). Input looks the endpoint id up under a read lock and
//     writes the payload to the flow's port without blocking (a full port
//     is a counted drop, so one slow reader never stalls the others), or
//     handles a control message (eid 0).
//   - transmit: one goroutine per flow reads its port into a preallocated
//     buffer at offset Headroom and calls Wire.Send, which writes the shim
//     header in front of the payload and hands the packet to the device.
//   - control (allocation, deallocation, name queries) may allocate; the
//     data path above does not. Each incoming allocation waits for the
//     IRM's answer in a goroutine of its own.
//   - sweeper: one goroutine (Start) deallocates flows idle for
//     Config.IdleTimeout. The data path reads no clock for it: the sweeper
//     compares the flows' packet counters between its rounds.
//
// Every goroutine is started through Config.Runner: in a node, the shim
// component's kernel PD, so that a panic is a fault of the component.
//
// Bounded state: a peer holds at most Config.MaxFlowsPerPeer flows that it
// allocated here, and at most Config.MaxPendingPerPeer requests waiting
// for the IRM; beyond either, its requests are refused (busy) and counted
// (Drops.PeerLimit). Refusals remembered for retransmitted requests are
// capped too.
//
// Locking: mu guards the tables below it; counters are atomics; a flow's
// port is used by its transmit goroutine (Read), the receive goroutine
// (Write) and whoever removes the flow from the table (Close, once).
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/crypto/sealflow"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
)

// Addr is a shim's peer address: netip.AddrPort for udp, a MAC for eth.
type Addr interface {
	comparable
	String() string
}

// Wire is the shim below the engine.
type Wire[A Addr] interface {
	// Send writes the shim header for eid (0: control) in front of the
	// payload pkt[Headroom:] and transmits pkt to dst. The buffer stays the
	// caller's; Send does not retain it. Safe for concurrent use.
	Send(pkt []byte, dst A, eid uint32) error
}

// BatchSender sends several packets of one flow to one peer with as few
// system calls as it can (sendmmsg(2) for udp). Like Wire.Send it writes
// the shim header for eid in front of each payload, pkts[i][Headroom:],
// and does not retain the buffers. It returns how many packets, from the
// first, were sent; a count short of len(pkts) comes with the error of
// pkts[n]. One goroutine at a time uses a BatchSender.
type BatchSender[A Addr] interface {
	SendBatch(pkts [][]byte, dst A, eid uint32) (int, error)
}

// BatchWire is a Wire that sends batches: a flow whose port is a
// flow.BatchPort moves TxBatch SDUs per read and per send through the
// BatchSender its transmit loop asks for (nil: this device has none, the
// loop sends one SDU at a time).
type BatchWire[A Addr] interface {
	Wire[A]
	NewBatchSender() BatchSender[A]
}

// TxBatch is how many SDUs a flow's transmit loop moves at once when the
// port and the wire both take batches.
const TxBatch = 32

// Config configures an Engine. Zero durations take the defaults.
type Config[A Addr] struct {
	Kind     string // "udp", "eth": prefixes errors
	Wire     Wire[A]
	Headroom int // bytes before the payload in a packet buffer
	// MaxSDU is the largest SDU of the engine's flows (a sealed one's is
	// seal.Overhead less); 0 means flow.MaxSDU, more only up to
	// flow.MaxJumboSDU. Both ends of a link must agree: a longer SDU
	// arriving is dropped as malformed.
	MaxSDU    int
	MaxEID    uint32 // the largest endpoint id the shim header carries
	Broadcast A      // where name queries go (eth); unused by udp
	Upcalls   ipcp.Upcalls
	HashAlgo  layer.HashAlgo

	RetryBase   time.Duration // first retransmission timeout of alloc requests and queries (default 20 ms)
	RetryMax    time.Duration // the backoff's ceiling (default 1 s)
	Timeout     time.Duration // alloc timeout when ctx has no deadline; also bounds FlowReq (default 10 s)
	CacheTTL    time.Duration // lifetime of a name-query answer (default 60 s)
	NSFInterval time.Duration // least gap between two no-such-flow replies (default 10 ms)
	// RxWait is how long a delivery waits for room in a flow's full
	// port while its reader drains it (DefaultRxWait; negative: never,
	// a full port drops at once). A port that lets a wait run out is
	// stalled: until it takes a whole delivery again, its SDUs are
	// dropped at once, so a reader that stops costs the receive loop
	// one wait, not one per packet.
	RxWait       time.Duration
	MaxPendingIn int // incoming allocations in progress at once (default 64)

	// Runner starts the engine's goroutines; required.
	Runner layer.Runner
	// IdleTimeout deallocates a flow that carried no SDU in either
	// direction for this long (checked every quarter of it, so it goes
	// between 1 and 1.25 times IdleTimeout). Default DefaultIdleTimeout;
	// negative: never.
	IdleTimeout time.Duration
	// MaxFlowsPerPeer bounds the flows one peer address allocated here
	// (incoming flows, those in progress included). Default
	// DefaultMaxFlowsPerPeer; negative: no bound.
	MaxFlowsPerPeer int
	// MaxPendingPerPeer bounds one peer's incoming allocations waiting for
	// the IRM's answer, so that one peer cannot take all of MaxPendingIn.
	// Default DefaultMaxPendingPerPeer; negative: no bound.
	MaxPendingPerPeer int
	// Announce, if positive, makes the engine broadcast its registered
	// names (unsolicited name replies) at registration and every
	// Announce, and learn its segment's names from the others'
	// announcements (heard, for 3 × Announce): Resolve answers a heard
	// name at once, and once it has listened for 1.5 × Announce it says
	// "not here" after NegativeWait instead of waiting for the caller's
	// deadline. Zero: off (a shim whose peers are not on a broadcast
	// segment).
	Announce time.Duration
	// NegativeWait bounds how long a warm, announcing engine waits for an
	// answer to a query for a name it has not heard announced (default
	// 100 ms: a holder whose announcement was lost still answers).
	NegativeWait time.Duration
	// Seal, if set, lets the engine seal flows (seal.go); without it a
	// sealed allocation is refused, both ways.
	Seal *SealConfig
	// Log, if set, logs refused sealed allocations (Warn) and key pairs
	// it failed to make ahead of time.
	Log *slog.Logger
}

// Defaults of the bounds on what a peer can make the engine keep.
const (
	DefaultIdleTimeout = 60 * time.Second
	// DefaultRxWait: a busy reader (the IPCP behind a node's ring of
	// 256) takes a ring in well under a millisecond, while one read of
	// the socket (recvmmsg, GRO runs) brings up to some 800 SDUs; a
	// ring that dropped what it could not take at once lost bursts its
	// reader would have taken a moment later, and made the receiving
	// node mark their rise as congestion (docs/benchmarks.md, "A burst
	// waits for its ring").
	DefaultRxWait            = time.Millisecond
	DefaultMaxFlowsPerPeer   = 256
	DefaultMaxPendingPerPeer = 16
	// maxRefusals bounds the remembered refusals (answers to retransmitted
	// requests); beyond it the oldest are forgotten first-come.
	maxRefusals = 1024
	// maxHeard bounds the names learnt from announcements; maxAnnounce
	// the names announced per round.
	maxHeard    = 4096
	maxAnnounce = 256
)

// Counters are the engine's always-on counters; shims count device-level
// drops into them too.
type Counters struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut, CtlIn, CtlOut   atomic.Uint64
	Malformed, NotForUs, UnknownFlow, Pending, WrongPeer      atomic.Uint64
	RxFull, Truncated, TxError, RxError, Busy, PeerLimit      atomic.Uint64
	RxStalls                                                  atomic.Uint64 // a delivery's wait for room in a full port ran out
	FlowsOut, FlowsIn, AllocRetries, AllocFailed, FlowsActive atomic.Uint64
	FlowsExpired                                              atomic.Uint64
	// Sealed flows: SDUs that failed authentication (forged, damaged,
	// cut) or came again (replayed, too old); key exchanges that failed.
	Tampered, Replayed, KexFailed atomic.Uint64
	// Sealed allocations resumed from a ticket (responder), and
	// resumptions answered "no ticket" (the full exchange follows).
	Resumed, NoTicket atomic.Uint64
	// Announcements sent and heard; queries answered "not here" early.
	Announced, Heard, QuickNegative atomic.Uint64
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() shim.Stats {
	return shim.Stats{
		PacketsIn: c.PacketsIn.Load(), BytesIn: c.BytesIn.Load(),
		PacketsOut: c.PacketsOut.Load(), BytesOut: c.BytesOut.Load(),
		CtlIn: c.CtlIn.Load(), CtlOut: c.CtlOut.Load(),
		Drops: shim.Drops{
			Malformed: c.Malformed.Load(), NotForUs: c.NotForUs.Load(),
			UnknownFlow: c.UnknownFlow.Load(), Pending: c.Pending.Load(),
			WrongPeer: c.WrongPeer.Load(), RxFull: c.RxFull.Load(),
			Truncated: c.Truncated.Load(), TxError: c.TxError.Load(),
			RxError: c.RxError.Load(), Busy: c.Busy.Load(),
			PeerLimit: c.PeerLimit.Load(),
			Tampered:  c.Tampered.Load(), Replayed: c.Replayed.Load(),
		},
		KexFailed: c.KexFailed.Load(), SealResumed: c.Resumed.Load(), SealNoTicket: c.NoTicket.Load(),
		RxStalls: c.RxStalls.Load(),
		FlowsOut: c.FlowsOut.Load(), FlowsIn: c.FlowsIn.Load(),
		FlowsActive: c.FlowsActive.Load(), AllocRetries: c.AllocRetries.Load(),
		AllocFailed: c.AllocFailed.Load(), FlowsExpired: c.FlowsExpired.Load(),
		NamesAnnounced: c.Announced.Load(), NamesHeard: c.Heard.Load(), QuickNotFound: c.QuickNegative.Load(),
	}
}

type flowEntry[A Addr] struct {
	local, remote uint32
	peer          A
	port          flow.Port
	name          string
	out           bool
	qos           flow.QoS
	in            inKey[A] // the alloc request that created an incoming flow
	pktsIn        atomic.Uint64
	bytesIn       atomic.Uint64
	pktsOut       atomic.Uint64
	bytesOut      atomic.Uint64
	rxDrops       atomic.Uint64 // SDUs that arrived for a full port: traffic too
	rxStalled     atomic.Bool   // a delivery's wait for room ran out (Config.RxWait); only the receive loop sets it
	sl            *sealing      // a sealed flow's keys and peer; nil: unsealed

	// The sweeper's view, guarded by mu: the packet count it saw last
	// and since when it has not changed.
	seen     uint64
	activeAt time.Time
}

// activity is a count that moves whenever the flow carries an SDU.
func (f *flowEntry[A]) activity() uint64 {
	return f.pktsIn.Load() + f.pktsOut.Load() + f.rxDrops.Load()
}

// peerState is what one peer address holds here: incoming flows and
// incoming allocations in progress.
type peerState struct {
	flows, pending int
}

type peerKey[A Addr] struct {
	peer   A
	remote uint32
}

type inKey[A Addr] struct {
	peer  A
	reqID uint64
	src   uint32
}

// inbound is an incoming allocation: in progress (resp nil) or answered.
type inbound struct {
	at   time.Time
	resp *Msg
	kex  [][]byte // resumed: the ResumeReply's packets, resent (copies) before resp
}

type pending[A Addr] struct {
	peer  A
	reqID uint64
	ch    chan Msg    // the response, buffered 1
	kex   chan KexMsg // sealed: the Reply's pieces; nil: unsealed
}

type cacheEntry[A Addr] struct {
	addr A
	exp  time.Time
}

// Engine is the shared flow allocator and data path of one shim IPCP.
type Engine[A Addr] struct {
	cfg    Config[A]
	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	epoch  time.Time
	// C are the counters.
	C Counters
	// capt is where a capture taps the packets: Input and the transmit
	// paths offer each one (payload without the shim header, and the
	// header's endpoint id) when a capture runs.
	capt capture.Point

	lastNSF atomic.Int64 // ns since epoch of the last no-such-flow reply

	mu       sync.RWMutex
	stopped  bool
	flows    map[uint32]*flowEntry[A]
	byPeer   map[peerKey[A]]uint32
	pend     map[uint32]*pending[A]
	inbound  map[inKey[A]]*inbound
	inFlight int
	refused  int              // entries of inbound that are remembered refusals
	peers    map[A]*peerState // peers with incoming flows or allocations in progress
	names    map[layer.Hash]string
	cache    map[layer.Hash]cacheEntry[A]
	heard    map[layer.Hash]cacheEntry[A] // names others announced (Config.Announce)
	waiters  map[layer.Hash][]chan A
	nextEID  uint32
	nextReq  uint64
	hs       map[inKey[A]]*handshake // incoming sealed requests in their key exchange (seal.go)
	seal     *sealState              // nil: cannot seal
	tickets  *sealflow.Tickets[A]    // resumption tickets; nil: never resume
}

// New returns an engine; Start starts its sweeper, Stop ends it.
func New[A Addr](cfg Config[A]) (*Engine[A], error) {
	if cfg.Runner == nil {
		return nil, layer.NeedRunner(cfg.Kind + ": engine")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	switch {
	case cfg.MaxSDU == 0:
		cfg.MaxSDU = flow.MaxSDU
	case cfg.MaxSDU < flow.MinSDU || cfg.MaxSDU > flow.MaxJumboSDU:
		return nil, fmt.Errorf("%s: engine: max SDU %d: want %d to %d: %w", cfg.Kind, cfg.MaxSDU, flow.MinSDU, flow.MaxJumboSDU, flow.ErrInvalid)
	}
	def(&cfg.RetryBase, 20*time.Millisecond)
	def(&cfg.RetryMax, time.Second)
	def(&cfg.Timeout, 10*time.Second)
	def(&cfg.CacheTTL, time.Minute)
	def(&cfg.NSFInterval, 10*time.Millisecond)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.NegativeWait, 100*time.Millisecond)
	if cfg.RxWait == 0 {
		cfg.RxWait = DefaultRxWait
	}
	if cfg.MaxPendingIn <= 0 {
		cfg.MaxPendingIn = 64
	}
	if cfg.MaxFlowsPerPeer == 0 {
		cfg.MaxFlowsPerPeer = DefaultMaxFlowsPerPeer
	}
	if cfg.MaxPendingPerPeer == 0 {
		cfg.MaxPendingPerPeer = DefaultMaxPendingPerPeer
	}
	if cfg.MaxEID == 0 {
		cfg.MaxEID = ^uint32(0)
	}
	e := &Engine[A]{
		cfg:     cfg,
		epoch:   time.Now(),
		flows:   make(map[uint32]*flowEntry[A]),
		byPeer:  make(map[peerKey[A]]uint32),
		pend:    make(map[uint32]*pending[A]),
		inbound: make(map[inKey[A]]*inbound),
		peers:   make(map[A]*peerState),
		names:   make(map[layer.Hash]string),
		cache:   make(map[layer.Hash]cacheEntry[A]),
		heard:   make(map[layer.Hash]cacheEntry[A]),
		waiters: make(map[layer.Hash][]chan A),
		hs:      make(map[inKey[A]]*handshake),
		// Random starting points make a restarted peer's endpoint ids and
		// request ids unlikely to collide with its previous life's.
		nextEID: rand.Uint32N(cfg.MaxEID),
		nextReq: rand.Uint64(),
	}
	if cfg.Seal != nil {
		if cfg.Seal.Signer == nil {
			return nil, fmt.Errorf("%s: engine: sealing without a signer: %w", cfg.Kind, flow.ErrInvalid)
		}
		e.seal = &sealState{cfg: *cfg.Seal, ephs: make(chan *kex.Ephemeral, ephAhead), rkeys: make(chan *kex.ResumeKey, ephAhead)}
		if cfg.Seal.TicketLife >= 0 {
			e.tickets = sealflow.NewTickets[A](cmp.Or(cfg.Seal.TicketLife, sealflow.DefaultTicketLife))
		}
	}
	e.lastNSF.Store(-int64(cfg.NSFInterval))
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Start starts the sweeper that deallocates idle flows (none if
// Config.IdleTimeout is negative). Call it once; Stop ends it.
func (e *Engine[A]) Start() {
	if e.seal != nil {
		e.keysAhead() // the first sealed allocation needs them too
	}
	if e.cfg.Announce > 0 {
		e.wg.Add(1)
		e.cfg.Runner.Go(e.announceLoop)
	}
	if e.cfg.IdleTimeout < 0 {
		return
	}
	e.wg.Add(1)
	e.cfg.Runner.Go(e.sweepLoop)
}

// announceLoop broadcasts the registered names every Config.Announce and
// forgets expired announcements heard.
func (e *Engine[A]) announceLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.Announce)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.mu.Lock()
			hs := make([]layer.Hash, 0, min(len(e.names), maxAnnounce))
			for h := range e.names {
				if len(hs) == maxAnnounce {
					break
				}
				hs = append(hs, h)
			}
			for h, c := range e.heard {
				if now.After(c.exp) {
					delete(e.heard, h)
				}
			}
			e.mu.Unlock()
			for _, h := range hs {
				e.announce(h)
			}
		}
	}
}

// announce broadcasts that this engine holds the name with hash h.
func (e *Engine[A]) announce(h layer.Hash) {
	e.C.Announced.Add(1)
	e.sendMsg(&Msg{Type: MsgNameReply, Hash: h[:]}, e.cfg.Broadcast)
}

// sweepLoop expires idle flows every quarter of the idle timeout.
func (e *Engine[A]) sweepLoop() {
	defer e.wg.Done()
	t := time.NewTicker(max(e.cfg.IdleTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.expire(now)
		}
	}
}

// expire deallocates the flows whose packet counts have not moved for
// IdleTimeout, telling their peers, and forgets old refusals.
func (e *Engine[A]) expire(now time.Time) {
	var idle []*flowEntry[A]
	e.mu.Lock()
	for _, f := range e.flows {
		if a := f.activity(); a != f.seen {
			f.seen, f.activeAt = a, now
			continue
		}
		if now.Sub(f.activeAt) >= e.cfg.IdleTimeout {
			idle = append(idle, f)
		}
	}
	for _, f := range idle {
		e.removeLocked(f)
	}
	e.expireHandshakes(now)
	e.sweep(now)
	e.mu.Unlock()
	for _, f := range idle {
		e.C.FlowsExpired.Add(1)
		e.sendMsg(&Msg{Type: MsgDealloc, Src: f.local, Dst: f.remote}, f.peer)
		f.port.Close()
	}
}

// Register makes name acceptable in incoming alloc requests and answerable
// in name queries.
func (e *Engine[A]) Register(name string) error {
	if name == "" {
		return fmt.Errorf("%s: register: empty name: %w", e.cfg.Kind, flow.ErrInvalid)
	}
	h := layer.HashName(e.cfg.HashAlgo, name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.names[h]; ok {
		return fmt.Errorf("%s: register %q: %w", e.cfg.Kind, name, flow.ErrExists)
	}
	e.names[h] = name
	if e.cfg.Announce > 0 && !e.stopped {
		e.wg.Add(1)
		e.cfg.Runner.Go(func() { defer e.wg.Done(); e.announce(h) }) // not under mu
	}
	return nil
}

// Unregister withdraws name.
func (e *Engine[A]) Unregister(name string) error {
	h := layer.HashName(e.cfg.HashAlgo, name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.names[h]; !ok {
		return fmt.Errorf("%s: unregister %q: %w", e.cfg.Kind, name, flow.ErrNotFound)
	}
	delete(e.names, h)
	return nil
}

// Registered reports whether name is registered here.
func (e *Engine[A]) Registered(name string) bool {
	h := layer.HashName(e.cfg.HashAlgo, name)
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.names[h]
	return ok
}

// Input handles one received packet's payload p for endpoint eid from a
// peer. p is the caller's buffer and is not retained. It never blocks
// longer than Config.RxWait and allocates nothing for data packets.
func (e *Engine[A]) Input(p []byte, from A, eid uint32) {
	f, sdu := e.inputFlow(p, from, eid)
	if f == nil {
		return
	}
	e.put(f, sdu)
}

// put delivers one SDU to f's port, waiting for room as Config.RxWait
// says, and counts it delivered or dropped.
func (e *Engine[A]) put(f *flowEntry[A], sdu []byte) {
	err := f.port.Write(sdu, e.epoch)
	if err != nil && e.mayWait(f, err) {
		err = f.port.Write(sdu, time.Now().Add(e.cfg.RxWait))
	}
	if err != nil {
		e.rxDropped(f, err, 1)
		return
	}
	e.rxTaken(f)
	e.received(f, len(sdu))
}

// inputFlow does Input's work up to the delivery: a capture sees the
// packet, a control message is handled, a data packet is checked and (a
// sealed flow) opened in place. It returns the flow and the SDU to
// deliver, or nil if there is nothing to deliver (counted).
func (e *Engine[A]) inputFlow(p []byte, from A, eid uint32) (*flowEntry[A], []byte) {
	if s := e.capt.Session(); s != nil {
		s.Add(capture.In, contentOf(eid), uint64(eid), p)
	}
	if eid == 0 {
		e.control(p, from)
		return nil, nil
	}
	if len(p) > e.cfg.MaxSDU {
		e.C.Malformed.Add(1)
		return nil, nil
	}
	e.mu.RLock()
	f := e.flows[eid]
	var pend bool
	if f == nil {
		_, pend = e.pend[eid]
	}
	e.mu.RUnlock()
	switch {
	case f == nil && pend:
		e.C.Pending.Add(1)
		return nil, nil
	case f == nil:
		e.C.UnknownFlow.Add(1)
		e.noSuchFlow(eid, from)
		return nil, nil
	case f.peer != from:
		e.C.WrongPeer.Add(1)
		return nil, nil
	}
	if f.sl != nil {
		// Opened in place: the SDU is the ciphertext's bytes.
		sdu, err := f.sl.opener.Open(p[seal.CtrLen:seal.CtrLen], p, nil)
		if err != nil {
			if errors.Is(err, seal.ErrReplay) {
				e.C.Replayed.Add(1)
			} else {
				e.C.Tampered.Add(1)
			}
			return nil, nil
		}
		p = sdu
	}
	return f, p
}

// mayWait reports whether a delivery to f that its port did not take
// (err) is tried again, waiting up to Config.RxWait for room: not when
// the port is closing or stalled. A delivery is first tried with a
// deadline already past (the epoch), which a port with room takes at
// once, so that the clock is read only for a port that is full.
func (e *Engine[A]) mayWait(f *flowEntry[A], err error) bool {
	return e.cfg.RxWait > 0 && !f.rxStalled.Load() && !errors.Is(err, flow.ErrClosed)
}

// rxTaken records that f's port took a whole delivery: it is read again.
func (e *Engine[A]) rxTaken(f *flowEntry[A]) {
	if f.rxStalled.Load() {
		f.rxStalled.Store(false)
	}
}

// rxDropped counts n SDUs of f its port did not take (err); a full port
// that was waited for is stalled from now (mayWait).
func (e *Engine[A]) rxDropped(f *flowEntry[A], err error, n int) {
	if errors.Is(err, flow.ErrClosed) {
		e.C.UnknownFlow.Add(uint64(n)) // closing: the transmit goroutine deallocates
		return
	}
	if e.cfg.RxWait > 0 && !f.rxStalled.Load() {
		f.rxStalled.Store(true)
		e.C.RxStalls.Add(1)
	}
	e.C.RxFull.Add(uint64(n))
	f.rxDrops.Add(uint64(n))
}

// received counts an SDU of n bytes delivered to f's port.
func (e *Engine[A]) received(f *flowEntry[A], n int) {
	f.pktsIn.Add(1)
	f.bytesIn.Add(uint64(n))
	e.C.PacketsIn.Add(1)
	e.C.BytesIn.Add(uint64(n))
}

// RxBatch delivers a receive batch (one recvmmsg(2)'s datagrams) with
// one port write per run of SDUs for one flow, when the flow's port is a
// flow.BatchPort (the node's rings are: one ring operation and one
// wake-up of the reader for the run, instead of one per SDU). A shim that
// receives into the node's packet buffers (InputBuf) hands a run to a
// BufPort in those buffers instead, copying nothing. One per receiving
// goroutine, not safe for concurrent use; it allocates nothing after
// NewRxBatch.
type RxBatch[A Addr] struct {
	e    *Engine[A]
	f    *flowEntry[A]
	bp   flow.BatchPort
	sdus [][]byte
	// A run in the node's buffers: kp takes ks, whose windows are the
	// SDUs; free gives back what kp did not take.
	kp   BufPort
	ks   []*kernel.Buf
	lens []int // ks' SDU sizes: a pushed buffer is no longer read
	free func([]*kernel.Buf)
}

// BufPort is a flow's port whose SDUs change hands in the node's packet
// buffers (the node's ring ports): a shim that receives into the node's
// buffers pushes them on instead of copying the SDUs out of them.
type BufPort interface {
	// PushBufs hands bufs on (each buffer's window the SDU), waiting for
	// room until the deadline, and returns once at least one is pushed
	// (their entries set to nil: they are the port's now) or with the
	// error; the caller holds the rest.
	PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error)
}

// NewRxBatch returns a batch deliverer for up to max SDUs per run.
func (e *Engine[A]) NewRxBatch(max int) *RxBatch[A] {
	return &RxBatch[A]{e: e, sdus: make([][]byte, 0, max),
		ks: make([]*kernel.Buf, 0, max), lens: make([]int, 0, max)}
}

// SetFreer gives the batch the receive loop's way of giving the node's
// buffers back (its component's FreeBufs): what a BufPort did not take.
// InputBuf hands on no buffer before it is set.
func (b *RxBatch[A]) SetFreer(free func([]*kernel.Buf)) { b.free = free }

// Input is Engine.Input for a packet of a batch: a data SDU for a
// batch-capable port waits in the run until the flow changes, the run
// is full, or Flush; everything else is handled at once (after the run
// so far is delivered, so that nothing overtakes data that came first).
// p must stay untouched until the run is delivered (Flush).
func (b *RxBatch[A]) Input(p []byte, from A, eid uint32) {
	b.InputBuf(p, nil, from, eid)
}

// InputBuf is Input for a packet p that lies in k, a node's buffer the
// receive loop holds (p a slice of k's Data): a data SDU for a flow whose
// port is a BufPort goes on in k, its window set to the SDU, and
// InputBuf reports that k is taken (the batch holds it, then the port or,
// dropped, the node). Otherwise, or with k nil, it is Input.
func (b *RxBatch[A]) InputBuf(p []byte, k *kernel.Buf, from A, eid uint32) bool {
	if eid == 0 {
		b.Flush()
	}
	f, sdu := b.e.inputFlow(p, from, eid)
	if f == nil {
		return false
	}
	var kp BufPort
	if k != nil && b.free != nil {
		kp, _ = f.port.(BufPort)
	}
	if f != b.f || (kp != nil) != (b.kp != nil) || len(b.sdus) == cap(b.sdus) || len(b.ks) == cap(b.ks) {
		b.Flush()
	}
	if kp != nil && windowOf(k, sdu) {
		b.f, b.kp = f, kp
		b.ks = append(b.ks, k)
		b.lens = append(b.lens, len(sdu))
		return true
	}
	if kp != nil { // not in k (cannot happen: the engine opens in place): copied
		b.Flush()
	}
	if b.f == nil {
		bp, ok := f.port.(flow.BatchPort)
		if !ok {
			b.e.put(f, sdu)
			return false
		}
		b.f, b.bp = f, bp
	}
	b.sdus = append(b.sdus, sdu)
	return false
}

// windowOf sets k's window to sdu, a slice of k's data, and reports
// whether it is one.
func windowOf(k *kernel.Buf, sdu []byte) bool {
	data, _, _ := k.Data()
	off := cap(data) - cap(sdu)
	if off < 0 || off+len(sdu) > len(data) || len(sdu) == 0 || &data[off] != &sdu[0] {
		return false
	}
	k.SetWindow(off, off+len(sdu))
	return true
}

// Flush delivers the run in waiting; what the port does not take is
// dropped and counted as Input's drops are.
func (b *RxBatch[A]) Flush() {
	if b.kp != nil {
		b.flushBufs()
		return
	}
	if b.f == nil {
		return
	}
	f, sdus := b.f, b.sdus
	n, err := b.bp.WriteBatch(sdus, b.e.epoch)
	if n < len(sdus) && b.e.mayWait(f, err) {
		m, werr := b.bp.WriteBatch(sdus[n:], time.Now().Add(b.e.cfg.RxWait))
		n, err = n+m, werr
	}
	for _, s := range sdus[:n] {
		b.e.received(f, len(s))
	}
	if n < len(sdus) {
		b.e.rxDropped(f, err, len(sdus)-n)
	} else {
		b.e.rxTaken(f)
	}
	clear(sdus)
	b.sdus, b.f, b.bp = sdus[:0], nil, nil
}

// flushBufs is Flush for a run in the node's buffers: pushed as they are
// while the port takes them, the rest freed and counted as dropped.
func (b *RxBatch[A]) flushBufs() {
	f, ks := b.f, b.ks
	done := 0
	var err error
	for deadline := b.e.epoch; done < len(ks); {
		var n int
		n, err = b.kp.PushBufs(ks[done:], deadline)
		for _, l := range b.lens[done : done+n] {
			b.e.received(f, l)
		}
		done += n
		if n == 0 {
			if deadline != b.e.epoch || !b.e.mayWait(f, err) {
				break
			}
			deadline = time.Now().Add(b.e.cfg.RxWait)
		}
	}
	if done < len(ks) {
		b.e.rxDropped(f, err, len(ks)-done)
		b.free(ks[done:])
	} else {
		b.e.rxTaken(f)
	}
	clear(ks)
	b.ks, b.lens, b.f, b.kp = ks[:0], b.lens[:0], nil, nil
}

// noSuchFlow tells a peer that eid does not exist here, at most once per
// NSFInterval so that a flood of stale data is not amplified.
func (e *Engine[A]) noSuchFlow(eid uint32, to A) {
	now := int64(time.Since(e.epoch))
	last := e.lastNSF.Load()
	if now-last < int64(e.cfg.NSFInterval) || !e.lastNSF.CompareAndSwap(last, now) {
		return
	}
	e.sendMsg(&Msg{Type: MsgNoSuchFlow, Src: eid}, to)
}

func (e *Engine[A]) control(p []byte, from A) {
	if IsKex(p) {
		e.onKex(p, from)
		return
	}
	m, err := DecodeMsg(p)
	if err != nil {
		e.C.Malformed.Add(1)
		return
	}
	e.C.CtlIn.Add(1)
	switch m.Type {
	case MsgAllocReq:
		e.onAllocReq(&m, from)
	case MsgAllocResp:
		e.onAllocResp(&m, from)
	case MsgDealloc:
		e.mu.RLock()
		f := e.flows[m.Dst]
		e.mu.RUnlock()
		if f != nil && f.peer == from && f.remote == m.Src && e.remove(f) {
			f.port.Close()
		}
	case MsgNoSuchFlow:
		e.mu.RLock()
		f := e.flows[e.byPeer[peerKey[A]{from, m.Src}]]
		e.mu.RUnlock()
		if f != nil && f.peer == from && f.remote == m.Src && e.remove(f) {
			f.port.Close()
		}
	case MsgNameQuery:
		e.mu.RLock()
		_, ok := e.names[layer.Hash(m.Hash)]
		e.mu.RUnlock()
		if ok {
			e.sendMsg(&Msg{Type: MsgNameReply, Hash: m.Hash}, from)
		}
	case MsgNameReply:
		h := layer.Hash(m.Hash)
		e.mu.Lock()
		ws, waited := e.waiters[h]
		_, cached := e.cache[h]
		if waited || cached { // unsolicited answers are not cached
			e.cache[h] = cacheEntry[A]{from, time.Now().Add(e.cfg.CacheTTL)}
		}
		delete(e.waiters, h)
		if !waited && !cached && e.cfg.Announce > 0 {
			// An announcement: kept apart from the cache, bounded.
			if _, ok := e.heard[h]; ok || len(e.heard) < maxHeard {
				e.heard[h] = cacheEntry[A]{from, time.Now().Add(3 * e.cfg.Announce)}
				e.C.Heard.Add(1)
			}
		}
		e.mu.Unlock()
		for _, ch := range ws {
			select {
			case ch <- from:
			default:
			}
		}
	}
}

func (e *Engine[A]) onAllocReq(m *Msg, from A) {
	key := inKey[A]{from, m.ReqID, m.Src}
	resp := Msg{Type: MsgAllocResp, ReqID: m.ReqID, Dst: m.Src}
	now := time.Now()
	e.mu.Lock()
	if in, ok := e.inbound[key]; ok { // a retransmission
		r, kexp := in.resp, in.kex
		var reply [][]byte
		if h := e.hs[key]; h != nil {
			reply = h.reply // sealed: the Reply was lost
		}
		e.mu.Unlock()
		if r != nil {
			e.resend(kexp, from) // resumed: the ResumeReply goes before the answer
			e.sendMsg(r, from)
		}
		e.resend(reply, from) // sealed: the Reply was lost
		return
	}
	name, ok := e.names[layer.Hash(m.Hash)]
	ps := e.peers[from]
	switch {
	case !ok:
		resp.Result = ResNotFound
	case e.stopped || e.inFlight >= e.cfg.MaxPendingIn:
		resp.Result = ResBusy
		e.C.Busy.Add(1)
	case ps != nil && e.atPeerLimit(ps):
		resp.Result = ResBusy
		e.C.PeerLimit.Add(1)
	case m.QoS.Sealed && e.seal == nil:
		resp.Result = ResRefused
		e.kexFailed(from, name, errNoSigner)
	case !m.QoS.Sealed && e.seal != nil && e.seal.cfg.Require:
		resp.Result = ResRefused
		e.kexFailed(from, name, errors.New("an unsealed request, and this shim seals every flow"))
	}
	if resp.Result != ResOK {
		e.mu.Unlock()
		e.sendMsg(&resp, from)
		return
	}
	if len(e.inbound) >= 256 {
		e.sweep(now)
	}
	if ps == nil {
		ps = &peerState{}
		e.peers[from] = ps
	}
	ps.pending++
	in := &inbound{at: now}
	e.inbound[key] = in
	e.inFlight++
	if m.QoS.Sealed { // the key exchange first (seal.go)
		e.hs[key] = &handshake{name: name, hash: m.Hash, qos: m.QoS, in: in, expires: now.Add(e.cfg.Timeout)}
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	e.cfg.Runner.Go(func() { e.accept(key, in, name, m.QoS, nil) })
}

// atPeerLimit reports whether a peer holding ps may not start another
// incoming allocation. Called with mu held.
func (e *Engine[A]) atPeerLimit(ps *peerState) bool {
	return e.cfg.MaxFlowsPerPeer > 0 && ps.flows+ps.pending >= e.cfg.MaxFlowsPerPeer ||
		e.cfg.MaxPendingPerPeer > 0 && ps.pending >= e.cfg.MaxPendingPerPeer
}

// peerDone drops a peer's entry once it holds nothing. Called with mu held.
func (e *Engine[A]) peerDone(peer A) {
	if ps := e.peers[peer]; ps != nil && ps.flows == 0 && ps.pending == 0 {
		delete(e.peers, peer)
	}
}

// sweep forgets answered refusals older than a minute, and the oldest
// beyond maxRefusals; accepted flows' entries go with their flows.
// Called with mu held.
func (e *Engine[A]) sweep(now time.Time) {
	for k, in := range e.inbound {
		if in.resp != nil && in.resp.Result != ResOK && now.Sub(in.at) > time.Minute {
			delete(e.inbound, k)
			e.refused--
		}
	}
	if e.refused <= maxRefusals {
		return
	}
	// Too many recent ones: keep the newest half. A retransmission of a
	// forgotten request is asked of the IRM again.
	ats := make([]time.Time, 0, e.refused)
	for _, in := range e.inbound {
		if in.resp != nil && in.resp.Result != ResOK {
			ats = append(ats, in.at)
		}
	}
	slices.SortFunc(ats, time.Time.Compare)
	keep := maxRefusals / 2
	cut := ats[len(ats)-keep] // the oldest kept
	for k, in := range e.inbound {
		if in.resp == nil || in.resp.Result == ResOK {
			continue
		}
		if in.at.Before(cut) || in.at.Equal(cut) && e.refused > keep {
			delete(e.inbound, k)
			e.refused--
		}
	}
}

func (e *Engine[A]) accept(key inKey[A], in *inbound, name string, q flow.QoS, sl *sealing) {
	defer e.wg.Done()
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Timeout)
	ar := ipcp.AllocReq{Dst: name, QoS: q}
	ar.MaxSDU = e.flowLimit(sl)
	if sl != nil {
		ar.Peer = sl.peer
	}
	port, err := e.cfg.Upcalls.FlowReq(ctx, ar)
	cancel()
	if err == nil && port == nil {
		err = flow.ErrRefused
	}
	resp := Msg{Type: MsgAllocResp, ReqID: key.reqID, Dst: key.src}
	var f *flowEntry[A]
	var stale *flowEntry[A]
	e.mu.Lock()
	e.inFlight--
	e.peers[key.peer].pending-- // kept since onAllocReq: pending > 0
	if err == nil && e.stopped {
		err = flow.ErrClosed
	}
	if err == nil {
		if eid, ok := e.allocEID(); ok {
			f = &flowEntry[A]{local: eid, remote: key.src, peer: key.peer, port: port, name: name, qos: q, in: key, sl: sl}
			stale = e.install(f)
			resp.Src = eid
		} else {
			err = flow.ErrBusy
		}
	}
	resp.Result = resultOf(err)
	in.resp = &resp
	var kexp [][]byte
	if err == nil && sl != nil {
		in.kex, kexp = sl.reply, sl.reply
	}
	if err != nil {
		in.at = time.Now()
		e.refused++
		if e.refused > maxRefusals {
			e.sweep(in.at)
		}
	}
	e.peerDone(key.peer)
	e.mu.Unlock()
	if stale != nil {
		stale.port.Close()
	}
	if err != nil {
		if port != nil {
			port.Close()
		}
	} else {
		e.C.FlowsIn.Add(1)
		e.cfg.Runner.Go(func() { e.txLoop(f) })
	}
	e.resend(kexp, key.peer) // resumed: the ResumeReply first
	e.sendMsg(&resp, key.peer)
}

func (e *Engine[A]) onAllocResp(m *Msg, from A) {
	e.mu.RLock()
	p := e.pend[m.Dst]
	f := e.flows[m.Dst]
	e.mu.RUnlock()
	if p != nil {
		if p.peer == from && p.reqID == m.ReqID {
			select {
			case p.ch <- *m:
			default: // a duplicate
			}
		}
		return
	}
	if m.Result == ResOK && (f == nil || f.peer != from || f.remote != m.Src) {
		// The allocation was abandoned: release the peer's orphan.
		e.sendMsg(&Msg{Type: MsgDealloc, Src: m.Dst, Dst: m.Src}, from)
	}
}

// allocEID returns a free endpoint id. Called with mu held.
func (e *Engine[A]) allocEID() (uint32, bool) {
	if uint64(len(e.flows)+len(e.pend)) >= uint64(e.cfg.MaxEID) {
		return 0, false
	}
	for {
		e.nextEID++
		if e.nextEID == 0 || e.nextEID > e.cfg.MaxEID {
			e.nextEID = 1
		}
		if e.flows[e.nextEID] == nil && e.pend[e.nextEID] == nil {
			return e.nextEID, true
		}
	}
}

// install adds f to the tables and accounts for its transmit goroutine,
// which the caller starts. A flow that the same peer had with the same
// remote endpoint id is stale (the peer restarted): it is removed and
// returned for the caller to close. Called with mu held, not stopped.
func (e *Engine[A]) install(f *flowEntry[A]) (stale *flowEntry[A]) {
	k := peerKey[A]{f.peer, f.remote}
	if old, ok := e.flows[e.byPeer[k]]; ok && old.peer == f.peer && old.remote == f.remote {
		e.removeLocked(old)
		stale = old
	}
	e.flows[f.local] = f
	e.byPeer[k] = f.local
	f.activeAt = time.Now()
	if !f.out {
		ps := e.peers[f.peer]
		if ps == nil {
			ps = &peerState{}
			e.peers[f.peer] = ps
		}
		ps.flows++
	}
	e.C.FlowsActive.Add(1)
	e.wg.Add(1)
	return stale
}

// remove takes f out of the tables; only the caller that gets true closes
// its port (and, if it is the local side closing, tells the peer).
func (e *Engine[A]) remove(f *flowEntry[A]) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.removeLocked(f)
}

func (e *Engine[A]) removeLocked(f *flowEntry[A]) bool {
	if e.flows[f.local] != f {
		return false
	}
	delete(e.flows, f.local)
	k := peerKey[A]{f.peer, f.remote}
	if e.byPeer[k] == f.local {
		delete(e.byPeer, k)
	}
	if !f.out {
		delete(e.inbound, f.in)
		if ps := e.peers[f.peer]; ps != nil {
			ps.flows--
			e.peerDone(f.peer)
		}
	}
	e.C.FlowsActive.Add(^uint64(0))
	return true
}

// txLoop moves SDUs from the flow's port to the wire until the port closes:
// a batch at a time when both take batches, else one by one.
func (e *Engine[A]) txLoop(f *flowEntry[A]) {
	defer e.wg.Done()
	if bw, ok := e.cfg.Wire.(BatchWire[A]); ok {
		if lp, ok := f.port.(flow.LendPort); ok && e.cfg.Headroom+seal.CtrLen <= lendHead {
			if s := bw.NewBatchSender(); s != nil {
				e.txLendLoop(f, lp, s)
				return
			}
		}
		if bp, ok := f.port.(flow.BatchPort); ok {
			if s := bw.NewBatchSender(); s != nil {
				e.txBatchLoop(f, bp, s)
				return
			}
		}
	}
	buf := make([]byte, e.cfg.Headroom+e.cfg.MaxSDU)
	rd := e.sduRoom(f, buf)
	for {
		n, err := f.port.Read(rd, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				e.C.Truncated.Add(1)
				continue
			}
			e.txEnd(f)
			return
		}
		e.sendSDU(f, buf, n)
	}
}

// txEnd ends a flow whose port closed under the transmit loop (by the
// user, or broken): it deallocates, unless the peer or Stop already
// removed the flow.
func (e *Engine[A]) txEnd(f *flowEntry[A]) {
	if e.remove(f) {
		e.sendMsg(&Msg{Type: MsgDealloc, Src: f.local, Dst: f.remote}, f.peer)
		f.port.Close()
	}
}

// txBatch is a flow transmit loop's batch state, allocated once per flow.
type txBatch struct {
	bufs  [][]byte // TxBatch transmit buffers (Headroom+MaxSDU)
	rooms [][]byte // where in each an SDU is read (sduRoom)
	sizes []int    // ReadBatch's SDU sizes
	pkts  [][]byte // the packets to send
	plen  []int    // their SDU sizes, for the counters
}

func (e *Engine[A]) newTxBatch(f *flowEntry[A]) *txBatch {
	b := &txBatch{
		bufs: make([][]byte, TxBatch), rooms: make([][]byte, TxBatch), sizes: make([]int, TxBatch),
		pkts: make([][]byte, 0, TxBatch), plen: make([]int, 0, TxBatch),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, e.cfg.Headroom+e.cfg.MaxSDU)
		b.rooms[i] = e.sduRoom(f, b.bufs[i])
	}
	return b
}

// txBatchLoop is txLoop for a batch port and a batch wire: one port read
// and one send (one system call) per batch of up to TxBatch SDUs.
func (e *Engine[A]) txBatchLoop(f *flowEntry[A], bp flow.BatchPort, s BatchSender[A]) {
	b := e.newTxBatch(f)
	for {
		n, err := bp.ReadBatch(b.rooms, b.sizes, time.Time{})
		if err != nil {
			if !errors.Is(err, flow.ErrTruncated) {
				e.txEnd(f)
				return
			}
			e.C.Truncated.Add(1)
			n-- // the truncated SDU ends the batch: drop it
		}
		e.sendBatch(f, b, n, s)
	}
}

// lendHead is the most room in front of an SDU a LendPort is asked for:
// the node's rings lend kernel.Headroom (128 bytes), more than any shim's
// header and a sealed SDU's counter take.
const lendHead = 64

// txLendLoop is txBatchLoop for a port that lends its buffers (the
// node's rings): each SDU is sealed and sent where the port holds it,
// the shim header written into the room in front of it, with no copy
// out of the port; one ring operation and one send per batch.
func (e *Engine[A]) txLendLoop(f *flowEntry[A], lp flow.LendPort, s BatchSender[A]) {
	defer lp.Return()
	b := &txBatch{pkts: make([][]byte, 0, TxBatch), plen: make([]int, 0, TxBatch)}
	frames := make([][]byte, TxBatch)
	head, room := e.cfg.Headroom, e.cfg.MaxSDU // room: the longest SDU, as sduRoom has it
	if f.sl != nil {
		head, room = head+seal.CtrLen, e.SealedMaxSDU()
	}
	for {
		n, err := lp.Lend(frames, head, time.Time{})
		if err != nil {
			e.txEnd(f) // the deferred Return gives back nothing: Lend lent nothing
			return
		}
		b.pkts, b.plen = b.pkts[:0], b.plen[:0]
		for _, fr := range frames[:n] {
			sz := len(fr) - head
			if sz > room || f.sl != nil && cap(fr)-len(fr) < seal.TagLen {
				e.C.Truncated.Add(1) // too long for the flow: as the copying loop counts it
				continue
			}
			// prepSDU wants the SDU at sduRoom: behind the shim's
			// headroom and, sealed, the counter, as the frame has it.
			if pkt, ok := e.prepSDU(f, fr, sz); ok {
				b.pkts = append(b.pkts, pkt)
				b.plen = append(b.plen, sz)
			}
		}
		e.sendPkts(f, b, s)
		clear(frames[:n])
		lp.Return()
	}
}

// sendBatch seals and sends the n SDUs read into b, counting as sendSDU
// does. It allocates nothing.
func (e *Engine[A]) sendBatch(f *flowEntry[A], b *txBatch, n int, s BatchSender[A]) {
	b.pkts, b.plen = b.pkts[:0], b.plen[:0]
	for i := range n {
		if pkt, ok := e.prepSDU(f, b.bufs[i], b.sizes[i]); ok {
			b.pkts = append(b.pkts, pkt)
			b.plen = append(b.plen, b.sizes[i])
		}
	}
	e.sendPkts(f, b, s)
}

// sendPkts sends b.pkts (their SDU sizes in b.plen) in as few calls as s
// takes, counting what went and what failed. It allocates nothing.
func (e *Engine[A]) sendPkts(f *flowEntry[A], b *txBatch, s BatchSender[A]) {
	for i := 0; i < len(b.pkts); {
		k, _ := s.SendBatch(b.pkts[i:], f.peer, f.remote)
		var bytes uint64
		for _, l := range b.plen[i : i+k] {
			bytes += uint64(l)
		}
		f.pktsOut.Add(uint64(k))
		f.bytesOut.Add(bytes)
		e.C.PacketsOut.Add(uint64(k))
		e.C.BytesOut.Add(bytes)
		i += k
		if i < len(b.pkts) {
			// pkts[i] failed (with an error, or a sender that sent
			// nothing): count it lost, as sendSDU does, and go on.
			e.C.TxError.Add(1)
			i++
		}
	}
}

// sduRoom is where in a transmit buffer (Headroom+MaxSDU bytes) an
// SDU of f is read: after the headroom, and for a sealed flow after the
// counter too, with room left for the tag.
func (e *Engine[A]) sduRoom(f *flowEntry[A], buf []byte) []byte {
	h := e.cfg.Headroom
	if f.sl != nil {
		return buf[h+seal.CtrLen : h+seal.CtrLen+e.SealedMaxSDU()]
	}
	return buf[h:]
}

// sendSDU seals (a sealed flow, in place) and sends the SDU of n bytes
// read into sduRoom(f, buf). It allocates nothing.
func (e *Engine[A]) sendSDU(f *flowEntry[A], buf []byte, n int) {
	pkt, ok := e.prepSDU(f, buf, n)
	if !ok {
		return
	}
	if err := e.cfg.Wire.Send(pkt, f.peer, f.remote); err != nil {
		e.C.TxError.Add(1)
		return
	}
	f.pktsOut.Add(1)
	f.bytesOut.Add(uint64(n))
	e.C.PacketsOut.Add(1)
	e.C.BytesOut.Add(uint64(n))
}

// prepSDU seals (a sealed flow, in place) the SDU of n bytes read into
// sduRoom(f, buf), shows it to a capture, and returns the packet to send
// (headroom included); false if sealing failed (counted).
func (e *Engine[A]) prepSDU(f *flowEntry[A], buf []byte, n int) ([]byte, bool) {
	h := e.cfg.Headroom
	pkt := buf[:h+n]
	if f.sl != nil {
		out, err := f.sl.sealer.Seal(buf[h:h], buf[h+seal.CtrLen:h+seal.CtrLen+n], nil)
		if err != nil {
			e.C.TxError.Add(1)
			return nil, false
		}
		pkt = buf[:h+len(out)]
	}
	if s := e.capt.Session(); s != nil {
		s.Add(capture.Out, capture.SDU, uint64(f.remote), pkt[h:])
	}
	return pkt, true
}

// Alloc allocates a flow to req.Dst at the peer dst, retransmitting the
// request with exponential backoff until an answer, ctx's end (or
// Config.Timeout if ctx has no deadline) or Stop. On success the engine
// owns port until it closes it.
func (e *Engine[A]) Alloc(ctx context.Context, dst A, req ipcp.AllocReq, port flow.Port) error {
	_, err := e.AllocPeer(ctx, dst, req, port)
	return err
}

// errNoSigner is why a shim without Config.Seal refuses sealed flows.
var errNoSigner = errors.New("this shim cannot seal flows: it has no signer (node identity)")

// AllocPeer is Alloc that also returns, for a sealed flow (req.QoS.Sealed
// or SealConfig.Require), the accepting node's verified identity and the
// flow's smaller largest SDU. A sealed allocation that cannot be sealed
// (no signer here, a peer that answers unsealed, a failed key exchange)
// fails with flow.ErrRefused: never a silent downgrade.
func (e *Engine[A]) AllocPeer(ctx context.Context, dst A, req ipcp.AllocReq, port flow.Port) (res ipcp.AllocResult, err error) {
	defer func() {
		if err != nil {
			e.C.AllocFailed.Add(1)
		}
	}()
	sealed := req.QoS.Sealed || e.seal != nil && e.seal.cfg.Require
	if sealed && e.seal == nil {
		return res, fmt.Errorf("%s: alloc %q: %w: %w", e.cfg.Kind, req.Dst, errNoSigner, flow.ErrRefused)
	}
	req.QoS.Sealed = sealed
	h := layer.HashName(e.cfg.HashAlgo, req.Dst)
	p := &pending[A]{peer: dst, ch: make(chan Msg, 1)}
	if sealed {
		p.kex = make(chan KexMsg, 2*sealflow.MaxParts)
	}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return res, fmt.Errorf("%s: alloc %q: stopped: %w", e.cfg.Kind, req.Dst, flow.ErrClosed)
	}
	eid, ok := e.allocEID()
	if !ok {
		e.mu.Unlock()
		return res, fmt.Errorf("%s: alloc %q: no endpoint ids left: %w", e.cfg.Kind, req.Dst, flow.ErrBusy)
	}
	e.nextReq++
	p.reqID = e.nextReq
	e.pend[eid] = p
	e.mu.Unlock()

	pkt, err := e.encode(&Msg{Type: MsgAllocReq, ReqID: p.reqID, Src: eid, Hash: h[:], QoS: req.QoS})
	if err != nil {
		e.abandon(eid, p)
		return res, fmt.Errorf("%s: alloc %q: %v: %w", e.cfg.Kind, req.Dst, err, flow.ErrInvalid)
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	pkts := [][]byte{pkt} // what a retransmission sends
	var (
		in     *kex.Initiator // sealed, full exchange: until the Reply
		rm     *kex.Resumer   // sealed, resuming from a ticket: until the ResumeReply
		reply  sealflow.Pieces
		sl     *sealing // sealed: the finished key exchange
		okResp *Msg     // resuming: an ok answer that came before the ResumeReply
		okWait <-chan time.Time
	)
	refuse := func(err error) (ipcp.AllocResult, error) {
		e.abandon(eid, p)
		e.C.KexFailed.Add(1)
		return res, fmt.Errorf("%s: alloc %q at %s: sealed flow: %w: %w", e.cfg.Kind, req.Dst, dst, err, flow.ErrRefused)
	}
	// full starts the full key exchange: the request and the Hello's pieces.
	full := func() error {
		cfg, err := e.kexConfig(ctx, h[:], req.QoS)
		if err != nil {
			return err
		}
		var hello []byte
		if in, hello, err = kex.Start(cfg); err != nil {
			return err
		}
		ps, err := e.kexPkts(KexMsg{Type: MsgKex, ReqID: p.reqID, Src: eid, Step: StepHello}, hello)
		if err != nil {
			return err
		}
		pkts = append([][]byte{pkt}, ps...)
		return nil
	}
	if sealed {
		var err error
		if t, ok := e.takeTicket(dst); ok {
			var c, hello []byte
			if c, err = e.kexContext(h[:], req.QoS); err == nil {
				rm, hello, err = kex.StartResume(t, c, e.resumeKey(), e.seal.cfg.aeads())
			}
			var ps [][]byte
			if err == nil {
				ps, err = e.kexPkts(KexMsg{Type: MsgKex, ReqID: p.reqID, Src: eid, Step: StepResume}, hello)
			}
			pkts = append(pkts, ps...)
		} else {
			err = full()
		}
		if err != nil {
			return refuse(err)
		}
	}
	// install takes the flow the ok answer r gives.
	install := func(r *Msg) (ipcp.AllocResult, error) {
		f := &flowEntry[A]{local: eid, remote: r.Src, peer: dst, port: port, name: req.Dst, out: true, qos: req.QoS, sl: sl}
		e.mu.Lock()
		delete(e.pend, eid)
		if e.stopped {
			e.mu.Unlock()
			e.sendMsg(&Msg{Type: MsgDealloc, Src: eid, Dst: r.Src}, dst)
			return res, fmt.Errorf("%s: alloc %q: stopped: %w", e.cfg.Kind, req.Dst, flow.ErrClosed)
		}
		stale := e.install(f)
		e.mu.Unlock()
		if stale != nil {
			stale.port.Close()
		}
		e.C.FlowsOut.Add(1)
		e.cfg.Runner.Go(func() { e.txLoop(f) })
		res.MaxSDU = e.flowLimit(sl)
		if sl != nil {
			res.Peer = sl.peer
		}
		return res, nil
	}
	// unsealedAnswer refuses an ok answer to a sealed request that came
	// without the key exchange: the request lost its seal on the way (a
	// downgrade) or the peer ignores it.
	unsealedAnswer := func(r *Msg) (ipcp.AllocResult, error) {
		e.abandon(eid, p)
		e.sendMsg(&Msg{Type: MsgDealloc, Src: eid, Dst: r.Src}, dst)
		e.C.KexFailed.Add(1)
		return res, fmt.Errorf("%s: alloc %q at %s: asked sealed, answered unsealed (a downgrade?): %w", e.cfg.Kind, req.Dst, dst, flow.ErrRefused)
	}
	rto := e.cfg.RetryBase
	t := time.NewTimer(rto)
	defer t.Stop()
	for _, p := range pkts {
		e.sendPkt(p, dst)
	}
	for {
		select {
		case r := <-p.ch:
			if r.Result != ResOK {
				e.abandon(eid, p)
				return res, fmt.Errorf("%s: alloc %q at %s: %w", e.cfg.Kind, req.Dst, dst, errOf(r.Result))
			}
			switch {
			case !sealed || sl != nil:
				return install(&r)
			case rm != nil && okResp == nil:
				// Resuming, the answer overtook the ResumeReply: give it
				// a moment (retransmissions resend both).
				okResp, okWait = &r, time.After(e.cfg.RetryMax)
				continue
			case rm != nil:
				continue
			}
			return unsealedAnswer(&r)
		case <-okWait:
			return unsealedAnswer(okResp)
		case m := <-p.kex: // nil unless sealed
			if sl != nil {
				continue // a repeated Reply
			}
			switch {
			case m.Step == StepNoTicket && rm != nil:
				// The responder has no such ticket: the full exchange,
				// on the same request.
				rm, reply = nil, sealflow.Pieces{}
				if err := full(); err != nil {
					return refuse(err)
				}
				for _, p := range pkts {
					e.sendPkt(p, dst)
				}
				rto = e.cfg.RetryBase
				t.Reset(rto)
				continue
			case m.Step == StepResumeReply && rm != nil:
				b, ok := reply.Add(m.Part, m.Parts, m.Data)
				if !ok {
					continue
				}
				r, err := rm.Reply(b)
				if err == nil {
					sl, err = newSealing(r)
				}
				if err != nil {
					return refuse(err)
				}
				e.putTicket(dst, r.Next)
				if okResp != nil {
					return install(okResp)
				}
				continue
			case m.Step != StepReply || in == nil:
				continue
			}
			b, ok := reply.Add(m.Part, m.Parts, m.Data)
			if !ok {
				continue
			}
			fin, err := in.Reply(ctx, b)
			if err == nil {
				pkts, err = e.kexPkts(KexMsg{Type: MsgKex, ReqID: p.reqID, Src: eid, Step: StepFinish}, fin)
			}
			if err != nil {
				return refuse(err)
			}
			for _, p := range pkts {
				e.sendPkt(p, dst)
			}
			rto = e.cfg.RetryBase
			t.Reset(rto)
			// The keys, while the Finish travels and the responder
			// checks it.
			r, err := in.Result()
			if err == nil {
				sl, err = newSealing(r)
			}
			if err != nil {
				return refuse(err)
			}
			e.putTicket(dst, r.Next)
		case <-t.C:
			rto = min(2*rto, e.cfg.RetryMax)
			t.Reset(rto)
			e.C.AllocRetries.Add(1)
			for _, p := range pkts {
				e.sendPkt(p, dst)
			}
		case <-ctx.Done():
			e.abandon(eid, p)
			return res, e.ctxErr(ctx, "alloc", req.Dst)
		case <-e.ctx.Done():
			e.abandon(eid, p)
			return res, fmt.Errorf("%s: alloc %q: stopped: %w", e.cfg.Kind, req.Dst, flow.ErrClosed)
		}
	}
}

func (e *Engine[A]) ctxErr(ctx context.Context, op, name string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s %q: %w (%w)", e.cfg.Kind, op, name, flow.ErrTimeout, ctx.Err())
	}
	return fmt.Errorf("%s: %s %q: %w", e.cfg.Kind, op, name, ctx.Err())
}

func (e *Engine[A]) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.cfg.Timeout)
}

// abandon drops a pending allocation; a success that raced in is undone.
func (e *Engine[A]) abandon(eid uint32, p *pending[A]) {
	e.mu.Lock()
	if e.pend[eid] == p {
		delete(e.pend, eid)
	}
	e.mu.Unlock()
	select {
	case r := <-p.ch:
		if r.Result == ResOK {
			e.sendMsg(&Msg{Type: MsgDealloc, Src: eid, Dst: r.Src}, p.peer)
		}
	default:
	}
}

// Resolve finds the peer holding name: from the cache, or by sending name
// queries to Config.Broadcast (with backoff) until a holder answers or ctx
// ends.
func (e *Engine[A]) Resolve(ctx context.Context, name string) (A, error) {
	var zero A
	h := layer.HashName(e.cfg.HashAlgo, name)
	ch := make(chan A, 1)
	e.mu.Lock()
	now := time.Now()
	if c, ok := e.cache[h]; ok && now.Before(c.exp) {
		e.mu.Unlock()
		return c.addr, nil
	}
	if c, ok := e.heard[h]; ok && now.Before(c.exp) {
		e.mu.Unlock()
		return c.addr, nil
	}
	// Listened long enough to have heard every holder's announcement:
	// a holder whose announcement was lost answers the query at once.
	quick := e.cfg.Announce > 0 && now.Sub(e.epoch) >= 3*e.cfg.Announce/2
	if e.stopped {
		e.mu.Unlock()
		return zero, fmt.Errorf("%s: query %q: stopped: %w", e.cfg.Kind, name, flow.ErrClosed)
	}
	e.waiters[h] = append(e.waiters[h], ch)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		ws := e.waiters[h]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(e.waiters, h)
		} else {
			e.waiters[h] = ws
		}
		e.mu.Unlock()
	}()
	pkt, err := e.encode(&Msg{Type: MsgNameQuery, Hash: h[:]})
	if err != nil {
		return zero, err
	}
	rto := e.cfg.RetryBase
	t := time.NewTimer(rto)
	defer t.Stop()
	var negative <-chan time.Time
	if quick {
		nt := time.NewTimer(e.cfg.NegativeWait)
		defer nt.Stop()
		negative = nt.C
	}
	e.sendPkt(pkt, e.cfg.Broadcast)
	for {
		select {
		case a := <-ch:
			return a, nil
		case <-negative:
			e.C.QuickNegative.Add(1)
			return zero, fmt.Errorf("%s: query %q: not announced, no answer in %v: %w", e.cfg.Kind, name, e.cfg.NegativeWait, flow.ErrNotFound)
		case <-t.C:
			rto = min(2*rto, e.cfg.RetryMax)
			t.Reset(rto)
			e.C.AllocRetries.Add(1)
			e.sendPkt(pkt, e.cfg.Broadcast)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return zero, fmt.Errorf("%s: query %q: no answer: %w", e.cfg.Kind, name, flow.ErrNotFound)
			}
			return zero, e.ctxErr(ctx, "query", name)
		case <-e.ctx.Done():
			return zero, fmt.Errorf("%s: query %q: stopped: %w", e.cfg.Kind, name, flow.ErrClosed)
		}
	}
}

// Heard returns those of names whose holders this engine heard announce
// them (Config.Announce) and whose announcement has not expired: names
// reachable directly on its segment. Read-only; nil without announcements.
func (e *Engine[A]) Heard(names []string) []string {
	if e.cfg.Announce <= 0 {
		return nil
	}
	var out []string
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		if c, ok := e.heard[layer.HashName(e.cfg.HashAlgo, n)]; ok && now.Before(c.exp) {
			out = append(out, n)
		}
	}
	return out
}

// Forget drops name from the query cache (after an allocation to the
// cached holder failed).
func (e *Engine[A]) Forget(name string) {
	h := layer.HashName(e.cfg.HashAlgo, name)
	e.mu.Lock()
	delete(e.cache, h)
	delete(e.heard, h)
	e.mu.Unlock()
}

func (e *Engine[A]) encode(m *Msg) ([]byte, error) {
	return EncodeMsg(make([]byte, e.cfg.Headroom, e.cfg.Headroom+96), m)
}

func (e *Engine[A]) sendMsg(m *Msg, to A) {
	pkt, err := e.encode(m)
	if err != nil {
		e.C.TxError.Add(1)
		return
	}
	e.sendPkt(pkt, to)
}

func (e *Engine[A]) sendPkt(pkt []byte, to A) {
	if s := e.capt.Session(); s != nil {
		s.Add(capture.Out, capture.ShimCtl, 0, pkt[e.cfg.Headroom:])
	}
	if err := e.cfg.Wire.Send(pkt, to, 0); err != nil {
		e.C.TxError.Add(1)
		return
	}
	e.C.CtlOut.Add(1)
}

// Stop deallocates every flow (telling the peers), closes their ports and
// fails allocations in progress. The shim then closes its device and calls
// Wait. Stop is idempotent.
func (e *Engine[A]) Stop() {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.stopped = true
	var fs []*flowEntry[A]
	for _, f := range e.flows {
		fs = append(fs, f)
	}
	for _, f := range fs {
		e.removeLocked(f)
	}
	e.mu.Unlock()
	e.cancel()
	for _, f := range fs {
		e.sendMsg(&Msg{Type: MsgDealloc, Src: f.local, Dst: f.remote}, f.peer)
		f.port.Close()
	}
}

// LinkDown closes every flow's port at once because their link is gone
// (a cut cable, an interface set down): the peers cannot be told, and the
// flows' users (an upper layer's adjacency) learn it now instead of when
// their keepalives time out. The engine stays usable: flows can be
// allocated again once the link is back. It returns how many flows
// closed.
func (e *Engine[A]) LinkDown() int {
	e.mu.Lock()
	fs := make([]*flowEntry[A], 0, len(e.flows))
	for _, f := range e.flows {
		fs = append(fs, f)
	}
	for _, f := range fs {
		e.removeLocked(f)
	}
	e.mu.Unlock()
	for _, f := range fs {
		f.port.Close()
	}
	return len(fs)
}

// contentOf is what a packet for endpoint eid carries.
func contentOf(eid uint32) capture.Content {
	if eid == 0 {
		return capture.ShimCtl
	}
	return capture.SDU
}

// Capture answers the capture management command (capture.Cmd) for the
// shim called who.
func (e *Engine[A]) Capture(who string, args map[string]string) (ipcp.MgmtResp, error) {
	return e.capt.Mgmt(who, e.layerKind(), args)
}

// CapturePoint is the engine's capture point (for tests and for shims
// that serve the command themselves).
func (e *Engine[A]) CapturePoint() *capture.Point { return &e.capt }

func (e *Engine[A]) layerKind() capture.Layer {
	switch e.cfg.Kind {
	case "udp":
		return capture.LayerUDP
	case "eth":
		return capture.LayerEth
	case "serial":
		return capture.LayerSerial
	}
	return 0
}

// Wait waits for the engine's goroutines after Stop.
func (e *Engine[A]) Wait() { e.wg.Wait() }

// Flows lists the open flows.
func (e *Engine[A]) Flows() []shim.FlowInfo {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]shim.FlowInfo, 0, len(e.flows))
	for _, f := range e.flows {
		out = append(out, shim.FlowInfo{
			LocalEID: uint64(f.local), RemoteEID: uint64(f.remote),
			Peer: f.peer.String(), Name: f.name, Outgoing: f.out, QoS: f.qos,
			PacketsIn: f.pktsIn.Load(), BytesIn: f.bytesIn.Load(),
			PacketsOut: f.pktsOut.Load(), BytesOut: f.bytesOut.Load(),
		})
	}
	return out
}
