// Package fa is the flow allocator of a unicast IPCP (Ouroboros' fa): it
// allocates flows between endpoints of the layer by request and response
// between the flow allocators of the two members, keeps the table of
// flows (endpoint id → port, peer address and endpoint), signals
// deallocation to the peer, closes flows whose peer vanished and carries
// congestion feedback. It moves no SDUs: the IPCP's data path does, using
// the Flow entries found with Lookup, and it resolves no names (the
// directory does).
//
// Messages travel in dt packets to the peer's reserved endpoint
// (unicast.EIDFlowAlloc) through the Transport; see docs/wire/unicast.md.
//
//	requester                           responder
//	  Alloc ── Req [src eid, hash, name, qos] ──▶ Upcalls.FlowReq
//	        ◀─ Resp [result, src eid, dst eid] ── (flow installed)
//	  data both ways, PCI EID = the peer's endpoint id
//	  Update [ece]   receiver → sender, congestion feedback (package ca)
//	  Keepalive      each way after KeepAlive without data sent
//	  Dealloc        whoever's port closes first; also the answer to
//	                 anything for an endpoint that does not exist
package fa

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
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast/ca"
)

// Message types.
const (
	MsgReq       uint8 = 1
	MsgResp      uint8 = 2
	MsgDealloc   uint8 = 3
	MsgUpdate    uint8 = 4
	MsgKeepalive uint8 = 5
	MsgReply     uint8 = 6 // sealed flows: a piece of the key exchange's Reply (seal.go)
	MsgFinish    uint8 = 7 // sealed flows: the key exchange's Finish
	MsgResume    uint8 = 8 // sealed flows: a Req resuming from a ticket (seal.go)
)

// Results in a Resp.
const (
	ResOK       uint8 = 0
	ResNotFound uint8 = 1 // nobody serves the name here
	ResRefused  uint8 = 2 // the accepting program or its IRM refused
	ResBusy     uint8 = 3 // resources exhausted
	ResNoTicket uint8 = 4 // a Resume's ticket is unknown here: make a full key exchange
)

// Msg is a flow-allocator message. Fields a type does not use are zero.
type Msg struct {
	_      struct{} `cbor:",toarray"`
	Type   uint8
	SrcEID layer.EID // the sender's endpoint
	DstEID layer.EID // the receiver's endpoint (Resp, Dealloc, Update, Keepalive)
	Hash   []byte    // Req: the destination name's hash (layer.HashLen bytes)
	Name   string    // Req: the source name (may be empty)
	QoS    flow.QoS  // Req
	Result uint8     // Resp
	ECE    uint8     // Update: ca.Feedback.ECE
	Kex    []byte    // Req, Reply: a piece of the key exchange's message; Finish: the Finish; Resume, Resp to it: the resumption's message
	Part   uint8     // Req, Reply: which piece Kex is
	Parts  uint8     // Req, Reply: how many pieces (Req: 0 = an unsealed flow)
}

var codec = flow.NewCodec()

// Marshal encodes m.
func Marshal(m *Msg) ([]byte, error) { return codec.Marshal(m) }

// Unmarshal decodes and checks a message.
func Unmarshal(b []byte) (Msg, error) {
	var m Msg
	if err := codec.Unmarshal(b, &m); err != nil {
		return Msg{}, fmt.Errorf("fa: %w", err)
	}
	bad := false
	switch m.Type {
	case MsgReq:
		bad = m.SrcEID == 0 || len(m.Hash) != layer.HashLen || len(m.Name) > 255 ||
			m.Parts == 0 && len(m.Kex) != 0 || m.Parts != 0 && badPiece(&m)
	case MsgReply:
		bad = m.DstEID == 0 || badPiece(&m)
	case MsgFinish:
		bad = m.SrcEID == 0 || len(m.Kex) == 0 || len(m.Kex) > kex.MaxFinish
	case MsgResume:
		bad = m.SrcEID == 0 || len(m.Hash) != layer.HashLen || len(m.Name) > 255 || len(m.Kex) == 0 || len(m.Kex) > kex.MaxResume
	case MsgResp:
		bad = m.DstEID == 0 || (m.Result == ResOK && m.SrcEID == 0) || len(m.Kex) > kex.MaxResume || m.Result != ResOK && len(m.Kex) != 0
	case MsgDealloc, MsgUpdate, MsgKeepalive:
		bad = m.DstEID == 0
	default:
		bad = true
	}
	switch {
	case m.Type != MsgReq && m.Type != MsgReply && (m.Part != 0 || m.Parts != 0),
		m.Type != MsgReq && m.Type != MsgReply && m.Type != MsgFinish && m.Type != MsgResume && m.Type != MsgResp && len(m.Kex) != 0:
		bad = true // key-exchange fields on a message that carries none
	}
	if bad {
		return Msg{}, fmt.Errorf("fa: message type %d: %w", m.Type, flow.ErrInvalid)
	}
	return m, nil
}

// badPiece reports whether m's key-exchange piece breaks the limits.
func badPiece(m *Msg) bool {
	return m.Parts == 0 || m.Parts > MaxParts || m.Part >= m.Parts || len(m.Kex) == 0 || len(m.Kex) > KexChunk
}

func resultOf(err error) uint8 {
	switch {
	case err == nil:
		return ResOK
	case errors.Is(err, flow.ErrNotFound):
		return ResNotFound
	case errors.Is(err, flow.ErrBusy):
		return ResBusy
	}
	return ResRefused
}

func errOf(r uint8) error {
	switch r {
	case ResNotFound:
		return flow.ErrNotFound
	case ResBusy:
		return flow.ErrBusy
	}
	return flow.ErrRefused
}

// Transport sends flow-allocator messages to the flow allocator of the
// member at dst (a dt packet to its reserved endpoint). It copies msg,
// must not block for long and must not call back into the Allocator.
type Transport interface {
	SendFA(dst layer.Addr, msg []byte) error
}

// Hooks are the IPCP's data path as the Allocator drives it.
type Hooks interface {
	// Started: f is established (either side); the IPCP starts moving
	// f.Port's SDUs into the layer. Called once per flow.
	Started(f *Flow)
}

// StaleHook is an optional Hooks operation, found by type assertion: an
// allocation to the name whose hash is h failed at dst because dst does
// not serve h (it answered so, flow.ErrNotFound) or did not answer in
// time (no route reaches it, or it is gone: flow.ErrTimeout). Whatever
// named dst for h (the directory's cached answer) is stale. Called from
// Alloc's goroutine; must not block or call into the Allocator.
type StaleHook interface {
	Stale(h layer.Hash, dst layer.Addr)
}

// Registry answers which registered name a hash stands for.
type Registry interface {
	Name(h layer.Hash) (string, bool)
}

// Config configures an Allocator. Zero durations take the defaults.
type Config struct {
	Self      layer.Addr // required
	Transport Transport  // required
	Hooks     Hooks      // required
	Upcalls   ipcp.Upcalls
	Registry  Registry // required
	CA        *ca.CA   // required

	RetryBase time.Duration // first retransmission of a Req (default 20 ms)
	RetryMax  time.Duration // backoff ceiling (default 500 ms)
	Timeout   time.Duration // per-destination answer timeout, and FlowReq's bound (default 3 s)
	KeepAlive time.Duration // keepalive after this long without sending (default 1 s)
	// FlowTimeout closes a flow whose peer was silent this long (no data,
	// no keepalive): the peer vanished or no route reaches it. Default 4 s.
	FlowTimeout time.Duration
	Log         *slog.Logger // nil discards
	// Runner starts the Allocator's goroutines (in a node, the IPCP
	// component's kernel PD); required.
	Runner layer.Runner
	// Seal, if set, lets the Allocator seal flows (seal.go); without it
	// a flow that asks to be sealed is refused.
	Seal *SealConfig
}

// Flow is one flow endpoint. The data path reads the immutable fields
// without locks; CA is guarded by CAMu.
type Flow struct {
	EID       layer.EID  // local endpoint id
	Remote    layer.Addr // the peer's address
	RemoteEID layer.EID  // the peer's endpoint id
	Cube      flow.Cube
	QoS       flow.QoS
	Port      flow.Port // the IPCP's end of the N+1 flow
	Name      string    // destination name (outgoing) or accepted name (incoming)
	Out       bool      // allocated here

	CAMu sync.Mutex
	CA   ca.Flow
	// DeliverQ is the standing depth of what waits in front of the
	// program (the IPCP's delivery queue and Port's ring, where Port
	// says how deep it is), seen as SDUs are delivered; DeliverCap is
	// their capacity (0: not known yet); DeliverPeak the flow's peak
	// rate of SDUs coming to them. Guarded by CAMu.
	DeliverQ    ca.Standing
	DeliverCap  int
	DeliverPeak ca.Peak
	// Data is the IPCP's own per-flow data-path state (unicast: the
	// flow's delivery queue), set when the flow starts (Hooks.Started);
	// nil before.
	Data atomic.Value

	// Sealed flows: Sealer seals what this end sends, Opener opens what
	// it receives; Peer is the other node's verified identity. All nil
	// on an unsealed flow.
	Sealer *seal.Sealer
	Opener *seal.Opener
	Peer   *flow.Peer

	// LastHeard and LastSent are Unix nanoseconds of the last packet or
	// flow-allocator message from, and to, the peer.
	LastHeard, LastSent atomic.Int64
	// Counters.
	PktsIn, BytesIn, PktsOut, BytesOut, Drops atomic.Uint64
	// Sealed flows: received SDUs dropped as forged, damaged or
	// truncated (Tampered), or as replayed or too old (Replayed).
	Tampered, Replayed atomic.Uint64

	started time.Time
	respKex []byte // a resumed flow's answer to the Resume, sent again to a repeated one
	once    sync.Once
}

// LocalMark applies the congestion level of this node's own queues to the
// flow's sending rate (dt.LocalMarker, ca.Flow.OnLocal).
func (f *Flow) LocalMark(ecn uint8, pkts int, now int64) {
	f.CAMu.Lock()
	f.CA.OnLocal(ecn, pkts, time.Unix(0, now))
	f.CAMu.Unlock()
}

// Stats are the Allocator's counters.
type Stats struct {
	AllocOK, AllocFailed, Accepted, Refused uint64
	ReqRetries, Deallocs, PeerGone          uint64
	Malformed, UnknownEID, Updates          uint64
	Sealed, KexFailed                       uint64 // sealed flows set up; key exchanges failed (either side)
	Resumed, NoTicket                       uint64 // of Sealed, resumed from a ticket (either side); Resumes refused for want of a ticket (responder)
	Active                                  int
}

type counters struct {
	allocOK, allocFailed, accepted, refused atomic.Uint64
	reqRetries, deallocs, peerGone          atomic.Uint64
	malformed, unknownEID, updates          atomic.Uint64
	sealed, kexFailed                       atomic.Uint64
	resumed, noTicket                       atomic.Uint64
}

type inKey struct {
	src layer.Addr
	eid layer.EID
}

type pending struct {
	dst layer.Addr
	ch  chan Msg
}

// Allocator is one IPCP's flow allocator. Safe for concurrent use; one
// goroutine (the keepalive ticker) runs between Start and Stop, plus one
// per incoming allocation waiting for its program.
type Allocator struct {
	cfg    Config
	c      counters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex // guards the fields below
	stopped bool
	flows   map[layer.EID]*Flow
	byPeer  map[inKey]*Flow
	pend    map[layer.EID]*pending
	inbound map[inKey]bool       // incoming requests being accepted
	hs      map[inKey]*handshake // incoming sealed requests in their key exchange

	ephs    chan *kex.Ephemeral // sealing: key pairs made ahead of time (seal.go)
	rkeys   chan *kex.ResumeKey // sealing: resumptions' key pairs made ahead of time
	docs    sealflow.DocCache
	tickets *sealflow.Tickets[layer.Addr] // sealing: resumption tickets; nil: never resume
}

// New returns an Allocator.
func New(cfg Config) (*Allocator, error) {
	if cfg.Self == 0 || cfg.Transport == nil || cfg.Hooks == nil || cfg.Registry == nil || cfg.CA == nil || cfg.Upcalls == nil {
		return nil, fmt.Errorf("fa: config needs Self, Transport, Hooks, Upcalls, Registry and CA: %w", flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("fa")
	}
	cfg.RetryBase = cmp.Or(cfg.RetryBase, 20*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 500*time.Millisecond)
	cfg.Timeout = cmp.Or(cfg.Timeout, 3*time.Second)
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, time.Second)
	cfg.FlowTimeout = cmp.Or(cfg.FlowTimeout, 4*time.Second)
	cfg.Log = logx.Or(cfg.Log)
	if cfg.FlowTimeout <= cfg.KeepAlive {
		return nil, fmt.Errorf("fa: flow timeout %v must exceed keepalive %v: %w", cfg.FlowTimeout, cfg.KeepAlive, flow.ErrInvalid)
	}
	a := &Allocator{
		cfg: cfg, flows: make(map[layer.EID]*Flow), byPeer: make(map[inKey]*Flow),
		pend: make(map[layer.EID]*pending), inbound: make(map[inKey]bool), hs: make(map[inKey]*handshake),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if cfg.Seal != nil {
		a.ephs = make(chan *kex.Ephemeral, ephAhead)
		a.rkeys = make(chan *kex.ResumeKey, ephAhead)
		if cfg.Seal.TicketLife >= 0 {
			a.tickets = sealflow.NewTickets[layer.Addr](cmp.Or(cfg.Seal.TicketLife, DefaultTicketLife))
		}
	}
	return a, nil
}

// Start runs the keepalive and peer-vanish ticker.
func (a *Allocator) Start() error {
	if a.cfg.Seal != nil {
		a.keysAhead() // the first sealed allocation needs them too
	}
	a.wg.Add(1)
	a.cfg.Runner.Go(a.tick)
	return nil
}

// Stop deallocates every flow (telling the peers), closes their ports and
// waits for the Allocator's goroutines. Idempotent.
func (a *Allocator) Stop() {
	a.mu.Lock()
	a.stopped = true
	fs := make([]*Flow, 0, len(a.flows))
	for _, f := range a.flows {
		fs = append(fs, f)
	}
	a.mu.Unlock()
	a.cancel()
	for _, f := range fs {
		a.end(f, true)
	}
	a.wg.Wait()
}

// Lookup returns the flow with local endpoint eid, or nil. It is the data
// path's: it never blocks beyond a read lock and allocates nothing.
func (a *Allocator) Lookup(eid layer.EID) *Flow {
	a.mu.RLock()
	f := a.flows[eid]
	a.mu.RUnlock()
	return f
}

// allocEID returns a free endpoint id above the reserved ones. Called
// with mu held.
func (a *Allocator) allocEID() layer.EID {
	for {
		e := layer.EID(rand.Uint64()>>1) | 1<<32 // random: a restarted peer's stale packets miss
		if a.flows[e] == nil && a.pend[e] == nil {
			return e
		}
	}
}

func (a *Allocator) send(dst layer.Addr, m *Msg) error {
	b, err := Marshal(m)
	if err != nil {
		return err
	}
	return a.cfg.Transport.SendFA(dst, b)
}

func (a *Allocator) newFlow(eid layer.EID, q flow.QoS, port flow.Port, name string, out bool) *Flow {
	now := time.Now()
	f := &Flow{EID: eid, Cube: q.Cube(), QoS: q, Port: port, Name: name, Out: out, CA: a.cfg.CA.NewFlow(now), started: now}
	f.LastHeard.Store(now.UnixNano())
	f.LastSent.Store(now.UnixNano())
	return f
}

// Alloc allocates a flow for req to the name whose hash is h, served by
// one of dsts (tried in order). On success the Allocator owns port until
// the flow ends; on failure the caller still owns it.
func (a *Allocator) Alloc(ctx context.Context, dsts []layer.Addr, h layer.Hash, req ipcp.AllocReq, port flow.Port) (f *Flow, err error) {
	defer func() {
		if err != nil {
			a.c.allocFailed.Add(1)
		} else {
			a.c.allocOK.Add(1)
		}
	}()
	if len(dsts) == 0 {
		return nil, fmt.Errorf("fa: alloc %q: no destination: %w", req.Dst, flow.ErrNotFound)
	}
	err = fmt.Errorf("fa: alloc %q: %w", req.Dst, flow.ErrNotFound)
	for _, dst := range dsts {
		f, err = a.allocAt(ctx, dst, h, req, port)
		if err == nil || !errors.Is(err, flow.ErrNotFound) && !errors.Is(err, flow.ErrTimeout) {
			return f, err
		}
		if sh, ok := a.cfg.Hooks.(StaleHook); ok {
			sh.Stale(h, dst)
		}
		if ctx.Err() != nil {
			return f, err
		}
	}
	return nil, err
}

func (a *Allocator) allocAt(ctx context.Context, dst layer.Addr, h layer.Hash, req ipcp.AllocReq, port flow.Port) (*Flow, error) {
	p := &pending{dst: dst, ch: make(chan Msg, MaxParts+1)}
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return nil, fmt.Errorf("fa: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
	}
	eid := a.allocEID()
	a.pend[eid] = p
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.pend, eid)
		a.mu.Unlock()
	}()
	m := &Msg{Type: MsgReq, SrcEID: eid, Hash: h[:], Name: req.Src, QoS: req.QoS}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	msgs := []*Msg{m} // what a retransmission sends
	var (
		in    *kex.Initiator // sealed: the key exchange, until the Reply
		rm    *kex.Resumer   // sealed, resuming from a ticket: until the Resp
		reply pieces
		sl    *sealing // sealed: the finished key exchange
	)
	if req.QoS.Sealed || a.cfg.Seal != nil && a.cfg.Seal.Require {
		if a.cfg.Seal == nil {
			return nil, fmt.Errorf("fa: alloc %q: this member cannot seal flows: %w", req.Dst, flow.ErrRefused)
		}
		m.QoS.Sealed, req.QoS.Sealed = true, true
		var err error
		if rm, msgs, err = a.startResume(dst, m); err == nil && rm == nil {
			in, msgs, err = a.startSeal(ctx, m)
		}
		if err != nil {
			a.c.kexFailed.Add(1)
			return nil, fmt.Errorf("fa: alloc %q: %w", req.Dst, err)
		}
	}
	rto := a.cfg.RetryBase
	t := time.NewTimer(rto)
	defer t.Stop()
	for _, m := range msgs {
		a.send(dst, m)
	}
	for {
		select {
		case r := <-p.ch:
			if r.Type == MsgReply {
				if in == nil || sl != nil {
					continue // unasked for, or a duplicate
				}
				b, ok := reply.add(&r)
				if !ok {
					continue
				}
				fin, err := in.Reply(ctx, b)
				if err != nil {
					a.c.kexFailed.Add(1)
					return nil, fmt.Errorf("fa: alloc %q at %d: %w: %w", req.Dst, dst, flow.ErrRefused, err)
				}
				msgs = []*Msg{{Type: MsgFinish, SrcEID: eid, Kex: fin}}
				a.send(dst, msgs[0])
				rto = a.cfg.RetryBase
				t.Reset(rto)
				// The keys, while the Finish travels and the
				// responder checks it.
				res, err := in.Result()
				if err != nil {
					a.c.kexFailed.Add(1)
					return nil, fmt.Errorf("fa: alloc %q at %d: %w: %w", req.Dst, dst, flow.ErrRefused, err)
				}
				sl = &sealing{res: res}
				continue
			}
			if r.Result == ResNoTicket {
				if rm == nil {
					continue // a late answer to a Resume given up
				}
				// The responder has no such ticket (expired, evicted,
				// restarted): the full key exchange.
				rm = nil
				var err error
				if in, msgs, err = a.startSeal(ctx, m); err != nil {
					a.c.kexFailed.Add(1)
					return nil, fmt.Errorf("fa: alloc %q: %w", req.Dst, err)
				}
				for _, m := range msgs {
					a.send(dst, m)
				}
				rto = a.cfg.RetryBase
				t.Reset(rto)
				continue
			}
			if r.Result != ResOK {
				return nil, fmt.Errorf("fa: alloc %q at %d: %w", req.Dst, dst, errOf(r.Result))
			}
			if rm != nil {
				res, err := rm.Reply(r.Kex)
				if err != nil {
					// Accepted without (or with a wrong) answer to the
					// Resume: a downgrade or tampering on the way.
					a.send(dst, &Msg{Type: MsgDealloc, SrcEID: eid, DstEID: r.SrcEID})
					a.c.kexFailed.Add(1)
					return nil, fmt.Errorf("fa: alloc %q at %d: %w: %w", req.Dst, dst, flow.ErrRefused, err)
				}
				sl = &sealing{res: res, resumed: true}
			}
			if in != nil && sl == nil {
				// Accepted without a key exchange: somebody on the way
				// stripped the seal request, or the peer ignored it.
				a.send(dst, &Msg{Type: MsgDealloc, SrcEID: eid, DstEID: r.SrcEID})
				a.c.kexFailed.Add(1)
				return nil, fmt.Errorf("fa: alloc %q at %d: accepted unsealed (a downgrade on the way?): %w", req.Dst, dst, flow.ErrRefused)
			}
			f := a.newFlow(eid, req.QoS, port, req.Dst, true)
			f.Remote, f.RemoteEID = dst, r.SrcEID
			if sl != nil {
				if err := sl.install(f); err != nil {
					a.send(dst, &Msg{Type: MsgDealloc, SrcEID: eid, DstEID: r.SrcEID})
					return nil, fmt.Errorf("fa: alloc %q: %w", req.Dst, err)
				}
				a.c.sealed.Add(1)
				if sl.resumed {
					a.c.resumed.Add(1)
				}
				if a.tickets != nil {
					a.tickets.PutOut(dst, sl.res.Next, time.Now())
				}
			}
			a.mu.Lock()
			if a.stopped {
				a.mu.Unlock()
				a.send(dst, &Msg{Type: MsgDealloc, SrcEID: eid, DstEID: r.SrcEID})
				return nil, fmt.Errorf("fa: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
			}
			a.flows[eid] = f
			a.byPeer[inKey{dst, r.SrcEID}] = f
			a.mu.Unlock()
			a.cfg.Hooks.Started(f)
			return f, nil
		case <-t.C:
			rto = min(2*rto, a.cfg.RetryMax)
			t.Reset(rto)
			a.c.reqRetries.Add(1)
			for _, m := range msgs {
				a.send(dst, m)
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("fa: alloc %q at %d: no answer: %w", req.Dst, dst, flow.ErrTimeout)
			}
			return nil, fmt.Errorf("fa: alloc %q: %w", req.Dst, ctx.Err())
		case <-a.ctx.Done():
			return nil, fmt.Errorf("fa: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
		}
	}
}

// Handle processes a flow-allocator message from the member at src. It
// does not retain msg and does not block (accepting runs in its own
// goroutine).
func (a *Allocator) Handle(src layer.Addr, msg []byte) {
	m, err := Unmarshal(msg)
	if err != nil {
		a.c.malformed.Add(1)
		return
	}
	switch m.Type {
	case MsgReq:
		a.onReq(src, &m)
	case MsgFinish:
		a.onFinish(src, &m)
	case MsgResume:
		a.onResume(src, &m)
	case MsgResp, MsgReply:
		a.mu.RLock()
		p := a.pend[m.DstEID]
		a.mu.RUnlock()
		if p != nil && p.dst == src {
			select {
			case p.ch <- m:
			default: // a duplicate
			}
			return
		}
		if m.Type == MsgResp && m.Result == ResOK && a.Lookup(m.DstEID) == nil {
			// The allocation was abandoned: release the peer's endpoint.
			a.send(src, &Msg{Type: MsgDealloc, SrcEID: m.DstEID, DstEID: m.SrcEID})
		}
	case MsgDealloc:
		if f := a.Lookup(m.DstEID); f != nil && f.Remote == src && f.RemoteEID == m.SrcEID {
			a.c.deallocs.Add(1)
			a.end(f, false)
		}
	case MsgUpdate, MsgKeepalive:
		f := a.Lookup(m.DstEID)
		if f == nil || f.Remote != src || f.RemoteEID != m.SrcEID {
			a.c.unknownEID.Add(1)
			a.send(src, &Msg{Type: MsgDealloc, SrcEID: m.DstEID, DstEID: m.SrcEID})
			return
		}
		f.LastHeard.Store(time.Now().UnixNano())
		if m.Type == MsgUpdate {
			a.c.updates.Add(1)
			f.CAMu.Lock()
			f.CA.OnFeedback(ca.Feedback{ECE: m.ECE}, time.Now())
			f.CAMu.Unlock()
		}
	}
}

func (a *Allocator) onReq(src layer.Addr, m *Msg) {
	key := inKey{src, m.SrcEID}
	a.mu.Lock()
	name, answer := a.admitLocked(key, m)
	if name == "" {
		a.mu.Unlock()
		if answer != nil {
			a.send(src, answer)
		}
		return
	}
	if m.Parts != 0 {
		a.mu.Unlock()
		a.onSealedReq(src, m, name)
		return
	}
	if m.QoS.Sealed || a.cfg.Seal != nil && a.cfg.Seal.Require {
		// Asks to be sealed and carries no key exchange (stripped on the
		// way?), or this member seals every flow.
		a.mu.Unlock()
		a.c.refused.Add(1)
		a.cfg.Log.Warn("flow refused: not sealed", "dst", name, "from", src)
		a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResRefused})
		return
	}
	if len(a.inbound) >= 64 {
		a.mu.Unlock()
		a.c.refused.Add(1)
		a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResBusy})
		return
	}
	a.inbound[key] = true
	a.wg.Add(1)
	a.mu.Unlock()
	a.cfg.Runner.Go(func() { a.accept(key, name, m.Name, m.QoS, nil) })
}

// admitLocked looks at a request (Req or Resume) from key with a.mu
// held. A repeat of one accepted is answered again (the Resp was lost),
// one being accepted or arriving after Stop is ignored, one for a name
// not registered here is refused: then it returns "" and the answer to
// send, if any (after a.mu is released). Otherwise it returns the
// registered name the request is for.
func (a *Allocator) admitLocked(key inKey, m *Msg) (name string, answer *Msg) {
	if f := a.byPeer[key]; f != nil {
		return "", &Msg{Type: MsgResp, SrcEID: f.EID, DstEID: m.SrcEID, Kex: f.respKex}
	}
	if a.inbound[key] || a.stopped {
		return "", nil
	}
	name, ok := a.cfg.Registry.Name(layer.Hash(m.Hash))
	if !ok || name == "" {
		a.c.refused.Add(1)
		return "", &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResNotFound}
	}
	return name, nil
}

// accept asks the IRM to accept a flow (sealed: with sl, its finished
// key exchange) and answers the requester.
func (a *Allocator) accept(key inKey, name, srcName string, q flow.QoS, sl *sealing) {
	defer a.wg.Done()
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.Timeout)
	req := ipcp.AllocReq{Dst: name, Src: srcName, QoS: q}
	if sl != nil {
		req.Peer = sealflow.PeerSealed(sl.res.Peer, sl.res.AEAD)
		req.MaxSDU = a.SealedMaxSDU()
	}
	port, err := a.cfg.Upcalls.FlowReq(ctx, req)
	cancel()
	if err == nil && port == nil {
		err = flow.ErrRefused
	}
	resp := &Msg{Type: MsgResp, DstEID: key.eid}
	var f *Flow
	a.mu.Lock()
	delete(a.inbound, key)
	if err == nil && a.stopped {
		err = flow.ErrClosed
	}
	if err == nil {
		f = a.newFlow(a.allocEID(), q, port, name, false)
		f.Remote, f.RemoteEID = key.src, key.eid
		if sl != nil {
			err = sl.install(f)
			f.respKex, resp.Kex = sl.reply, sl.reply
		}
	}
	if err == nil {
		a.flows[f.EID] = f
		a.byPeer[key] = f
		resp.SrcEID = f.EID
	}
	a.mu.Unlock()
	resp.Result = resultOf(err)
	if err != nil {
		a.c.refused.Add(1)
		if port != nil {
			port.Close()
		}
		a.cfg.Log.Warn("flow refused", "dst", name, "from", key.src, "err", err)
		a.send(key.src, resp)
		return
	}
	a.c.accepted.Add(1)
	if sl != nil {
		a.c.sealed.Add(1)
		if sl.resumed {
			a.c.resumed.Add(1)
		}
		if a.tickets != nil {
			a.tickets.PutIn(sl.res.Next, time.Now())
		}
	}
	// The answer first: the flow is in the table already, so the
	// requester's first packets find it; then this side starts sending.
	a.send(key.src, resp)
	a.cfg.Hooks.Started(f)
}

// Closed ends f because its port's Read failed (the program deallocated):
// the peer is told. Safe to call more than once.
func (a *Allocator) Closed(f *Flow) { a.end(f, true) }

// end removes f, closes its port and, if tell, sends the peer a Dealloc.
func (a *Allocator) end(f *Flow, tell bool) {
	f.once.Do(func() {
		a.mu.Lock()
		if a.flows[f.EID] == f {
			delete(a.flows, f.EID)
		}
		k := inKey{f.Remote, f.RemoteEID}
		if a.byPeer[k] == f {
			delete(a.byPeer, k)
		}
		a.mu.Unlock()
		f.Port.Close()
		if tell {
			a.send(f.Remote, &Msg{Type: MsgDealloc, SrcEID: f.EID, DstEID: f.RemoteEID})
		}
	})
}

// Feedback sends congestion feedback for f to its sender.
func (a *Allocator) Feedback(f *Flow, fb ca.Feedback) {
	f.LastSent.Store(time.Now().UnixNano())
	a.send(f.Remote, &Msg{Type: MsgUpdate, SrcEID: f.EID, DstEID: f.RemoteEID, ECE: fb.ECE})
}

func (a *Allocator) tick() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.KeepAlive / 4)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case now := <-t.C:
			a.check(now)
		}
	}
}

// check sends keepalives on idle flows and ends flows whose peer has been
// silent for FlowTimeout.
func (a *Allocator) check(now time.Time) {
	a.mu.Lock()
	a.expireLocked(now)
	fs := make([]*Flow, 0, len(a.flows))
	for _, f := range a.flows {
		fs = append(fs, f)
	}
	a.mu.Unlock()
	ns := now.UnixNano()
	for _, f := range fs {
		if time.Duration(ns-f.LastHeard.Load()) > a.cfg.FlowTimeout {
			a.c.peerGone.Add(1)
			a.cfg.Log.Info("peer silent, flow closed", "flow", f.EID, "to", f.Remote, "timeout", a.cfg.FlowTimeout)
			a.end(f, true)
			continue
		}
		if time.Duration(ns-f.LastSent.Load()) >= a.cfg.KeepAlive {
			f.LastSent.Store(ns)
			a.send(f.Remote, &Msg{Type: MsgKeepalive, SrcEID: f.EID, DstEID: f.RemoteEID})
		}
	}
}

// FlowInfo describes a flow for management.
type FlowInfo struct {
	EID, RemoteEID                     layer.EID
	Remote                             layer.Addr
	Name                               string
	Out                                bool
	Cube                               flow.Cube
	PktsIn, BytesIn, PktsOut, BytesOut uint64
	Drops                              uint64
	Rate                               uint64 // the sender's CA rate, bytes/s (0: unlimited)
	Age                                time.Duration
	Peer                               *flow.Peer // sealed flows: the verified peer
	Tampered, Replayed                 uint64     // sealed flows: SDUs refused
	Rekeys                             uint64     // sealed flows: times the sending key turned over
}

// Flows lists the flows, ascending by local endpoint id.
func (a *Allocator) Flows() []FlowInfo {
	a.mu.RLock()
	fs := make([]*Flow, 0, len(a.flows))
	for _, f := range a.flows {
		fs = append(fs, f)
	}
	a.mu.RUnlock()
	out := make([]FlowInfo, 0, len(fs))
	for _, f := range fs {
		f.CAMu.Lock()
		rate := f.CA.Rate()
		f.CAMu.Unlock()
		out = append(out, FlowInfo{
			EID: f.EID, RemoteEID: f.RemoteEID, Remote: f.Remote, Name: f.Name, Out: f.Out, Cube: f.Cube,
			PktsIn: f.PktsIn.Load(), BytesIn: f.BytesIn.Load(), PktsOut: f.PktsOut.Load(), BytesOut: f.BytesOut.Load(),
			Drops: f.Drops.Load(), Rate: rate, Age: time.Since(f.started),
			Peer: f.Peer, Tampered: f.Tampered.Load(), Replayed: f.Replayed.Load(),
			Rekeys: rekeys(f),
		})
	}
	slices.SortFunc(out, func(x, y FlowInfo) int { return cmp.Compare(x.EID, y.EID) })
	return out
}

func rekeys(f *Flow) uint64 {
	if f.Sealer == nil {
		return 0
	}
	return f.Sealer.Rekeys()
}

// Stats returns the Allocator's counters.
func (a *Allocator) Stats() Stats {
	a.mu.RLock()
	n := len(a.flows)
	a.mu.RUnlock()
	c := &a.c
	return Stats{
		AllocOK: c.allocOK.Load(), AllocFailed: c.allocFailed.Load(), Accepted: c.accepted.Load(), Refused: c.refused.Load(),
		ReqRetries: c.reqRetries.Load(), Deallocs: c.deallocs.Load(), PeerGone: c.peerGone.Load(),
		Malformed: c.malformed.Load(), UnknownEID: c.unknownEID.Load(), Updates: c.updates.Load(),
		Sealed: c.sealed.Load(), KexFailed: c.kexFailed.Load(), Resumed: c.resumed.Load(), NoTicket: c.noTicket.Load(), Active: n,
	}
}
