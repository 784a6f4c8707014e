package dt

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/unicast/ca"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// The N-1 side of a data path (the unicast IPCP's: docs/layers.md):
//
//   - receive: one loop per N-1 data-transfer flow (Loops.Rx) reads
//     packets into pooled buffers (a batch per read where the flow is a
//     flow.BatchPort, else one) and hands each to Host.Input, which
//     decides (Forwarder.Decide) and either queues it on a next hop's
//     Scheduler (the buffer moves with it, in exchange for a spare),
//     delivers it, or drops it, counted. Of the transmit loops it
//     queued for, those that wait for a packet are woken once per batch
//     (Kicks); one that is running is not (Port.Queue).
//   - transmit: one loop per N-1 flow (Loops.Tx) dequeues batches from
//     its Scheduler and writes them to the flow (one WriteBatch where it
//     is a flow.BatchPort), blocking on its back-pressure; the queue in
//     front of it absorbs bursts. When its dequeue finds nothing, the
//     scheduler marks it parked and it waits for a wake-up, which the
//     first packet queued after that sends. A period with nothing
//     written ends with a keepalive (Host.Keepalive).
//
// The loops allocate nothing per packet. What they need from the layer
// (the forwarding decision and delivery, failing an adjacency,
// congestion marks, keepalives) is Host; the N+1 side (an N+1 flow's
// SDUs in and out, sealing, the control queue) stays with the IPCP,
// which holds the flow allocator's flows and their seals.

// Host is what the N-1 loops need from the layer whose ports they serve.
// The loops of several ports call it at once; each port's receive loop
// makes the calls about that port's received packets, its transmit loop
// those about the packets it sends.
type Host interface {
	// Input handles a packet read from an N-1 port. A packet passed on
	// (queued for a next hop or a program) leaves the caller in
	// exchange for a spare of sp, which Input returns (the loop reads
	// into it next); on nil, b is still the caller's. With k, a next
	// hop's transmit loop is woken when k is flushed, not at once. It
	// must not block: the port's next packets wait behind it.
	Input(b *Buf, k *Kicks, sp *Spares) *Buf
	// Fail reports that p's flow broke (err, from its Read): the
	// adjacency is to go. The receive loop ends after it.
	Fail(p *Port, err error)
	// MarkRx raises the ECN of bs, just read from p, by the congestion
	// of the queue they came through: bl, what waits in p's receive
	// ring (nil: the flow does not say). Only p's receive loop calls it
	// for p (p.RxQ and p.RxCap are its own); bs stays the loop's.
	MarkRx(p *Port, bl Backlogger, bs []*Buf)
	// MarkTx raises the ECN of a batch leaving p's queue by the queue's
	// standing depth; below is the most that ever waited in the ring
	// under it (its capacity, once it filled). Only p's transmit loop
	// calls it for p; batch stays the loop's.
	MarkTx(p *Port, batch []*Buf, below int)
	// Keepalive writes a keepalive to p's neighbour: p wrote nothing
	// for a KeepAlive period. p's transmit loop waits for it.
	Keepalive(p *Port)
}

// Backlogger is an N-1 flow that says how much waits in the queue it is
// read from, and that queue's capacity (the node's ring port: its
// receive ring).
type Backlogger interface {
	Backlog() int
	BacklogCap() int
}

// Queuer is an N-1 flow that says how much of what was written to it
// waits in the layer below (the node's ring port: its transmit ring).
type Queuer interface {
	Queued() int
}

// Port is an N-1 data-transfer flow: a next hop, its queue and the
// counters of what crossed it.
type Port struct {
	ID    pff.Port
	Addr  layer.Addr
	Name  string
	Flow  flow.Port
	Sched *Scheduler[*Buf]

	kick  chan struct{} // wakes the transmit loop; capacity 1
	space chan struct{} // the transmit loop dequeued; capacity 1
	done  chan struct{} // closed when the adjacency is gone

	TxPkts, TxBytes, TxErrors, RxPkts, RxBytes atomic.Uint64
	LastRx                                     atomic.Int64 // Unix ns of the last receive (a batch's clock)

	// The standing backlog of the ring the port is read from, and its
	// capacity (Host.MarkRx): the receive loop's own.
	RxQ   ca.Standing
	RxCap int
	// Each flow's share of what the ring brings, which weighs its marks
	// (Host.MarkRx): the receive loop's own.
	RxShares ca.Shares

	// Each flow's share of what leaves the port's queue, which weighs
	// its marks (Host.MarkTx): the transmit loop's own.
	TxShares ca.Shares
}

// NewPort returns the port of the N-1 flow f, a next hop (addr, name)
// known to the forwarding table as id, queued for by s.
func NewPort(id pff.Port, addr layer.Addr, name string, f flow.Port, s *Scheduler[*Buf]) *Port {
	return &Port{ID: id, Addr: addr, Name: name, Flow: f, Sched: s, kick: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
}

// Queue puts b on p's queue for cube c, and reports false if the queue
// is full, its room beyond Cap included (a queue_full drop, counted by
// the scheduler; b is still the caller's). If p's transmit loop waits
// for a packet, it is woken: with k when k is flushed, without k at
// once; a loop that is running is not (the scheduler knows which: one
// wake-up per time the loop parks, not one per batch queued).
func (p *Port) Queue(c flow.Cube, b *Buf, k *Kicks) bool {
	return p.queue(c, b, k, false, true)
}

// TryQueue is Queue for a packet of the port's own node, whose sender
// waits for room when the queue is full (Space) and tries again: the
// queue is full for it at its length (Scheduler.Cap; the room beyond is
// for forwarded packets), and a refusal is not counted as a drop.
func (p *Port) TryQueue(c flow.Cube, b *Buf, k *Kicks) bool {
	return p.queue(c, b, k, true, false)
}

// QueueOwn is the last try of a packet of the port's own node whose
// sender has waited for room long enough: full at the queue's length as
// for TryQueue, a refusal counted as a queue_full drop as for Queue.
func (p *Port) QueueOwn(c flow.Cube, b *Buf, k *Kicks) bool {
	return p.queue(c, b, k, true, true)
}

func (p *Port) queue(c flow.Cube, b *Buf, k *Kicks, own, count bool) bool {
	ok, wake := p.Sched.enqueue(c, b, own, count)
	if wake && (k == nil || k.Add(p) < 0) {
		p.Wake()
	}
	return ok
}

// Wake wakes p's transmit loop, whether it waits or not.
func (p *Port) Wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Space is ready when p's transmit loop has dequeued from a scheduler
// one of whose queues was full (room in it, perhaps).
func (p *Port) Space() <-chan struct{} { return p.space }

// Done is closed once the adjacency is gone (Close).
func (p *Port) Done() <-chan struct{} { return p.done }

// Close ends p's loops: the transmit loop frees what is queued and
// returns; the receive loop ends when its flow's Read fails. Call once.
func (p *Port) Close() { close(p.done) }

// Tap offers a packet crossing p to the running capture s.
func (p *Port) Tap(s *capture.Session, d capture.Dir, pkt []byte) {
	s.Add(d, capture.PDU, uint64(p.ID), pkt)
}

// Loops runs the receive and transmit loops of a layer's N-1 ports.
type Loops struct {
	Pool *Pool
	Host Host
	// Capture taps the packets that cross the ports when a capture runs:
	// one atomic load per packet, or per batch, when none does.
	Capture *capture.Point
	// KeepAlive is the longest a transmit loop stays silent.
	KeepAlive time.Duration
	// The layer's counters of reads cut short (flow.ErrTruncated: the
	// packet is dropped) and of failed writes.
	Truncated, TxErrors *atomic.Uint64
}

// Rx reads np's packets until the flow breaks, then reports it
// (Host.Fail), or until np is closed while every buffer is held.
func (l *Loops) Rx(np *Port) {
	if bp, ok := np.Flow.(BufPort); ok {
		l.rxBufs(np, bp)
		return
	}
	if bp, ok := np.Flow.(flow.BatchPort); ok {
		l.rxBatch(np, bp)
		return
	}
	var (
		own [1]*Buf
		sp  Spares
	)
	if l.Pool.WaitGet(own[:], np.done, 0) == 0 {
		return // the adjacency went while every buffer was held
	}
	defer l.Pool.Put(own[:])
	defer sp.Release(l.Pool)
	bl, _ := np.Flow.(Backlogger)
	b := own[0]
	for {
		n, err := np.Flow.Read(b.B[:], time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				l.Truncated.Add(1)
				continue
			}
			own[0] = b
			l.Host.Fail(np, err)
			return
		}
		np.RxPkts.Add(1)
		np.RxBytes.Add(uint64(n))
		np.LastRx.Store(time.Now().UnixNano())
		b.Off, b.End = 0, n
		if s := l.Capture.Session(); s != nil {
			np.Tap(s, capture.In, b.Pkt())
		}
		faultinject.Check("unicast/dt", b.Pkt())
		l.Host.MarkRx(np, bl, own[:]) // own[0] is b
		sp.Fill(l.Pool, 1)
		if r := l.Host.Input(b, nil, &sp); r != nil {
			b = r
		}
		own[0] = b
	}
}

// rxBatch is Rx over a flow that reads in batches: one read (one
// wake-up) per batch, a decision per packet, one get of replacement
// buffers per batch and one wake-up per next hop's transmit loop per
// batch.
func (l *Loops) rxBatch(np *Port, bp flow.BatchPort) {
	var (
		bs    [RxBatch]*Buf
		bufs  [RxBatch][]byte
		sizes [RxBatch]int
		k     = Kicks{pool: l.Pool}
		sp    Spares
	)
	// The read buffers: as many as the pool gives, at least one.
	slots := l.Pool.WaitGet(bs[:], np.done, 0)
	if slots == 0 {
		return
	}
	defer l.Pool.Put(bs[:slots])
	defer sp.Release(l.Pool)
	for i := range slots {
		bufs[i] = bs[i].B[:]
	}
	bl, _ := np.Flow.(Backlogger)
	for {
		n, err := bp.ReadBatch(bufs[:slots], sizes[:slots], time.Time{})
		if err != nil {
			if !errors.Is(err, flow.ErrTruncated) {
				l.Host.Fail(np, err)
				return
			}
			l.Truncated.Add(1)
			n-- // the last one, truncated, is dropped
		}
		var nb uint64
		s := l.Capture.Session()
		sp.Fill(l.Pool, n)
		for i := range n {
			b := bs[i]
			b.Off, b.End = 0, sizes[i]
			nb += uint64(sizes[i])
			if s != nil {
				np.Tap(s, capture.In, b.Pkt())
			}
		}
		l.Host.MarkRx(np, bl, bs[:n])
		for i := range n {
			b := bs[i]
			faultinject.Check("unicast/dt", b.Pkt())
			if r := l.Host.Input(b, &k, &sp); r != nil {
				bs[i] = r
				bufs[i] = r.B[:]
			}
		}
		np.RxPkts.Add(uint64(n))
		np.RxBytes.Add(nb)
		np.LastRx.Store(k.Clock().UnixNano())
		if k.Flush() > 0 {
			// A queue was full: the transmit loops this batch woke
			// run before the next batch is read, rather than when
			// reading blocks, which it never does under overload.
			// Overloaded 12-fold, a router sent 1.25 times as much
			// (docs/benchmarks.md, "The middle router saturated").
			runtime.Gosched()
		}
	}
}

// rxBufs is Rx over a BufPort: the node's buffers are taken out of the
// flow's ring in batches, each in a shell, and what is passed on (to a
// next hop's queue, to delivery) leaves in its buffer, exchanged for an
// empty shell; what is not goes back to the node at the end of the
// batch. No copy.
func (l *Loops) rxBufs(np *Port, bp BufPort) {
	var (
		kb   [RxBatch]*kernel.Buf
		bs   [RxBatch]*Buf
		back [RxBatch]*kernel.Buf // not passed on: for the node
		k    = Kicks{pool: l.Pool}
		sp   Spares
	)
	l.Pool.SetFreer(bp.FreeBufs)
	l.Pool.Shells(bs[:])
	defer l.Pool.Put(bs[:])
	defer sp.Release(l.Pool)
	bl, _ := np.Flow.(Backlogger)
	for {
		n, err := bp.PopBufs(kb[:], time.Time{})
		if err != nil {
			l.Host.Fail(np, err)
			return
		}
		var nb uint64
		s := l.Capture.Session()
		sp.FillShells(l.Pool, n)
		for i := range n {
			b := bs[i]
			b.Hold(kb[i])
			kb[i] = nil
			nb += uint64(b.End - b.Off)
			if s != nil {
				np.Tap(s, capture.In, b.Pkt())
			}
		}
		l.Host.MarkRx(np, bl, bs[:n])
		nback := 0
		for i := range n {
			b := bs[i]
			faultinject.Check("unicast/dt", b.Pkt())
			if r := l.Host.Input(b, &k, &sp); r != nil {
				bs[i] = r // b went on with its buffer
			} else if b.K != nil {
				back[nback] = b.Release()
				nback++
			}
		}
		bp.FreeBufs(back[:nback])
		np.RxPkts.Add(uint64(n))
		np.RxBytes.Add(nb)
		np.LastRx.Store(k.Clock().UnixNano())
		if k.Flush() > 0 {
			runtime.Gosched() // as rxBatch
		}
	}
}

// Tx writes np's queued packets until np is closed. A period of
// KeepAlive in which it wrote nothing ends with a keepalive
// (Host.Keepalive), so that the N-1 flow is never idle in the layer
// below (the shims deallocate idle flows).
func (l *Loops) Tx(np *Port) {
	var (
		batch [TxBatch]*Buf
		pkts  [TxBatch][]byte
		kb    Scratch // a BufPort's: what a push hands on
	)
	bp, _ := np.Flow.(flow.BatchPort)
	kp, _ := np.Flow.(BufPort)
	qp, _ := np.Flow.(Queuer)
	below := 0 // the most qp ever held: its ring's capacity, once it filled
	ka := time.NewTicker(l.KeepAlive)
	defer ka.Stop()
	sent := np.TxPkts.Load()
	lastBelow := 0 // what SetBelow was last told
	setBelow := func(q int) {
		if q != lastBelow {
			lastBelow = q
			np.Sched.SetBelow(q)
		}
	}
	for {
		n, wasFull := np.Sched.dequeueBatch(batch[:])
		if n == 0 {
			// The scheduler has marked the loop parked: the next packet
			// queued wakes it (Port.Queue, Kicks).
			if qp != nil {
				setBelow(qp.Queued())
			}
			select {
			case <-np.kick:
				continue
			case <-ka.C:
				if s := np.TxPkts.Load(); s != sent {
					sent = s
				} else {
					l.Host.Keepalive(np)
				}
				continue
			case <-np.done:
			}
			for { // drain
				n := np.Sched.DequeueBatch(batch[:])
				if n == 0 {
					return
				}
				l.Pool.Put(batch[:n])
			}
		}
		if wasFull { // a sender may wait for room (the unicast IPCP's own)
			select {
			case np.space <- struct{}{}:
			default:
			}
		}
		if qp != nil {
			q := qp.Queued()
			below = max(below, q)
			setBelow(q)
		}
		l.Host.MarkTx(np, batch[:n], below)
		if s := l.Capture.Session(); s != nil {
			for _, b := range batch[:n] {
				np.Tap(s, capture.Out, b.Pkt())
			}
		}
		if kp != nil {
			l.pushBatch(np, kp, bp, batch[:n], pkts[:n], &kb)
			continue
		}
		l.writeBatch(np, bp, batch[:n], pkts[:n])
	}
}

// writeBatch writes batch to np with as few calls as its errors allow
// (each error costs one packet, counted; one Write each where bp is
// nil), then frees the buffers.
func (l *Loops) writeBatch(np *Port, bp flow.BatchPort, batch []*Buf, pkts [][]byte) {
	l.writeOwn(np, bp, batch, pkts)
	l.Pool.Put(batch)
}

// pushBatch is writeBatch over a BufPort: a run of packets in the node's
// buffers (from a BufPort's receive loop: forwarded) is pushed as it is,
// a run of the pool's own (this node's packets) written with a copy;
// the order stays. bp is the port's batch calls (nil: one Write each).
func (l *Loops) pushBatch(np *Port, kp BufPort, bp flow.BatchPort, batch []*Buf, pkts [][]byte, kb *Scratch) {
	Runs(batch, func(run []*Buf, held bool) {
		if !held {
			l.writeOwn(np, bp, run, pkts[:len(run)])
			return
		}
		pushed := PushRun(kp, run, kb)
		if pushed < len(run) { // the flow broke
			np.TxErrors.Add(1)
			l.TxErrors.Add(1)
		}
		var nb uint64
		for _, b := range run[:pushed] { // the shells keep their windows' bounds
			nb += uint64(b.End - b.Off)
		}
		np.TxPkts.Add(uint64(pushed))
		np.TxBytes.Add(nb)
	})
	l.Pool.Put(batch)
}

// Scratch is room for a batch's node buffers on their way to a port
// (PushRun's), kept by the loop that pushes.
type Scratch [TxBatch]*kernel.Buf

// PushRun hands the node's buffers of run (shells that hold one each,
// at most TxBatch) on to kp as they are, waiting for room, and returns
// how many went: a flow that broke takes the rest back to the node. The
// shells are left empty.
func PushRun(kp BufPort, run []*Buf, kb *Scratch) int {
	for x, b := range run {
		kb[x] = b.Release()
	}
	pushed := 0
	for pushed < len(run) {
		m, err := kp.PushBufs(kb[pushed:len(run)], time.Time{})
		pushed += m
		if err != nil {
			break
		}
	}
	if pushed < len(run) {
		kp.FreeBufs(kb[pushed:len(run)])
	}
	return pushed
}

// Runs calls f for each run of batch's packets that are all in the
// node's buffers (held true) or all in the pool's own, in order.
func Runs(batch []*Buf, f func(run []*Buf, held bool)) {
	for i := 0; i < len(batch); {
		j := i
		for j < len(batch) && (batch[j].K != nil) == (batch[i].K != nil) {
			j++
		}
		f(batch[i:j], batch[i].K != nil)
		i = j
	}
}

// writeOwn writes batch with a copy (WriteBatch, or Write where bp is
// nil), counted, without freeing it.
func (l *Loops) writeOwn(np *Port, bp flow.BatchPort, batch []*Buf, pkts [][]byte) {
	if bp == nil {
		for _, b := range batch {
			if err := np.Flow.Write(b.Pkt(), time.Time{}); err != nil {
				np.TxErrors.Add(1)
				l.TxErrors.Add(1)
			} else {
				np.TxPkts.Add(1)
				np.TxBytes.Add(uint64(b.End - b.Off))
			}
		}
		return
	}
	for i, b := range batch {
		pkts[i] = b.Pkt()
	}
	for i := 0; i < len(pkts); {
		n, err := bp.WriteBatch(pkts[i:], time.Time{})
		var nb uint64
		for _, b := range batch[i : i+n] {
			nb += uint64(b.End - b.Off)
		}
		np.TxPkts.Add(uint64(n))
		np.TxBytes.Add(nb)
		i += n
		if err != nil {
			np.TxErrors.Add(1)
			l.TxErrors.Add(1)
			i++
		}
	}
	clear(pkts)
}

// Kicks collects, for one batch, the packets to forward per next hop
// and the loops to wake: at Flush each next hop's packets are queued
// under one lock of its scheduler, and each loop that waits for them is
// woken once (a transmit loop that is running is not: Port.Queue). It
// also keeps the batch's arrival time once a packet of it is delivered.
// The zero value defers no packets (Defer refuses), only wake-ups; a
// receive loop's defers both.
type Kicks struct {
	n    int
	np   [RxBatch]*Port
	due  [RxBatch]bool // np[i]'s transmit loop is to be woken
	now  time.Time
	pool *Pool // where refused packets go; nil: nothing is deferred

	// The deferred packets, in arrival order, with their next hop (an
	// index into np) and cube.
	pn   int
	pb   [RxBatch]*Buf
	pi   [RxBatch]uint8
	pc   [RxBatch]flow.Cube
	tmpb [RxBatch]*Buf
	tmpc [RxBatch]flow.Cube

	// Other loops to wake at Flush (Notify): the unicast IPCP's
	// delivery queues.
	nw int
	w  [RxBatch]Waker
}

// Waker is a loop that Kicks wakes at Flush (Notify).
type Waker interface {
	// Wake wakes the loop; it does not block.
	Wake()
}

// slot returns np's index in k, adding it, or -1 if k is full.
func (k *Kicks) slot(np *Port) int {
	for i, x := range k.np[:k.n] {
		if x == np {
			return i
		}
	}
	if k.n == len(k.np) {
		return -1
	}
	k.np[k.n], k.due[k.n] = np, false
	k.n++
	return k.n - 1
}

// Add notes that np's transmit loop is to be woken, and returns np's
// index in k, or -1 if k is full (np was woken at once).
func (k *Kicks) Add(np *Port) int {
	i := k.slot(np)
	if i < 0 {
		np.Wake()
		return -1
	}
	k.due[i] = true
	return i
}

// Notify notes that w is to be woken at Flush; if k is full of them, w
// is woken at once.
func (k *Kicks) Notify(w Waker) {
	for _, x := range k.w[:k.nw] {
		if x == w {
			return
		}
	}
	if k.nw == len(k.w) {
		w.Wake()
		return
	}
	k.w[k.nw] = w
	k.nw++
}

// Defer queues b for np at Flush; it reports false if k cannot take it
// (the caller then enqueues it at once).
func (k *Kicks) Defer(np *Port, b *Buf, cube flow.Cube) bool {
	if k.pool == nil || k.pn == len(k.pb) {
		return false
	}
	i := k.slot(np)
	if i < 0 {
		return false
	}
	k.pb[k.pn], k.pi[k.pn], k.pc[k.pn] = b, uint8(i), cube
	k.pn++
	return true
}

// Clock returns the batch's arrival time: the clock is read once per
// batch, and only if something in it is delivered.
func (k *Kicks) Clock() time.Time {
	if k.now.IsZero() {
		k.now = time.Now()
	}
	return k.now
}

// Flush queues the deferred packets, one enqueue per next hop (a full
// queue's refusals go back to the pool, counted by the scheduler), and
// wakes every noted loop that waits. It returns how many packets full
// queues refused.
func (k *Kicks) Flush() (refused int) {
	for i, np := range k.np[:k.n] {
		if k.pn > 0 {
			m := 0
			for j := range k.pn {
				if int(k.pi[j]) == i {
					k.tmpb[m], k.tmpc[m] = k.pb[j], k.pc[j]
					m++
				}
			}
			if m > 0 {
				r, wake := np.Sched.enqueueBatch(k.tmpc[:m], k.tmpb[:m])
				if r > 0 {
					k.pool.Put(k.tmpb[:r])
					refused += r
				}
				clear(k.tmpb[:m])
				k.due[i] = k.due[i] || wake
			}
		}
		if k.due[i] {
			np.Wake()
		}
		k.np[i] = nil
	}
	for i, w := range k.w[:k.nw] {
		w.Wake()
		k.w[i] = nil
	}
	clear(k.pb[:k.pn])
	k.pn = 0
	k.n = 0
	k.nw = 0
	k.now = time.Time{}
	return refused
}
