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
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/unicast/ca"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/fa"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// The data path. Its per-packet machinery is dt's: the packet buffers and
// their bounded pool (dt.Pool), the N-1 ports' receive and transmit
// loops (dt.Loops, whose overview is in dt/loops.go), the forwarding
// decision and the schedulers. What stays here is the glue that needs
// the IPCP's other parts, core being the loops' dt.Host:
//
//   - N-1 receive: the receive loop hands each packet to Input:
//     dt.Forwarder.Decide, then either enqueue on the next hop's scheduler
//     (the buffer moves with it), deliver to a local endpoint (an N+1
//     port, or the control queue for reserved endpoints), or drop and
//     count.
//   - N-1 transmit: the transmit loop writes each port's queue to its
//     flow; ca.MarkECN raises each packet's ECN by that queue's standing
//     depth (dt.Scheduler.Standing: what did not drain for a CA interval,
//     with what still waits in the N-1 port's ring below it) as it leaves
//     (MarkTx, mark.go). A full queue is a counted drop. An idle port
//     sends a Keepalive.
//   - N+1 receive: a packet delivered to an N+1 flow joins the flow's
//     delivery queue (its buffer moves, in exchange for a spare), and one
//     goroutine per flow writes that queue into the flow's port, waiting
//     on its back-pressure (deliver.go); the receive loops never wait
//     for a program. A full delivery queue is a counted drop (rx_full);
//     deliver marks by the standing depth of the queue and the port's
//     ring, the receive loops by the standing backlog of the N-1 port's
//     ring they read (MarkRx, mark.go).
//   - N+1 transmit: one goroutine per flow reads the application's SDUs
//     (in batches where the port allows) into buffers behind headroom,
//     seals them on a sealed flow, paces each by the flow's ca.Flow,
//     prepends the PCI and routes it like a forwarded packet (flowTx).
//   - control: reserved-endpoint packets are copied to a queue that one
//     goroutine serves (flow allocator, directory); control may allocate,
//     the loops above do not (TestForwardZeroAllocs).
//
// The N+1 side stays here, not in dt, because it is made of the flow
// allocator's flows (fa.Flow: the port, the peer's EID, its seal and its
// ca.Flow) and calls back into the IPCP at every step (fa.Closed,
// fa.Feedback, the delivery queues' share of the pool, the control
// queue): in dt it would make dt import fa, and with it crypto's
// identity, kex and seal, for a second Host as wide as the IPCP.
//
// Buffers come from a pool of at most Config.Bufs (dt.Pool); ports is a
// copy-on-write map behind an atomic pointer, so the per-packet lookup
// takes no lock.

var _ dt.Host = (*core)(nil)

const (
	// headroom is the room before an originated SDU: the PCI and, for
	// control messages, the sender's address.
	headroom = dt.Headroom
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
	markedLocal                          atomic.Uint64 // marks told to this node's own flows (dt.LocalMarker)

	// capt taps the packets that cross the N-1 data-transfer flows
	// (dt.Loops, Keepalive) when a capture runs (the capture
	// management command, mgmt.go): one atomic load per packet, or per
	// batch, when none does.
	capt capture.Point
}

// queueRoom: each cube's queue of an N-1 port holds queueRoom times its
// length more for forwarded packets (dt.SchedConfig.Room): room for the
// bursts a receive loop hands it after a wait for a CPU: with none, a
// flow on loopback at the rate its receiver takes lost 0.4% of its
// packets at the middle router's queue (docs/benchmarks.md, "Room in
// front of the program").
const queueRoom = 3

// nport is an N-1 data-transfer flow: a next hop. Its receive and
// transmit loops are dt's (dt.Loops); core is their dt.Host.
type nport = dt.Port

func (c *core) addPort(n connmgr.Neighbour) (*nport, error) {
	s, err := dt.NewScheduler[*pbuf](dt.SchedConfig{Kind: c.p.cfg.Sched, QueueLen: c.p.cfg.QueueLen, Room: queueRoom})
	if err != nil {
		return nil, err
	}
	np := dt.NewPort(n.Port, n.Addr, n.Name, n.DT, s)
	c.portsMu.Lock()
	old := *c.ports.Load()
	m := make(map[pff.Port]*nport, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[np.ID] = np
	c.ports.Store(&m)
	c.portsMu.Unlock()
	c.wg.Add(2)
	c.p.cfg.Runner.Go(func() {
		defer c.wg.Done()
		c.loops.Rx(np)
	})
	c.p.cfg.Runner.Go(func() {
		defer c.wg.Done()
		c.loops.Tx(np)
	})
	return np, nil
}

func (c *core) removePort(np *nport) {
	c.portsMu.Lock()
	old := *c.ports.Load()
	if old[np.ID] != np {
		c.portsMu.Unlock()
		return
	}
	m := make(map[pff.Port]*nport, len(old))
	for k, v := range old {
		if k != np.ID {
			m[k] = v
		}
	}
	c.ports.Store(&m)
	c.portsMu.Unlock()
	np.Close()
}

// Fail fails the adjacency of np, whose flow broke (dt.Host).
func (c *core) Fail(np *nport, err error) {
	c.cm.Fail(np.ID, fmt.Sprintf("data flow: %v", err))
}

// MarkRx raises the packets just read from np by the backlog of the
// ring they came through (dt.Host; mark.go).
func (c *core) MarkRx(np *nport, bl dt.Backlogger, bs []*pbuf) {
	if bl == nil || c.ca.Kind() == ca.Nop { // nothing marks: no clock read
		return
	}
	now := time.Now().UnixNano()
	c.raise(np, bs, c.rxMark(np, bl, now), now)
}

// MarkTx marks a batch leaving np's queue (dt.Host; mark.go).
func (c *core) MarkTx(np *nport, batch []*pbuf, below int) {
	if c.ca.Kind() == ca.Nop { // it marks nothing: no clock read, no lock
		return
	}
	c.mark(np, batch, below)
}

// Input handles a received packet (dt.Host). A packet to forward leaves the
// caller's hands in exchange for a spare buffer, which input returns
// (the caller reads into it next); with no spare left, the packet is
// dropped and counted (no_buf). On nil, b is still the caller's. With
// k, the next hop's transmit loop is woken when k is flushed, not at
// once, and a delivery takes k's arrival time.
func (c *core) Input(b *pbuf, k *dt.Kicks, sp *spares) *pbuf {
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
			now = k.Clock()
		}
		return c.deliver(b, now, sp, k)
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
// The port's transmit loop is woken only if it waits for a packet: with
// k when k is flushed; without, at once.
func (c *core) enqueue(port pff.Port, b *pbuf, local bool, k *dt.Kicks) {
	np := (*c.ports.Load())[port]
	if np == nil {
		c.p.c.noPort.Add(1)
		c.p.pool.PutOne(b)
		return
	}
	cube := dt.PCI(b.Pkt()).Cube()
	switch {
	case !local && k != nil && k.Defer(np, b, cube):
		return
	case local && np.TryQueue(cube, b, k):
		return
	case local:
		c.waitQueue(np, cube, b, k)
		return
	}
	if !np.Queue(cube, b, k) {
		c.p.pool.PutOne(b) // counted by the scheduler (queue_full)
	}
}

// waitQueue queues b, which this IPCP originated, on np's full queue for
// cube once the transmit loop has made room, waiting up to originWait;
// then, or once the adjacency is gone, it gives up: b is dropped,
// counted (queue_full). It takes b.
func (c *core) waitQueue(np *nport, cube flow.Cube, b *pbuf, k *dt.Kicks) {
	t := c.p.timer(originWait)
	defer c.p.putTimer(t)
	for {
		np.Wake() // it may hold a wake-up deferred in k
		select {
		case <-np.Space():
			if np.TryQueue(cube, b, k) {
				return
			}
			continue
		case <-np.Done():
		case <-t.C:
		}
		break
	}
	if !np.QueueOwn(cube, b, k) { // not into the room kept for forwarded packets
		c.p.pool.PutOne(b) // counted by the scheduler (queue_full)
	}
}

// Keepalive writes a keepalive to the neighbour on np (dt.Host): a dt
// packet to its reserved endpoint EIDKeepalive, with the sender's address
// and nothing else, which the neighbour counts and drops.
func (c *core) Keepalive(np *nport) {
	b := c.p.pool.GetOne()
	if b == nil {
		c.p.c.noBuf.Add(1) // the next period tries again
		return
	}
	binary.BigEndian.PutUint64(b.B[headroom:], uint64(c.self))
	b.Off, _ = dt.Prepend(b.B[:], headroom, dt.Fields{Dst: np.Addr, Cube: flow.CubeRaw, TTL: 1, EID: EIDKeepalive})
	b.End = headroom + srcLen
	if s := c.p.c.capt.Session(); s != nil {
		np.Tap(s, capture.Out, b.Pkt())
	}
	if err := np.Flow.Write(b.Pkt(), time.Now().Add(c.p.cfg.KeepAlive)); err != nil {
		np.TxErrors.Add(1)
		c.p.c.txErrors.Add(1)
	} else {
		c.p.c.keepalivesOut.Add(1)
	}
	c.p.pool.PutOne(b)
}

// Wake wakes the flow's deliverLoop (dt.Waker: a receive batch wakes
// it once, when its dt.Kicks is flushed).
func (d *delivery) Wake() { d.wake() }

// deliver hands a packet for this IPCP to its endpoint; now is its
// arrival time (zero: now). A data packet for an N+1 flow joins the
// flow's delivery queue (deliver.go) when it has one: with sp, in
// exchange for a spare buffer, which deliver returns (the caller keeps
// b otherwise); without sp, deliver takes b either way (and frees it
// unless queued). With k, the flow's deliverLoop is woken when k is
// flushed (once for a receive batch), not at once.
func (c *core) deliver(b *pbuf, now time.Time, sp *spares, k *dt.Kicks) *pbuf {
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
	// What deliver needs of the packet is read now: once pushed to the
	// delivery queue, b is the deliverLoop's, which may write it to the
	// program and free it while this goroutine goes on, and another
	// loop may read a new packet into it.
	ecn, n := pci.ECN(), len(payload)
	d, _ := f.Data.Load().(*delivery)
	var (
		repl   *pbuf
		err    error
		dp     deliverPort
		dl     uint8 // the level of what waits in front of the program (deliverMark)
		locked bool  // f.CAMu is held, and dl is this SDU's
	)
	if c.ca.Kind() != ca.Nop {
		dp, _ = f.Port.(deliverPort)
	}
	switch {
	case d == nil: // the flow's loops are not started yet: write at once
		if mw, ok := f.Port.(markWriter); ok {
			err = mw.WriteMarked(payload, ecn, now) // with the level it arrived with
		} else {
			err = f.Port.Write(payload, now)
		}
	case sp != nil && sp.N() == 0:
		c.p.c.noBuf.Add(1)
		f.Drops.Add(1)
		return nil
	default:
		b.Off = len(b.B) - cap(payload) // the SDU, opened in place if sealed
		b.End = b.Off + len(payload)
		if !c.hold() {
			err = errDeliveryFull
			break
		}
		b.Mark = ecn
		if c.ca.Kind() != ca.Nop {
			// The buffer carries the higher of the level the packet
			// arrived with and that of the queue it joins in front of
			// the program: a bridge reading the flow maps it for its
			// hosts' TCP (flow/ipnet), so a reader that falls behind
			// is signalled as a congested forwarder is, not only to
			// the layer's sender.
			// f.CAMu stays held until the feedback below: one lock
			// per SDU, as before the mark was put on the buffer.
			queued := d.len() + 1 // with this SDU
			if dp != nil {
				queued += dp.Queued()
			}
			f.CAMu.Lock()
			locked = true
			dl = c.deliverMark(f, dp, queued, min(deliverQueue, c.deliverLimit()), now)
			b.Mark = max(ecn, dl)
		}
		if !d.push(b) {
			c.delivering.Add(-1)
			err = errDeliveryFull
			break
		}
		if sp != nil {
			repl = sp.Take()
		}
		if k != nil {
			k.Notify(d)
		} else {
			d.wake()
		}
	}
	if err != nil {
		f.Drops.Add(1)
		c.p.c.rxFull.Add(1)
		c.unqueued(b, sp)
		if c.ca.Kind() == ca.Nop || (d == nil && dp == nil) {
			return nil // not locked: only the queued path locks, with CA on
		}
		// The way to the program was full: the sender hears of it as
		// of the highest mark (its packet is lost, not its signal).
		// Counted once: deliverMark counted it already if it marked.
		if !locked || dl == 0 {
			c.p.c.markedDeliver.Add(1)
		}
		ecn = 255
	} else if d == nil {
		c.delivered(f, n)
		c.unqueued(b, sp)
	}
	if c.ca.Kind() == ca.Nop { // no marks, no feedback: nothing to tell f.CA
		return repl
	}
	if !locked {
		f.CAMu.Lock()
	}
	if err == nil {
		if !locked { // written at once: only the port's ring is in front
			queued := 0
			if dp != nil {
				queued = dp.Queued()
			}
			dl = c.deliverMark(f, dp, queued, 0, now)
		}
		ecn = max(ecn, dl)
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

// sealIn seals, in place, the n-byte SDU of a sealed flow that lies
// seal.CtrLen bytes behind start in b.B (the sealed SDU begins at
// start), and returns the sealed length.
func (c *core) sealIn(f *fa.Flow, b *pbuf, start, n int) (int, bool) {
	out, err := f.Sealer.Seal(b.B[start:start], b.B[start+seal.CtrLen:start+seal.CtrLen+n], nil)
	if err != nil { // the counter ran out: 2^63 SDUs under one key
		f.Drops.Add(1)
		return 0, false
	}
	return len(out), true
}

// flowTxBufs is flowTx over the node's ring port: an SDU stays in the
// node's buffer it came in, sealed in place there, the PCI written into
// its headroom, and goes on in it (to the next hop's ring, or to this
// node's own delivery). No copy. The layer's budget holds back the
// program: a full one waits in the pop, not in a drop.
func (c *core) flowTxBufs(f *fa.Flow, kp dt.BufPort) {
	p := c.p
	fields, paced, local := c.txFields(f)
	var (
		kb   dt.Scratch
		back dt.Scratch // not passed on: for the node
		bs   [rxBatch]*pbuf
		k    dt.Kicks
		sp   spares
	)
	off, over := sealRoom(f)
	p.pool.SetFreer(kp.FreeBufs)
	p.pool.Shells(bs[:])
	defer p.pool.Put(bs[:])
	defer sp.Release(p.pool)
	for {
		n, err := kp.PopBufs(kb[:], time.Time{})
		if err != nil {
			c.fa.Closed(f)
			return
		}
		now := time.Now()
		var sent, nb uint64
		nback := 0
		sp.FillShells(p.pool, n)
		for i := range n {
			b := bs[i]
			b.Hold(kb[i])
			kb[i] = nil
			sz := b.End - b.Off
			h := b.Off - off // where the sealed SDU starts, the PCI before it
			ok := sz+over <= p.MaxSDU() && h >= dt.PCILen && len(b.B)-b.End >= over
			if !ok {
				p.c.tooBig.Add(1) // see flowTx
				f.Drops.Add(1)
			} else if f.Sealer != nil {
				sz, ok = c.sealIn(f, b, h, sz)
			}
			if !ok {
				back[nback] = b.Release()
				nback++
				continue
			}
			if paced {
				now = c.pace(f, sz, now, &k)
			}
			stamp(b, h, sz, fields, f, local)
			sent++
			nb += uint64(sz)
			bs[i] = sp.Take()
			c.originate(b, &k)
		}
		kp.FreeBufs(back[:nback])
		f.PktsOut.Add(sent)
		f.BytesOut.Add(nb)
		f.LastSent.Store(now.UnixNano())
		k.Flush()
	}
}

// txFields returns what every packet of the N+1 flow f carries in its
// PCI, whether its congestion avoidance paces it (nop never holds a
// sender back), and whether the node's own queues tell it their level
// at once (mark.go).
func (c *core) txFields(f *fa.Flow) (fields dt.Fields, paced, local bool) {
	return dt.Fields{Dst: f.Remote, Cube: f.Cube, TTL: dt.DefaultTTL, EID: f.RemoteEID}, c.ca.Kind() != ca.Nop, c.ca.Local()
}

// stamp makes b the packet of f's sz bytes at b.B[start:]: the PCI of
// fields written before them, and f its origin where the node's own
// queues tell it their level (local).
func stamp(b *pbuf, start, sz int, fields dt.Fields, f *fa.Flow, local bool) {
	b.Off, _ = dt.Prepend(b.B, start, fields)
	b.End = start + sz
	if local {
		b.Origin = f
	}
}

// pace waits until f's congestion avoidance lets n bytes go (charging
// them) and returns the time then; while it waits, what k has queued
// goes (nil: nothing queued).
func (c *core) pace(f *fa.Flow, n int, now time.Time, k *dt.Kicks) time.Time {
	f.CAMu.Lock()
	for wait := f.CA.OnSend(n, now); wait > 0; wait = f.CA.OnSend(n, now) {
		f.CAMu.Unlock()
		if k != nil {
			k.Flush() // what is queued goes while this one waits
		}
		time.Sleep(wait)
		now = time.Now()
		f.CAMu.Lock()
	}
	f.CAMu.Unlock()
	return now
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
	if kp, ok := f.Port.(dt.BufPort); ok {
		c.flowTxBufs(f, kp)
		return
	}
	if bp, ok := f.Port.(flow.BatchPort); ok {
		c.flowTxBatch(f, bp)
		return
	}
	p := c.p
	fields, paced, local := c.txFields(f)
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
		n, err := f.Port.Read(b.B[headroom+off:headroom+off+p.pool.MaxSDU()], time.Time{})
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
			if n, ok = c.sealIn(f, b, headroom, n); !ok {
				p.pool.PutOne(repl)
				continue
			}
		}
		now := time.Now()
		if paced {
			now = c.pace(f, n, now, nil)
		}
		stamp(b, headroom, n, fields, f, local)
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
	fields, paced, local := c.txFields(f)
	var (
		bs    [rxBatch]*pbuf
		bufs  [rxBatch][]byte
		sizes [rxBatch]int
		k     dt.Kicks
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
		bufs[i] = bs[i].B[headroom+off : headroom+off+p.pool.MaxSDU()]
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
				k.Flush() // what is queued goes while this one waits
				sp.WaitOne(p.pool, p.ctx.Done(), originWait)
			}
			if sp.N() == 0 {
				p.c.noBuf.Add(1)
				f.Drops.Add(1)
				continue
			}
			if f.Sealer != nil {
				var ok bool
				if sz, ok = c.sealIn(f, bs[i], headroom, sz); !ok {
					continue
				}
			}
			if paced {
				now = c.pace(f, sz, now, &k)
			}
			b := bs[i]
			stamp(b, headroom, sz, fields, f, local)
			sent++
			nb += uint64(sz)
			bs[i] = sp.Take()
			bufs[i] = bs[i].B[headroom+off : headroom+off+p.pool.MaxSDU()]
			c.originate(b, &k)
		}
		f.PktsOut.Add(sent)
		f.BytesOut.Add(nb)
		f.LastSent.Store(now.UnixNano())
		k.Flush()
	}
}

// originate routes a packet this IPCP made. It takes b. With k, the
// first hop's transmit loop is woken when k is flushed.
func (c *core) originate(b *pbuf, k *dt.Kicks) {
	pci := dt.PCI(b.Pkt())
	dst := pci.Dst()
	c.p.c.sent.Add(1)
	if dst == c.self {
		c.deliver(b, time.Time{}, nil, nil)
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
