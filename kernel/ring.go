package kernel

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Rings
//
// A ring is a power-of-two array of *Buf with a head (next to pop, written
// only by the consumer) and a tail (next to fill, written only by the
// producer), both free-running atomic counters: the producer writes slots
// then publishes the tail, the consumer reads slots then publishes the
// head. A side that finds nothing to do and wants to block sets its
// "waiting" flag, checks again, and sleeps on a one-slot channel; the other
// side signals that channel only when the flag is set, so a stream that
// never empties costs no wake-ups. Each side has a mutex so that several
// goroutines holding the same cap cannot corrupt the ring; with one
// producer and one consumer they are never contended.

const maxRing = 1 << 20

type ring struct {
	hdr
	mask  uint64
	slots []*Buf

	_    [64]byte
	head atomic.Uint64 // next slot to pop
	_    [56]byte
	tail atomic.Uint64 // next slot to fill
	_    [56]byte

	pmu sync.Mutex // serialises producers
	cmu sync.Mutex // serialises consumers

	closed      atomic.Bool
	consWaiting atomic.Bool
	prodWaiting atomic.Bool
	dataCh      chan struct{} // a wake-up for a waiting consumer
	spaceCh     chan struct{} // a wake-up for a waiting producer
	prodDied    atomic.Uint64 // bumped when a producer-side holder dies
	consDied    atomic.Uint64 // bumped when a consumer-side holder dies

	notify atomic.Pointer[ringNotify] // optional: signalled on empty→non-empty
}

type ringNotify struct {
	n    *notification
	bits uint64
}

func (*ring) kind() Kind { return KindRing }

func newRing(name string, size int) *ring {
	n := 1 << bits.Len(uint(size-1))
	r := &ring{mask: uint64(n - 1), slots: make([]*Buf, n), dataCh: make(chan struct{}, 1), spaceCh: make(chan struct{}, 1)}
	r.nm = name
	r.root = &capNode{obj: r, live: true}
	return r
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// peerDied wakes the other side of a holder with rights that died.
func (r *ring) peerDied(rights Rights) {
	if rights&Write != 0 {
		r.prodDied.Add(1)
		poke(r.dataCh)
	}
	if rights&Read != 0 {
		r.consDied.Add(1)
		poke(r.spaceCh)
	}
}

func (r *ring) close() {
	r.closed.Store(true)
	poke(r.dataCh)
	poke(r.spaceCh)
}

// destroy closes r and takes out the buffers still queued in it, for the
// caller to free. A push that looked the ring up before it was destroyed
// finds it closed (push checks under pmu, which destroy takes after
// closing), so no buffer can be left behind.
func (r *ring) destroy() []*Buf {
	r.close()
	r.notify.Store(nil)
	r.pmu.Lock()
	r.cmu.Lock()
	h, t := r.head.Load(), r.tail.Load()
	out := make([]*Buf, 0, t-h)
	for i := h; i != t; i++ {
		j := i & r.mask
		out = append(out, r.slots[j])
		r.slots[j] = nil
	}
	r.head.Store(t)
	r.cmu.Unlock()
	r.pmu.Unlock()
	return out
}

// push moves as many of bufs as fit (and the byte rate allows) into the
// ring and returns how many.
func (r *ring) push(pd *PD, bufs []*Buf) (int, error) {
	r.pmu.Lock()
	if r.closed.Load() {
		r.pmu.Unlock()
		return 0, fmt.Errorf("kernel: %s: push into %s: %w", pd.name(), r.nm, ErrClosed)
	}
	t := r.tail.Load()
	h := r.head.Load()
	n := min(uint64(len(bufs)), uint64(len(r.slots))-(t-h))
	if n == 0 {
		r.pmu.Unlock()
		return 0, ErrWouldBlock
	}
	if k := uint64(pd.c.budget.charge(bufs[:n])); k < n {
		n = k
		if n == 0 {
			r.pmu.Unlock()
			return 0, pd.c.budget.rateErr
		}
	}
	for i, b := range bufs[:n] {
		if !b.owner.CompareAndSwap(pd.bid, ownerRing) {
			for _, x := range bufs[:i] {
				x.owner.Store(pd.bid)
			}
			r.pmu.Unlock()
			panic(fmt.Sprintf("kernel: %s: push of packet buffer %p it does not hold (%s)", pd.name(), b, ownerName(b.owner.Load())))
		}
		r.slots[(t+uint64(i))&r.mask] = b
	}
	clear(bufs[:n])
	r.tail.Store(t + n)
	r.pmu.Unlock()
	if r.consWaiting.Load() {
		poke(r.dataCh)
	}
	if t == h {
		if rn := r.notify.Load(); rn != nil {
			rn.n.signal(rn.bits)
		}
	}
	return int(n), nil
}

// pop moves up to len(bufs) buffers out of the ring and returns how many.
func (r *ring) pop(pd *PD, bufs []*Buf) (int, error) {
	r.cmu.Lock()
	h := r.head.Load()
	t := r.tail.Load()
	n := min(uint64(len(bufs)), t-h)
	if n == 0 {
		r.cmu.Unlock()
		if r.closed.Load() && r.tail.Load() == h {
			return 0, fmt.Errorf("kernel: %s: pop from %s: %w", pd.name(), r.nm, ErrClosed)
		}
		return 0, ErrWouldBlock
	}
	for i := uint64(0); i < n; i++ {
		j := (h + i) & r.mask
		b := r.slots[j]
		r.slots[j] = nil
		b.owner.Store(pd.bid)
		bufs[i] = b
	}
	r.head.Store(h + n)
	r.cmu.Unlock()
	if r.prodWaiting.Load() {
		poke(r.spaceCh)
	}
	if !pd.adopted(bufs[:n]) {
		return 0, pd.deadErr("pop")
	}
	return int(n), nil
}

// Push moves as many of bufs as fit into the ring r (needs Write) and
// returns how many; it never blocks. Ownership of each pushed buffer moves
// to the ring: its entry in bufs is set to nil and the caller must not
// touch it again. A waiting consumer (and a bound notification, on the
// empty→non-empty transition) is signalled. Errors: ErrWouldBlock
// (unwrapped) if the ring is full, ErrNoBudget if the component's byte
// rate allows not even the first buffer, ErrClosed if the ring was closed.
func (pd *PD) Push(r Cap, bufs []*Buf) (int, error) {
	s, err := pd.lookup(r, KindRing, Write, "push")
	if err != nil {
		return 0, err
	}
	return s.obj.(*ring).push(pd, bufs)
}

// Pop moves up to len(bufs) buffers out of ring r (needs Read) into bufs
// and returns how many; the caller now owns them. It never blocks:
// ErrWouldBlock (unwrapped) if the ring is empty, ErrClosed once the ring
// is closed and drained.
func (pd *PD) Pop(r Cap, bufs []*Buf) (int, error) {
	s, err := pd.lookup(r, KindRing, Read, "pop")
	if err != nil {
		return 0, err
	}
	return s.obj.(*ring).pop(pd, bufs)
}

// park waits for a wake-up on ch and reports true, or false once the
// component or ctx is done. A select costs in proportion to its cases
// (each is locked, queued on and dequeued from), and a ring wait is on the
// data path of every blocking read and write: when ctx adds nothing to the
// component's own lifetime (no Done channel, or the component's context
// itself, as a RingPort without a deadline passes) it is left out.
func (pd *PD) park(ctx context.Context, ch chan struct{}) bool {
	done := ctx.Done()
	if done == nil || done == pd.done {
		select {
		case <-ch:
			return true
		case <-pd.done:
			return false
		}
	}
	select {
	case <-ch:
		return true
	case <-pd.done:
		return false
	case <-done:
		return false
	}
}

// PushWait is Push that blocks until at least one buffer is pushed
// (back-pressure), ctx is done, the ring is closed, or the consumer's
// component dies (ErrAborted).
func (pd *PD) PushWait(ctx context.Context, r Cap, bufs []*Buf) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := pd.lookup(r, KindRing, Write, "push")
	if err != nil {
		return 0, err
	}
	rg := s.obj.(*ring)
	died := rg.consDied.Load()
	for {
		n, err := rg.push(pd, bufs)
		if err != ErrWouldBlock {
			return n, err
		}
		rg.prodWaiting.Store(true)
		if n, err = rg.push(pd, bufs); err != ErrWouldBlock {
			rg.prodWaiting.Store(false)
			return n, err
		}
		if !pd.park(ctx, rg.spaceCh) {
			rg.prodWaiting.Store(false)
			return 0, pd.interruptErr(ctx, "push", r)
		}
		rg.prodWaiting.Store(false)
		if rg.consDied.Load() != died {
			return 0, fmt.Errorf("kernel: %s: push on cap %d: consumer died: %w", pd.name(), r, ErrAborted)
		}
	}
}

// PopWait is Pop that blocks until at least one buffer is popped, ctx is
// done, the ring is closed and drained (ErrClosed), or the producer's
// component dies (ErrAborted).
func (pd *PD) PopWait(ctx context.Context, r Cap, bufs []*Buf) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := pd.lookup(r, KindRing, Read, "pop")
	if err != nil {
		return 0, err
	}
	rg := s.obj.(*ring)
	died := rg.prodDied.Load()
	for {
		n, err := rg.pop(pd, bufs)
		if err != ErrWouldBlock {
			return n, err
		}
		rg.consWaiting.Store(true)
		if n, err = rg.pop(pd, bufs); err != ErrWouldBlock {
			rg.consWaiting.Store(false)
			return n, err
		}
		if !pd.park(ctx, rg.dataCh) {
			rg.consWaiting.Store(false)
			return 0, pd.interruptErr(ctx, "pop", r)
		}
		rg.consWaiting.Store(false)
		if rg.prodDied.Load() != died {
			return 0, fmt.Errorf("kernel: %s: pop on cap %d: producer died: %w", pd.name(), r, ErrAborted)
		}
	}
}

// CloseRing closes ring r (either side, any right): Push then fails with
// ErrClosed, Pop drains what is left and then fails with ErrClosed, and
// blocked waiters wake.
func (pd *PD) CloseRing(r Cap) error {
	s, err := pd.lookup(r, KindRing, 0, "close ring")
	if err != nil {
		return err
	}
	s.obj.(*ring).close()
	return nil
}

// BindRing makes ring r signal notification n (with n's cap badge, or 1)
// each time r goes from empty to non-empty, so one Wait can serve many
// rings. It needs Read on r and Write on n. Binding replaces an earlier
// binding; n == 0 unbinds.
func (pd *PD) BindRing(r Cap, n Cap) error {
	s, err := pd.lookup(r, KindRing, Read, "bind ring")
	if err != nil {
		return err
	}
	rg := s.obj.(*ring)
	if n == 0 {
		rg.notify.Store(nil)
		return nil
	}
	ns, err := pd.lookup(n, KindNotification, Write, "bind ring")
	if err != nil {
		return err
	}
	bits := uint64(ns.badge)
	if bits == 0 {
		bits = 1
	}
	rg.notify.Store(&ringNotify{n: ns.obj.(*notification), bits: bits})
	return nil
}

// RingLen returns how many buffers ring r holds now (any right).
func (pd *PD) RingLen(r Cap) (int, error) {
	s, err := pd.lookup(r, KindRing, 0, "ring len")
	if err != nil {
		return 0, err
	}
	rg := s.obj.(*ring)
	return int(rg.tail.Load() - rg.head.Load()), nil
}

// AllocBuf draws a packet buffer from the component's budget; ErrNoBudget
// when the budget is used up. The buffer's window is at Headroom with
// length 0.
func (pd *PD) AllocBuf() (*Buf, error) {
	var one [1]*Buf
	if _, err := pd.AllocBufs(one[:]); err != nil {
		return nil, err
	}
	return one[0], nil
}

// AllocBufs fills bufs with buffers from the budget and returns how many;
// ErrNoBudget if not even one was available.
func (pd *PD) AllocBufs(bufs []*Buf) (int, error) {
	if pd.dead.Load() {
		return 0, pd.deadErr("alloc")
	}
	b := pd.c.budget
	n := b.reserveBufs(len(bufs))
	if n == 0 && len(bufs) > 0 {
		return 0, fmt.Errorf("kernel: %s: alloc: all %d buffers of the budget in use: %w", pd.name(), b.bufLimit.Load()&^mergedBit, ErrNoBudget)
	}
	pd.k.pool.get(bufs[:n])
	for _, x := range bufs[:n] {
		x.off, x.end, x.budget = Headroom, Headroom, b
		x.owner.Store(pd.bid)
	}
	if !pd.adopted(bufs[:n]) {
		return 0, pd.deadErr("alloc")
	}
	return n, nil
}

// FreeBuf returns b to the budget it was drawn from (whoever holds it last
// frees it). Freeing a buffer twice, or one that this incarnation does not
// hold, panics.
func (pd *PD) FreeBuf(b *Buf) {
	one := [1]*Buf{b}
	pd.FreeBufs(one[:])
}

// FreeBufs frees each buffer of bufs and sets the entries to nil; nil
// entries are skipped.
func (pd *PD) FreeBufs(bufs []*Buf) {
	n := 0
	for i, b := range bufs {
		if b == nil {
			continue
		}
		if !b.owner.CompareAndSwap(pd.bid, ownerFree) {
			for _, x := range bufs[:n] {
				x.owner.Store(pd.bid)
			}
			panic(fmt.Sprintf("kernel: %s: free of packet buffer %p it does not hold (%s)", pd.name(), b, ownerName(b.owner.Load())))
		}
		bufs[n] = b
		if n != i {
			bufs[i] = nil
		}
		n++
	}
	pd.k.recycle(bufs[:n])
	clear(bufs[:n])
}
