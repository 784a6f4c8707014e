package diode

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
)

// rxFlow is a configured flow at the receiving end. Its fields other
// than the counters and open belong to the receive goroutine.
type rxFlow struct {
	Flow
	port   flow.Port
	open   atomic.Bool
	counts counters
	blocks []*rxBlock // the window; nil entries are free
	floor  uint64     // blocks at or below it are refused (replays, stale)
	done   []uint64   // recently delivered blocks, a ring
	doneAt int
}

// rxBlock gathers the shards of one block.
type rxBlock struct {
	id               uint64
	k, m, shardLen   int
	root             [HashLen]byte
	have             int
	present          [MaxShards]bool
	shards           [][]byte // MaxShards buffers of cap MTU
	missingDataShard bool
}

// rx is the receiving end's goroutine state.
type rx struct {
	p    *IPCP
	h    *hasher
	msg  []byte
	encs map[[2]int]reedsolomon.Encoder
	rs   [][]byte // the shard slice handed to the decoder
}

func newRx(p *IPCP) *rx {
	return &rx{p: p, h: newHasher(), msg: make([]byte, 0, signedLen),
		encs: map[[2]int]reedsolomon.Encoder{}, rs: make([][]byte, 0, MaxShards)}
}

// run reads shards until the medium is closed.
func (r *rx) run() {
	p := r.p
	defer p.wg.Done()
	defer func() {
		for _, f := range p.rxFlows {
			r.closeFlow(f)
		}
	}()
	buf := make([]byte, 1<<16)
	for {
		n, err := p.cfg.Rx.Recv(buf)
		if err != nil {
			if p.state.Load() == layer.StateShutdown {
				return
			}
			p.c.RxError.Add(1)
			time.Sleep(10 * time.Millisecond) // a failing medium must not spin
			continue
		}
		r.handle(Shard(buf[:n]))
	}
}

// handle takes one shard off the medium. Every refusal is counted.
func (r *rx) handle(s Shard) {
	p := r.p
	if !s.IsValid() || len(s) > p.cfg.MTU {
		p.c.Malformed.Add(1)
		return
	}
	f := p.rxFlows[s.Flow()]
	if f == nil {
		p.c.UnknownFlow.Add(1)
		return
	}
	id := s.Block()
	if id <= f.floor || f.delivered(id) {
		p.late.Add(1)
		return
	}
	if !r.h.verifyProof(s) {
		p.forged.Add(1)
		return
	}
	b := f.find(id)
	switch {
	case b == nil:
		// The first shard of a block: its signature makes the root good
		// for the others, which then need only their proofs.
		if !identity.VerifyLabeled(p.cfg.Peer, Label, s.SignedMsg(r.msg), s.Sig()) {
			p.forged.Add(1)
			return
		}
		b = r.slot(f)
		b.id, b.k, b.m = id, s.K(), s.M()
		b.shardLen = len(s.Payload())
		b.root = [HashLen]byte(s.Root())
		b.have, b.missingDataShard = 0, false
		clear(b.present[:])
	case b.k != s.K() || b.m != s.M() || b.shardLen != len(s.Payload()) || b.root != [HashLen]byte(s.Root()):
		p.forged.Add(1) // not what the signed header said
		return
	}
	i := s.Index()
	if b.present[i] {
		p.late.Add(1)
		return
	}
	if b.shards[i] == nil {
		b.shards[i] = make([]byte, 0, p.cfg.MTU)
	}
	b.shards[i] = append(b.shards[i][:0], s.Payload()...)
	b.present[i] = true
	b.have++
	p.shardsIn.Add(1)
	if b.have == b.k {
		r.complete(f, b)
	}
}

// slot returns a free block of f's window, evicting the oldest
// incomplete block (lost) if there is none.
func (r *rx) slot(f *rxFlow) *rxBlock {
	if f.blocks == nil {
		f.blocks = make([]*rxBlock, r.p.cfg.Window)
		f.done = make([]uint64, 4*r.p.cfg.Window)
	}
	var oldest *rxBlock
	for i, b := range f.blocks {
		if b == nil {
			b = &rxBlock{shards: make([][]byte, MaxShards)}
			f.blocks[i] = b
		}
		if b.id == 0 {
			return b
		}
		if oldest == nil || b.id < oldest.id {
			oldest = b
		}
	}
	r.p.blocksLost.Add(1)
	f.floor = max(f.floor, oldest.id)
	oldest.id = 0
	return oldest
}

// find returns f's block id, or nil.
func (f *rxFlow) find(id uint64) *rxBlock {
	for _, b := range f.blocks {
		if b != nil && b.id == id {
			return b
		}
	}
	return nil
}

// delivered reports whether block id was delivered recently.
func (f *rxFlow) delivered(id uint64) bool {
	for _, d := range f.done {
		if d == id {
			return true
		}
	}
	return false
}

// complete rebuilds b's data shards, delivers their SDUs and frees b.
func (r *rx) complete(f *rxFlow, b *rxBlock) {
	p := r.p
	n := b.k + b.m
	r.rs = r.rs[:n]
	for i := range n {
		if b.present[i] {
			r.rs[i] = b.shards[i][:b.shardLen]
			continue
		}
		if b.shards[i] == nil {
			b.shards[i] = make([]byte, 0, p.cfg.MTU)
		}
		r.rs[i] = b.shards[i][:0]
		if i < b.k {
			b.missingDataShard = true
		}
	}
	if b.missingDataShard {
		enc := r.encs[[2]int{b.k, b.m}]
		if enc == nil {
			var err error
			if enc, err = reedsolomon.New(b.k, b.m); err != nil {
				p.blocksLost.Add(1)
				b.id = 0
				return
			}
			r.encs[[2]int{b.k, b.m}] = enc
		}
		if err := enc.ReconstructData(r.rs); err != nil {
			p.blocksLost.Add(1)
			b.id = 0
			return
		}
		p.repaired.Add(1)
	}
	// Mark it delivered before delivering: a shard that comes while a
	// write blocks is late, not a new block.
	if old := f.done[f.doneAt]; old != 0 {
		f.floor = max(f.floor, old)
	}
	f.done[f.doneAt] = b.id
	f.doneAt = (f.doneAt + 1) % len(f.done)
	b.id = 0
	p.blocksIn.Add(1)
	for i := range b.k {
		r.deliver(f, r.rs[i])
	}
}

// deliver hands one data slot to f's port, asking the IRM to accept the
// flow first if it is not open.
func (r *rx) deliver(f *rxFlow, slot []byte) {
	p := r.p
	tag := int(binary.BigEndian.Uint16(slot))
	switch {
	case tag == 0:
		return
	case tag == EndTag:
		r.closeFlow(f)
		return
	case tag-1 > len(slot)-SlotHdrLen:
		p.c.Malformed.Add(1)
		return
	}
	sdu := slot[SlotHdrLen : SlotHdrLen+tag-1]
	if f.port == nil && !r.openFlow(f) {
		return
	}
	err := f.port.Write(sdu, time.Now().Add(p.cfg.WriteTimeout))
	switch {
	case errors.Is(err, flow.ErrClosed):
		r.closeFlow(f) // the program went away; the next SDU asks again
		p.c.UnknownFlow.Add(1)
		return
	case err != nil:
		p.c.RxFull.Add(1)
		return
	}
	f.counts.pkts.Add(1)
	f.counts.bytes.Add(uint64(len(sdu)))
	p.c.PacketsIn.Add(1)
	p.c.BytesIn.Add(uint64(len(sdu)))
}

// openFlow asks the IRM to accept f. A refusal drops the SDU (counted).
func (r *rx) openFlow(f *rxFlow) bool {
	p := r.p
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.WriteTimeout)
	defer cancel()
	port, err := p.up.FlowReq(ctx, ipcp.AllocReq{Dst: f.Name, QoS: flow.BestEffort(), MaxSDU: p.maxSDU})
	if err != nil || port == nil {
		p.c.AllocFailed.Add(1)
		p.c.Pending.Add(1)
		return false
	}
	p.mu.Lock()
	f.port = port
	p.mu.Unlock()
	f.open.Store(true)
	p.c.FlowsIn.Add(1)
	p.c.FlowsActive.Add(1)
	return true
}

// closeFlow closes f's port if it is open: the program reads what was
// delivered, then flow.ErrClosed.
func (r *rx) closeFlow(f *rxFlow) {
	if f.port == nil {
		return
	}
	f.port.Close()
	r.p.mu.Lock()
	f.port = nil
	r.p.mu.Unlock()
	f.open.Store(false)
	r.p.c.FlowsActive.Add(^uint64(0))
}
