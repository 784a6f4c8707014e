package unicast

import (
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

// Congestion marking in the data path (ca.MarkECN; docs/layers.md, ca),
// at every queue a packet of the layer waits in on a node:
//
//   - the transmit loop marks what leaves each N-1 port's queue (the
//     scheduler's, with the lower ring's backlog below it): mark;
//   - the receive loops mark what they read from an N-1 port by the
//     standing backlog of the ring it came through, the queue between the
//     layer below (a shim) and this IPCP, which fills when this IPCP
//     reads slower than packets arrive: rxMark;
//   - deliver marks what it delivers to an N+1 flow by the standing
//     depth of what waits in front of the program, the flow's delivery
//     queue (deliver.go) and the flow's ring to the program, which fill
//     when the program reads slower, and by the depth they are heading
//     for once that passes half, the queue counted as deep as some
//     milliseconds of the flow's peak rate: deliverMark. A delivery refused
//     (the queue full: a counted drop) counts as the highest level.
//
// The first two are queues flows share: each packet's level is weighed
// by its flow's share of what passes (ca.Shares), so a flow that starts
// beside running ones is not held to the level they keep the queue at.
// What waits in front of a program is the flow's own.
//
// A full queue drops; these marks make the sender slow down (mb-ecn's
// reaction, ca.Flow.OnFeedback) before it does.

// An N-1 port that says how much of what was written to it waits in the
// layer below (the node's ring port, irm.RingPort) is a dt.Queuer: the
// transmit loop marks by it too (dt.Scheduler.SetBelow).

// backlogPort is an N-1 port that says how much waits in the queue it is
// read from, and that queue's capacity (the node's ring port, irm.RingPort: its receive ring).
type backlogPort = dt.Backlogger

// markWriter is an N+1 port that writes an SDU with a mark on its buffer
// for the reader (irm.RingPort): an SDU delivered before its flow's
// delivery loop started carries its congestion level as one the loop
// pushes does.
type markWriter interface {
	WriteMarked(b []byte, mark uint8, deadline time.Time) error
}

// deliverPort is an N+1 port that says how much of what the IPCP wrote to
// it waits for the program, and that queue's capacity (the node's ring port, irm.RingPort: its
// transmit ring).
type deliverPort interface {
	Queued() int
	QueueCap() int
}

// mark raises the ECN of each packet of a batch leaving np's queue by the
// queue's standing depth (with what waits below it) against its length
// (with the most that ever waited below: the lower ring's); the room
// beyond its length, for forwarded bursts, marks as full. Marking as
// packets leave, not as they join, tells the receivers what the queue is
// now, not what it was a queue's delay ago. Each packet's level is
// weighed by its flow's share of what leaves the queue (ca.Shares: a
// flow under three quarters of an even share is not marked, one over
// an even share more).
func (c *core) mark(np *nport, batch []*pbuf, below int) {
	var lvl [flow.NumCubes]int16
	for i := range lvl {
		lvl[i] = -1
	}
	now := time.Now().UnixNano()
	var marked, local uint64
	// A run of packets of one flow this node made: told to the flow at
	// once (dt.LocalMarker), not written into the packets, in at most two
	// calls whose levels sum to the packets' (their levels differ by a
	// little from packet to packet, as the flow's share does: one call per
	// level would be one per packet).
	var run dt.LocalMarker
	var runSum, runN int
	flush := func() {
		if runN == 0 {
			return
		}
		lo, hi := runSum/runN, runSum%runN // hi packets at lo+1, the rest at lo
		if hi > 0 {
			run.LocalMark(uint8(lo+1), hi, now)
		}
		run.LocalMark(uint8(lo), runN-hi, now)
	}
	for _, b := range batch {
		pci := dt.PCI(b.Pkt())
		cube := pci.Cube()
		if cube >= flow.NumCubes {
			continue
		}
		if lvl[cube] < 0 {
			lvl[cube] = int16(c.ca.MarkECN(np.Sched.Standing(cube, now, c.ca.Interval()), np.Sched.Cap()+below))
		}
		// Weighed by the packet's flow's share of what leaves the
		// queue: a flow that starts beside a running one is not
		// marked (nor its slow start ended) by the level the running
		// one holds the queue at until it has three quarters of an
		// even share.
		key := shareKey(pci)
		np.TxShares.See(key, len(pci), now, c.ca.Interval())
		l := np.TxShares.Weigh(uint8(lvl[cube]), key)
		if o := b.Origin; o != nil {
			b.Origin = nil
			if o != run {
				flush()
				run, runSum, runN = o, 0, 0
			}
			runSum += int(l)
			runN++
			if l > 0 {
				local++
			}
			continue
		}
		if l > 0 {
			pci.RaiseECN(l)
			marked++
		}
	}
	flush()
	if marked > 0 {
		c.p.c.markedQueue.Add(marked)
	}
	if local > 0 {
		c.p.c.markedLocal.Add(local)
	}
}

// shareKey tells a packet's flow to ca.Shares: its destination and the
// endpoint there.
func shareKey(p dt.PCI) uint64 { return uint64(p.Dst())*0x100000001b3 ^ uint64(p.EID()) }

// rxMark returns the level to raise the ECN of the packets np's receive
// loop has just read (at now, ns) to: by the standing backlog of the ring
// bp they came through (what still waits in it after the read) against
// its capacity. Only np's receive loop calls it (np.RxQ is its own), and
// only where something marks (MarkRx: a ring that says its backlog, a
// policy that is not nop).
//
// Not by the depth the ring is heading for, as deliverMark marks what
// waits for a program: the shims hand a ring SDUs in bursts (one read
// of a UDP socket brings up to some 800) and wait for room while this
// IPCP drains it (engine.Config.RxWait), so a rise is a burst on its
// way through, not a ring about to overflow. Marked by that rise, a
// lone flow on loopback was held at 0.28-0.37 of what `ca = "nop"`
// delivers; by the standing depth, with the shims waiting, at 0.44-0.68
// with under 1% lost (docs/benchmarks.md, "A burst waits for its ring").
func (c *core) rxMark(np *nport, bp backlogPort, now int64) uint8 {
	if np.RxCap == 0 {
		np.RxCap = bp.BacklogCap()
	}
	return c.ca.MarkECN(np.RxQ.See(bp.Backlog(), now, c.ca.Interval()), np.RxCap)
}

// nearFull is the share of what waits in front of a program, nearFull/4,
// that the depth it is heading for must reach before the receiving node
// marks by that depth, not only by its standing depth: half. From 3/4,
// interleaved on loopback (docs/benchmarks.md), mb-ecn moved 15-25% more
// and lost 2-6 times as much (1.9-2.7% against 0.4-1.9%).
const nearFull = 2

// level is the mark for what waits in front of a program, of capacity
// qcap, that stands at standing and is n deep now: by the standing
// depth, or by the depth the queue is heading for once that is past
// nearFull/4 of it. A queue a reader lets fill in a few milliseconds (a
// process waiting for a CPU) and then drains at once never stands for a
// window, yet the next such stall overflows it. (The ring from the
// shim was marked so too while the shims dropped what a full ring could
// not take at once; they wait for room now: rxMark.)
//
// The depth it is heading for is n plus its rise above the standing
// depth (n-standing, what it grew by within the last window or two):
// where it will be if it grows as much again before the sender hears. A
// queue that rises from empty is marked from a quarter of it, at the
// level it would have at half, and at 255 from half (reported a quarter
// Interval early, ca.Flow.OnReceive); a queue that stands deep and does
// not rise is marked by its standing depth, as before. Marked only by
// its depth once past half (before), what waits in front of the program
// overflowed while marked: on loopback most of what the delivery queue
// refused is no longer lost there (docs/benchmarks.md, "Congestion
// avoidance").
func (c *core) level(standing, n, qcap int) uint8 {
	lvl := c.ca.MarkECN(standing, qcap)
	if ahead := 2*n - standing; 4*ahead >= nearFull*qcap {
		lvl = max(lvl, c.ca.MarkECN(ahead, qcap))
	}
	return lvl
}

// raise raises the ECN of the packets of a batch read from np to lvl
// (rxMark), each weighed by its flow's share of what np's ring brought
// (np.RxShares, as mark weighs a transmit queue's), and counts them.
func (c *core) raise(np *nport, bs []*pbuf, lvl uint8, now int64) {
	var marked uint64
	for _, b := range bs {
		pci := dt.PCI(b.Pkt())
		if !pci.IsValid() {
			continue
		}
		key := shareKey(pci)
		np.RxShares.See(key, len(pci), now, c.ca.Interval())
		if l := np.RxShares.Weigh(lvl, key); l > 0 {
			pci.RaiseECN(l)
			marked++
		}
	}
	if marked > 0 {
		c.p.c.markedRx.Add(marked)
	}
}

// deliverTime is how much of a flow's peak rate what waits in front of
// its program is judged against (deliverMark), where that is more than
// deliverMarkMin SDUs: at loopback rates (300,000-400,000 SDUs a second)
// most of the delivery queue. A program on two cores shared with its
// node, the sender and the sender's node waits for a CPU for some
// milliseconds at a time while the flow goes on; judged against the
// queue's first 3,072, the lumps that left marked a lone flow down to
// 0.67-0.72 of what `ca = "nop"` delivers on loopback from its second
// second on, and against all of 12,288 at any rate, 0.82-0.90 (issue 13
// asks 0.8; docs/benchmarks.md, "A queue as deep as the flow is fast").
const deliverTime = 32 * time.Millisecond

// deliverMarkMin is the least depth of the delivery queue what waits in
// front of a program is judged against: a flow slower than
// deliverMarkMin per deliverTime (about 100,000 SDUs a second) is judged
// against it, as every flow was before the queue grew with the rate, so
// that a slow program's flow is marked once as few SDUs stand in front
// of it as before (a standing queue is time its reader waits for).
const deliverMarkMin = 3072

// deliverMark returns the level of congestion an SDU just queued for f's
// program met: by the standing depth of what waits in front of the
// program (queued: the flow's delivery queue and the port's ring, where
// the port says how deep it is) against their capacity, the delivery
// queue's counted as deliverTime of the flow's peak rate of SDUs
// (at least deliverMarkMin, at most qcap, its length). The caller
// holds f.CAMu.
func (c *core) deliverMark(f *fa.Flow, dp deliverPort, queued, qcap int, now time.Time) uint8 {
	if f.DeliverCap == 0 {
		f.DeliverCap = qcap
		if dp != nil {
			f.DeliverCap += dp.QueueCap()
		}
	}
	ns, iv := now.UnixNano(), c.ca.Interval()
	depth := int(int64(f.DeliverPeak.Add(1, ns, iv)) * int64(deliverTime) / int64(iv))
	mcap := f.DeliverCap - qcap + min(qcap, max(deliverMarkMin, depth))
	lvl := c.level(f.DeliverQ.See(queued, ns, iv), queued, mcap)
	if lvl > 0 {
		c.p.c.markedDeliver.Add(1)
	}
	return lvl
}
