package ipnet

import (
	"encoding/binary"
	"math"
	"time"
)

// Active queue management: CoDel (RFC 8289) on the packets that wait
// for a flow.
//
// A flow's congestion avoidance paces it to what the layer carries, and
// the packets it holds back wait in front of it: in the peer's queue
// (Config.Queue) and in the flow's transmit ring. Without a signal TCP
// would fill both, a whole window's worth, and every packet to that peer
// would wait behind it. So the sending Bridge keeps the time a
// packet waits near a target the way CoDel does: once the wait has stayed
// above Target for a whole Interval, it drops a packet, and then more
// often (Interval/√count) until the wait is below Target again. A packet
// whose sender takes ECN (ECT(0) or ECT(1)) is marked CE instead of being
// dropped (RFC 3168). Either way TCP slows down, and the queue stays
// short.
//
// The Bridge does not see the packets leave the ring, so it estimates
// the wait: the bytes that wait (in the peer's queue, and the ring's
// Queued SDUs at the average size written) divided by the bytes a second
// the flow's reader takes, measured from what the Bridge wrote and what
// stayed queued (codel.wait).

// The receiving side: the layer's marks (RFC 6040).
//
// Where the standing queue is inside the layer (a forwarding node's queue
// toward a slower link), the sending bridge does not see it; the layer
// marks the packets that leave such a queue with its level (multi-bit
// ECN, 1 to 255, 0 below a part of its length), and its congestion
// avoidance paces the flow, but TCP learns nothing until the queue
// overflows. A unicast layer delivering a packet in the node's buffer
// leaves that level on the buffer (kernel.Buf.Mark; the delivery
// queue's own level where that is higher, so a bridge that falls behind
// reading is signalled too), and the node's ring port gives it to the
// reader (ReadMarked). RFC 6040 copies an outer CE
// into the inner header; the layer's marks are levels on many packets of
// a standing queue (about one packet in eight in TestIPNet on 1 Gbit/s
// links), not single-bit congestion experienced, so the receiving bridge
// marks CE (ECN-capable) or drops one packet each markSpan of level
// summed: a fraction of the packets that grows with how many are marked
// and how high. It stops as soon as the marks do.

// markSpan is the sum of marks per packet marked CE or dropped: at the
// highest level on every packet, one in 64 (RED's largest drop
// probability, a few percent).
const markSpan = 255 * 64

// markReader is a flow port that says, for each SDU it reads, the mark
// its buffer carried (the node's ring ports: irm.RingPort).
type markReader interface {
	ReadMarked(bufs [][]byte, sizes []int, marks []uint8, deadline time.Time) (int, error)
}

// passMarked maps the layer's mark on sdu, one receiving flow's (acc
// its sum of marks so far): it reports whether sdu goes on to the device
// (marked CE where its turn came and its sender takes ECN), or is
// dropped (counted).
//
// A TCP super-packet weighs as the segments it carries: marked, its CE
// reaches every segment the host's stack makes of it, and a flow of
// super-packets is signalled as often per byte as one of plain packets.
func (b *Bridge) passMarked(acc *uint32, mark uint8, sdu []byte) bool {
	if mark == 0 {
		return true
	}
	pkt, w := sdu, uint32(mark)
	if mss, ok := superMSS(sdu); ok {
		pkt = sdu[superHdrLen:]
		if mss > 0 { // a peer's word: 0 is no super-packet this Bridge takes
			w *= uint32((len(pkt) + mss - 1) / mss)
		}
	}
	if *acc += w; *acc < markSpan {
		return true
	}
	*acc %= markSpan
	if markCE(pkt) {
		b.inAQMMarks.Add(1)
		return true
	}
	b.inAQMDrops.Add(1)
	b.inDrops.Add(1)
	return false
}

// InAQM returns what the receiving side's CoDel did with what peers sent:
// packets dropped (counted among the received drops too) and marked CE.
func (b *Bridge) InAQM() (drops, marks uint64) {
	return b.inAQMDrops.Load(), b.inAQMMarks.Load()
}

// AQM defaults (RFC 8289, 4.2 and 4.3).
const (
	DefaultAQMTarget   = 5 * time.Millisecond
	DefaultAQMInterval = 100 * time.Millisecond
)

// queueReporter is a flow port that says how many SDUs written to it
// wait in its transmit ring (the node's ring ports, flowtest pipes).
type queueReporter interface {
	Queued() int
}

// minRateWindow is the shortest span the drain rate is measured over.
const minRateWindow = 2 * time.Millisecond

// codel is one peer's CoDel state; only its send goroutine uses it.
type codel struct {
	target, interval time.Duration

	// The drain rate estimate: bytes the flow's reader took per second.
	// The ring says how many SDUs wait in it (Queued), the peer's queue
	// how many bytes: a super-packet waits there whole, as the tens of
	// SDUs it is cut into. SDUs are weighed at the average size written.
	rate       float64
	known      bool // rate measured over a window at least
	lastT      time.Time
	lastQ      float64 // bytes queued in the ring at lastT
	wrote      uint64  // bytes written since lastT
	wroteSDUs  uint64  // SDUs written since lastT
	sduSize    float64 // bytes per SDU written, smoothed
	firstAbove time.Time
	dropping   bool
	dropNext   time.Time
	count      int
}

// reset forgets the estimate (a new flow).
func (c *codel) reset() {
	*c = codel{target: c.target, interval: c.interval}
}

// written counts n SDUs of bytes bytes in all written to the flow.
func (c *codel) written(n, bytes int) {
	c.wrote += uint64(bytes)
	c.wroteSDUs += uint64(n)
}

// wait estimates how long the packets leaving the peer's queue now wait
// before the flow's reader takes them: what is ahead of them (queued
// SDUs in the flow's ring) and what came after them (waiting bytes in
// the peer's queue: a standing queue's packets waited about as long),
// over the drain rate. It returns 0 while neither waits: a packet alone,
// or a burst into an empty queue, is never dropped (RFC 8289's "less
// than an MTU queued").
func (c *codel) wait(now time.Time, waiting int64, queued int) time.Duration {
	if c.sduSize == 0 && c.wroteSDUs > 0 {
		c.sduSize = float64(c.wrote) / float64(c.wroteSDUs)
	}
	q := float64(queued) * c.sduSize // the ring's bytes
	if c.lastT.IsZero() {
		c.lastT, c.lastQ = now, q
		c.wrote, c.wroteSDUs = 0, 0
		return 0
	}
	if dt := now.Sub(c.lastT); dt >= minRateWindow {
		taken := float64(c.wrote) - (q - c.lastQ)
		r := max(taken, 0) / dt.Seconds()
		if !c.known {
			c.rate, c.known = r, true
		} else {
			c.rate += (r - c.rate) / 4 // smoothed over a few windows
		}
		if c.wroteSDUs > 0 {
			c.sduSize += (float64(c.wrote)/float64(c.wroteSDUs) - c.sduSize) / 4
		}
		c.lastT, c.lastQ, c.wrote, c.wroteSDUs = now, q, 0, 0
	}
	n := float64(waiting) + q
	if n <= 0 || !c.known {
		return 0
	}
	if c.rate <= 0 {
		return time.Duration(math.MaxInt64) // nothing taken for a whole window
	}
	return time.Duration(n / c.rate * float64(time.Second))
}

// drop reports whether the packet leaving the queue now, which waited
// wait, is to be dropped (or marked): RFC 8289's dequeue.
func (c *codel) drop(now time.Time, wait time.Duration) bool {
	ok := c.okToDrop(now, wait)
	if c.dropping {
		if !ok {
			c.dropping = false
			return false
		}
		if !now.Before(c.dropNext) {
			c.count++
			c.dropNext = c.controlLaw(c.dropNext)
			return true
		}
		return false
	}
	if !ok {
		return false
	}
	c.dropping = true
	// Back to a rate near the last one if the last dropping state ended
	// recently.
	if delta := c.count - 2; delta > 0 && now.Sub(c.dropNext) < 16*c.interval {
		c.count = delta
	} else {
		c.count = 1
	}
	c.dropNext = c.controlLaw(now)
	return true
}

func (c *codel) okToDrop(now time.Time, wait time.Duration) bool {
	if wait < c.target {
		c.firstAbove = time.Time{}
		return false
	}
	if c.firstAbove.IsZero() {
		c.firstAbove = now.Add(c.interval)
		return false
	}
	return !now.Before(c.firstAbove)
}

func (c *codel) controlLaw(t time.Time) time.Time {
	return t.Add(time.Duration(float64(c.interval) / math.Sqrt(float64(c.count))))
}

// markCE marks pkt, an IPv4 or IPv6 packet, Congestion Experienced if
// its sender takes ECN (ECT(0), ECT(1), or CE already), and reports
// whether it did; a packet that does not take ECN is left as it is (to
// be dropped). An IPv4 header's checksum is updated in place (RFC 1624).
func markCE(pkt []byte) bool {
	if len(pkt) < 20 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		if pkt[1]&3 == 0 {
			return false
		}
		old := binary.BigEndian.Uint16(pkt[0:2])
		pkt[1] |= 3
		fixChecksum(pkt[10:12], old, binary.BigEndian.Uint16(pkt[0:2]))
		return true
	case 6:
		if len(pkt) < 40 || (pkt[1]>>4)&3 == 0 {
			return false
		}
		pkt[1] |= 3 << 4
		return true
	}
	return false
}

// fixChecksum updates the one's-complement checksum at sum for a 16-bit
// word of the header that changed from old to new: HC' = ~(~HC + ~m + m')
// (RFC 1624, equation 3).
func fixChecksum(sum []byte, old, new uint16) {
	c := uint32(^binary.BigEndian.Uint16(sum)) + uint32(^old) + uint32(new)
	c = (c & 0xffff) + c>>16
	c = (c & 0xffff) + c>>16
	binary.BigEndian.PutUint16(sum, ^uint16(c))
}

// manage applies the active queue management to batch, packets just
// taken from p's queue for flow of: each one CoDel picks is marked CE, or
// dropped (given back, counted) if its sender does not take ECN. It
// returns what is left of batch.
func (b *Bridge) manage(c *codel, p *peer, of *outFlow, batch [][]byte) [][]byte {
	queued := 0
	if qr, ok := of.port.(queueReporter); ok {
		queued = qr.Queued()
	}
	now := time.Now()
	wait := c.wait(now, p.qBytes.Load(), queued)
	keep := batch[:0]
	for _, pkt := range batch {
		if !c.drop(now, wait) {
			keep = append(keep, pkt)
			continue
		}
		if markCE(pkt[superHdrLen:]) {
			p.c.aqmMarks.Add(1)
			keep = append(keep, pkt)
			continue
		}
		p.c.aqmDrops.Add(1)
		p.c.drops.Add(1)
		b.putBuf(pkt)
	}
	clear(batch[len(keep):])
	return keep
}
