package dt

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

const (
	// Headroom is the room before an SDU a node originates, for the PCI
	// (and, for the unicast IPCP's control messages, the sender's
	// address).
	Headroom = 64
	// BufLen is a packet buffer's size for SDUs of at most flow.MaxSDU:
	// one behind Headroom, and room after it for what sealing adds
	// (BufLenFor: the size for larger ones).
	BufLen = Headroom + flow.MaxSDU + tailRoom
	// tailRoom is what a buffer has after its largest SDU.
	tailRoom = 64
	// RxBatch is the most packets a receive loop reads at once, and the
	// most spares it holds.
	RxBatch = 32
	// TxBatch is the most packets a transmit loop writes at once.
	TxBatch = 32
)

// Buf is a packet buffer; the packet is B[Off:End]. It is one of the
// pool's own (B made with it), or a shell around a node's packet buffer
// K that an N-1 port handed over (a BufPort's): B is K's memory, and K
// goes on to the next hop's port as it is, or back to the node when the
// pool frees the shell.
type Buf struct {
	Off, End int
	// Origin is the flow this node made the packet for (nil: a packet
	// it forwards or delivers), set by the flow's transmit loop: the
	// node's own queues tell that flow how congested they are without a
	// round trip (LocalMarker). The pool clears it.
	Origin LocalMarker
	// Mark is the congestion level of a packet this node delivers: the
	// one it arrived with (its PCI's ECN) or that of the delivery queue
	// it joins, the higher, set as it is queued for its N+1 flow: a
	// shell's goes with its node buffer (Release sets it there, as the
	// window), so that a reader of the flow's ring learns it (an IP
	// bridge maps it to CE). The pool clears it.
	Mark uint8
	B    []byte // the pool's buffer size (BufLen unless made for larger SDUs); a shell's: K's
	// K is the node's buffer a shell holds (nil: none, or one of the
	// pool's own buffers).
	K     *kernel.Buf
	shell bool
}

// BufPort is an N-1 flow whose packets change hands in the node's packet
// buffers instead of being copied (the node's ring ports): the receive
// loop takes the buffers out of the flow's ring, a transmit loop pushes
// them into its own flow's ring, and what is not passed on goes back to
// the node. The layer holds them meanwhile, charged to its budget.
type BufPort interface {
	// PopBufs takes up to len(bufs) buffers, waiting for the first
	// until the deadline; the caller holds them.
	PopBufs(bufs []*kernel.Buf, deadline time.Time) (int, error)
	// PushBufs hands bufs on, waiting for room until the deadline, and
	// returns once at least one is pushed (their entries set to nil) or
	// with the error; the caller holds the rest.
	PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error)
	// FreeBufs gives bufs, held by the caller, back to the node.
	FreeBufs(bufs []*kernel.Buf)
}

// Hold makes b, a shell, hold k: its packet is k's window.
func (b *Buf) Hold(k *kernel.Buf) {
	b.K = k
	b.B, b.Off, b.End = k.Data()
}

// Release returns the node's buffer b, a shell, holds, its window set
// to b's packet and its mark to b's Mark, and leaves b empty: the caller
// holds the buffer now.
func (b *Buf) Release() *kernel.Buf {
	k := b.K
	k.SetWindow(b.Off, b.End)
	k.SetMark(b.Mark)
	b.K, b.B = nil, nil
	return k
}

// NewBuf returns a buffer of BufLen bytes outside any pool: for tests
// and code that needs one packet buffer of its own.
func NewBuf() *Buf { return &Buf{B: make([]byte, BufLen)} }

// BufLenFor is the size of a packet buffer for SDUs of at most maxSDU
// bytes (BufLen for flow.MaxSDU or less).
func BufLenFor(maxSDU int) int {
	return Headroom + min(max(maxSDU, flow.MaxSDU), flow.MaxJumboSDU) + tailRoom
}

// LocalMarker is a flow of this node that hears the congestion level of
// the node's own queues directly (ca.Flow.OnLocal): pkts of its packets
// left a queue at level ecn at now (Unix ns). Safe for concurrent use.
type LocalMarker interface {
	LocalMark(ecn uint8, pkts int, now int64)
}

// Pkt returns the packet, B[Off:End].
func (b *Buf) Pkt() []byte { return b.B[b.Off:b.End] }

// Pool is a data path's packet buffers: at most limit of them ever exist
// (the unicast IPCP's Config.Bufs), made on first need and kept on a free
// list. Buffers move in batches (one lock per batch of a loop, not per
// packet). A loop owns the buffers it reads into; a packet leaves its
// loop (to a queue) only in exchange for a free buffer (Spares), so that
// when every buffer is held the loops keep reading and drop what
// arrives, counted, instead of allocating or stalling. Safe for
// concurrent use.
type Pool struct {
	mu    sync.Mutex
	free  []*Buf
	made  int // buffers in existence: on the free list or held
	limit int
	size  int // each buffer's length (BufLen, or BufLenFor a larger SDU)

	// reserve charges buffers the pool is about to make to the
	// component's budget; nil charges nothing.
	reserve func(n int) error

	waiters atomic.Int32
	freed   chan struct{} // capacity 1: a put while someone waits
	allocs  *atomic.Uint64

	// Shells (Buf.K): made as needed, never more than the node's
	// buffers the layer holds at once, and kept; freeK gives the node
	// back the buffers of shells put (SetFreer).
	shells []*Buf
	freeK  func([]*kernel.Buf)
	ks     []*kernel.Buf // Put's: the node buffers of the shells it frees
}

// NewPool returns a pool of at most limit buffers. Before it makes new
// buffers it charges them to reserve (nil: nothing is charged); a
// refused charge makes the pool act as if every buffer were held. Each
// buffer made is counted in allocs.
func NewPool(limit int, reserve func(int) error, allocs *atomic.Uint64) *Pool {
	return NewPoolSized(limit, BufLen, reserve, allocs)
}

// NewPoolSized is NewPool for buffers of size bytes (BufLenFor the
// largest SDU of the data path; at least BufLen).
func NewPoolSized(limit, size int, reserve func(int) error, allocs *atomic.Uint64) *Pool {
	return &Pool{free: make([]*Buf, 0, limit), limit: limit, size: max(size, BufLen), reserve: reserve, freed: make(chan struct{}, 1), allocs: allocs}
}

// BufSize returns the length of the pool's buffers.
func (p *Pool) BufSize() int { return p.size }

// MaxSDU returns the largest SDU a buffer of the pool holds behind
// Headroom, with room for what sealing adds after it.
func (p *Pool) MaxSDU() int { return p.size - Headroom - tailRoom }

// Limit returns the most buffers the pool makes.
func (p *Pool) Limit() int { return p.limit }

// charge returns how many of want new buffers the budget lets the pool
// make: all of them, else one, else none (the budget is spent: what
// arrives is dropped as if every buffer were held).
func (p *Pool) charge(want int) int {
	switch {
	case p.reserve == nil || p.reserve(want) == nil:
		return want
	case want > 1 && p.reserve(1) == nil:
		return 1
	}
	return 0
}

// Get fills dst with up to len(dst) buffers and returns how many: from
// the free list, then new ones while fewer than limit exist.
func (p *Pool) Get(dst []*Buf) int {
	p.mu.Lock()
	n := pop(&p.free, dst)
	for k := p.charge(min(len(dst)-n, p.limit-p.made)); k > 0; k-- {
		dst[n] = &Buf{B: make([]byte, p.size)}
		n++
		p.made++
		p.allocs.Add(1)
	}
	p.mu.Unlock()
	return n
}

// pop moves up to len(dst) buffers from the end of *list into dst and
// returns how many.
func pop(list *[]*Buf, dst []*Buf) int {
	n := min(len(dst), len(*list))
	rest := len(*list) - n
	copy(dst, (*list)[rest:])
	clear((*list)[rest:])
	*list = (*list)[:rest]
	return n
}

// GetOne returns a buffer, or nil when every one is held.
func (p *Pool) GetOne() *Buf {
	var b [1]*Buf
	p.Get(b[:])
	return b[0]
}

// Put returns bs to the free list and clears bs; a shell's node buffer
// goes back to the node. Freeing more buffers than exist (one freed
// twice) is a data-path bug: Put panics, and the component faults.
func (p *Pool) Put(bs []*Buf) {
	if len(bs) == 0 {
		return
	}
	shells := 0
	for _, b := range bs {
		b.Origin, b.Mark = nil, 0 // outside the lock: the caller holds bs
		if b.shell {
			shells++
		}
	}
	p.mu.Lock()
	if shells > 0 {
		for _, b := range bs {
			if !b.shell {
				continue
			}
			if b.K != nil {
				p.ks = append(p.ks, b.Release())
			}
			p.shells = append(p.shells, b)
		}
		if len(p.ks) > 0 {
			p.freeK(p.ks)
			clear(p.ks)
			p.ks = p.ks[:0]
		}
	}
	if len(p.free)+len(bs)-shells > p.made {
		p.mu.Unlock()
		panic("dt: more packet buffers freed than exist (one freed twice)")
	}
	for _, b := range bs {
		if !b.shell {
			p.free = append(p.free, b)
		}
	}
	p.mu.Unlock()
	clear(bs)
	if p.waiters.Load() > 0 {
		select {
		case p.freed <- struct{}{}:
		default:
		}
	}
}

// SetFreer sets how the pool gives the node back a shell's buffer (a
// BufPort's FreeBufs: any of the layer's ports, the buffers are charged
// to the layer's budget, not to a port). A receive loop over a BufPort
// sets it before it makes shells.
func (p *Pool) SetFreer(free func([]*kernel.Buf)) {
	p.mu.Lock()
	if p.freeK == nil {
		p.freeK = free
	}
	p.mu.Unlock()
}

// Shells fills dst with empty shells and returns len(dst): kept ones
// first, then new ones (made only while the layer holds more of the
// node's buffers than ever before).
func (p *Pool) Shells(dst []*Buf) int {
	p.mu.Lock()
	n := pop(&p.shells, dst)
	p.mu.Unlock()
	for ; n < len(dst); n++ {
		dst[n] = &Buf{shell: true}
	}
	return n
}

// PutOne returns b (nil: nothing) to the free list.
func (p *Pool) PutOne(b *Buf) {
	if b == nil {
		return
	}
	p.Put([]*Buf{b}) // does not escape: Put keeps the elements, not the slice
}

// WaitGet is Get that waits, until stop is closed or, with wait > 0,
// for at most wait, for at least one buffer: what a loop does when it
// has none to read into, and what a packet a node originates does
// before it is dropped (back-pressure on its own senders, as for a full
// queue). It waits only while every buffer of the budget is held.
func (p *Pool) WaitGet(dst []*Buf, stop <-chan struct{}, wait time.Duration) int {
	var end time.Time
	if wait > 0 {
		end = time.Now().Add(wait)
	}
	for {
		if n := p.Get(dst); n > 0 {
			return n
		}
		d := 10 * time.Millisecond // a put may come between get and Add
		if wait > 0 {
			left := time.Until(end)
			if left <= 0 {
				return 0
			}
			d = min(d, left)
		}
		p.waiters.Add(1)
		t := time.NewTimer(d)
		select {
		case <-p.freed:
		case <-t.C:
		case <-stop:
			t.Stop()
			p.waiters.Add(-1)
			return 0
		}
		t.Stop()
		p.waiters.Add(-1)
	}
}

// Spares are the free buffers a loop holds to exchange for the packets
// it passes on. The zero value holds none.
type Spares struct {
	n int
	b [RxBatch]*Buf
}

// N returns how many spares s holds.
func (s *Spares) N() int { return s.n }

// Fill tops the spares up to want (at most RxBatch) in one Get.
func (s *Spares) Fill(p *Pool, want int) {
	if s.n < want {
		s.n += p.Get(s.b[s.n:want])
	}
}

// FillShells tops the spares up to want with shells: what a receive
// loop over a BufPort exchanges the packets it passes on for.
func (s *Spares) FillShells(p *Pool, want int) {
	if s.n < want {
		s.n += p.Shells(s.b[s.n:want])
	}
}

// WaitOne is, when s holds no spare, WaitGet of one (see Pool.WaitGet).
func (s *Spares) WaitOne(p *Pool, stop <-chan struct{}, wait time.Duration) {
	if s.n == 0 {
		s.n = p.WaitGet(s.b[:1], stop, wait)
	}
}

// Take returns a spare, or nil if there is none.
func (s *Spares) Take() *Buf {
	if s.n == 0 {
		return nil
	}
	s.n--
	b := s.b[s.n]
	s.b[s.n] = nil
	return b
}

// Release returns the spares to p.
func (s *Spares) Release(p *Pool) {
	p.Put(s.b[:s.n])
	s.n = 0
}
