// Package diode is the diode shim: an IPCP over a one-way medium (a data
// diode; hosted, a UDP socket used in one direction only). The sending
// end never reads the medium and the receiving end never writes it, so
// there are no acknowledgements and no handshake: flows are allocated
// from configuration at both ends, losses are repaired by Reed-Solomon
// forward error correction sized from the configured loss, and every
// block is signed once by the sender's node key (each shard carries a
// Merkle proof to the signed root), so that a forged or tampered shard is
// refused and counted. It is not reliable beyond what the parity buys:
// a block that loses more than m shards is lost (counted).
//
// Pipeline, sender: one goroutine per allocated flow reads SDUs from its
// port into the data shards of a block (one SDU per shard), encodes the
// parity when k SDUs are in or Linger passed, builds the Merkle tree, has
// the block's root signed (one Signer call per block), and sends the k+m
// shards paced at Rate. Receiver: one goroutine reads shards, checks the
// proof (and the signature once per block), gathers shards per block in a
// window of Window blocks per flow, and as soon as any k shards of a
// block are in, rebuilds its data shards and delivers their SDUs to the
// flow's port, asking the IRM to accept the flow at its first SDU.
package diode

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

var (
	_ ipcp.IPCP       = (*IPCP)(nil)
	_ ipcp.SDULimiter = (*IPCP)(nil)
)

// Sender is the sending end of a one-way medium.
type Sender interface {
	// Send transmits one shard; b is not retained. It may block while the
	// medium is busy. Safe for concurrent use.
	Send(b []byte) error
	// Close releases the medium.
	Close() error
}

// Receiver is the receiving end of a one-way medium.
type Receiver interface {
	// Recv blocks until a packet arrives and copies it into b (the caller
	// owns b). After Close it returns an error.
	Recv(b []byte) (int, error)
	// Close releases the medium and unblocks Recv.
	Close() error
}

// Flow is one configured flow: the same list at both ends.
type Flow struct {
	ID   uint32 // on the wire
	Name string // the name the sender allocates to and the receiver's IRM accepts for
}

// Config configures a diode shim IPCP: a sending end (Tx and Signer set)
// or a receiving end (Rx and Peer set).
type Config struct {
	Layer  string // required
	Name   string // required
	Runner layer.Runner
	Flows  []Flow // required, ids and names unique

	Tx     Sender          // the sending end's medium
	Signer identity.Signer // the sending node's key (a node's signer capability)
	Impair impair.Config   // transmit-side impairment (tests)

	Rx   Receiver          // the receiving end's medium
	Peer ed25519.PublicKey // the sending node's public key

	K        int     // data shards per block (default 16)
	Loss     float64 // the medium's expected loss, %: sizes the parity
	Parity   int     // parity shards per block; 0: sized from Loss and Residual
	Residual float64 // the block loss the sizing aims below (default DefaultResidual)

	MTU          int           // largest shard sent (default 1472: UDP over a 1500-byte link)
	Rate         int64         // sender pacing, bytes/s of shards (default 12.5e6: 100 Mbit/s; negative: unpaced)
	Linger       time.Duration // a block waits this long for more SDUs (default 5ms)
	Window       int           // receiver: incomplete blocks kept per flow (default 16)
	WriteTimeout time.Duration // receiver: how long a full port may hold up the medium (default 1s)
}

// FECStats are the diode's own counters, beside the shim's.
type FECStats struct {
	ShardsOut   uint64 `json:"shards_out"`   // shards sent (data and parity)
	ShardsIn    uint64 `json:"shards_in"`    // shards accepted (proof and signature good)
	BlocksOut   uint64 `json:"blocks_out"`   // blocks sent
	BlocksIn    uint64 `json:"blocks_in"`    // blocks rebuilt and delivered
	Repaired    uint64 `json:"repaired"`     // of those, blocks that needed parity
	BlocksLost  uint64 `json:"blocks_lost"`  // blocks dropped with fewer than k shards
	Forged      uint64 `json:"forged"`       // shards refused: bad signature, bad proof or a header unlike its block's
	Late        uint64 `json:"late"`         // shards of a block already delivered, duplicates, or older than the window (replays)
	SignErrors  uint64 `json:"sign_errors"`  // blocks the signer would not sign (not sent)
	Parity      uint64 `json:"parity"`       // m, as configured or sized
	DataShards  uint64 `json:"data_shards"`  // k
	PayloadSize uint64 `json:"payload_size"` // the largest SDU carried
}

// IPCP is a diode shim IPC process: one end of a one-way link.
type IPCP struct {
	cfg    Config
	up     ipcp.Upcalls
	state  layer.Lifecycle
	c      engine.Counters
	wg     sync.WaitGroup
	k, m   int
	maxSDU int
	tx     Sender // cfg.Tx, or it behind the impairment stage

	shardsOut, shardsIn, blocksOut, blocksIn, repaired, blocksLost atomic.Uint64
	forged, late, signErrs                                         atomic.Uint64

	pace   sync.Mutex
	next   time.Time // when the next shard may leave
	nextID atomic.Uint64

	mu      sync.Mutex
	names   shim.Names
	byName  map[string]*txFlow
	rxFlows map[uint32]*rxFlow
}

type counters struct{ pkts, bytes atomic.Uint64 }

type txFlow struct {
	Flow
	qos    flow.QoS
	port   flow.Port // nil while not allocated
	counts counters
}

// New returns an IPCP in state "init".
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("diode: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	who := "diode: " + cfg.Name
	if up == nil {
		return nil, fmt.Errorf("%s: no upcalls: %w", who, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner(who)
	}
	if (cfg.Tx == nil) == (cfg.Rx == nil) {
		return nil, fmt.Errorf("%s: set exactly one of Tx (sending end) and Rx (receiving end): %w", who, flow.ErrInvalid)
	}
	if cfg.Tx != nil && cfg.Signer == nil {
		return nil, fmt.Errorf("%s: the sending end needs the node's signer: %w", who, flow.ErrInvalid)
	}
	if cfg.Rx != nil && len(cfg.Peer) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: the receiving end needs the sender's public key: %w", who, flow.ErrInvalid)
	}
	if len(cfg.Flows) == 0 {
		return nil, fmt.Errorf("%s: no flows configured: %w", who, flow.ErrInvalid)
	}
	if cfg.K == 0 {
		cfg.K = 16
	}
	if cfg.Residual == 0 {
		cfg.Residual = DefaultResidual
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1472
	}
	if cfg.Rate == 0 {
		cfg.Rate = 12_500_000
	}
	if cfg.Linger == 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.Window == 0 {
		cfg.Window = 16
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = time.Second
	}
	m := cfg.Parity
	if m == 0 {
		var err error
		if m, err = Parity(cfg.K, cfg.Loss, cfg.Residual); err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
	}
	if cfg.K < 1 || m < 0 || cfg.K+m > MaxShards {
		return nil, fmt.Errorf("%s: k = %d, m = %d: k >= 1 and k+m <= %d: %w", who, cfg.K, m, MaxShards, flow.ErrInvalid)
	}
	if cfg.Window < 1 || cfg.Linger < 0 {
		return nil, fmt.Errorf("%s: negative linger, or window < 1: %w", who, flow.ErrInvalid)
	}
	maxSDU := min(cfg.MTU-ShardSize(cfg.K+m, SlotHdrLen), flow.MaxSDU, EndTag-2)
	if maxSDU < 1 {
		return nil, fmt.Errorf("%s: mtu %d leaves no room for an SDU: %w", who, cfg.MTU, flow.ErrInvalid)
	}
	p := &IPCP{cfg: cfg, up: up, k: cfg.K, m: m, maxSDU: maxSDU, tx: cfg.Tx,
		byName: map[string]*txFlow{}, rxFlows: map[uint32]*rxFlow{}}
	p.nextID.Store(uint64(time.Now().UnixMicro())) // a restarted sender's blocks are newer
	for _, f := range cfg.Flows {
		if f.Name == "" {
			return nil, fmt.Errorf("%s: flow %d has no name: %w", who, f.ID, flow.ErrInvalid)
		}
		if p.byName[f.Name] != nil || p.rxFlows[f.ID] != nil {
			return nil, fmt.Errorf("%s: flow %d %q: id or name used twice: %w", who, f.ID, f.Name, flow.ErrInvalid)
		}
		p.byName[f.Name] = &txFlow{Flow: f}
		p.rxFlows[f.ID] = &rxFlow{Flow: f}
	}
	if cfg.Tx != nil && cfg.Impair.Enabled() {
		ic := cfg.Impair
		ic.Runner = cfg.Runner
		st, err := impair.NewStage(ic, func(b []byte, _ struct{}) error { return cfg.Tx.Send(b) })
		if err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		p.tx = impairedTx{st, cfg.Tx}
	}
	return p, nil
}

// impairedTx sends through an impairment stage.
type impairedTx struct {
	st *impair.Stage[struct{}]
	tx Sender
}

func (t impairedTx) Send(b []byte) error { return t.st.Write(b, struct{}{}) }
func (t impairedTx) Close() error {
	t.st.Close()
	return t.tx.Close()
}

// Start makes the IPCP operational; a receiving end starts reading.
func (p *IPCP) Start() error {
	if !p.state.CompareAndSwap(layer.StateInit, layer.StateOperational) {
		return fmt.Errorf("diode: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	if p.cfg.Rx != nil {
		r := newRx(p)
		p.wg.Add(1)
		p.cfg.Runner.Go(r.run)
	}
	return nil
}

// Stop closes the medium and every flow and waits for the goroutines.
// Idempotent.
func (p *IPCP) Stop() {
	if p.state.Swap(layer.StateShutdown) == layer.StateShutdown {
		p.wg.Wait()
		return
	}
	if p.tx != nil {
		p.tx.Close()
	} else {
		p.cfg.Rx.Close()
	}
	p.mu.Lock()
	for _, f := range p.byName {
		if f.port != nil {
			f.port.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "diode", State: p.state.Load().String()}
}

// MaxSDU implements ipcp.SDULimiter: what a data shard holds.
func (p *IPCP) MaxSDU() int { return p.maxSDU }

// Register implements ipcp.IPCP. A receiving end accepts flows only for
// the names its configured flows name; registering is what lets the IRM
// accept them. A sending end keeps the name but nothing can reach it.
func (p *IPCP) Register(_ context.Context, name string) error {
	return p.names.Register("diode", name)
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	return p.names.Unregister("diode", name)
}

// Query implements ipcp.IPCP: at the sending end, the configured flows'
// names are reachable; nothing is reachable from the receiving end.
func (p *IPCP) Query(_ context.Context, name string) error {
	if p.cfg.Tx == nil {
		return fmt.Errorf("diode: query %q: receiving end of a one-way link: %w", name, flow.ErrNotFound)
	}
	if p.byName[name] == nil { // byName is fixed after New
		return fmt.Errorf("diode: query %q: not a configured flow: %w", name, flow.ErrNotFound)
	}
	return nil
}

// Alloc implements ipcp.IPCP: at the sending end it starts sending what is
// written to the configured flow named req.Dst; the peer learns of the
// flow from its first block. Nothing is ever written to port. One
// allocation per configured flow at a time.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) (err error) {
	defer func() {
		if err != nil {
			p.c.AllocFailed.Add(1)
		}
	}()
	if port == nil {
		return fmt.Errorf("diode: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	if err := p.state.Ready("diode", "alloc", req.Dst); err != nil {
		return err
	}
	if req.QoS.Sealed {
		return fmt.Errorf("diode: alloc %q: a one-way link cannot seal (no key exchange): %w", req.Dst, flow.ErrRefused)
	}
	if err := p.Query(ctx, req.Dst); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.byName[req.Dst]
	if f.port != nil {
		return fmt.Errorf("diode: alloc %q: flow %d in use: %w", req.Dst, f.ID, flow.ErrBusy)
	}
	if p.state.Load() == layer.StateShutdown {
		return fmt.Errorf("diode: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
	}
	f.port, f.qos = port, req.QoS
	p.c.FlowsOut.Add(1)
	p.c.FlowsActive.Add(1)
	p.wg.Add(1)
	p.cfg.Runner.Go(func() { p.send(f, port) })
	return nil
}

// stopPoll bounds how long a sending flow waits for an SDU before it
// looks whether the IPCP is stopping.
const stopPoll = 250 * time.Millisecond

// txBlock is a sending flow's block under construction and its buffers,
// reused from block to block.
type txBlock struct {
	data    [][]byte // k slots of cap maxSlot
	parity  [][]byte // m shards of cap maxSlot
	shards  [][]byte // what the encoder sees
	lens    []int    // SDU length per slot (-1: empty)
	count   int      // slots filled
	end     bool     // the last slot is the end tag
	first   time.Time
	t       tree
	pkt     []byte
	msg     []byte
	h       *hasher
	enc     reedsolomon.Encoder
	maxSlot int
}

func (p *IPCP) newTxBlock() (*txBlock, error) {
	n := p.k + p.m
	maxSlot := SlotHdrLen + p.maxSDU
	b := &txBlock{maxSlot: maxSlot, lens: make([]int, p.k), shards: make([][]byte, n),
		pkt: make([]byte, ShardSize(n, maxSlot)), msg: make([]byte, 0, signedLen), h: newHasher()}
	for range p.k {
		b.data = append(b.data, make([]byte, maxSlot))
	}
	for range p.m {
		b.parity = append(b.parity, make([]byte, maxSlot))
	}
	if p.m > 0 {
		enc, err := reedsolomon.New(p.k, p.m)
		if err != nil {
			return nil, fmt.Errorf("diode: %s: %w", p.cfg.Name, err)
		}
		b.enc = enc
	}
	return b, nil
}

// send is a flow's sending goroutine.
func (p *IPCP) send(f *txFlow, port flow.Port) {
	defer p.wg.Done()
	defer func() {
		port.Close()
		p.mu.Lock()
		f.port = nil
		p.mu.Unlock()
		p.c.FlowsActive.Add(^uint64(0))
	}()
	b, err := p.newTxBlock()
	if err != nil {
		return
	}
	for {
		// An empty block waits at most a poll period, so that Stop (which
		// cannot unblock a Read on the IPCP's own end) is seen.
		deadline := time.Now().Add(stopPoll)
		if b.count > 0 {
			deadline = b.first.Add(p.cfg.Linger)
		}
		slot := b.data[b.count]
		n, err := port.Read(slot[SlotHdrLen:], deadline)
		switch {
		case errors.Is(err, flow.ErrTruncated):
			p.c.Truncated.Add(1)
			continue
		case errors.Is(err, flow.ErrTimeout):
			if p.state.Load() == layer.StateShutdown {
				return
			}
			p.flush(f, b)
			continue
		case err != nil: // closed: tell the receiver, then end
			if p.state.Load() == layer.StateShutdown {
				return
			}
			if b.count == p.k {
				p.flush(f, b)
			}
			b.lens[b.count] = -1
			b.count++
			b.end = true
			p.flush(f, b)
			return
		}
		if b.count == 0 {
			b.first = time.Now()
		}
		b.lens[b.count] = n
		b.count++
		f.counts.pkts.Add(1)
		f.counts.bytes.Add(uint64(n))
		p.c.PacketsOut.Add(1)
		p.c.BytesOut.Add(uint64(n))
		if b.count == p.k {
			p.flush(f, b)
		}
	}
}

// flush encodes, signs and sends the block b holds, then empties b.
func (p *IPCP) flush(f *txFlow, b *txBlock) {
	if b.count == 0 {
		return
	}
	k, n := p.k, p.k+p.m
	shardLen := SlotHdrLen
	for i := range b.count {
		shardLen = max(shardLen, SlotHdrLen+b.lens[i])
	}
	for i := range k {
		s := b.data[i][:shardLen]
		tag, used := 0, 0
		switch {
		case i >= b.count:
		case i == b.count-1 && b.end:
			tag = EndTag
		default:
			tag, used = b.lens[i]+1, b.lens[i]
		}
		binary.BigEndian.PutUint16(s, uint16(tag))
		clear(s[SlotHdrLen+used:])
		b.shards[i] = s
	}
	for j := range p.m {
		b.shards[k+j] = b.parity[j][:shardLen]
	}
	if b.enc != nil {
		if err := b.enc.Encode(b.shards); err != nil {
			p.c.TxError.Add(1)
			b.count, b.end = 0, false
			return
		}
	}
	for len(b.t.levels[0]) < 1<<depth(n) {
		b.t.levels[0] = append(b.t.levels[0], [HashLen]byte{})
	}
	for i := range n {
		b.h.leaf(&b.t.levels[0][i], i, b.shards[i])
	}
	b.t.build(n)
	id := p.nextID.Add(1)
	pkt := b.pkt[:ShardSize(n, shardLen)]
	putHeader(pkt, k, p.m, 0, f.ID, id, shardLen, b.t.root(n))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	sig, err := identity.SignLabeled(ctx, p.cfg.Signer, Label, Shard(pkt).SignedMsg(b.msg))
	cancel()
	if err != nil || len(sig) != SigLen {
		p.signErrs.Add(1)
		b.count, b.end = 0, false
		return
	}
	copy(pkt[offSig:], sig)
	for i := range n {
		pkt[offIndex] = byte(i)
		b.t.proof(pkt[HeaderLen:HeaderLen], n, i)
		copy(pkt[HeaderLen+depth(n)*HashLen:], b.shards[i])
		p.xmit(pkt)
	}
	p.blocksOut.Add(1)
	b.count, b.end = 0, false
}

// xmit paces and sends one shard.
func (p *IPCP) xmit(b []byte) {
	if p.cfg.Rate > 0 {
		p.pace.Lock()
		now := time.Now()
		if p.next.Before(now) {
			p.next = now
		}
		wait := p.next.Sub(now)
		p.next = p.next.Add(time.Duration(int64(len(b)) * int64(time.Second) / p.cfg.Rate))
		p.pace.Unlock()
		if wait > time.Millisecond {
			time.Sleep(wait)
		}
	}
	if err := p.tx.Send(b); err != nil {
		p.c.TxError.Add(1)
		return
	}
	p.shardsOut.Add(1)
}

// Stats returns the IPCP's shim counters (SDUs and flows).
func (p *IPCP) Stats() shim.Stats { return p.c.Snapshot() }

// FEC returns the diode's own counters.
func (p *IPCP) FEC() FECStats {
	return FECStats{
		ShardsOut: p.shardsOut.Load(), ShardsIn: p.shardsIn.Load(),
		BlocksOut: p.blocksOut.Load(), BlocksIn: p.blocksIn.Load(),
		Repaired: p.repaired.Load(), BlocksLost: p.blocksLost.Load(),
		Forged: p.forged.Load(), Late: p.late.Load(), SignErrors: p.signErrs.Load(),
		Parity: uint64(p.m), DataShards: uint64(p.k), PayloadSize: uint64(p.maxSDU),
	}
}

// Flows lists the configured flows that are open.
func (p *IPCP) Flows() []shim.FlowInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []shim.FlowInfo
	if p.cfg.Tx != nil {
		for _, f := range p.byName {
			if f.port != nil {
				out = append(out, shim.FlowInfo{LocalEID: uint64(f.ID), RemoteEID: uint64(f.ID), Peer: "diode", Name: f.Name,
					Outgoing: true, QoS: f.qos, PacketsOut: f.counts.pkts.Load(), BytesOut: f.counts.bytes.Load()})
			}
		}
		return out
	}
	for _, f := range p.rxFlows {
		if f.open.Load() {
			out = append(out, shim.FlowInfo{LocalEID: uint64(f.ID), RemoteEID: uint64(f.ID), Peer: "diode", Name: f.Name,
				QoS: flow.BestEffort(), PacketsIn: f.counts.pkts.Load(), BytesIn: f.counts.bytes.Load()})
		}
	}
	return out
}
