package probe

import (
	"math"
	"time"
)

// PingStats accumulates what a ping client saw. Sequence numbers are
// assigned by Sent, from 0 up; the zero value is ready to use. Not safe
// for concurrent use.
type PingStats struct {
	transmitted uint64
	received    uint64
	duplicates  uint64
	outOfOrder  uint64
	late        uint64
	invalid     uint64

	seen    []uint64 // bit per sequence number: a reply arrived
	highest uint64   // highest sequence number answered + 1 (0: none yet)

	n                    uint64 // RTT samples
	min, max, sum, sumSq float64
}

// Outcome classifies one reply.
type Outcome uint8

// The outcomes of Reply.
const (
	OK         Outcome = iota // a first, in-order reply in time
	OutOfOrder                // a first reply, but a later sequence number was answered before it
	Duplicate                 // a second reply to the same sequence number
	Late                      // a first reply, after the per-reply timeout: counted as lost
	Invalid                   // a reply to a sequence number never sent
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return ""
	case OutOfOrder:
		return "out of order"
	case Duplicate:
		return "DUP!"
	case Late:
		return "late"
	}
	return "invalid"
}

// Sent records one more transmitted SDU and returns its sequence number.
func (s *PingStats) Sent() uint64 {
	seq := s.transmitted
	s.transmitted++
	if w := int(seq / 64); w >= len(s.seen) {
		s.seen = append(s.seen, 0)
	}
	return seq
}

// Reply records a reply for seq that took rtt; timeout > 0 makes a reply
// slower than it Late. Duplicates and out-of-order replies are counted;
// a first reply in time (in order or not) is Received and its RTT enters
// the statistics.
func (s *PingStats) Reply(seq uint64, rtt, timeout time.Duration) Outcome {
	if seq >= s.transmitted || rtt < 0 {
		s.invalid++
		return Invalid
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[w]&bit != 0 {
		s.duplicates++
		return Duplicate
	}
	s.seen[w] |= bit
	if timeout > 0 && rtt > timeout {
		s.late++
		return Late
	}
	s.received++
	ms := float64(rtt) / float64(time.Millisecond)
	if s.n == 0 || ms < s.min {
		s.min = ms
	}
	if ms > s.max {
		s.max = ms
	}
	s.n++
	s.sum += ms
	s.sumSq += ms * ms
	out := OK
	if seq+1 < s.highest {
		s.outOfOrder++
		out = OutOfOrder
	} else {
		s.highest = seq + 1
	}
	return out
}

// CountInvalid records a reply that was not a well-formed ping SDU.
func (s *PingStats) CountInvalid() { s.invalid++ }

// Pending reports whether some transmitted SDU has no reply yet (in time
// or late).
func (s *PingStats) Pending() bool { return s.received+s.late < s.transmitted }

// Received returns the number of replies counted as received so far.
func (s *PingStats) Received() uint64 { return s.received }

// Transmitted returns the number of SDUs sent so far.
func (s *PingStats) Transmitted() uint64 { return s.transmitted }

// Summary is the end-of-run statistics of a ping, shaped for both the
// terminal and --json. Times are in milliseconds.
type Summary struct {
	Name        string  `json:"name"`
	Transmitted uint64  `json:"transmitted"`
	Received    uint64  `json:"received"`
	Duplicates  uint64  `json:"duplicates"`
	OutOfOrder  uint64  `json:"out_of_order"`
	Late        uint64  `json:"late"`
	Invalid     uint64  `json:"invalid"`
	LossPercent float64 `json:"loss_percent"`
	TimeMS      float64 `json:"time_ms"`
	RTTMinMS    float64 `json:"rtt_min_ms"`
	RTTAvgMS    float64 `json:"rtt_avg_ms"`
	RTTMaxMS    float64 `json:"rtt_max_ms"`
	RTTMdevMS   float64 `json:"rtt_mdev_ms"`
}

// Summary returns the statistics so far; elapsed is the run's wall time.
// Loss is the share of transmitted SDUs without a timely first reply.
// mdev is the standard deviation of the RTTs, as ping(8) computes it.
func (s *PingStats) Summary(name string, elapsed time.Duration) Summary {
	sum := Summary{
		Name:        name,
		Transmitted: s.transmitted,
		Received:    s.received,
		Duplicates:  s.duplicates,
		OutOfOrder:  s.outOfOrder,
		Late:        s.late,
		Invalid:     s.invalid,
		TimeMS:      float64(elapsed) / float64(time.Millisecond),
	}
	if s.transmitted > 0 {
		sum.LossPercent = 100 * float64(s.transmitted-s.received) / float64(s.transmitted)
	}
	if s.n > 0 {
		avg := s.sum / float64(s.n)
		sum.RTTMinMS, sum.RTTAvgMS, sum.RTTMaxMS = s.min, avg, s.max
		sum.RTTMdevMS = math.Sqrt(math.Max(0, s.sumSq/float64(s.n)-avg*avg))
	}
	return sum
}

// PerfCounter is a perf server's count of one flow's data SDUs. The zero
// value is ready to use; not safe for concurrent use.
type PerfCounter struct {
	r           Report
	first, last time.Duration // arrival times of the first and last data SDU
	steady      time.Duration // arrival time of the first steady one (Report.SteadySDUs)
	next        uint64        // highest sequence number seen + 1
}

// SteadyAfter is how long after its first data SDU a perf server starts
// the steady counters (Report.SteadySDUs): issue 13 asks a congestion
// avoidance to reach its rate within a second of starting.
const SteadyAfter = time.Second

// Data counts a data SDU of size bytes with sequence number seq that
// arrived at now (any monotonic clock).
func (c *PerfCounter) Data(seq uint64, size int, now time.Duration) {
	if c.r.SDUs == 0 {
		c.first = now
	}
	c.last = now
	c.r.SDUs++
	c.r.Bytes += uint64(size)
	if now-c.first >= SteadyAfter {
		if c.r.SteadySDUs == 0 {
			c.steady = now
		}
		c.r.SteadySDUs++
		c.r.SteadyBytes += uint64(size)
	}
	if seq < c.next {
		c.r.Reordered++
	} else {
		c.next = seq + 1
	}
}

// Report returns the counts so far.
func (c *PerfCounter) Report() Report {
	r := c.r
	r.SpanNS = int64(c.last - c.first)
	if r.SteadySDUs > 0 {
		r.SteadySpanNS = int64(c.last - c.steady)
	}
	return r
}

// Rate converts a count over a span into per-second figures: SDUs/s and
// bit/s. A span of zero yields zero rates.
func Rate(sdus, bytes uint64, span time.Duration) (pps, bps float64) {
	if span <= 0 {
		return 0, 0
	}
	sec := span.Seconds()
	return float64(sdus) / sec, 8 * float64(bytes) / sec
}

// LossPercent is the share of sent SDUs that were not received, in
// percent; more received than sent (duplicates) counts as no loss.
func LossPercent(sent, received uint64) float64 {
	if sent == 0 || received >= sent {
		return 0
	}
	return 100 * float64(sent-received) / float64(sent)
}
