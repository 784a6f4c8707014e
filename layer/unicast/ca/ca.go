// Package ca is congestion avoidance for a unicast layer (Ouroboros'
// ca policies): forwarders mark the PCI's ECN field with their standing
// queue level, receivers feed the level back, senders pace to a rate that
// falls in proportion to the congestion and, without it, grows back
// quickly to where it fell from, then additively. It is
// a pure state machine with time passed in; it sends and queues nothing.
package ca

import (
	"cmp"
	"fmt"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Kind selects a congestion-avoidance policy.
type Kind uint8

// The policies.
const (
	// Nop marks nothing and never holds a sender back.
	Nop Kind = iota
	// MultiBitECN is Ouroboros' mb-ecn: multi-bit marks, proportional
	// decrease, slow start, then additive increase (with a quick return
	// to the rate before the last decrease).
	MultiBitECN
)

func (k Kind) String() string {
	switch k {
	case Nop:
		return "nop"
	case MultiBitECN:
		return "mb-ecn"
	}
	return fmt.Sprintf("ca.Kind(%d)", uint8(k))
}

// Defaults for MultiBitECN.
const (
	DefaultInterval    = 10 * time.Millisecond
	DefaultInitialRate = 128 << 10 // bytes/s
	DefaultMinRate     = 8 << 10   // bytes/s
	DefaultMaxRate     = 1 << 40   // bytes/s: no practical cap
	DefaultIncrease    = 32 << 10  // bytes/s added per Interval without congestion
	DefaultSlowStart   = 8         // a flow that never met congestion grows by 1/DefaultSlowStart per Interval
	DefaultMarkFrom    = 16        // marking starts above 1/DefaultMarkFrom of a queue
	DefaultHold        = 3         // Intervals between two decreases: about one feedback round trip
)

// Feedback is what a receiver returns to the sender of a flow: the
// congestion level its packets met. The flow allocator carries it in its
// flow-update message (CBOR array [ece]).
type Feedback struct {
	_ struct{} `cbor:",toarray"`
	// ECE is the average ECN level of the packets received since the last
	// feedback, 0 (none) to 255.
	ECE uint8
}

// Config configures a CA. Zero fields take the defaults.
type Config struct {
	Kind Kind

	Interval    time.Duration // feedback period and rate-update step
	InitialRate uint64        // a new flow's sending rate, bytes/s
	MinRate     uint64        // the rate never falls below this, bytes/s
	MaxRate     uint64        // the rate never rises above this, bytes/s
	Increase    uint64        // additive increase, bytes/s per Interval
	// SlowStart: until the first congestion feedback, a flow's rate grows
	// by rate/SlowStart per Interval in which it wanted more (at least by
	// Increase): a new flow finds the pipe's rate in a few dozen
	// Intervals instead of rising by Increase from InitialRate. 0: the
	// default; negative: no slow start (additive from the start).
	SlowStart int
	// MarkFrom: forwarders mark once a queue is fuller than
	// 1/MarkFrom of its capacity.
	MarkFrom int
	// Hold is how many Intervals a sender waits after a decrease before
	// the next: marks already in flight when it slowed down must not
	// count twice.
	Hold int
	// Local: a node's own queues tell the flows it sends the level at
	// once (Flow.OnLocal) instead of marking their packets, so that the
	// sender hears of a backlog at its own node without a round trip.
	// A lone flow behind a rate-limited first hop then fills the link
	// (91% of a 50 Mbit/s tbf against 74-80%); with each flow's marks
	// weighed by its share (Shares), a flow that starts beside others
	// reaches its share within 1-2 s, as without Local
	// (docs/benchmarks.md, "Shares of a queue"). The layer policy
	// mb-ecn-local, the default.
	Local bool
}

// Flow is one flow's congestion state: the sender side (OnSend,
// OnFeedback) and the receiver side (OnReceive) of the same flow end.
// A Flow is not safe for concurrent use: the flow's owner serialises it.
type Flow interface {
	// OnSend asks to send n bytes at now. It returns 0 if they may go
	// (and charges them), or how long to wait before asking again (and
	// charges nothing).
	OnSend(n int, now time.Time) time.Duration
	// OnReceive records a packet of n bytes received at now with the
	// given ECN level. When a feedback is due it returns it with ok set;
	// the caller sends it to the peer.
	OnReceive(ecn uint8, n int, now time.Time) (fb Feedback, ok bool)
	// OnFeedback applies feedback received from the peer at now.
	OnFeedback(fb Feedback, now time.Time)
	// OnLocal records pkts packets of this flow that left a queue of the
	// sending node itself at now with the given ECN level: feedback that
	// needs no round trip. It averages them as OnReceive does and applies
	// the average (OnFeedback) when one is due. The node does not also
	// write these marks into the packets, so the receiver's feedback
	// carries only the rest of the path's.
	OnLocal(ecn uint8, pkts int, now time.Time)
	// Rate returns the current sending rate in bytes/s (0: unlimited).
	Rate() uint64
}

// CA is a layer's congestion-avoidance policy: it marks for the layer's
// forwarders and makes per-flow state. It is safe for concurrent use
// (it holds only its configuration); it has nothing running.
type CA struct {
	cfg Config
	pol policy
}

// policy is the per-Kind part.
type policy interface {
	mark(queueLen, queueCap int) uint8
	newFlow(now time.Time) Flow
}

// New returns a CA.
func New(cfg Config) (*CA, error) {
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.InitialRate = cmp.Or(cfg.InitialRate, DefaultInitialRate)
	cfg.MinRate = cmp.Or(cfg.MinRate, DefaultMinRate)
	cfg.MaxRate = cmp.Or(cfg.MaxRate, DefaultMaxRate)
	cfg.Increase = cmp.Or(cfg.Increase, DefaultIncrease)
	cfg.MarkFrom = cmp.Or(cfg.MarkFrom, DefaultMarkFrom)
	cfg.Hold = cmp.Or(cfg.Hold, DefaultHold)
	cfg.SlowStart = cmp.Or(cfg.SlowStart, DefaultSlowStart)
	c := &CA{cfg: cfg}
	switch cfg.Kind {
	case Nop:
		c.pol = nop{}
	case MultiBitECN:
		if cfg.Interval < 0 || cfg.MinRate > cfg.MaxRate || cfg.MarkFrom < 1 || cfg.Hold < 1 {
			return nil, fmt.Errorf("ca: bad mb-ecn configuration %+v: %w", cfg, flow.ErrInvalid)
		}
		cfg.InitialRate = min(max(cfg.InitialRate, cfg.MinRate), cfg.MaxRate)
		c.cfg = cfg
		c.pol = mbecn{cfg}
	default:
		return nil, fmt.Errorf("ca: unknown policy %v: %w", cfg.Kind, flow.ErrInvalid)
	}
	return c, nil
}

// Kind returns the policy.
func (c *CA) Kind() Kind { return c.cfg.Kind }

// Local reports whether a node's own queues tell its flows their level
// at once (Config.Local; never for Nop, which marks nothing).
func (c *CA) Local() bool { return c.cfg.Local && c.cfg.Kind != Nop }

// MarkECN returns the congestion level a forwarder writes into a packet
// (dt.PCI.RaiseECN) it queues behind queueLen others on a queue of
// capacity queueCap. It allocates nothing.
func (c *CA) MarkECN(queueLen, queueCap int) uint8 { return c.pol.mark(queueLen, queueCap) }

// Interval returns the feedback period: forwarders judge a queue standing
// over a window this long (dt.Scheduler.Standing).
func (c *CA) Interval() time.Duration { return c.cfg.Interval }

// NewFlow returns the congestion state of a new flow allocated at now.
func (c *CA) NewFlow(now time.Time) Flow { return c.pol.newFlow(now) }

// Standing tracks the standing depth of a queue from samples its user
// takes as packets join or leave it (the depth of a ring a flow is
// delivered into, of the ring an N-1 flow is read from): the least depth
// seen over the last window to two. A batch that fills the queue for the
// moment it takes to drain leaves no standing depth; a queue that stays
// above a depth for a whole window does. A layer marks congestion by it
// (MarkECN) as dt.Scheduler.Standing does for a forwarder's queue. The
// zero value is ready (no depth); it is not safe for concurrent use and
// allocates nothing.
type Standing struct {
	start     int64 // the current window's start, ns
	low, prev int   // the least depth in the current window and in the one before
}

// See records depth n at now (ns, any monotonic origin) and returns the
// standing depth: the least of n and of what was seen since the start of
// the window before the current one.
func (s *Standing) See(n int, now int64, window time.Duration) int {
	if d := now - s.start; d >= int64(window) || d < 0 {
		s.prev, s.low, s.start = s.low, n, now
	}
	s.low = min(s.low, n)
	return min(s.prev, s.low)
}

// PeakWindows is how many windows a Peak remembers.
const PeakWindows = 100

// Peak tracks the most of something (SDUs a flow brought) seen in one
// window over the last PeakWindows windows to PeakWindows+1: a rate's
// peak, which a stall of a few windows does not lower. A layer judges
// the queue in front of a program by it (how many SDUs some
// milliseconds of the flow's peak rate are). The zero value is ready
// (no peak); it is not safe for concurrent use and allocates nothing.
type Peak struct {
	start int64 // the current window's start, ns
	cur   int   // the current window's count
	past  [PeakWindows]int32
	next  int // where the next window closed goes in past
	peak  int // the most of past
}

// Add counts n at now (ns, any monotonic origin) and returns the peak:
// the most counted in one window, the current one included. Windows
// that passed with nothing counted count as zero.
func (p *Peak) Add(n int, now int64, window time.Duration) int {
	if d := now - p.start; d >= int64(window) || d < 0 {
		closed := 1
		if d > 0 && p.start != 0 {
			closed = int(min(d/int64(window), PeakWindows))
		}
		for i := range closed {
			v := int32(0)
			if i == 0 {
				v = int32(min(p.cur, 1<<31-1))
			}
			p.past[p.next] = v
			p.next = (p.next + 1) % PeakWindows
		}
		p.peak = 0
		for _, v := range p.past {
			p.peak = max(p.peak, int(v))
		}
		p.start, p.cur = now, 0
	}
	p.cur += n
	return max(p.peak, p.cur)
}

type nop struct{}

func (nop) mark(int, int) uint8    { return 0 }
func (nop) newFlow(time.Time) Flow { return nopFlow{} }

type nopFlow struct{}

func (nopFlow) OnSend(int, time.Time) time.Duration              { return 0 }
func (nopFlow) OnReceive(uint8, int, time.Time) (Feedback, bool) { return Feedback{}, false }
func (nopFlow) OnFeedback(Feedback, time.Time)                   {}
func (nopFlow) OnLocal(uint8, int, time.Time)                    {}
func (nopFlow) Rate() uint64                                     { return 0 }

type mbecn struct{ cfg Config }

// mark is 0 up to 1/MarkFrom of the queue, then grows linearly to 255 at
// a full queue: the level says how congested, not only whether.
func (m mbecn) mark(n, capacity int) uint8 {
	if capacity <= 0 {
		return 0
	}
	thr := capacity / m.cfg.MarkFrom
	if n <= thr {
		return 0
	}
	if n >= capacity {
		return 255
	}
	return uint8(max(1, 255*(n-thr)/(capacity-thr)))
}

func (m mbecn) newFlow(now time.Time) Flow {
	f := &mbFlow{cfg: m.cfg, rate: m.cfg.InitialRate, last: now, step: now, congested: now.Add(-m.cfg.Interval),
		probing: m.cfg.SlowStart > 0}
	f.recv.lastFb, f.local.lastFb = now, now
	f.tokens = f.burst()
	return f
}

// exitECE is the least decrease at the end of slow start, as an ECE
// level (exitECE/512 of the rate): what grew during the feedback's round
// trip must go at once.
const exitECE = 128

// exitRise: in slow start, a low level that rose by more than this since
// the last feedback is this flow's own queue growing: leave slow start at
// once.
const exitRise = 4

// drainHold: a level below the one of the last decrease (a draining
// queue) cuts again only this many Intervals after it.
const drainHold = 10

// approach: after a decrease, the rate closes 1/approach of its gap to
// the rate it came from per Interval, and past it grows by 1/approach of
// how far past it is.
const approach = 16

// scaleInc: the additive increase is at least 1/scaleInc of the rate
// per Interval (about 1 s to double), not Increase alone: at loopback
// rates (50-100 MB/s) Increase is a few hundredths of a percent per
// Interval, and a flow cut a little by every stall of its receiving
// program (a process waiting for a CPU: a standing queue for a window,
// marked) climbed back slower than the next stall cut it, settling at
// 0.73-0.78 of what the receiver takes (TestStallingReader). At a 50 Mbit/s
// bottleneck's rates the two are alike (TestBehindAFullBuffer).
const scaleInc = 128

// mbFlow is mb-ecn's per-flow state: a token bucket at rate on the send
// side, an ECN average on the receive side.
type mbFlow struct {
	cfg Config

	// sender
	rate      uint64    // bytes/s
	tokens    float64   // bytes that may go now
	last      time.Time // last token refill
	step      time.Time // start of the current increase step
	limited   bool      // OnSend made the sender wait during this step
	waitEnd   time.Time // when the last wait OnSend asked for ends
	probing   bool      // slow start: no congestion heard yet
	congested time.Time // last feedback reporting congestion
	lastDec   time.Time // last decrease
	prevECE   uint8     // the level the last feedback reported
	wmax      uint64    // the rate the last decrease came from
	decECE    uint8     // the level that made the last decrease
	marked    time.Time // slow start: the first of the marks heard since
	maxPkt    int       // the largest packet sent so far (bytes): the bucket holds two

	// receiver, and the sending node's own marks (OnLocal)
	recv, local average
}

// average is the ECN level of packets seen since the last feedback, and
// when that was: a receiver's (OnReceive), or the sending node's own
// queues' (OnLocal).
type average struct {
	sum, n  uint64
	lastFb  time.Time
	lastECE uint8
}

// add records pkts packets at level ecn and returns the average when a
// feedback is due: every Interval while it is non-zero, once when it
// drops to zero, and a quarter Interval after the last one for a packet
// at the highest level (a full queue: the next packet there is lost; the
// sender's Hold keeps it from counting twice).
func (a *average) add(ecn uint8, pkts int, now time.Time, interval time.Duration) (uint8, bool) {
	a.sum += uint64(ecn) * uint64(pkts)
	a.n += uint64(pkts)
	if since := now.Sub(a.lastFb); since < interval && (ecn < 255 || since < interval/4) {
		return 0, false
	}
	ece := uint8((a.sum + a.n - 1) / a.n) // round up: any mark counts
	a.sum, a.n, a.lastFb = 0, 0, now
	if ece == 0 && a.lastECE == 0 {
		return 0, false
	}
	a.lastECE = ece
	return ece, true
}

func (f *mbFlow) Rate() uint64 { return f.rate }

// burstDiv: the bucket holds 1/burstDiv of an Interval at rate. A sender
// that had to wait (for a CPU, for the layer's buffers) and then found a
// whole Interval's tokens sent them back to back, some 1,000 SDUs at
// loopback rates, into a receiving node whose queues hold 1,024: a
// burst marked or dropped there as if the path were congested. With an
// eighth, beside the bucket of an Interval on loopback (four rounds,
// docs/benchmarks.md, "Congestion avoidance"): 0.05-0.89% lost in 8
// paths against 0.31-0.70% and, in two, 3.7% and 13.8%; 0.80-2.31 of
// its rate (median 1.04).
const burstDiv = 8

// burst is the bucket depth: 1/burstDiv of an Interval at rate, at least
// two maximum-size SDUs (of flow.MaxSDU, or the largest the flow sent:
// a layer that carries larger SDUs; a bucket shallower than a packet
// would never let it go).
func (f *mbFlow) burst() float64 {
	return max(float64(f.rate)*f.cfg.Interval.Seconds()/burstDiv, 2*float64(max(flow.MaxSDU, f.maxPkt)))
}

// maxCatchUp is the most Intervals of increase advance applies at once:
// a sender that waited a second (a 64 KB packet at a slow start's first
// rates) grows as if it had asked every Interval.
const maxCatchUp = 100

// advance refills tokens and applies additive increase for every whole
// Interval in which the sender wanted more and heard no congestion: each
// Interval its last wait spanned counts, not only the one it asked in.
// (Before, a wait of many Intervals counted once: a flow of 64 KB SDUs,
// waiting half a second for its next at the initial rate, grew by an
// eighth every half second, and TCP through an IP bridge crawled at
// 11 Mbit/s for its first second.)
func (f *mbFlow) advance(now time.Time) {
	if now.After(f.last) {
		f.tokens = min(f.tokens+float64(f.rate)*now.Sub(f.last).Seconds(), f.burst())
		f.last = now
	}
	if steps := now.Sub(f.step) / f.cfg.Interval; steps > 0 {
		n := 0 // the steps the sender waited through
		if f.limited {
			n = int(min(steps, max(1, (f.waitEnd.Sub(f.step)+f.cfg.Interval-1)/f.cfg.Interval), maxCatchUp))
		}
		f.step = f.step.Add(steps * f.cfg.Interval)
		for range n {
			f.increase(now)
		}
		f.limited = false
	}
}

// increase applies one Interval's increase, unless congestion was heard
// within the last two Intervals.
func (f *mbFlow) increase(now time.Time) {
	if now.Sub(f.congested) < 2*f.cfg.Interval {
		return
	}
	inc := max(f.cfg.Increase, f.rate/scaleInc)
	switch {
	case f.probing:
		inc = max(inc, f.rate/uint64(f.cfg.SlowStart))
	case f.wmax == 0:
	case f.rate < f.wmax:
		// Back towards the rate the last decrease came from, closing
		// 1/approach of the gap per Interval.
		inc = max(inc, (f.wmax-f.rate)/approach)
	default:
		// Past it: probe, slowly at first, faster the longer no
		// congestion comes (the path has room again: a flow left).
		inc = max(inc, (f.rate-f.wmax)/(4*approach))
	}
	f.rate = min(f.rate+inc, f.cfg.MaxRate)
}

// OnSend lets n bytes go when the bucket holds them. A packet larger
// than any before deepens the bucket (it holds two of the largest), and
// the bucket stays as full as it was: a new flow's first packets go at
// once whatever their size. A sender told to wait is told at most an
// Interval, and comes back: its rate grows every Interval it wants
// more, so a large packet at a slow start's first rates waits while the
// rate climbs, not the whole time the first rate would take to pay for
// it.
func (f *mbFlow) OnSend(n int, now time.Time) time.Duration {
	if n > f.maxPkt {
		old := f.burst()
		f.maxPkt = n
		f.tokens *= f.burst() / old
	}
	f.advance(now)
	if f.tokens >= float64(n) {
		f.tokens -= float64(n)
		return 0
	}
	f.limited = true
	wait := max(time.Duration((float64(n)-f.tokens)/float64(f.rate)*float64(time.Second)), time.Microsecond)
	wait = min(wait, f.cfg.Interval)
	f.waitEnd = now.Add(wait)
	return wait
}

// OnFeedback decreases the rate in proportion to the reported level (255
// halves it), at most once per Hold Intervals and not while the level
// falls, so marks made before the last decrease took effect do not count
// twice. In slow start, a low level that does not rise (others' queue, met
// by a new flow) stops the growth and ends slow start with a proportional
// cut only if it lasts Hold Intervals; a higher or rising one (its own
// overshoot) ends it at once with a cut of at least a quarter.
func (f *mbFlow) OnFeedback(fb Feedback, now time.Time) {
	f.advance(now)
	if fb.ECE == 0 {
		f.prevECE = 0
		return
	}
	if f.probing && fb.ECE < exitECE && fb.ECE <= f.prevECE+exitRise {
		// A low level: the queue is only starting to grow, or others
		// hold it at a level of their own and this flow, new, has
		// yet to take its share. Stop growing (congested) and leave
		// slow start only if it stays for Hold Intervals, by the level.
		if now.Sub(f.congested) > 2*f.cfg.Interval {
			f.marked = now // the first of a run of marks
		}
		f.congested = now
		if now.Sub(f.marked) < time.Duration(f.cfg.Hold)*f.cfg.Interval {
			f.prevECE = fb.ECE
			return
		}
		f.probing = false
		f.lastDec = now
		f.prevECE = fb.ECE
		f.decrease(fb.ECE)
		return
	}
	f.congested = now
	if f.probing {
		// The pipe is found, and overshot by what grew during the
		// feedback's round trip: cut by at least a quarter.
		f.probing = false
		f.lastDec = now
		f.prevECE = fb.ECE
		f.decrease(max(fb.ECE, exitECE))
		return
	}
	f.prevECE = fb.ECE
	since := now.Sub(f.lastDec)
	if since < time.Duration(f.cfg.Hold)*f.cfg.Interval {
		return
	}
	if fb.ECE < f.decECE && since < drainHold*f.cfg.Interval {
		// Lower than at the last decrease: the queue drains. What is
		// still marked was queued before the decrease took effect (a
		// full queue takes a while to drain, and its marks as long to
		// come back); cut again only if it stops draining.
		return
	}
	f.lastDec = now
	f.decrease(fb.ECE)
}

// decrease cuts the rate by ece/512 and remembers where from: the rate
// grows back towards it quickly (advance). A flow cut again below the
// last such rate remembers less (halfway down): it was cut because
// others need room, and it should leave it to them.
func (f *mbFlow) decrease(ece uint8) {
	f.decECE = ece
	from := f.rate
	f.rate = max(from-from*uint64(ece)/512, f.cfg.MinRate)
	if from < f.wmax {
		f.wmax = (from + f.rate) / 2
	} else {
		f.wmax = from
	}
	f.tokens = min(f.tokens, f.burst())
}

// OnReceive averages the ECN levels of received packets and reports the
// average every Interval while it is non-zero, and once when it drops to
// zero. A packet at the highest level (a full queue: the next packet
// there is lost) is reported sooner, a quarter Interval after the last
// feedback: the sender's Hold keeps it from counting twice.
func (f *mbFlow) OnReceive(ecn uint8, _ int, now time.Time) (Feedback, bool) {
	ece, ok := f.recv.add(ecn, 1, now, f.cfg.Interval)
	return Feedback{ECE: ece}, ok
}

// OnLocal averages the sending node's own marks as OnReceive does and
// applies them at once: a queue of the sender's node (its queue to the
// layer below: the socket behind it fills when the link is slower)
// reaches the sender without a round trip.
func (f *mbFlow) OnLocal(ecn uint8, pkts int, now time.Time) {
	if ece, ok := f.local.add(ecn, pkts, now, f.cfg.Interval); ok {
		f.OnFeedback(Feedback{ECE: ece}, now)
	}
}

// shareBuckets is how many flows Shares tells apart (a hash of each
// packet's flow picks its bucket; flows that share one count as one).
const shareBuckets = 64

// Shares tracks how much of what leaves a queue each flow sent over the
// last window to two, and weighs the queue's mark for each flow by it
// (Weigh): a flow that sends less than an even share of what the queue
// carries is marked less, down to not at all at three quarters of one;
// a flow that sends more is marked more, up to three times (at half as
// much again). The effective number of flows is counted by their bytes
// (the inverse of the sum of the squared shares), so a trickle beside a
// bulk flow (hellos, routing updates) does not make the bulk flow look
// like it takes twice its share. A lone flow is marked as the queue is;
// so are flows that send alike. A flow that starts beside a running one
// is not marked until it has three quarters of an even share, so its
// slow start is not ended by the level the running flow holds the queue
// at (docs/layers.md, ca). The zero value is ready; it is not safe for
// concurrent use (the queue's transmit loop owns it) and allocates
// nothing.
type Shares struct {
	start     int64 // the current window's start, ns
	cur, prev [shareBuckets]uint64
	total     uint64 // the sum of cur and prev over the buckets
	sq        uint64 // the sum of (cur+prev)^2 over the buckets
}

// shareBucket is the bucket of the flow key (any value that tells a
// flow: the destination and endpoint of a packet).
func shareBucket(key uint64) int {
	return int((key * 0x9e3779b97f4a7c15) >> (64 - 6))
}

// See records n bytes of the flow key leaving the queue at now (ns, any
// monotonic origin); window is the layer's Interval.
func (s *Shares) See(key uint64, n int, now int64, window time.Duration) {
	if d := now - s.start; d >= int64(window) || d < 0 {
		s.prev, s.cur, s.start = s.cur, [shareBuckets]uint64{}, now
		s.total, s.sq = 0, 0
		for _, v := range s.prev {
			s.total += v
			s.sq += v * v
		}
	}
	i := shareBucket(key)
	had := s.cur[i] + s.prev[i]
	m := uint64(n)
	s.cur[i] += m
	s.total += m
	s.sq += 2*had*m + m*m
}

// Weigh returns level weighed by the share of the flow key (after See
// recorded its packet): level times 4s-3, s its share against an even
// share (1: even), between 0 and 3 times level, at most 255. (With 2s-1,
// nothing under half an even share, a late flow beside a running one on
// a 50 Mbit/s tbf reached its share in its second second; with 4s-3 in
// its first, docs/benchmarks.md.)
func (s *Shares) Weigh(level uint8, key uint64) uint8 {
	if level == 0 || s.sq == 0 {
		return level
	}
	i := shareBucket(key)
	mine := s.cur[i] + s.prev[i]
	// 4s-3 in 256ths; s = mine*total/sq (sq = total^2 / the effective
	// number of flows).
	w := int64(1024*float64(mine)*float64(s.total)/float64(s.sq)) - 768
	w = min(max(w, 0), 3*256)
	return uint8(min(int64(level)*w/256, 255))
}
