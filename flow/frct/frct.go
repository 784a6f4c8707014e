// Package frct is Ouroboros' flow and retransmission control: the end-to-end
// protocol a flow runs over its port for ordering, reliability and flow
// control. It is pure logic: no goroutines, no clock (time is passed in),
// no I/O; the caller (flow.Flow) moves packets and runs the timers.
//
// One Conn is both directions of one flow: a sender (sequence numbers, a
// retransmission ring that is also the SACK scoreboard, loss detection from
// SACK by time (RFC 8985 RACK) and by count (three SACKed above a hole, RFC
// 6675), tail-loss probes (RFC 8985 TLP), one RTO timer from RTT estimation
// per RFC 6298 with Karn's rule and bounded back-off, the peer's window
// edge, rendezvous when the window is closed) and a receiver (duplicate
// suppression, a bounded reordering ring, in-order delivery, max-gap
// skipping when loss is tolerated, delayed cumulative ACKs with SACK blocks
// for what arrived above a hole, window updates, keepalives). Both rings
// are preallocated: in steady state nothing allocates per packet.
//
// How a caller drives a Conn:
//
//	Send(now, sdu, pkt)  frame an SDU into pkt, then write pkt to the port
//	Receive(now, pkt)    hand in every packet read from the port
//	Read(now, p)         take the next deliverable SDU
//	Poll(now, pkt)       take the next packet due now (retransmission, ACK,
//	                     window update, rendezvous, FIN, keepalive); repeat
//	                     until it returns 0, after every call above and at Next
//	Next(now)            when Poll next has something to do
//
// A Conn is not safe for concurrent use; the caller serialises calls.
package frct

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by a Conn. ErrWindowFull and ErrNoData are conditions to
// wait on, not failures.
var (
	ErrWindowFull  = errors.New("frct: window full")             // Send: wait for the peer's ACK or window update
	ErrNoData      = errors.New("frct: no data")                 // Read: nothing deliverable yet
	ErrFinished    = errors.New("frct: peer finished")           // Read: the peer's FIN was delivered (end of data)
	ErrPeerGone    = errors.New("frct: peer not responding")     // the peer was silent, or data unacked, for Config.Timeout
	ErrClosed      = errors.New("frct: closed")                  // Send after Close
	ErrTooBig      = errors.New("frct: SDU too big")             // Send of more than Config.MaxSDU bytes
	ErrTruncated   = errors.New("frct: SDU truncated")           // Read into a buffer smaller than the SDU
	ErrShortBuffer = errors.New("frct: packet buffer too small") // Send/Poll into a buffer that cannot hold the packet
	ErrConfig      = errors.New("frct: invalid configuration")   // New with a bad Config
)

// Mode is what FRCT does for a flow, derived from its QoS spec.
type Mode uint8

// The FRCT modes. A flow that needs neither ordering nor reliability
// (raw, best effort) runs no FRCT at all: not even the header is sent.
const (
	// Ordered delivers in order, tolerates loss: no retransmission; a gap
	// is skipped after Config.MaxGap.
	Ordered Mode = iota + 1
	// Reliable delivers every SDU exactly once, in order.
	Reliable
	// ReliableUnordered delivers every SDU exactly once, as it arrives.
	ReliableUnordered
)

// String returns the mode's name: "ordered", "reliable" or "reliable-unordered".
func (m Mode) String() string {
	switch m {
	case Ordered:
		return "ordered"
	case Reliable:
		return "reliable"
	case ReliableUnordered:
		return "reliable-unordered"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

func (m Mode) reliable() bool { return m == Reliable || m == ReliableUnordered }
func (m Mode) inOrder() bool  { return m != ReliableUnordered }

// Defaults for the zero fields of a Config.
const (
	DefaultWindow     = 256
	DefaultMaxSDU     = 1400 - HeaderSize // flow.MaxSDU less this header
	DefaultInitialRTO = time.Second       // RFC 6298 §2.1
	// DefaultMinRTO is the RTO's floor. RFC 6298's 1 s is for the Internet
	// of 2000; paths here are microseconds (loopback) to milliseconds. The
	// floor must exceed what an ACK can honestly take: a round trip plus
	// the receiver's AckDelay (2 ms) plus a hosted process's timer and
	// scheduling slack (about a millisecond); 5 ms covers that and still
	// recovers a lost tail 200 times sooner than 1 s would. Losses are
	// mostly repaired before the RTO anyway (SACK, RACK, TLP).
	DefaultMinRTO = 5 * time.Millisecond
	DefaultMaxRTO = 10 * time.Second
	// DefaultAckDelay is the longest an in-order DATA packet's ACK waits
	// for a second packet or a reply to ride on (RFC 1122 allows 500 ms).
	DefaultAckDelay  = 2 * time.Millisecond
	DefaultMaxGap    = 100 * time.Millisecond
	clockGranularity = time.Millisecond // G in RFC 6298 §2
	maxWindow        = 1 << 14
	// maxBackoff bounds the RTO's exponential back-off: at most 2^6 = 64
	// times the estimate (and never above MaxRTO), so a flow that lost a
	// burst of retransmissions probes again within a bounded time.
	maxBackoff = 6
	// dupThresh: a hole with this many SACKed packets above it is lost
	// (RFC 6675 §2 DupThresh), whatever the time-based rule says.
	dupThresh = 3
	// recentBlocks: the blocks of this many latest out-of-order arrivals
	// lead each SACK.
	recentBlocks = 4
)

// Config sets up a Conn. Zero fields take the defaults above. Both ends of a
// flow must agree on Mode and ISN.
type Config struct {
	Mode       Mode
	Window     int           // SDUs in flight and buffered for reordering; a power of two, 2..16384
	MaxSDU     int           // largest SDU; packets are up to HeaderSize+MaxSDU
	ISN        uint32        // initial sequence number of both directions
	InitialRTO time.Duration // RTO before the first RTT sample
	MinRTO     time.Duration
	MaxRTO     time.Duration
	AckDelay   time.Duration // longest an ACK waits to be piggybacked or paired
	MaxGap     time.Duration // Ordered: how long a gap may hold up later SDUs; negative = skip at once
	// Timeout: a peer silent this long, or data unacknowledged this long,
	// kills the Conn with ErrPeerGone. Zero means never.
	Timeout time.Duration
	// Keepalive: send a KEEPALIVE after sending nothing this long. Zero
	// means Timeout/4; it is only used when Timeout is set.
	Keepalive time.Duration
}

func (c *Config) setDefaults() error {
	if c.Mode < Ordered || c.Mode > ReliableUnordered {
		return fmt.Errorf("%w: mode %v", ErrConfig, c.Mode)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < 2 || c.Window > maxWindow || c.Window&(c.Window-1) != 0 {
		return fmt.Errorf("%w: window %d is not a power of two in 2..%d", ErrConfig, c.Window, maxWindow)
	}
	if c.MaxSDU == 0 {
		c.MaxSDU = DefaultMaxSDU
	}
	if c.MaxSDU < 0 {
		return fmt.Errorf("%w: max SDU %d", ErrConfig, c.MaxSDU)
	}
	def(&c.InitialRTO, DefaultInitialRTO)
	def(&c.MinRTO, DefaultMinRTO)
	def(&c.MaxRTO, DefaultMaxRTO)
	def(&c.AckDelay, DefaultAckDelay)
	def(&c.MaxGap, DefaultMaxGap)
	if c.MaxGap < 0 {
		c.MaxGap = 0
	}
	if c.MinRTO > c.MaxRTO || c.InitialRTO < 0 || c.Timeout < 0 || c.AckDelay < 0 || c.Keepalive < 0 {
		return fmt.Errorf("%w: timers %+v", ErrConfig, *c)
	}
	if c.Keepalive == 0 {
		c.Keepalive = c.Timeout / 4
	}
	return nil
}

// Stats counts what a Conn did. RTT and RTO are the current estimates.
type Stats struct {
	SentSDUs        uint64        // SDUs sent (first transmissions)
	SentBytes       uint64        // bytes of those SDUs
	RecvSDUs        uint64        // SDUs delivered by Read
	RecvBytes       uint64        // bytes of those SDUs
	Retransmits     uint64        // DATA/FIN packets sent again
	FastRetransmits uint64        // of those, holes found by SACK (RACK or three SACKed above) or three duplicate ACKs
	Probes          uint64        // of those, tail-loss probes
	Timeouts        uint64        // RTO expiries (each backs off and resends every unSACKed packet)
	Sacked          uint64        // packets the peer SACKed above a hole
	Spurious        uint64        // retransmissions found not needed: the peer reported a duplicate (D-SACK), or the ACK came too soon
	DSacks          uint64        // duplicates reported to the peer in a D-SACK block (RFC 2883)
	Dups            uint64        // duplicate DATA packets received and dropped
	Drops           uint64        // packets dropped: malformed, or outside the window
	Lost            uint64        // seqnos skipped by max-gap (Ordered mode)
	RTT             time.Duration // smoothed round-trip time (0 before a sample)
	RTO             time.Duration // current retransmission timeout
}

// Slot states of the receive ring.
const (
	slotEmpty uint8 = iota
	slotHeld        // received, not yet read
	slotRead        // read (out of order), waiting for rcvNext to pass it
)

// txSlot is one packet of the retransmission ring and its scoreboard entry.
type txSlot struct {
	pkt       []byte    // the packet as first sent: header and SDU
	firstSent time.Time // for give-up
	lastSent  time.Time // latest transmission, for RACK and RTT samples
	retries   int       // times sent again; >0 means no RTT sample (Karn)
	sacked    bool      // the peer SACKed it: never sent again
	lost      bool      // deemed lost, waiting to be sent again
	byRTO     bool      // lost because the RTO expired (not a fast retransmit)
}

type rxSlot struct {
	buf     []byte // the SDU
	arrived time.Time
	state   uint8
	fin     bool
}

// Conn is the FRCT state machine of one flow, both directions.
type Conn struct {
	cfg  Config
	w    uint32 // window, in SDUs
	mask uint32

	// Sender.
	sndNext uint32 // next seqno to send
	sndUna  uint32 // oldest unacknowledged seqno
	rwe     uint32 // peer's right window edge: seqnos before it may be sent
	tx      []txSlot
	srtt    time.Duration
	rttvar  time.Duration
	minRTT  time.Duration
	rtoBase time.Duration // RFC 6298 estimate, clamped
	rto     time.Duration // rtoBase backed off: the timer's value
	backoff int           // doublings of rtoBase in rto, up to maxBackoff
	hasRTT  bool
	dupAcks int
	rtoAt   time.Time // the retransmission timer; zero = not armed
	ptoAt   time.Time // the tail-loss probe timer; zero = not armed
	probing bool      // a probe is out: no other until an ACK brings news
	nLost   int       // slots marked lost, not yet sent again
	// RACK (RFC 8985 §6.2): the most recently sent packet known delivered.
	rackSent time.Time
	rackSeq  uint32
	rackRTT  time.Duration
	hasRack  bool
	rackAt   time.Time // reordering timer: when a suspect becomes lost
	// Reordering (RFC 8985 §6.2): fack is the highest seqno delivered;
	// reordered is set once a packet sent once was delivered below it.
	// reoMult scales the reordering window; it doubles on a spurious
	// retransmission (at most once a round trip, reoGrowAt) and halves
	// again after reoDecay fast retransmits that were not found spurious.
	fack      uint32
	reordered bool
	reoMult   int
	reoClean  int
	reoGrowAt time.Time
	blocked   bool      // Send hit the peer's window edge
	rdvsAt    time.Time // when to send a rendezvous while blocked
	closing   bool      // Close was called
	finSent   bool      // FIN has its seqno
	lastSent  time.Time
	// pokedAt: the latest RDVS, keepalive, tail-loss probe or timeout.
	// The ACK that follows may be its answer (an ACK the path held back
	// until something else came by, a window update lost), not the
	// data's: no RTT sample from a packet sent before it. A stall's
	// length taken for a round trip raised the RTO, which made the next
	// stall longer (SRTT 100 ms on a path of 1 ms).
	pokedAt time.Time

	// Receiver.
	rcvNext uint32 // next seqno to deliver (left window edge)
	rcvAck  uint32 // next seqno not yet received: the cumulative ACK
	rcvHigh uint32 // one past the highest seqno received (>= rcvAck)
	// rcvRecent holds the latest out-of-order arrivals, most recent first,
	// one per block: their blocks lead the SACK (RFC 2018 §4), so that each
	// block is reported in the next few ACKs even when more than
	// MaxSackBlocks blocks are open, and several arrived between two ACKs.
	rcvRecent [recentBlocks]uint32
	nRecent   int
	// sackCursor: where the next SACK's other blocks start (rotation).
	sackCursor uint32
	sackNews   bool // out-of-order data arrived since the last SACK went out
	dsack      bool // a duplicate arrived: the next SACK reports dsackSeq first (RFC 2883)
	dsackSeq   uint32
	rx         []rxSlot
	ready      []uint32 // ReliableUnordered: seqnos received, not yet read, in arrival order
	readyHead  int
	readyLen   int
	ackAt      time.Time // when a pending ACK/window update is due; zero = none pending
	unacked    int       // in-order DATA packets not yet acknowledged
	advRwe     uint32    // window edge last advertised
	finished   bool      // the peer's FIN was delivered
	lastRecv   time.Time

	err   error // ErrPeerGone once dead
	stats Stats
}

// New returns a Conn with the given configuration, started at now.
func New(cfg Config, now time.Time) (*Conn, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	w := uint32(cfg.Window)
	c := &Conn{
		cfg:      cfg,
		w:        w,
		mask:     w - 1,
		sndNext:  cfg.ISN,
		sndUna:   cfg.ISN,
		rwe:      cfg.ISN + w,
		rto:      cfg.InitialRTO,
		rtoBase:  cfg.InitialRTO,
		fack:     cfg.ISN - 1,
		reoMult:  1,
		lastSent: now,
		rcvNext:  cfg.ISN,
		rcvAck:   cfg.ISN,
		rcvHigh:  cfg.ISN,
		advRwe:   cfg.ISN + w,
		rx:       make([]rxSlot, w),
		lastRecv: now,
	}
	// One backing array per ring: two allocations, whatever the window.
	rxBuf := make([]byte, int(w)*cfg.MaxSDU)
	for i := range c.rx {
		c.rx[i].buf = rxBuf[i*cfg.MaxSDU : i*cfg.MaxSDU : (i+1)*cfg.MaxSDU]
	}
	if cfg.Mode.reliable() {
		c.tx = make([]txSlot, w)
		pkt := HeaderSize + cfg.MaxSDU
		txBuf := make([]byte, int(w)*pkt)
		for i := range c.tx {
			c.tx[i].pkt = txBuf[i*pkt : i*pkt : (i+1)*pkt]
		}
	}
	if !cfg.Mode.inOrder() {
		c.ready = make([]uint32, w)
	}
	c.stats.RTO = c.rto
	return c, nil
}

// Config returns the configuration with defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// Stats returns the counters.
func (c *Conn) Stats() Stats { return c.stats }

// Err returns ErrPeerGone once the peer was declared dead, else nil.
func (c *Conn) Err() error { return c.err }

// Serial number arithmetic (RFC 1982) on 32-bit seqnos.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }

// canSend reports whether the next seqno fits the peer's window and,
// when reliable, the retransmission ring.
func (c *Conn) canSend() bool {
	if !seqLT(c.sndNext, c.rwe) {
		return false
	}
	return !c.cfg.Mode.reliable() || c.sndNext-c.sndUna < c.w
}

// CanSend reports whether Send would accept an SDU now.
func (c *Conn) CanSend() bool { return c.err == nil && !c.closing && c.canSend() }

// Send frames sdu as the next DATA packet into pkt, which must hold
// HeaderSize+len(sdu) bytes, and returns the packet's length; the caller
// writes pkt[:n] to the port. In reliable modes the packet is also copied
// into the retransmission ring. When the window is full Send returns
// ErrWindowFull: wait for Receive to open it (or for Poll to send a
// rendezvous) and try again. sdu and pkt are not retained.
func (c *Conn) Send(now time.Time, sdu, pkt []byte) (int, error) {
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, ErrClosed
	case len(sdu) > c.cfg.MaxSDU:
		return 0, ErrTooBig
	case len(pkt) < HeaderSize+len(sdu):
		return 0, ErrShortBuffer
	}
	if !c.canSend() {
		if !seqLT(c.sndNext, c.rwe) && !c.blocked {
			c.blocked = true
			c.rdvsAt = now.Add(c.rto)
		}
		return 0, ErrWindowFull
	}
	c.blocked = false
	c.stats.SentSDUs++
	c.stats.SentBytes += uint64(len(sdu))
	return c.frame(now, FlagData, sdu, pkt), nil
}

// frame writes the packet with the next seqno into pkt and keeps a copy
// for retransmission when reliable.
func (c *Conn) frame(now time.Time, f Flags, sdu, pkt []byte) int {
	seq := c.sndNext
	c.sndNext++
	n := HeaderSize + len(sdu)
	h := PCI(pkt[:n])
	h.Encode(f|FlagAck|FlagFC, c.rcvNext+c.w, seq, c.rcvAck)
	copy(h[HeaderSize:], sdu)
	c.acked(now)
	if c.sackNews || c.dsack {
		c.ackAt = now // DATA carries no SACK blocks: a pure ACK follows
	}
	if c.cfg.Mode.reliable() {
		s := &c.tx[seq&c.mask]
		s.pkt = append(s.pkt[:0], h...)
		s.firstSent, s.lastSent = now, now
		s.retries = 0
		s.sacked, s.lost, s.byRTO = false, false, false
		if c.rtoAt.IsZero() {
			c.rtoAt = now.Add(c.rto) // RFC 6298 §5.1
		}
		c.armPTO(now)
	}
	return n
}

// acked notes that a packet carrying the current ACK and window left now.
func (c *Conn) acked(now time.Time) {
	c.ackAt = time.Time{}
	c.unacked = 0
	c.advRwe = c.rcvNext + c.w
	c.lastSent = now
}

// control writes a packet without an SDU (ACK, window update, rendezvous,
// keepalive) into pkt; its seqno is the next unsent one and is not consumed.
func (c *Conn) control(now time.Time, f Flags, pkt []byte) int {
	n := HeaderSize + c.sackBlocks(pkt)
	if n > HeaderSize {
		f |= FlagSack
	}
	PCI(pkt).Encode(f|FlagAck|FlagFC, c.rcvNext+c.w, c.sndNext, c.rcvAck)
	c.acked(now)
	c.sackNews = false
	return n
}

// sackBlocks writes into pkt, after the header, the SACK blocks of what was
// received above the cumulative ACK and returns their size: a D-SACK
// block if a duplicate arrived, then the blocks holding the latest
// out-of-order arrivals, most recent first (RFC 2018 §4), then the lowest
// others, up to MaxSackBlocks and what pkt holds. Reliable modes only: the
// other side of an Ordered flow does not retransmit.
func (c *Conn) sackBlocks(pkt []byte) int {
	if !c.cfg.Mode.reliable() || (c.rcvHigh == c.rcvAck && !c.dsack) {
		return 0
	}
	room := min(MaxSackBlocks, (len(pkt)-HeaderSize)/SackBlockSize)
	if room <= 0 {
		return 0
	}
	p := PCI(pkt)
	n := 0
	if c.dsack {
		// RFC 2883: the duplicate first, alone; it lies below the ACK or
		// inside one of the blocks that follow, which is how the sender
		// tells it from news.
		p.PutSackBlock(n, c.dsackSeq, c.dsackSeq+1)
		n++
		c.dsack = false
	}
	var put [MaxSackBlocks]uint32 // starts of the blocks put, for dedup
	np := 0
	have := func(start uint32) bool {
		for _, p := range put[:np] {
			if p == start {
				return true
			}
		}
		return false
	}
	for _, r := range c.rcvRecent[:c.nRecent] {
		if n >= room {
			break
		}
		if !seqLT(c.rcvAck, r) || !seqLT(r, c.rcvHigh) || c.rx[r&c.mask].state == slotEmpty {
			continue
		}
		ls, le := r, r+1
		for ls-1 != c.rcvAck && c.rx[(ls-1)&c.mask].state != slotEmpty {
			ls--
		}
		for le != c.rcvHigh && c.rx[le&c.mask].state != slotEmpty {
			le++
		}
		if have(ls) {
			continue
		}
		p.PutSackBlock(n, ls, le)
		n++
		put[np] = ls
		np++
	}
	// Then the others, from the cursor up, wrapping to the lowest (rcvAck
	// itself is missing: runs start above it): successive ACKs take turns
	// through more blocks than one holds.
	from := c.sackCursor
	if !seqLT(c.rcvAck, from) || !seqLT(from, c.rcvHigh) {
		from = c.rcvAck + 1
	}
	for seq, wrapped := from, false; n < room; {
		if !seqLT(seq, c.rcvHigh) {
			if wrapped || from == c.rcvAck+1 {
				break
			}
			seq, wrapped = c.rcvAck+1, true
		}
		if wrapped && !seqLT(seq, from) {
			break
		}
		if c.rx[seq&c.mask].state == slotEmpty {
			seq++
			continue
		}
		start := seq
		for seq != c.rcvHigh && c.rx[seq&c.mask].state != slotEmpty {
			seq++
		}
		if !have(start) {
			p.PutSackBlock(n, start, seq)
			n++
			c.sackCursor = seq
		}
	}
	return n * SackBlockSize
}

// Close starts an orderly close: no more Sends; a FIN follows the data.
// The caller keeps calling Poll and Receive until Done (or a linger bound).
func (c *Conn) Close(now time.Time) { c.closing = true }

// Done reports whether an orderly close completed: the FIN was sent and,
// when reliable, every SDU and the FIN were acknowledged. It is also true
// once the peer is declared dead.
func (c *Conn) Done() bool {
	if c.err != nil {
		return true
	}
	if !c.closing || !c.finSent {
		return false
	}
	return !c.cfg.Mode.reliable() || c.sndUna == c.sndNext
}

// Unacked returns the number of SDUs (and FIN) sent but not acknowledged.
func (c *Conn) Unacked() int {
	if !c.cfg.Mode.reliable() {
		return 0
	}
	return int(c.sndNext - c.sndUna)
}

// Receive processes one packet read from the port. Malformed packets and
// packets outside the window are dropped and counted; pkt is not retained.
func (c *Conn) Receive(now time.Time, pkt []byte) {
	p := PCI(pkt)
	if !p.IsValid() || len(p.Payload()) > c.cfg.MaxSDU {
		c.stats.Drops++
		return
	}
	if c.err != nil {
		return
	}
	c.lastRecv = now
	f := p.Flags()
	if f&FlagAck != 0 {
		c.onAck(now, p, f&(FlagData|FlagFin|FlagRdvs|FlagKeepalive) == 0)
	}
	if f&FlagFC != 0 {
		// The edge only moves forward, and never past what a peer with
		// our window size could offer.
		if w := p.Window(); seqLT(c.rwe, w) && seqLE(w, c.sndUna+maxWindow) {
			c.rwe = w
			if c.blocked && seqLT(c.sndNext, c.rwe) {
				c.blocked = false
			}
		}
	}
	if f&FlagRdvs != 0 {
		c.ackAt = now // the peer's window is closed: tell it ours now
	}
	if f&(FlagData|FlagFin) != 0 {
		c.onData(now, p, f&FlagFin != 0)
	}
}

// onAck processes a cumulative acknowledgement and its SACK blocks: it
// updates the scoreboard, RACK's delivered packet and the RTT, then looks
// for lost packets and re-arms the timers.
func (c *Conn) onAck(now time.Time, p PCI, pure bool) {
	ack := p.Ackno()
	if seqLT(ack, c.sndUna) || seqLT(c.sndNext, ack) {
		return // stale, or acknowledges what was never sent
	}
	if !c.cfg.Mode.reliable() {
		c.sndUna = ack
		return
	}
	news := false
	// Reordering is judged against what earlier ACKs delivered: blocks
	// in one ACK come most recent first, not in seqno order.
	fack := c.fack
	var sample time.Duration
	var sampleSent time.Time
	hasSample := false
	deliver := func(seq uint32, s *txSlot) {
		news = true
		if s.lost {
			s.lost = false
			c.nLost--
		}
		switch {
		case s.retries == 0 && seqLT(seq, fack):
			c.reordered = true // delivered below a later-sent one: reordering
		case s.retries > 0 && c.hasRTT && now.Sub(s.lastSent) < c.minRTT/2:
			// Acknowledged sooner than a retransmission can be: the
			// original arrived, late. With no DSACK, this stands in for
			// RFC 8985's reo_wnd_mult increase.
			c.spurious(now)
		}
		if seqLT(c.fack, seq) {
			c.fack = seq
		}
		if s.retries == 0 && (!hasSample || s.lastSent.After(sampleSent)) {
			sample, sampleSent, hasSample = now.Sub(s.lastSent), s.lastSent, true
		}
		c.rackUpdate(now, seq, s, ack)
	}
	for seq := c.sndUna; seq != ack; seq++ {
		if s := &c.tx[seq&c.mask]; !s.sacked {
			deliver(seq, s)
		}
	}
	advanced := ack != c.sndUna
	c.sndUna = ack
	first := 0
	if c.isDSack(p, ack) {
		first = 1
		c.spurious(now)
	}
	for i := first; i < p.SackBlocks(); i++ {
		start, end := p.SackBlock(i)
		if seqLT(start, ack) {
			start = ack
		}
		if seqLT(c.sndNext, end) {
			end = c.sndNext
		}
		for seq := start; seqLT(seq, end); seq++ {
			if s := &c.tx[seq&c.mask]; !s.sacked {
				s.sacked = true
				c.stats.Sacked++
				deliver(seq, s)
			}
		}
	}
	if hasSample && !sampleSent.Before(c.pokedAt) {
		c.sampleRTT(sample) // Karn: only packets sent once
	}
	switch {
	case advanced:
		c.dupAcks = 0
		c.backoff = 0
		c.rto = c.rtoBase
		c.stats.RTO = c.rto
		c.rtoAt = time.Time{}
		if c.sndUna != c.sndNext {
			c.rtoAt = now.Add(c.rto) // RFC 6298 §5.3
		}
	case pure && !news && first == 0 && c.sndUna != c.sndNext:
		c.dupAcks++
		if c.dupAcks == dupThresh { // RFC 5681 §3.2, for ACKs without SACK
			c.markLost(&c.tx[c.sndUna&c.mask], false)
		}
	}
	if news {
		c.probing = false
		c.detectLoss(now)
	}
	c.armPTO(now)
}

// rackUpdate notes a packet delivered (cumulatively ACKed or SACKed): RACK
// remembers the most recently sent one and its round trip (RFC 8985 §6.2).
// The ACK of a packet sent again may be the original's (Karn): RFC 8985
// takes it as such when it came sooner than the least RTT after the
// retransmission; so does queuedBefore, when packets sent between the two
// transmissions are still undelivered (ack is this ACK's cumulative edge).
func (c *Conn) rackUpdate(now time.Time, seq uint32, s *txSlot, ack uint32) {
	rtt := now.Sub(s.lastSent)
	if s.retries > 0 && (c.hasRTT && rtt < c.minRTT || c.queuedBefore(seq, s, ack)) {
		return // the ACK is of an earlier transmission: ambiguous
	}
	if !c.hasRack || sentAfter(s.lastSent, seq, c.rackSent, c.rackSeq) {
		c.rackSent, c.rackSeq, c.rackRTT, c.hasRack = s.lastSent, seq, rtt, true
	}
}

// queuedBefore reports whether a packet sent after s's first transmission
// and before its last (seq's retransmission) is still undelivered (at or
// above ack, not SACKed). On a path that keeps order, the retransmission
// cannot arrive before them: the delivery was the original's. Behind a
// queue (the unicast layer's pacing) an RTO or a probe resends a packet
// whose original is only waiting its turn; its ACK comes milliseconds
// later, longer than the least RTT, and taken as the retransmission's it
// made that the latest send known delivered: every packet queued before
// it was declared lost and sent again.
func (c *Conn) queuedBefore(seq uint32, s *txSlot, ack uint32) bool {
	for q := ack; q != c.sndNext; q++ {
		o := &c.tx[q&c.mask]
		if q == seq || o.sacked {
			continue
		}
		if o.lastSent.After(s.firstSent) && o.lastSent.Before(s.lastSent) {
			return true
		}
	}
	return false
}

// sentAfter reports whether (t1, s1) was sent after (t2, s2): later, or at
// the same time with a later seqno (RFC 8985 RACK_sent_after).
func sentAfter(t1 time.Time, s1 uint32, t2 time.Time, s2 uint32) bool {
	return t1.After(t2) || (t1.Equal(t2) && seqLT(s2, s1))
}

// isDSack reports whether p's first SACK block is a D-SACK (RFC 2883 §4):
// one seqno, below the cumulative ACK or inside another block of p. A
// receiver's own blocks are maximal runs, disjoint, so news is neither.
func (c *Conn) isDSack(p PCI, ack uint32) bool {
	n := p.SackBlocks()
	if n == 0 {
		return false
	}
	s, e := p.SackBlock(0)
	if e != s+1 {
		return false
	}
	if seqLT(s, ack) {
		return true
	}
	for i := 1; i < n; i++ {
		if bs, be := p.SackBlock(i); seqLE(bs, s) && seqLT(s, be) {
			return true
		}
	}
	return false
}

// spurious notes a retransmission that was not needed: the original (or
// an earlier copy) arrived after all. The path reorders: the reordering
// window doubles, at most once a round trip (RFC 8985 §6.2 grows it by a
// step per round trip with a D-SACK; doubling reaches a path whose
// reordering spans many packets in a few round trips when min RTT/4 is
// microseconds and the queue milliseconds), up to SRTT.
func (c *Conn) spurious(now time.Time) {
	c.reordered = true
	c.stats.Spurious++
	c.reoClean = 0
	if now.Before(c.reoGrowAt) {
		return
	}
	c.reoGrowAt = now.Add(c.srtt)
	if time.Duration(c.reoMult)*c.reoBase() < c.srtt {
		c.reoMult *= 2
	}
}

// reoBase is the reordering window's step: min RTT / 4, at least a
// microsecond so that doubling it gets somewhere.
func (c *Conn) reoBase() time.Duration { return max(c.minRTT/4, time.Microsecond) }

// reoWnd is RACK's reordering window: how long after a later-sent packet
// was delivered an earlier one may still arrive (RFC 8985 §6.2): min_RTT/4,
// times reoMult once the path was seen to reorder, never above SRTT.
func (c *Conn) reoWnd() time.Duration {
	if c.reordered {
		return min(c.reoBase()*time.Duration(c.reoMult), c.srtt)
	}
	return c.minRTT / 4
}

// reoDecay: after this many fast retransmissions none of which was found
// spurious, the reordering window's multiplier steps down (RFC 8985 §6.2
// resets it after 16 recoveries).
const reoDecay = 16

// detectLoss marks lost every outstanding packet sent before RACK's
// delivered packet by more than its round trip plus the reordering window,
// and every hole with dupThresh SACKed packets above it (RFC 6675 IsLost);
// for a suspect not yet overdue it arms the reordering timer.
func (c *Conn) detectLoss(now time.Time) {
	c.rackAt = time.Time{}
	if !c.hasRack {
		return
	}
	wait := c.rackRTT + c.reoWnd()
	above := 0 // SACKed packets above seq, counted from the top down
	for seq := c.sndNext - 1; seq != c.sndUna-1; seq-- {
		s := &c.tx[seq&c.mask]
		if s.sacked {
			above++
			continue
		}
		if s.lost || !sentAfter(c.rackSent, c.rackSeq, s.lastSent, seq) {
			continue
		}
		due := s.lastSent.Add(wait)
		if !c.reordered && above >= dupThresh && s.retries == 0 || !now.Before(due) {
			c.markLost(s, false)
		} else if c.rackAt.IsZero() || due.Before(c.rackAt) {
			c.rackAt = due
		}
	}
}

// markLost puts a slot on the list of packets to send again.
func (c *Conn) markLost(s *txSlot, byRTO bool) {
	if s.sacked || s.lost {
		return
	}
	s.lost, s.byRTO = true, byRTO
	c.nLost++
}

// armPTO arms the tail-loss probe timer (RFC 8985 §7.2): 2·SRTT after the
// latest send or ACK, plus the peer's delayed-ACK time when one packet is
// out; not armed without an RTT sample, with a probe already out, or when
// the RTO would fire first.
func (c *Conn) armPTO(now time.Time) {
	c.ptoAt = time.Time{}
	if !c.hasRTT || c.probing || c.sndUna == c.sndNext || c.nLost > 0 {
		return
	}
	pto := 2 * c.srtt
	if c.sndNext-c.sndUna == 1 {
		pto += c.cfg.AckDelay
	}
	pto = max(pto, clockGranularity/4)
	if at := now.Add(pto); c.rtoAt.IsZero() || at.Before(c.rtoAt) {
		c.ptoAt = at
	}
}

// sampleRTT updates SRTT, RTTVAR and RTO per RFC 6298 §2.2–2.4.
func (c *Conn) sampleRTT(r time.Duration) {
	if r < 0 {
		r = 0
	}
	if !c.hasRTT {
		c.srtt, c.rttvar, c.hasRTT = r, r/2, true
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	if r < c.minRTT || c.minRTT == 0 {
		c.minRTT = r
	}
	c.rtoBase = c.srtt + max(clockGranularity, 4*c.rttvar)
	c.rtoBase = min(max(c.rtoBase, c.cfg.MinRTO), c.cfg.MaxRTO)
	c.rto = min(c.rtoBase<<c.backoff, c.cfg.MaxRTO)
	c.stats.RTT, c.stats.RTO = c.srtt, c.rto
}

// onData stores a DATA or FIN packet in the receive ring.
func (c *Conn) onData(now time.Time, p PCI, fin bool) {
	seq := p.Seqno()
	if seqLT(seq, c.rcvNext) {
		c.stats.Dups++
		c.noteDup(seq)
		c.ackAt = now // our ACK was lost: repeat it
		return
	}
	if seq-c.rcvNext >= c.w {
		c.stats.Drops++
		c.ackAt = now
		return
	}
	s := &c.rx[seq&c.mask]
	if s.state != slotEmpty {
		c.stats.Dups++
		c.noteDup(seq)
		c.ackAt = now
		return
	}
	s.buf = append(s.buf[:0], p.Payload()...)
	s.state, s.fin, s.arrived = slotHeld, fin, now
	if c.ready != nil && !fin {
		c.ready[(c.readyHead+c.readyLen)&int(c.mask)] = seq
		c.readyLen++
	}
	inOrder := seq == c.rcvAck
	for c.rcvAck-c.rcvNext < c.w && c.rx[c.rcvAck&c.mask].state != slotEmpty {
		c.rcvAck++
	}
	if seqLT(c.rcvHigh, seq+1) {
		c.rcvHigh = seq + 1
	}
	if seqLT(c.rcvHigh, c.rcvAck) {
		c.rcvHigh = c.rcvAck
	}
	if !inOrder {
		c.noteRecent(seq)
		c.sackNews = true
	}
	switch {
	case !inOrder || fin:
		// Out of order (a duplicate ACK for fast retransmit), or filling a
		// hole, or the end: acknowledge at once.
		c.ackAt = now
	default:
		c.unacked++
		if c.unacked >= 2 { // RFC 1122 §4.2.3.2: every second packet
			c.ackAt = now
		} else if c.ackAt.IsZero() {
			c.ackAt = now.Add(c.cfg.AckDelay)
		}
	}
}

// noteRecent puts seq, an out-of-order arrival, first in rcvRecent; an
// entry next to it (the same block, extended) gives way.
func (c *Conn) noteRecent(seq uint32) {
	j := 0
	for _, r := range c.rcvRecent[:c.nRecent] {
		if r != seq-1 && r != seq+1 && r != seq {
			c.rcvRecent[j] = r
			j++
		}
	}
	if j == len(c.rcvRecent) {
		j--
	}
	copy(c.rcvRecent[1:j+1], c.rcvRecent[:j])
	c.rcvRecent[0] = seq
	c.nRecent = j + 1
}

// noteDup has the next ACK report duplicate seq in a D-SACK block
// (reliable modes: only a retransmitting sender learns from it).
func (c *Conn) noteDup(seq uint32) {
	if c.cfg.Mode.reliable() {
		c.dsack, c.dsackSeq = true, seq
		c.stats.DSacks++
	}
}

// skipGap, in Ordered mode, gives up on missing seqnos at the left edge
// once the earliest SDU waiting behind them has waited MaxGap.
func (c *Conn) skipGap(now time.Time) {
	if at, ok := c.gapDeadline(); ok && !now.Before(at) {
		first := c.rcvNext
		for c.rx[first&c.mask].state == slotEmpty {
			first++
		}
		c.stats.Lost += uint64(first - c.rcvNext)
		c.rcvNext = first
		if seqLT(c.rcvAck, first) {
			c.rcvAck = first
		}
		for c.rcvAck-c.rcvNext < c.w && c.rx[c.rcvAck&c.mask].state != slotEmpty {
			c.rcvAck++
		}
		if seqLT(c.rcvHigh, c.rcvAck) {
			c.rcvHigh = c.rcvAck
		}
		c.ackAt = now
	}
}

// gapDeadline returns, in Ordered mode with a gap at the left edge, when
// the gap is to be skipped.
func (c *Conn) gapDeadline() (time.Time, bool) {
	if c.cfg.Mode != Ordered || c.rx[c.rcvNext&c.mask].state != slotEmpty {
		return time.Time{}, false
	}
	var earliest time.Time
	found := false
	for i := uint32(1); i < c.w; i++ {
		s := &c.rx[(c.rcvNext+i)&c.mask]
		if s.state == slotHeld && (!found || s.arrived.Before(earliest)) {
			earliest, found = s.arrived, true
		}
	}
	return earliest.Add(c.cfg.MaxGap), found
}

// Finished reports whether Read returned ErrFinished: the peer's data ended.
func (c *Conn) Finished() bool { return c.finished }

// Readable reports whether Read would return an SDU or, the first time,
// ErrFinished. Data received before the peer died stays readable.
func (c *Conn) Readable(now time.Time) bool {
	if c.finished {
		return false
	}
	c.skipGap(now)
	s := &c.rx[c.rcvNext&c.mask]
	if c.ready == nil {
		return s.state == slotHeld
	}
	return c.readyLen > 0 || (s.state == slotHeld && s.fin)
}

// Read copies the next deliverable SDU into p and returns its length. An
// SDU longer than p is consumed and ErrTruncated returned with len(p).
// Nothing deliverable: ErrNoData, or ErrPeerGone if the peer is dead. After
// the peer's FIN: ErrFinished.
func (c *Conn) Read(now time.Time, p []byte) (int, error) {
	if c.finished {
		return 0, ErrFinished
	}
	c.skipGap(now)
	var s *rxSlot
	if c.ready == nil {
		s = &c.rx[c.rcvNext&c.mask]
		if s.state != slotHeld {
			return 0, c.noData()
		}
		s.state = slotEmpty
		c.rcvNext++
	} else {
		if c.readyLen == 0 {
			if h := &c.rx[c.rcvNext&c.mask]; h.state == slotHeld && h.fin {
				h.state = slotEmpty
				c.rcvNext++
				c.finished = true
				return 0, ErrFinished
			}
			return 0, c.noData()
		}
		seq := c.ready[c.readyHead]
		c.readyHead = (c.readyHead + 1) & int(c.mask)
		c.readyLen--
		s = &c.rx[seq&c.mask]
		s.state = slotRead
		for c.rcvNext != c.rcvAck && c.rx[c.rcvNext&c.mask].state == slotRead {
			c.rx[c.rcvNext&c.mask].state = slotEmpty
			c.rcvNext++
		}
	}
	c.windowUpdate(now)
	if s.fin {
		c.finished = true
		return 0, ErrFinished
	}
	n := copy(p, s.buf)
	c.stats.RecvSDUs++
	c.stats.RecvBytes += uint64(len(s.buf))
	if n < len(s.buf) {
		return n, ErrTruncated
	}
	return n, nil
}

func (c *Conn) noData() error {
	if c.err != nil {
		return c.err
	}
	return ErrNoData
}

// windowUpdate schedules a window update when reading opened the window by
// half of it since the last advertisement, or the advertised space left is
// down to a quarter.
func (c *Conn) windowUpdate(now time.Time) {
	grown := int32(c.rcvNext + c.w - c.advRwe)
	left := int32(c.advRwe - c.rcvAck)
	if grown > 0 && (grown >= int32(c.w/2) || left <= int32(c.w/4)) {
		c.ackAt = now
	}
}

// Poll writes into pkt the next packet due at now and returns its length,
// or 0 when nothing is due (or the Conn is dead: see Err). pkt must hold
// HeaderSize+MaxSDU bytes. Call it until it returns 0.
//
// In priority order: retransmissions of DATA/FIN found lost (by SACK, by
// three duplicate ACKs, or all of them when the RTO expires), a tail-loss
// probe, the FIN after Close, a rendezvous when the peer's window stays
// closed, a pending ACK or window update (with SACK blocks), a keepalive.
// Poll also declares the peer dead after Config.Timeout of silence or of
// unacknowledged data.
func (c *Conn) Poll(now time.Time, pkt []byte) int {
	if c.err != nil || len(pkt) < HeaderSize {
		return 0
	}
	if t := c.cfg.Timeout; t > 0 && now.Sub(c.lastRecv) >= t {
		c.die()
		return 0
	}
	if c.cfg.Mode.reliable() && c.sndUna != c.sndNext {
		if t := c.cfg.Timeout; t > 0 && now.Sub(c.tx[c.sndUna&c.mask].firstSent) >= t {
			c.die()
			return 0
		}
		if n := c.retransmit(now, pkt); n > 0 {
			return n
		}
	}
	if c.closing && !c.finSent && c.canSend() {
		c.finSent = true
		return c.frame(now, FlagFin, nil, pkt)
	}
	if c.blocked {
		if c.canSend() {
			c.blocked = false
		} else if !now.Before(c.rdvsAt) {
			c.rdvsAt = now.Add(c.rto)
			c.pokedAt = now
			return c.control(now, FlagRdvs, pkt)
		}
	}
	if !c.ackAt.IsZero() && !now.Before(c.ackAt) {
		return c.control(now, 0, pkt)
	}
	if c.cfg.Timeout > 0 && now.Sub(c.lastSent) >= c.cfg.Keepalive {
		c.pokedAt = now
		return c.control(now, FlagKeepalive, pkt)
	}
	c.skipGap(now)
	return 0
}

// retransmit runs the sender's timers (RTO, reordering, tail-loss probe)
// and writes into pkt the lowest packet marked lost, or the probe; it
// returns 0 when nothing is to be sent again now.
func (c *Conn) retransmit(now time.Time, pkt []byte) int {
	if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
		// RFC 6298 §5.5-5.6 with RFC 8985 §7.3: back off (bounded), and
		// every packet not SACKed is lost.
		c.stats.Timeouts++
		c.pokedAt = now
		if c.backoff < maxBackoff {
			c.backoff++
		}
		c.rto = min(c.rtoBase<<c.backoff, c.cfg.MaxRTO)
		c.stats.RTO = c.rto
		c.rtoAt = now.Add(c.rto)
		c.ptoAt, c.probing = time.Time{}, false
		// Only the oldest packet not SACKed goes again: FRCT has no
		// congestion window to hold back a whole window's resend, and a
		// timeout is more often a queue in front of the path (the
		// layer's pacing) than the loss of everything in flight. Its ACK
		// (with SACK) tells what else is missing; the next timeout, backed
		// off, takes the next one.
		for seq := c.sndUna; seq != c.sndNext; seq++ {
			if s := &c.tx[seq&c.mask]; !s.sacked {
				c.markLost(s, true)
				break
			}
		}
	}
	if !c.rackAt.IsZero() && !now.Before(c.rackAt) {
		c.detectLoss(now)
	}
	if c.nLost > 0 {
		for seq := c.sndUna; seq != c.sndNext; seq++ {
			s := &c.tx[seq&c.mask]
			if !s.lost {
				continue
			}
			if len(pkt) < len(s.pkt) {
				return 0
			}
			s.lost = false
			c.nLost--
			if !s.byRTO {
				c.stats.FastRetransmits++
				if c.reoClean++; c.reoClean >= reoDecay && c.reoMult > 1 {
					c.reoMult /= 2
					c.reoClean = 0
				}
			}
			return c.resend(now, s, pkt)
		}
	}
	if !c.ptoAt.IsZero() && !now.Before(c.ptoAt) {
		// RFC 8985 §7.3: send the highest packet not SACKed again, so that
		// its ACK (with SACK) reveals what else of the tail is missing.
		c.ptoAt, c.probing = time.Time{}, true
		for seq := c.sndNext - 1; seq != c.sndUna-1; seq-- {
			if s := &c.tx[seq&c.mask]; !s.sacked && len(pkt) >= len(s.pkt) {
				c.stats.Probes++
				c.pokedAt = now
				c.rtoAt = now.Add(c.rto)
				return c.resend(now, s, pkt)
			}
		}
	}
	return 0
}

// resend copies slot s into pkt with the current ACK and window.
func (c *Conn) resend(now time.Time, s *txSlot, pkt []byte) int {
	s.retries++
	s.lastSent = now
	PCI(s.pkt).setAck(c.rcvNext+c.w, c.rcvAck)
	c.stats.Retransmits++
	n := copy(pkt, s.pkt)
	c.acked(now)
	if c.sackNews || c.dsack {
		c.ackAt = now
	}
	return n
}

func (c *Conn) die() {
	c.err = ErrPeerGone
}

// Next returns when Poll next has something to do: now if something is due,
// the zero time if nothing is scheduled (or the Conn is dead).
func (c *Conn) Next(now time.Time) time.Time {
	if c.err != nil {
		return time.Time{}
	}
	var next time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if c.cfg.Mode.reliable() && c.sndUna != c.sndNext {
		if c.nLost > 0 {
			at(now)
		}
		at(c.rtoAt)
		at(c.ptoAt)
		at(c.rackAt)
		if c.cfg.Timeout > 0 {
			at(c.tx[c.sndUna&c.mask].firstSent.Add(c.cfg.Timeout))
		}
	}
	if c.closing && !c.finSent && c.canSend() {
		at(now)
	}
	if c.blocked {
		at(c.rdvsAt)
	}
	at(c.ackAt)
	if c.cfg.Timeout > 0 {
		at(c.lastSent.Add(c.cfg.Keepalive))
		at(c.lastRecv.Add(c.cfg.Timeout))
	}
	if d, ok := c.gapDeadline(); ok {
		at(d)
	}
	if !next.IsZero() && next.Before(now) {
		next = now
	}
	return next
}
