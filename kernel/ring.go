package kernel

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
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
//
// Accounting: a queued buffer is charged to the ring's account, the
// budget of the component that created the ring (for a ring of the system
// description, the ring itself: its size bounds it). Push moves the
// charge of a batch from the pusher's budget to the account (one
// reservation there, one release on the pusher's), Pop from the account
// to the popper's; nothing moves when both are the same budget.

const maxRing = 1 << 20

type ring struct {
	hdr
	mask  uint64
	slots []*Buf
	// acct is the budget queued buffers are charged to: the creator's,
	// or nil for a ring of the system description. Changed only with pmu
	// and cmu held (see rehome).
	acct    atomic.Pointer[budget]
	rate    *tokenBucket // the ring's own byte rate; nil means unlimited
	rateErr error        // preallocated: the ring's byte rate refused a push

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

// newRing makes a ring as spec says (Size > 0, rates validated by the
// caller); acct is the creator's budget (nil for the system description).
func newRing(name string, spec RingSpec, acct *budget, now func() time.Time) *ring {
	n := 1 << bits.Len(uint(spec.Size-1))
	r := &ring{mask: uint64(n - 1), slots: make([]*Buf, n), dataCh: make(chan struct{}, 1), spaceCh: make(chan struct{}, 1)}
	r.acct.Store(acct)
	r.nm = name
	r.root = &capNode{obj: r, live: true}
	if spec.ByteRate > 0 {
		r.rate = &tokenBucket{now: now}
		r.rate.set(spec.ByteRate, spec.Burst)
		r.rateErr = fmt.Errorf("kernel: push into %s: the ring's byte rate exceeded: %w", name, ErrNoBudget)
	}
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
// caller to free to r's account (returned with them). A push that looked
// the ring up before it was destroyed finds it closed (push checks under
// pmu, which destroy takes after closing), so no buffer can be left
// behind.
func (r *ring) destroy() ([]*Buf, *budget) {
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
	acct := r.acct.Load()
	r.cmu.Unlock()
	r.pmu.Unlock()
	return out, acct
}

// rehome moves r's account from a budget about to be merged (its
// creator was destroyed) to to, with the charge of what is queued.
func (r *ring) rehome(from, to *budget) {
	r.pmu.Lock()
	r.cmu.Lock()
	if r.acct.Load() == from {
		q := int64(r.tail.Load() - r.head.Load())
		to.bufUsed.Add(q) // may pass to's limit until from's is merged into it
		from.releaseBufs(q)
		r.acct.Store(to)
	}
	r.cmu.Unlock()
	r.pmu.Unlock()
}

// push moves as many of bufs as fit into the ring (and as the ring's
// account, the pusher's byte rate and the ring's allow) and returns how
// many. The charge of the pushed buffers moves from the pusher's budget
// to the ring's account.
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
	src, acct := pd.c.budget, r.acct.Load()
	charge := acct != nil && acct != src // the charge moves to another budget
	if charge {
		if n = uint64(acct.reserveBufs(int(n))); n == 0 {
			r.pmu.Unlock()
			return 0, acct.queueErr
		}
	}
	k := uint64(src.rate.take(bufs[:n]))
	rateErr := src.rateErr
	if r.rate != nil && k > 0 {
		if k2 := uint64(r.rate.take(bufs[:k])); k2 < k {
			src.rate.refund(bufs[k2:k])
			k, rateErr = k2, r.rateErr
		}
	}
	if k < n {
		if charge {
			acct.releaseBufs(int64(n - k))
		}
		if n = k; n == 0 {
			r.pmu.Unlock()
			return 0, rateErr
		}
	}
	for i, b := range bufs[:n] {
		if !b.owner.CompareAndSwap(pd.bid, ownerRing) {
			for _, x := range bufs[:i] {
				x.owner.Store(pd.bid)
			}
			if charge {
				acct.releaseBufs(int64(n))
			}
			r.pmu.Unlock()
			panic(fmt.Sprintf("kernel: %s: push of packet buffer %p it does not hold (%s)", pd.name(), b, ownerName(b.owner.Load())))
		}
		r.slots[(t+uint64(i))&r.mask] = b
	}
	clear(bufs[:n])
	r.tail.Store(t + n)
	r.pmu.Unlock()
	if acct != src {
		src.releaseBufs(int64(n))
	}
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

// pop moves up to len(bufs) buffers out of the ring, as many as the
// popper's budget can take, and returns how many. Their charge moves from
// the ring's account to the popper's budget.
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
	dst, acct := pd.c.budget, r.acct.Load()
	if acct != dst {
		if n = uint64(dst.reserveBufs(int(n))); n == 0 {
			r.cmu.Unlock()
			return 0, dst.popErr
		}
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
	if acct != nil && acct != dst {
		acct.releaseBufs(int64(n))
	}
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
// touch it again, and its charge moves from the caller's budget to the
// budget of the ring's creator. A waiting consumer (and a bound
// notification, on the empty→non-empty transition) is signalled. Errors:
// ErrWouldBlock (unwrapped) if the ring is full; ErrNoBudget if the ring
// creator's budget, the caller's byte rate or the ring's byte rate allows
// not even the first buffer (preallocated errors: a refused push does not
// allocate); ErrClosed if the ring was closed.
func (pd *PD) Push(r Cap, bufs []*Buf) (int, error) {
	s, err := pd.lookup(r, KindRing, Write, "push")
	if err != nil {
		return 0, err
	}
	return s.obj.(*ring).push(pd, bufs)
}

// Pop moves up to len(bufs) buffers out of ring r (needs Read) into bufs
// and returns how many; the caller now owns them, and they are charged to
// its budget: it pops only as many as its budget can take. It never
// blocks: ErrWouldBlock (unwrapped) if the ring is empty, ErrNoBudget
// (preallocated) if it is not but the caller's budget can take none,
// ErrClosed once the ring is closed and drained.
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

// parkCredit waits until budget b is credited or ch is poked (the ring
// was closed, or its other side died) and reports true; false once the
// component or ctx is done. The caller has announced itself in b.waiters
// and checked again before parking, so a credit in between is not missed.
// Waiting for credit is off the fast path (the flood is already
// contained), so the select need not be small.
func (pd *PD) parkCredit(ctx context.Context, b *budget, ch chan struct{}) bool {
	select {
	case <-b.credit:
		return true
	case <-ch:
		return true
	case <-pd.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// PushWait is Push that blocks until at least one buffer is pushed
// (back-pressure: while the ring is full, or the budget of the ring's
// creator is), ctx is done, the ring is closed, or the consumer's
// component dies (ErrAborted). It does not wait for byte-rate tokens: a
// rate-limited push returns ErrNoBudget.
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
	var woke *budget // a budget whose wake-up this goroutine took
	for {
		n, err := rg.push(pd, bufs)
		if woke != nil {
			if err != woke.queueErr {
				woke.credited() // not used up: pass the wake-up on
			}
			woke = nil
		}
		if acct := rg.acct.Load(); acct != nil && err == acct.queueErr {
			acct.waiters.Add(1)
			if n, err = rg.push(pd, bufs); err != acct.queueErr {
				acct.waiters.Add(-1)
				if err == ErrWouldBlock {
					continue
				}
				return n, err
			}
			ok := pd.parkCredit(ctx, acct, rg.spaceCh)
			acct.waiters.Add(-1)
			if !ok {
				return 0, pd.interruptErr(ctx, "push", r)
			}
			woke = acct
			continue
		}
		if err != ErrWouldBlock {
			return n, err
		}
		rg.prodWaiting.Store(true)
		if n, err = rg.push(pd, bufs); err != ErrWouldBlock {
			rg.prodWaiting.Store(false)
			if acct := rg.acct.Load(); acct != nil && err == acct.queueErr {
				continue
			}
			return n, err
		}
		ok := pd.park(ctx, rg.spaceCh)
		rg.prodWaiting.Store(false)
		if !ok {
			return 0, pd.interruptErr(ctx, "push", r)
		}
		if rg.consDied.Load() != died {
			return 0, fmt.Errorf("kernel: %s: push on cap %d: consumer died: %w", pd.name(), r, ErrAborted)
		}
	}
}

// PopWait is Pop that blocks until at least one buffer is popped (while
// the ring is empty, or the caller's budget can take none: then until the
// budget is credited), ctx is done, the ring is closed and drained
// (ErrClosed), or the producer's component dies (ErrAborted).
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
	b := pd.c.budget
	woke := false // this goroutine took a wake-up from b.credit
	for {
		n, err := rg.pop(pd, bufs)
		if woke {
			if err != b.popErr {
				b.credited() // not used up: pass the wake-up on
			}
			woke = false
		}
		if err == b.popErr {
			b.waiters.Add(1)
			if n, err = rg.pop(pd, bufs); err != b.popErr {
				b.waiters.Add(-1)
				if err == ErrWouldBlock {
					continue
				}
				return n, err
			}
			ok := pd.parkCredit(ctx, b, rg.dataCh)
			b.waiters.Add(-1)
			if !ok {
				return 0, pd.interruptErr(ctx, "pop", r)
			}
			woke = true
			continue
		}
		if err != ErrWouldBlock {
			return n, err
		}
		rg.consWaiting.Store(true)
		if n, err = rg.pop(pd, bufs); err != ErrWouldBlock {
			rg.consWaiting.Store(false)
			if err == b.popErr {
				continue
			}
			return n, err
		}
		ok := pd.park(ctx, rg.dataCh)
		rg.consWaiting.Store(false)
		if !ok {
			return 0, pd.interruptErr(ctx, "pop", r)
		}
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

// RingCap returns how many buffers ring r holds at most (any right): its
// RingSpec.Size rounded up to a power of two.
func (pd *PD) RingCap(r Cap) (int, error) {
	s, err := pd.lookup(r, KindRing, 0, "ring cap")
	if err != nil {
		return 0, err
	}
	return len(s.obj.(*ring).slots), nil
}

// BufSize returns the data size of the kernel's packet buffers after
// Headroom (Config.BufSize): the longest window a buffer this PD draws
// can hold.
func (pd *PD) BufSize() int { return pd.k.cfg.BufSize }

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
		x.off, x.end, x.mark = Headroom, Headroom, 0
		x.owner.Store(pd.bid)
	}
	if !pd.adopted(bufs[:n]) {
		return 0, pd.deadErr("alloc")
	}
	return n, nil
}

// FreeBuf frees b, which the caller holds, and credits its budget (a
// buffer is always charged to its holder). Freeing a buffer twice, or one
// that this incarnation does not hold, panics.
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
	pd.k.recycle(pd.c.budget, bufs[:n])
	clear(bufs[:n])
}
