package unicast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/unicast/ca"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/fa"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// The data path, written once here:
//
//   - N-1 receive: one goroutine per N-1 data-transfer flow reads packets
//     into pooled buffers (a batch per read where the flow is a
//     flow.BatchPort, else one) and calls input on each:
//     dt.Forwarder.Decide, then either enqueue on the next hop's scheduler
//     (the buffer moves with it), deliver to a local endpoint (an N+1
//     port, or the control queue for reserved endpoints), or drop and
//     count. The transmit loops it queued for are woken once per batch.
//   - N-1 transmit: one goroutine per N-1 flow dequeues batches from its
//     dt.Scheduler (one FIFO per QoS cube) and writes them to the flow
//     (one WriteBatch where it is a flow.BatchPort), blocking on its
//     back-pressure; the queue in front of it absorbs bursts, and
//     ca.MarkECN raises each packet's ECN by that queue's standing depth
//     (dt.Scheduler.Standing: what did not drain for a CA interval, with
//     what still waits in the N-1 port's ring below it) as it leaves
//     (mark). A full queue is a counted drop.
//   - N+1 receive: a packet delivered to an N+1 flow joins the flow's
//     delivery queue (its buffer moves, in exchange for a spare), and one
//     goroutine per flow writes that queue into the flow's port, waiting
//     on its back-pressure (deliver.go); the receive loops never wait
//     for a program. A full delivery queue is a counted drop (rx_full);
//     deliver marks by the standing depth of the queue and the port's
//     ring, the receive loops by the standing backlog of the N-1 port's
//     ring they read (mark.go).
//   - N+1 transmit: one goroutine per flow reads the application's SDUs
//     (in batches where the port allows) into buffers behind headroom,
//     paces each by the flow's ca.Flow, prepends the PCI and routes it
//     like a forwarded packet.
//   - control: reserved-endpoint packets are copied to a queue that one
//     goroutine serves (flow allocator, directory); control may allocate,
//     the three loops above do not (TestForwardZeroAllocs).
//
// Buffers come from a pool of at most Config.Bufs (dt.Pool); ports is a
// copy-on-write map behind an atomic pointer, so the per-packet lookup
// takes no lock.

const (
	// headroom is the room before an originated SDU: the PCI and, for
	// control messages, the sender's address.
	headroom = dt.Headroom
	bufLen   = dt.BufLen
	txBatch  = dt.TxBatch
	rxBatch  = dt.RxBatch
	srcLen   = 8 // sender's address in front of a control message

	// DefaultBufs is Config.Bufs when it is 0: the most packet buffers
	// (of about 1.5 KiB each) an IPCP's data path holds.
	DefaultBufs = 4096
)

// The packet buffers and their bounded pool are dt's (dt.Buf, dt.Pool,
// dt.Spares); these are the names the IPCP's files use for them.
type (
	pbuf   = dt.Buf
	spares = dt.Spares
)

// timer returns a stopped-and-drained timer set to d, from a free list:
// waiting allocates nothing in steady state.
func (p *IPCP) timer(d time.Duration) *time.Timer {
	select {
	case t := <-p.timers:
		t.Reset(d)
		return t
	default:
		return time.NewTimer(d)
	}
}

func (p *IPCP) putTimer(t *time.Timer) {
	t.Stop() // Go 1.23+: no stale value to drain after Stop
	select {
	case p.timers <- t:
	default:
	}
}

// dpCounters are the data path's always-on counters (the forwarder and
// the schedulers count their own verdicts and queue drops).
type dpCounters struct {
	sent, delivered, ctlIn, ctlOut                           atomic.Uint64
	noPort, noRoute, unknownEID, rxFull, tooBig, ctlFull     atomic.Uint64
	truncated, txErrors, malformedCtl, bufAllocs, unknownCtl atomic.Uint64
	noBuf                                                    atomic.Uint64 // a packet to pass on and no buffer to replace it
	keepalivesOut, keepalivesIn                              atomic.Uint64
	tampered, replayed                                       atomic.Uint64 // sealed flows' SDUs refused by seal.Opener
	// Packets marked congested (mark.go): leaving an N-1 port's queue,
	// read from an N-1 port's backlogged ring, delivered into an N+1
	// flow's filling ring (or refused by its full one).
	markedQueue, markedRx, markedDeliver atomic.Uint64

	// capt taps the packets that cross the N-1 data-transfer flows
	// (rxLoop, txLoop, keepalive) when a capture runs (the capture
	// management command, mgmt.go): one atomic load per packet, or per
	// batch, when none does.
	capt capture.Point
}

// tap offers a packet crossing np to the running capture s.
func tap(s *capture.Session, d capture.Dir, np *nport, pkt []byte) {
	s.Add(d, capture.PDU, uint64(np.id), pkt)
}

// nport is an N-1 data-transfer flow: a next hop.
type nport struct {
	id    pff.Port
	addr  layer.Addr
	name  string
	p     flow.Port
	sched *dt.Scheduler[*pbuf]
	kick  chan struct{} // wakes the transmit loop; capacity 1
	space chan struct{} // the transmit loop dequeued; capacity 1
	done  chan struct{} // closed when the adjacency is gone

	txPkts, txBytes, txErrors, rxPkts, rxBytes atomic.Uint64

	// The standing backlog of the ring np is read from, and its
	// capacity (rxMark): the receive loop's own.
	rxQ   ca.Standing
	rxCap int
}

func (c *core) addPort(n connmgr.Neighbour) (*nport, error) {
	s, err := dt.NewScheduler[*pbuf](dt.SchedConfig{Kind: c.p.cfg.Sched, QueueLen: c.p.cfg.QueueLen})
	if err != nil {
		return nil, err
	}
	np := &nport{id: n.Port, addr: n.Addr, name: n.Name, p: n.DT, sched: s, kick: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
	c.portsMu.Lock()
	old := *c.ports.Load()
	m := make(map[pff.Port]*nport, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[np.id] = np
	c.ports.Store(&m)
	c.portsMu.Unlock()
	c.wg.Add(2)
	c.p.cfg.Runner.Go(func() { c.rxLoop(np) })
	c.p.cfg.Runner.Go(func() { c.txLoop(np) })
	return np, nil
}

func (c *core) removePort(np *nport) {
	c.portsMu.Lock()
	old := *c.ports.Load()
	if old[np.id] != np {
		c.portsMu.Unlock()
		return
	}
	m := make(map[pff.Port]*nport, len(old))
	for k, v := range old {
		if k != np.id {
			m[k] = v
		}
	}
	c.ports.Store(&m)
	c.portsMu.Unlock()
	close(np.done)
}

// rxLoop reads np's packets until the flow breaks, then reports it.
func (c *core) rxLoop(np *nport) {
	defer c.wg.Done()
	if bp, ok := np.p.(flow.BatchPort); ok {
		c.rxBatchLoop(np, bp)
		return
	}
	p := c.p
	var (
		own [1]*pbuf
		sp  spares
	)
	if p.pool.WaitGet(own[:], np.done, 0) == 0 {
		return // the adjacency went while every buffer was held
	}
	defer p.pool.Put(own[:])
	defer sp.Release(p.pool)
	bl, _ := np.p.(backlogPort)
	b := own[0]
	for {
		n, err := np.p.Read(b.B[:], time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				p.c.truncated.Add(1)
				continue
			}
			own[0] = b
			c.cm.Fail(np.id, fmt.Sprintf("data flow: %v", err))
			return
		}
		np.rxPkts.Add(1)
		np.rxBytes.Add(uint64(n))
		b.Off, b.End = 0, n
		if s := p.c.capt.Session(); s != nil {
			tap(s, capture.In, np, b.Pkt())
		}
		faultinject.Check("unicast/dt", b.Pkt())
		c.raise(own[:], c.rxMark(np, bl)) // own[0] is b
		sp.Fill(p.pool, 1)
		if r := c.input(b, nil, &sp); r != nil {
			b = r
		}
		own[0] = b
	}
}

// rxBatchLoop is rxLoop over a flow that reads in batches: one read (one
// wake-up) per batch, a decision per packet, one get of replacement
// buffers per batch and one wake-up per next hop's transmit loop per
// batch.
func (c *core) rxBatchLoop(np *nport, bp flow.BatchPort) {
	p := c.p
	var (
		bs    [rxBatch]*pbuf
		bufs  [rxBatch][]byte
		sizes [rxBatch]int
		k     = kicks{pool: p.pool}
		sp    spares
	)
	// The read buffers: as many as the pool gives, at least one.
	slots := p.pool.WaitGet(bs[:], np.done, 0)
	if slots == 0 {
		return
	}
	defer p.pool.Put(bs[:slots])
	defer sp.Release(p.pool)
	for i := range slots {
		bufs[i] = bs[i].B[:]
	}
	bl, _ := np.p.(backlogPort)
	for {
		n, err := bp.ReadBatch(bufs[:slots], sizes[:slots], time.Time{})
		if err != nil {
			if !errors.Is(err, flow.ErrTruncated) {
				c.cm.Fail(np.id, fmt.Sprintf("data flow: %v", err))
				return
			}
			p.c.truncated.Add(1)
			n-- // the last one, truncated, is dropped
		}
		var nb uint64
		s := p.c.capt.Session()
		sp.Fill(p.pool, n)
		for i := range n {
			b := bs[i]
			b.Off, b.End = 0, sizes[i]
			nb += uint64(sizes[i])
			if s != nil {
				tap(s, capture.In, np, b.Pkt())
			}
		}
		c.raise(bs[:n], c.rxMark(np, bl))
		for i := range n {
			b := bs[i]
			faultinject.Check("unicast/dt", b.Pkt())
			if r := c.input(b, &k, &sp); r != nil {
				bs[i] = r
				bufs[i] = r.B[:]
			}
		}
		np.rxPkts.Add(uint64(n))
		np.rxBytes.Add(nb)
		k.flush()
	}
}

// kicks collects, for one batch, the packets to forward per next hop
// and the transmit loops to wake: at flush each next hop's packets are
// queued under one lock of its scheduler and its loop is woken once.
// It also keeps the batch's arrival time once a packet of it is
// delivered.
type kicks struct {
	n    int
	np   [rxBatch]*nport
	now  time.Time
	pool *dt.Pool // where refused packets go; nil: nothing is deferred

	// The deferred packets, in arrival order, with their next hop (an
	// index into np) and cube.
	pn   int
	pb   [rxBatch]*pbuf
	pi   [rxBatch]uint8
	pc   [rxBatch]flow.Cube
	tmpb [rxBatch]*pbuf
	tmpc [rxBatch]flow.Cube
}

// add notes that np's transmit loop is to be woken, and returns np's
// index in k, or -1 if k is full (np was woken at once).
func (k *kicks) add(np *nport) int {
	for i, x := range k.np[:k.n] {
		if x == np {
			return i
		}
	}
	if k.n == len(k.np) {
		np.wake()
		return -1
	}
	k.np[k.n] = np
	k.n++
	return k.n - 1
}

// defer_ queues b for np at flush; it reports false if k cannot take it
// (the caller then enqueues it at once).
func (k *kicks) defer_(np *nport, b *pbuf, cube flow.Cube) bool {
	if k.pool == nil || k.pn == len(k.pb) {
		return false
	}
	i := k.add(np)
	if i < 0 {
		return false
	}
	k.pb[k.pn], k.pi[k.pn], k.pc[k.pn] = b, uint8(i), cube
	k.pn++
	return true
}

// clock returns the batch's arrival time: the clock is read once per
// batch, and only if something in it is delivered.
func (k *kicks) clock() time.Time {
	if k.now.IsZero() {
		k.now = time.Now()
	}
	return k.now
}

// flush queues the deferred packets, one EnqueueBatch per next hop
// (a full queue's refusals go back to the pool, counted by the
// scheduler), and wakes every noted transmit loop.
func (k *kicks) flush() {
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
				if r := np.sched.EnqueueBatch(k.tmpc[:m], k.tmpb[:m]); r > 0 {
					k.pool.Put(k.tmpb[:r])
				}
				clear(k.tmpb[:m])
			}
		}
		np.wake()
		k.np[i] = nil
	}
	clear(k.pb[:k.pn])
	k.pn = 0
	k.n = 0
	k.now = time.Time{}
}

// input handles a received packet. A packet to forward leaves the
// caller's hands in exchange for a spare buffer, which input returns
// (the caller reads into it next); with no spare left, the packet is
// dropped and counted (no_buf). On nil, b is still the caller's. With
// k, the next hop's transmit loop is woken when k is flushed, not at
// once, and a delivery takes k's arrival time.
func (c *core) input(b *pbuf, k *kicks, sp *spares) *pbuf {
	r := c.fwd.Decide(b.Pkt())
	switch r.Verdict {
	case dt.Forward:
		repl := sp.Take()
		if repl == nil {
			c.p.c.noBuf.Add(1)
			return nil
		}
		c.enqueue(r.NextHop, b, false, k)
		return repl
	case dt.Deliver:
		var now time.Time
		if k != nil {
			now = k.clock()
		}
		return c.deliver(b, now, sp)
	}
	return nil
}

// originWait bounds how long a locally originated packet waits for room
// in its first hop's queue before it is dropped.
const originWait = 20 * time.Millisecond

// enqueue queues b on the N-1 flow port, marking ECN by its queue depth.
// It takes b. A forwarded packet (local false) meeting a full queue is
// dropped at once; a packet this IPCP originated waits up to originWait
// for room, so that the layer pushes back on its own senders instead of
// dropping their traffic before it leaves the node.
//
// With k the transmit loop is woken when k is flushed; without, at once.
func (c *core) enqueue(port pff.Port, b *pbuf, local bool, k *kicks) {
	np := (*c.ports.Load())[port]
	if np == nil {
		c.p.c.noPort.Add(1)
		c.p.pool.PutOne(b)
		return
	}
	cube := dt.PCI(b.Pkt()).Cube()
	if !local && k != nil && k.defer_(np, b, cube) {
		return
	}
	var t *time.Timer
	for local && np.sched.Len(cube) >= np.sched.Cap() {
		np.wake() // it may hold a wake-up deferred in k
		if t == nil {
			t = c.p.timer(originWait)
			defer c.p.putTimer(t)
		}
		select {
		case <-np.space:
			continue
		case <-np.done:
		case <-t.C:
		}
		break
	}
	if !np.sched.Enqueue(cube, b) {
		c.p.pool.PutOne(b) // counted by the scheduler (queue_full)
		return
	}
	if k != nil && k.add(np) >= 0 {
		return
	}
	np.wake()
}

// wake wakes np's transmit loop.
func (np *nport) wake() {
	select {
	case np.kick <- struct{}{}:
	default:
	}
}

// txLoop writes np's queued packets until the adjacency is gone. A
// period of Config.KeepAlive in which it wrote nothing ends with a
// keepalive, so that the N-1 flow is never idle in the layer below (the
// shims deallocate idle flows).
func (c *core) txLoop(np *nport) {
	defer c.wg.Done()
	var (
		batch [txBatch]*pbuf
		pkts  [txBatch][]byte
	)
	bp, _ := np.p.(flow.BatchPort)
	qp, _ := np.p.(queuedPort)
	below := 0 // the most qp ever held: its ring's capacity, once it filled
	ka := time.NewTicker(c.p.cfg.KeepAlive)
	defer ka.Stop()
	sent := np.txPkts.Load()
	for {
		n := np.sched.DequeueBatch(batch[:])
		if n == 0 {
			if qp != nil {
				np.sched.SetBelow(qp.Queued())
			}
			select {
			case <-np.kick:
				continue
			case <-ka.C:
				if s := np.txPkts.Load(); s != sent {
					sent = s
				} else {
					c.keepalive(np)
				}
				continue
			case <-np.done:
			}
			for { // drain
				n := np.sched.DequeueBatch(batch[:])
				if n == 0 {
					return
				}
				c.p.pool.Put(batch[:n])
			}
		}
		select {
		case np.space <- struct{}{}:
		default:
		}
		if qp != nil {
			q := qp.Queued()
			below = max(below, q)
			np.sched.SetBelow(q)
		}
		c.mark(np, batch[:n], below)
		if s := c.p.c.capt.Session(); s != nil {
			for _, b := range batch[:n] {
				tap(s, capture.Out, np, b.Pkt())
			}
		}
		if bp != nil {
			c.writeBatch(np, bp, batch[:n], pkts[:n])
			continue
		}
		for _, b := range batch[:n] {
			if err := np.p.Write(b.Pkt(), time.Time{}); err != nil {
				np.txErrors.Add(1)
				c.p.c.txErrors.Add(1)
			} else {
				np.txPkts.Add(1)
				np.txBytes.Add(uint64(b.End - b.Off))
			}
		}
		c.p.pool.Put(batch[:n])
	}
}

// keepalive writes a keepalive to the neighbour on np: a dt packet to its
// reserved endpoint EIDKeepalive, with the sender's address and nothing
// else, which the neighbour counts and drops.
func (c *core) keepalive(np *nport) {
	b := c.p.pool.GetOne()
	if b == nil {
		c.p.c.noBuf.Add(1) // the next period tries again
		return
	}
	binary.BigEndian.PutUint64(b.B[headroom:], uint64(c.self))
	b.Off, _ = dt.Prepend(b.B[:], headroom, dt.Fields{Dst: np.addr, Cube: flow.CubeRaw, TTL: 1, EID: EIDKeepalive})
	b.End = headroom + srcLen
	if s := c.p.c.capt.Session(); s != nil {
		tap(s, capture.Out, np, b.Pkt())
	}
	if err := np.p.Write(b.Pkt(), time.Now().Add(c.p.cfg.KeepAlive)); err != nil {
		np.txErrors.Add(1)
		c.p.c.txErrors.Add(1)
	} else {
		c.p.c.keepalivesOut.Add(1)
	}
	c.p.pool.PutOne(b)
}

// writeBatch writes batch to np with as few calls as its errors allow
// (each error costs one packet, counted), then frees the buffers.
func (c *core) writeBatch(np *nport, bp flow.BatchPort, batch []*pbuf, pkts [][]byte) {
	for i, b := range batch {
		pkts[i] = b.Pkt()
	}
	for i := 0; i < len(pkts); {
		n, err := bp.WriteBatch(pkts[i:], time.Time{})
		var nb uint64
		for _, b := range batch[i : i+n] {
			nb += uint64(b.End - b.Off)
		}
		np.txPkts.Add(uint64(n))
		np.txBytes.Add(nb)
		i += n
		if err != nil {
			np.txErrors.Add(1)
			c.p.c.txErrors.Add(1)
			i++
		}
	}
	c.p.pool.Put(batch)
	clear(pkts)
}

// deliver hands a packet for this IPCP to its endpoint; now is its
// arrival time (zero: now). A data packet for an N+1 flow joins the
// flow's delivery queue (deliver.go) when it has one: with sp, in
// exchange for a spare buffer, which deliver returns (the caller keeps
// b otherwise); without sp, deliver takes b either way (and frees it
// unless queued).
func (c *core) deliver(b *pbuf, now time.Time, sp *spares) *pbuf {
	pci := dt.PCI(b.Pkt())
	eid := pci.EID()
	payload := pci.Payload()
	if eid <= MaxReservedEID {
		if eid == EIDKeepalive {
			c.p.c.keepalivesIn.Add(1)
			return c.unqueued(b, sp)
		}
		c.ctlIn(eid, payload)
		return c.unqueued(b, sp)
	}
	f := c.fa.Lookup(eid)
	if f == nil {
		c.p.c.unknownEID.Add(1)
		return c.unqueued(b, sp)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if f.Opener != nil {
		var ok bool
		if payload, ok = c.open(f, payload); !ok {
			return c.unqueued(b, sp)
		}
	}
	f.LastHeard.Store(now.UnixNano())
	d, _ := f.Data.Load().(*delivery)
	var (
		repl   *pbuf
		err    error
		queued int // in front of the program: the delivery queue and the port's ring
		qcap   int
	)
	switch {
	case d == nil: // the flow's loops are not started yet: write at once
		err = f.Port.Write(payload, now)
	case sp != nil && sp.N() == 0:
		c.p.c.noBuf.Add(1)
		f.Drops.Add(1)
		return nil
	default:
		b.Off = bufLen - cap(payload) // the SDU, opened in place if sealed
		b.End = b.Off + len(payload)
		if !c.hold() {
			err = errDeliveryFull
			break
		}
		if !d.push(b) {
			c.delivering.Add(-1)
			err = errDeliveryFull
			break
		}
		if sp != nil {
			repl = sp.Take()
		}
		d.wake()
		queued, qcap = d.len(), deliverQueue
	}
	var dp deliverPort
	if c.ca.Kind() != ca.Nop {
		if dp, _ = f.Port.(deliverPort); dp != nil {
			queued += dp.Queued()
		}
	}
	ecn := pci.ECN()
	n := len(payload)
	if err != nil {
		f.Drops.Add(1)
		c.p.c.rxFull.Add(1)
		c.unqueued(b, sp)
		if c.ca.Kind() == ca.Nop || (d == nil && dp == nil) {
			return nil
		}
		// The way to the program was full: the sender hears of it as
		// of the highest mark (its packet is lost, not its signal).
		c.p.c.markedDeliver.Add(1)
		ecn = 255
	} else if d == nil {
		c.delivered(f, n)
		c.unqueued(b, sp)
	}
	f.CAMu.Lock()
	if err == nil {
		ecn = max(ecn, c.deliverMark(f, dp, queued, qcap, now))
	}
	fb, due := f.CA.OnReceive(ecn, n, now)
	f.CAMu.Unlock()
	if due {
		c.fa.Feedback(f, fb)
	}
	return repl
}

// open authenticates and decrypts a sealed flow's SDU in place; a
// forged, damaged, truncated or replayed one is dropped and counted.
func (c *core) open(f *fa.Flow, pkt []byte) ([]byte, bool) {
	sdu, err := []byte(nil), seal.ErrShort
	if len(pkt) >= seal.CtrLen { // the counter, before which the SDU opens in place
		sdu, err = f.Opener.Open(pkt[seal.CtrLen:seal.CtrLen], pkt, nil)
	}
	switch {
	case err == nil:
		return sdu, true
	case errors.Is(err, seal.ErrReplay):
		f.Replayed.Add(1)
		c.p.c.replayed.Add(1)
	default:
		f.Tampered.Add(1)
		c.p.c.tampered.Add(1)
	}
	f.Drops.Add(1)
	return nil, false
}

// sealIn seals, in place, the n-byte SDU of a sealed flow that was read
// seal.CtrLen bytes behind headroom, and returns the sealed length.
func (c *core) sealIn(f *fa.Flow, b *pbuf, n int) (int, bool) {
	out, err := f.Sealer.Seal(b.B[headroom:headroom], b.B[headroom+seal.CtrLen:headroom+seal.CtrLen+n], nil)
	if err != nil { // the counter ran out: 2^63 SDUs under one key
		f.Drops.Add(1)
		return 0, false
	}
	return len(out), true
}

// sealRoom is, for an N+1 flow's SDUs, where one is read to after
// headroom (room for the seal's counter) and what sealing adds to it: 0
// and 0 on an unsealed flow.
func sealRoom(f *fa.Flow) (off, over int) {
	if f.Sealer != nil {
		return seal.CtrLen, seal.Overhead
	}
	return 0, 0
}

// flowTx moves an N+1 flow's SDUs into the layer until its port closes.
// Like the receive loops, it owns the buffers it reads into and passes
// an SDU on only in exchange for a free buffer; with none free, it waits
// up to originWait for one (back-pressure on the application, as for a
// full queue), then drops the SDU, counted (no_buf, and the flow's
// drops).
func (c *core) flowTx(f *fa.Flow) {
	defer c.wg.Done()
	if bp, ok := f.Port.(flow.BatchPort); ok {
		c.flowTxBatch(f, bp)
		return
	}
	p := c.p
	fields := dt.Fields{Dst: f.Remote, Cube: f.Cube, TTL: dt.DefaultTTL, EID: f.RemoteEID}
	off, over := sealRoom(f)
	var (
		own [1]*pbuf
		sp  spares
	)
	if p.pool.WaitGet(own[:], p.ctx.Done(), 0) == 0 {
		c.fa.Closed(f)
		return
	}
	defer p.pool.Put(own[:])
	defer sp.Release(p.pool)
	for {
		b := own[0]
		n, err := f.Port.Read(b.B[headroom+off:headroom+off+flow.MaxSDU], time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				p.c.truncated.Add(1)
				continue
			}
			c.fa.Closed(f)
			return
		}
		if n+over > p.MaxSDU() {
			// The N-1 flow would refuse it: the layer's SDU is smaller
			// than its N-1 flows' by the PCI. Flows are told (their
			// Info.MaxSDU), so only a writer that ignored it gets here.
			p.c.tooBig.Add(1)
			f.Drops.Add(1)
			continue
		}
		sp.Fill(p.pool, 1)
		sp.WaitOne(p.pool, p.ctx.Done(), originWait)
		repl := sp.Take()
		if repl == nil {
			p.c.noBuf.Add(1)
			f.Drops.Add(1)
			continue
		}
		if f.Sealer != nil {
			var ok bool
			if n, ok = c.sealIn(f, b, n); !ok {
				p.pool.PutOne(repl)
				continue
			}
		}
		now := time.Now()
		f.CAMu.Lock()
		for wait := f.CA.OnSend(n, now); wait > 0; wait = f.CA.OnSend(n, now) {
			f.CAMu.Unlock()
			time.Sleep(wait)
			now = time.Now()
			f.CAMu.Lock()
		}
		f.CAMu.Unlock()
		b.Off, _ = dt.Prepend(b.B[:], headroom, fields)
		b.End = headroom + n
		f.PktsOut.Add(1)
		f.BytesOut.Add(uint64(n))
		f.LastSent.Store(now.UnixNano())
		own[0] = repl
		c.originate(b, nil)
	}
}

// flowTxBatch is flowTx over a port that reads in batches: one read per
// batch, one get of replacement buffers per batch, pacing and a PCI per
// SDU, one wake-up of the first hop's transmit loop per batch (or before
// pacing waits).
func (c *core) flowTxBatch(f *fa.Flow, bp flow.BatchPort) {
	p := c.p
	fields := dt.Fields{Dst: f.Remote, Cube: f.Cube, TTL: dt.DefaultTTL, EID: f.RemoteEID}
	var (
		bs    [rxBatch]*pbuf
		bufs  [rxBatch][]byte
		sizes [rxBatch]int
		k     kicks
		sp    spares
	)
	off, over := sealRoom(f)
	slots := p.pool.WaitGet(bs[:], p.ctx.Done(), 0)
	if slots == 0 {
		c.fa.Closed(f)
		return
	}
	defer p.pool.Put(bs[:slots])
	defer sp.Release(p.pool)
	for i := range slots {
		bufs[i] = bs[i].B[headroom+off : headroom+off+flow.MaxSDU]
	}
	for {
		n, err := bp.ReadBatch(bufs[:slots], sizes[:slots], time.Time{})
		if err != nil {
			if !errors.Is(err, flow.ErrTruncated) {
				c.fa.Closed(f)
				return
			}
			p.c.truncated.Add(1)
			n-- // the last one, truncated, is dropped
		}
		now := time.Now()
		var sent, nb uint64
		sp.Fill(p.pool, n)
		for i := range n {
			sz := sizes[i]
			if sz+over > p.MaxSDU() { // see flowTx
				p.c.tooBig.Add(1)
				f.Drops.Add(1)
				continue
			}
			if sp.N() == 0 {
				k.flush() // what is queued goes while this one waits
				sp.WaitOne(p.pool, p.ctx.Done(), originWait)
			}
			if sp.N() == 0 {
				p.c.noBuf.Add(1)
				f.Drops.Add(1)
				continue
			}
			if f.Sealer != nil {
				var ok bool
				if sz, ok = c.sealIn(f, bs[i], sz); !ok {
					continue
				}
			}
			f.CAMu.Lock()
			for wait := f.CA.OnSend(sz, now); wait > 0; wait = f.CA.OnSend(sz, now) {
				f.CAMu.Unlock()
				k.flush() // what is queued goes while this one waits
				time.Sleep(wait)
				now = time.Now()
				f.CAMu.Lock()
			}
			f.CAMu.Unlock()
			b := bs[i]
			b.Off, _ = dt.Prepend(b.B[:], headroom, fields)
			b.End = headroom + sz
			sent++
			nb += uint64(sz)
			bs[i] = sp.Take()
			bufs[i] = bs[i].B[headroom+off : headroom+off+flow.MaxSDU]
			c.originate(b, &k)
		}
		f.PktsOut.Add(sent)
		f.BytesOut.Add(nb)
		f.LastSent.Store(now.UnixNano())
		k.flush()
	}
}

// originate routes a packet this IPCP made. It takes b. With k, the
// first hop's transmit loop is woken when k is flushed.
func (c *core) originate(b *pbuf, k *kicks) {
	pci := dt.PCI(b.Pkt())
	dst := pci.Dst()
	c.p.c.sent.Add(1)
	if dst == c.self {
		c.deliver(b, time.Time{}, nil)
		return
	}
	port, ok := c.pff.Lookup(dst, uint64(pci.EID()))
	if !ok {
		c.p.c.noRoute.Add(1)
		c.p.pool.PutOne(b)
		return
	}
	c.enqueue(port, b, true, k)
}

// ctlMsg is a control message for a reserved endpoint.
type ctlMsg struct {
	eid  layer.EID
	src  layer.Addr
	body []byte
}

// ctlIn queues a control message (copied) for the control loop.
func (c *core) ctlIn(eid layer.EID, payload []byte) {
	if len(payload) < srcLen {
		c.p.c.malformedCtl.Add(1)
		return
	}
	m := ctlMsg{eid: eid, src: layer.Addr(binary.BigEndian.Uint64(payload)), body: append([]byte(nil), payload[srcLen:]...)}
	select {
	case c.ctlq <- m:
		c.p.c.ctlIn.Add(1)
	default:
		c.p.c.ctlFull.Add(1)
	}
}

// sendCtl sends a control message to the reserved endpoint eid of the
// member at dst: [sender's address (8 bytes)][msg] behind a PCI.
func (c *core) sendCtl(dst layer.Addr, eid layer.EID, cube flow.Cube, msg []byte) error {
	if len(msg)+srcLen+dt.PCILen > flow.MaxSDU {
		return fmt.Errorf("unicast: control message of %d bytes: %w", len(msg), flow.ErrTooBig)
	}
	c.p.c.ctlOut.Add(1)
	if dst == c.self {
		m := ctlMsg{eid: eid, src: c.self, body: append([]byte(nil), msg...)}
		select {
		case c.ctlq <- m:
			return nil
		default:
			c.p.c.ctlFull.Add(1)
			return fmt.Errorf("unicast: control queue full: %w", flow.ErrBusy)
		}
	}
	port, ok := c.pff.Lookup(dst, uint64(eid))
	if !ok {
		c.p.c.noRoute.Add(1)
		return fmt.Errorf("unicast: no route to %d: %w", dst, flow.ErrNotFound)
	}
	b := c.p.pool.GetOne()
	if b == nil {
		c.p.c.noBuf.Add(1)
		return fmt.Errorf("unicast: control message to %d: every packet buffer is held: %w", dst, flow.ErrBusy)
	}
	binary.BigEndian.PutUint64(b.B[headroom:], uint64(c.self))
	n := copy(b.B[headroom+srcLen:], msg)
	b.Off, _ = dt.Prepend(b.B[:], headroom, dt.Fields{Dst: dst, Cube: cube, TTL: dt.DefaultTTL, EID: eid})
	b.End = headroom + srcLen + n
	c.enqueue(port, b, false, nil)
	return nil
}

// ctlLoop serves the control queue, and tells the directory when the
// membership changes.
func (c *core) ctlLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.p.cfg.RoutingTick)
	defer t.Stop()
	for {
		select {
		case <-c.ctlStop:
			return
		case m := <-c.ctlq:
			switch m.eid {
			case EIDFlowAlloc:
				c.fa.Handle(m.src, m.body)
			case EIDDir:
				c.dir.Handle(m.src, m.body)
			default:
				c.p.c.unknownCtl.Add(1)
			}
		case <-t.C:
			w, ok := c.dir.(dir.MembersWatcher)
			if !ok {
				continue
			}
			ms := c.Members()
			if last := c.members.Load(); last != nil && slicesEqual(*last, ms) {
				continue
			}
			c.members.Store(&ms)
			w.MembersChanged(ms)
		}
	}
}

func slicesEqual(a, b []layer.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
