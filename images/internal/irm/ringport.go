package irm

import (
	"context"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/flow"
	"sync"
	"time"

	"github.com/ouronet/ouro/kernel"
)

// ringBatch is how many buffers a RingPort pops at once.
const ringBatch = 32

// RingPort is a Port over two kernel rings held by one component: it
// pushes what is written into tx (a cap with Write) and pops what is read
// from rx (a cap with Read). This is the in-node data path between an
// application and an IPCP: buffers are drawn from the writer's budget and
// freed by the reader, so a flood exhausts the flooder's budget only.
type RingPort struct {
	pd     *kernel.PD
	rx, tx kernel.Cap
	max    int // the longest SDU Write and WriteBatch take

	rmu     sync.Mutex // serialises readers; guards rbufs, rhead, rn
	rbufs   [ringBatch]*kernel.Buf
	rhead   int
	rn      int
	wmu     sync.Mutex // serialises writers; guards wbuf
	wbuf    [ringBatch]*kernel.Buf
	lent    [ringBatch]*kernel.Buf // what Lend lent, until Return; guarded by rmu
	nlent   int
	closeMu sync.Mutex // guards closed; taken before rmu and wmu
	closed  bool
	gone    bool // caps deleted; set with rmu and wmu held
}

var (
	_ flow.Port      = (*RingPort)(nil)
	_ flow.BatchPort = (*RingPort)(nil)
	_ flow.LendPort  = (*RingPort)(nil)
)

// NewRingPort returns the Port over rx and tx in pd's CSpace.
func NewRingPort(pd *kernel.PD, rx, tx kernel.Cap) *RingPort {
	return &RingPort{pd: pd, rx: rx, tx: tx, max: flow.MaxSDU}
}

// SetMaxSDU makes n (at least flow.MaxSDU, at most what one of the
// kernel's buffers holds) the longest SDU Write and WriteBatch take: for
// the flow of a layer that carries larger SDUs. Call it before the port
// is used.
func (p *RingPort) SetMaxSDU(n int) {
	p.max = min(max(n, flow.MaxSDU), p.pd.BufSize())
}

// Go starts f as a goroutine of the port's component (kernel.PD.Go): the
// goroutines package flow runs for a Flow over this port are the
// component's, and a panic in one is its fault.
func (p *RingPort) Go(f func()) { p.pd.Go(f) }

// Caps returns the port's ring caps (rx, tx) in its component's CSpace.
func (p *RingPort) Caps() (rx, tx kernel.Cap) { return p.rx, p.tx }

// deadlineCtx returns a context for a blocking ring operation. Without a
// deadline it is the component's own context and nothing is allocated.
func (p *RingPort) deadlineCtx(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return p.pd.Context(), func() {}
	}
	return context.WithDeadline(p.pd.Context(), deadline)
}

func mapRingErr(op string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("flow: %s: %w", op, flow.ErrTimeout)
	case errors.Is(err, kernel.ErrClosed), errors.Is(err, context.Canceled),
		errors.Is(err, kernel.ErrRevoked), errors.Is(err, kernel.ErrInvalidCap), errors.Is(err, kernel.ErrAborted):
		return fmt.Errorf("flow: %s: %w", op, flow.ErrClosed)
	case errors.Is(err, kernel.ErrNoBudget):
		return fmt.Errorf("flow: %s: %w: %w", op, flow.ErrBusy, err)
	}
	return fmt.Errorf("flow: %s: %w", op, err)
}

// pop fills bufs from rx, waiting until the deadline. Without a deadline
// it goes straight to PopWait (which pops before it parks: one cap lookup
// on the way to an idle flow's wait); with one, it tries a plain Pop
// first so that a ready SDU costs no context.
func (p *RingPort) pop(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	if deadline.IsZero() {
		return p.pd.PopWait(p.pd.Context(), p.rx, bufs)
	}
	n, err := p.pd.Pop(p.rx, bufs)
	if n == 0 && (err == nil || errors.Is(err, kernel.ErrWouldBlock) || errors.Is(err, kernel.ErrNoBudget)) {
		ctx, cancel := p.deadlineCtx(deadline)
		n, err = p.pd.PopWait(ctx, p.rx, bufs)
		cancel()
	}
	return n, err
}

// push pushes bufs (a prefix of wbuf) into tx, waiting for room until the
// deadline; like pop it needs no context to push into a ring with room.
// It returns once at least one buffer is pushed.
func (p *RingPort) push(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	if deadline.IsZero() {
		return p.pd.PushWait(p.pd.Context(), p.tx, bufs)
	}
	n, err := p.pd.Push(p.tx, bufs)
	if n == 0 && (err == nil || errors.Is(err, kernel.ErrWouldBlock) || errors.Is(err, kernel.ErrNoBudget)) {
		ctx, cancel := p.deadlineCtx(deadline)
		n, err = p.pd.PushWait(ctx, p.tx, bufs)
		cancel()
	}
	return n, err
}

// fill makes sure buffers wait in the read batch, popping the next batch
// (one ring operation) when it is used up; the caller holds rmu.
func (p *RingPort) fill(deadline time.Time) error {
	if p.gone {
		return fmt.Errorf("flow: read: %w", flow.ErrClosed)
	}
	if p.rhead == p.rn {
		p.rhead, p.rn = 0, 0
		n, err := p.pop(p.rbufs[:], deadline)
		if n == 0 {
			return mapRingErr("read", err)
		}
		p.rn = n
	}
	return nil
}

// Read implements Port. It pops buffers in batches and serves later reads
// from the batch.
func (p *RingPort) Read(b []byte, deadline time.Time) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if err := p.fill(deadline); err != nil {
		return 0, err
	}
	buf := p.rbufs[p.rhead]
	p.rbufs[p.rhead] = nil
	p.rhead++
	data := buf.Bytes()
	n := copy(b, data)
	p.pd.FreeBuf(buf)
	if n < len(data) {
		return n, fmt.Errorf("flow: read %d-byte SDU into %d bytes: %w", len(data), len(b), flow.ErrTruncated)
	}
	return n, nil
}

// Write implements Port: it copies b into a buffer from the component's
// budget and pushes it, waiting for room until the deadline.
func (p *RingPort) Write(b []byte, deadline time.Time) error {
	return p.WriteMarked(b, 0, deadline)
}

// WriteMarked is Write that leaves mark on the buffer (kernel.Buf.Mark),
// for the reader's ReadMarked: a unicast layer delivering an SDU before
// its flow's delivery loop started writes its congestion level so.
func (p *RingPort) WriteMarked(b []byte, mark uint8, deadline time.Time) error {
	if len(b) > p.max {
		return fmt.Errorf("flow: write of %d bytes (max %d): %w", len(b), p.max, flow.ErrTooBig)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.gone {
		return fmt.Errorf("flow: write: %w", flow.ErrClosed)
	}
	buf, err := p.pd.AllocBuf()
	if err != nil {
		return mapRingErr("write", err)
	}
	buf.Reset()
	copy(buf.Extend(len(b)), b)
	buf.SetMark(mark)
	p.wbuf[0] = buf
	n, err := p.push(p.wbuf[:1], deadline)
	p.wbuf[0] = nil
	if n == 0 {
		p.pd.FreeBuf(buf)
		return mapRingErr("write", err)
	}
	return nil
}

// ReadBatch implements BatchPort: it serves the batch it popped last, and
// pops the next one (one ring operation) when that is used up.
func (p *RingPort) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	return p.ReadMarked(bufs, sizes, nil, deadline)
}

// ReadMarked is ReadBatch that also gives, where marks is not nil, each
// SDU's buffer's mark (kernel.Buf.Mark: a unicast layer delivering it
// wrote its congestion level there) in marks[i].
func (p *RingPort) ReadMarked(bufs [][]byte, sizes []int, marks []uint8, deadline time.Time) (int, error) {
	if marks != nil {
		bufs = bufs[:min(len(bufs), len(marks))]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if err := p.fill(deadline); err != nil {
		return 0, err
	}
	start := p.rhead
	n := 0
	var err error
	for n < len(bufs) && p.rhead < p.rn {
		data := p.rbufs[p.rhead].Bytes()
		if marks != nil {
			marks[n] = p.rbufs[p.rhead].Mark()
		}
		p.rhead++
		sizes[n] = copy(bufs[n], data)
		n++
		if sizes[n-1] < len(data) {
			err = fmt.Errorf("flow: read %d-byte SDU into %d bytes: %w", len(data), len(bufs[n-1]), flow.ErrTruncated)
			break
		}
	}
	p.pd.FreeBufs(p.rbufs[start:p.rhead])
	return n, err
}

// WriteBatch implements BatchPort: it copies up to ringBatch SDUs into
// buffers from the component's budget and pushes them with one ring
// operation while the ring has room.
func (p *RingPort) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.gone {
		return 0, fmt.Errorf("flow: write: %w", flow.ErrClosed)
	}
	done := 0
	for done < len(sdus) {
		k := 0 // SDUs of this round: up to ringBatch, none too big
		for k < len(p.wbuf) && done+k < len(sdus) && len(sdus[done+k]) <= p.max {
			k++
		}
		if k == 0 {
			return done, fmt.Errorf("flow: write of %d bytes (max %d): %w", len(sdus[done]), p.max, flow.ErrTooBig)
		}
		k, err := p.pd.AllocBufs(p.wbuf[:k])
		if k == 0 {
			return done, mapRingErr("write", err)
		}
		for i, b := range p.wbuf[:k] {
			b.Reset()
			copy(b.Extend(len(sdus[done+i])), sdus[done+i])
		}
		for pushed := 0; pushed < k; {
			n, err := p.push(p.wbuf[pushed:k], deadline)
			pushed += n
			done += n
			if n == 0 {
				p.pd.FreeBufs(p.wbuf[pushed:k])
				return done, mapRingErr("write", err)
			}
		}
	}
	return done, nil
}

// The buffer calls below are for a reader or writer that hands buffers
// on instead of copying out of and into byte slices: the node's side of a
// program's shared rings copies once each way, between the program's
// slots and the kernel's buffers (docs/flow.md, "Copies"). They use the
// port's component's budget and caps, as Read and Write do.

// AllocBufs fills bufs with buffers from the component's budget, as many
// as it has room for, and returns how many; 0 with flow.ErrBusy when it
// has none.
func (p *RingPort) AllocBufs(bufs []*kernel.Buf) (int, error) {
	n, err := p.pd.AllocBufs(bufs)
	if n == 0 {
		return 0, mapRingErr("write", err)
	}
	return n, nil
}

// FreeBufs frees bufs (held by the caller, from AllocBufs or PopBufs)
// and sets the entries to nil.
func (p *RingPort) FreeBufs(bufs []*kernel.Buf) { p.pd.FreeBufs(bufs) }

// PushBufs pushes bufs into the transmit ring, waiting for room until the
// deadline, and returns once at least one is pushed (their entries set to
// nil: they are the ring's now) or with the error; the caller holds the
// rest. It must not be mixed with Write and WriteBatch.
func (p *RingPort) PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.gone {
		return 0, fmt.Errorf("flow: write: %w", flow.ErrClosed)
	}
	n, err := p.push(bufs, deadline)
	if n == 0 {
		return 0, mapRingErr("write", err)
	}
	return n, nil
}

// PopBufs pops up to len(bufs) buffers, waiting for the first until the
// deadline, and returns how many: the caller holds them and frees them
// (FreeBufs). What a Read or ReadBatch popped and left comes first.
func (p *RingPort) PopBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.gone {
		return 0, fmt.Errorf("flow: read: %w", flow.ErrClosed)
	}
	if p.rhead < p.rn {
		n := copy(bufs, p.rbufs[p.rhead:p.rn])
		clear(p.rbufs[p.rhead : p.rhead+n])
		p.rhead += n
		return n, nil
	}
	n, err := p.pop(bufs, deadline)
	if n == 0 {
		return 0, mapRingErr("read", err)
	}
	return n, nil
}

// Lend implements flow.LendPort: it pops up to len(frames) buffers (one
// ring operation, what a Read or ReadBatch left first) and lends them in
// place, each frame the SDU behind head bytes of the buffer's headroom
// (kernel.Headroom at most), with its tailroom as capacity. The buffers
// stay the port's component's, held for the reader until Return frees
// them; Close leaves them to Return.
func (p *RingPort) Lend(frames [][]byte, head int, deadline time.Time) (int, error) {
	if head < 0 || head > kernel.Headroom {
		return 0, fmt.Errorf("flow: lend with %d bytes of room in front (most %d): %w", head, kernel.Headroom, flow.ErrInvalid)
	}
	p.Return()
	n, err := p.PopBufs(p.lent[:min(len(frames), len(p.lent))], deadline)
	if n == 0 {
		return 0, err
	}
	p.rmu.Lock()
	p.nlent = n
	p.rmu.Unlock()
	for i, b := range p.lent[:n] {
		if b.HeadSpace() < head {
			// A writer that left less room in front (none of the
			// node's does): move the SDU back to the headroom.
			d := b.Bytes()
			b.Reset()
			copy(b.Extend(len(d)), d)
		}
		frames[i] = b.Room(head)
	}
	return n, nil
}

// Return implements flow.LendPort: it frees what the last Lend lent.
func (p *RingPort) Return() {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.nlent > 0 {
		p.pd.FreeBufs(p.lent[:p.nlent])
		p.nlent = 0
	}
}

// Queued returns how many SDUs written to the port wait in its transmit
// ring for the other end (for a layer's N-1 port: what the layer below
// has not taken yet, the queue a forwarder marks congestion by). It does
// not block or allocate; 0 once the port is closed.
func (p *RingPort) Queued() int { return orZero(p.pd.RingLen(p.tx)) }

// QueueCap returns the capacity of the port's transmit ring: the most
// Queued can be. It does not block or allocate; 0 once the port is
// closed.
func (p *RingPort) QueueCap() int { return orZero(p.pd.RingCap(p.tx)) }

// Backlog returns how many SDUs the other end wrote that wait in the
// port's receive ring to be read here (not counting those already
// popped into the reader's batch): the queue a slow reader lets grow,
// which a layer marks congestion by as it reads. It does not block or
// allocate; 0 once the port is closed.
func (p *RingPort) Backlog() int { return orZero(p.pd.RingLen(p.rx)) }

// BacklogCap returns the capacity of the port's receive ring: the most
// Backlog can be. It does not block or allocate; 0 once the port is
// closed.
func (p *RingPort) BacklogCap() int { return orZero(p.pd.RingCap(p.rx)) }

// orZero is n, or 0 on an error (a ring already closed).
func orZero(n int, err error) int {
	if err != nil {
		return 0
	}
	return n
}

// Close implements Port: it closes both rings (waking a blocked reader
// and writer), frees what it had popped but not read, and deletes its
// ring caps once no reader or writer can still use the slots.
func (p *RingPort) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	_ = p.pd.CloseRing(p.tx)
	_ = p.pd.CloseRing(p.rx)
	p.rmu.Lock()
	p.wmu.Lock()
	for i := p.rhead; i < p.rn; i++ {
		p.pd.FreeBuf(p.rbufs[i])
		p.rbufs[i] = nil
	}
	p.rhead, p.rn = 0, 0
	p.gone = true
	_ = p.pd.Delete(p.tx)
	_ = p.pd.Delete(p.rx)
	p.wmu.Unlock()
	p.rmu.Unlock()
	return nil
}
