package frct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// link is a one-way transfer from a to b over two simulated channels with
// a fixed delay each way and a drop rule on a's packets, on a fake clock:
// the harness of the loss-recovery tests.
type link struct {
	t        *testing.T
	a, b     *Conn
	ab, ba   *channel
	alog     []sentPkt // everything a sent
	now      time.Time
	queued   int // SDUs written, not yet accepted by a.Send
	next     int // index of the next SDU to send
	got      []int
	pkt, buf []byte
	size     int // SDU size (at least 4, the index)
}

func newLink(t *testing.T, cfg Config, delay time.Duration) *link {
	t.Helper()
	l := &link{t: t, a: mustNew(t, cfg), b: mustNew(t, cfg), now: t0}
	rng := rand.New(rand.NewPCG(1, 2))
	l.ab = &channel{rng: rng, delay: delay, log: &l.alog}
	l.ba = &channel{rng: rng, delay: delay}
	l.pkt = make([]byte, HeaderSize+l.a.cfg.MaxSDU)
	l.buf = make([]byte, l.a.cfg.MaxSDU)
	return l
}

// write queues n SDUs; they go out as the window allows.
func (l *link) write(n int) { l.queued += n }

func (l *link) step() {
	l.ab.deliver(l.now, l.b)
	l.ba.deliver(l.now, l.a)
	for l.queued > 0 {
		sdu := l.buf[:max(4, l.size)]
		binary.BigEndian.PutUint32(sdu, uint32(l.next))
		n, err := l.a.Send(l.now, sdu, l.pkt)
		if errors.Is(err, ErrWindowFull) {
			break
		}
		if err != nil {
			l.t.Fatalf("Send: %v", err)
		}
		l.ab.send(l.now, l.pkt[:n])
		l.queued--
		l.next++
	}
	for {
		n, err := l.b.Read(l.now, l.buf)
		if err != nil {
			break
		}
		l.got = append(l.got, int(binary.BigEndian.Uint32(l.buf[:n])))
	}
	for n := l.a.Poll(l.now, l.pkt); n > 0; n = l.a.Poll(l.now, l.pkt) {
		l.ab.send(l.now, l.pkt[:n])
	}
	for n := l.b.Poll(l.now, l.pkt); n > 0; n = l.b.Poll(l.now, l.pkt) {
		l.ba.send(l.now, l.pkt[:n])
	}
}

// run steps the link from event to event until done reports true (then it
// returns true) or the clock passes until.
func (l *link) run(until time.Time, done func() bool) bool {
	for i := 0; i < 1_000_000; i++ {
		l.step()
		if done() {
			return true
		}
		next := time.Time{}
		for _, n := range []time.Time{l.ab.next(), l.ba.next(), l.a.Next(l.now), l.b.Next(l.now)} {
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
		}
		if next.IsZero() || next.After(until) {
			l.now = until
			l.step()
			return done()
		}
		if next.After(l.now) {
			l.now = next
		}
	}
	l.t.Fatalf("no end of the simulation")
	return false
}

// delivered returns a done function: b read n SDUs, a has nothing unacked.
func (l *link) delivered(n int) func() bool {
	return func() bool { return len(l.got) >= n && l.a.Unacked() == 0 }
}

// warmUp sends n SDUs without loss so that a has an RTT estimate.
func (l *link) warmUp(n int) {
	l.t.Helper()
	l.write(n)
	if !l.run(l.now.Add(10*time.Second), l.delivered(n)) {
		l.t.Fatalf("warm-up: %d of %d SDUs delivered", len(l.got), n)
	}
	if !l.a.hasRTT {
		l.t.Fatalf("warm-up: no RTT sample")
	}
	l.alog = l.alog[:0]
}

// dropOnce drops the first transmission of DATA packets with these seqnos.
func dropOnce(seqs ...uint32) func(PCI) bool {
	left := map[uint32]bool{}
	for _, s := range seqs {
		left[s] = true
	}
	return func(p PCI) bool {
		if p.Flags()&FlagData != 0 && left[p.Seqno()] {
			delete(left, p.Seqno())
			return true
		}
		return false
	}
}

// retransmissions returns the DATA packets a sent more than once, after
// their first transmission, in order.
func (l *link) retransmissions() []sentPkt {
	seen := map[uint32]bool{}
	var out []sentPkt
	for _, p := range l.alog {
		if p.flags&FlagData == 0 {
			continue
		}
		if seen[p.seq] {
			out = append(out, p)
		}
		seen[p.seq] = true
	}
	return out
}

func checkInOrder(t *testing.T, got []int, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("delivered %d SDUs, want %d", len(got), n)
	}
	for i, g := range got {
		if g != i {
			t.Fatalf("delivery #%d is SDU %d, want %d", i, g, i)
		}
	}
}

// TestSACKRepairsHolesInOneRTT: three holes in one flight are all sent
// again within one round trip of the first SACK, without an RTO, and only
// they are sent again.
func TestSACKRepairsHolesInOneRTT(t *testing.T) {
	const rtt = 20 * time.Millisecond
	l := newLink(t, Config{Mode: Reliable, Window: 64, ISN: 1000, AckDelay: ms(1)}, rtt/2)
	l.warmUp(10)
	holes := []uint32{1013, 1016, 1019}
	l.ab.drop = dropOnce(holes...)
	start := l.now
	l.write(20)
	if !l.run(start.Add(time.Second), l.delivered(30)) {
		t.Fatalf("not repaired within 1 s: %d of 30 SDUs delivered", len(l.got))
	}
	checkInOrder(t, l.got, 30)
	r := l.retransmissions()
	if len(r) != len(holes) {
		t.Fatalf("%d retransmissions, want %d (the holes only): %+v", len(r), len(holes), r)
	}
	for i, p := range r {
		if p.seq != holes[i] {
			t.Fatalf("retransmission #%d is seqno %d, want %d", i, p.seq, holes[i])
		}
		// The first SACK reaches a one RTT after the flight left; every
		// hole goes again within that RTT plus the reordering window.
		if d := p.at.Sub(start); d < rtt || d > 2*rtt {
			t.Fatalf("hole %d sent again at +%v, want within [%v, %v]", p.seq, d, rtt, 2*rtt)
		}
	}
	if s := l.a.Stats(); s.Timeouts != 0 || s.FastRetransmits != 3 || s.Sacked == 0 {
		t.Fatalf("stats %+v: want no timeout, 3 fast retransmits, SACKed packets", s)
	}
	if d := l.now.Sub(start); d > 2*rtt+ms(10) {
		t.Fatalf("all delivered and acknowledged at +%v, want within two RTTs", d)
	}
}

// TestFastRetransmitFirstGap: a hole followed by a single packet (one
// duplicate ACK, never three) is sent again after that ACK's SACK plus the
// reordering window, not after an RTO.
func TestFastRetransmitFirstGap(t *testing.T) {
	const rtt = 20 * time.Millisecond
	l := newLink(t, Config{Mode: Reliable, Window: 64, MinRTO: ms(200), AckDelay: ms(1)}, rtt/2)
	l.warmUp(10)
	l.ab.drop = dropOnce(10)
	start := l.now
	l.write(2)
	if !l.run(start.Add(time.Second), l.delivered(12)) {
		t.Fatalf("not repaired within 1 s")
	}
	checkInOrder(t, l.got, 12)
	r := l.retransmissions()
	if len(r) != 1 || r[0].seq != 10 {
		t.Fatalf("retransmissions %+v, want seqno 10 once", r)
	}
	if d, most := r[0].at.Sub(start), rtt+l.a.reoWnd()+ms(1); d > most {
		t.Fatalf("hole sent again at +%v, want by +%v (one SACK and the reordering window)", d, most)
	}
	if s := l.a.Stats(); s.FastRetransmits != 1 || s.Timeouts != 0 || s.Probes != 0 {
		t.Fatalf("stats %+v: want one fast retransmit, no timeout, no probe", s)
	}
}

// TestTailLossProbe: the last three packets of a flight are lost and
// nothing follows them; a probe (the last packet again) after about two
// SRTTs draws a SACK that shows the other two missing: all recovered
// without an RTO.
func TestTailLossProbe(t *testing.T) {
	const rtt = time.Millisecond
	l := newLink(t, Config{Mode: Reliable, Window: 64, MinRTO: ms(50), AckDelay: ms(1)}, rtt/2)
	l.warmUp(10)
	l.ab.drop = dropOnce(17, 18, 19)
	start := l.now
	l.write(10)
	if !l.run(start.Add(time.Second), l.delivered(20)) {
		t.Fatalf("tail not recovered within 1 s")
	}
	checkInOrder(t, l.got, 20)
	s := l.a.Stats()
	if s.Probes != 1 || s.Timeouts != 0 {
		t.Fatalf("stats %+v: want one probe, no timeout", s)
	}
	r := l.retransmissions()
	if len(r) != 3 || r[0].seq != 19 {
		t.Fatalf("retransmissions %+v, want the probe (19) then 17 and 18", r)
	}
	if d := r[0].at.Sub(start); d < 2*s.RTT || d > 3*s.RTT+ms(1) {
		t.Fatalf("probe at +%v, want about 2 SRTT (%v)", d, 2*s.RTT)
	}
	if d := l.now.Sub(start); d >= ms(50) {
		t.Fatalf("recovered at +%v, want before the RTO (50ms)", d)
	}
}

// TestRTOBackoffBounded: into a black hole, RTOs back off exponentially up
// to 2^maxBackoff times the estimate, or MaxRTO if lower, and no further;
// an ACK after that resets the back-off.
func TestRTOBackoffBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxRTO time.Duration
	}{
		{"backoff cap", 0},
		{"MaxRTO cap", ms(60)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLink(t, Config{Mode: Reliable, MinRTO: ms(5), MaxRTO: tc.maxRTO, AckDelay: ms(1)}, 100*time.Microsecond)
			l.warmUp(4)
			base := l.a.rtoBase
			limit := min(base<<maxBackoff, l.a.cfg.MaxRTO)
			l.ab.drop = func(PCI) bool { return true }
			l.write(1)
			var fired []time.Time
			seen := uint64(0)
			l.run(l.now.Add(10*time.Second), func() bool {
				if s := l.a.Stats(); s.Timeouts != seen {
					seen = s.Timeouts
					fired = append(fired, l.now)
				}
				return false
			})
			if len(fired) < 10 {
				t.Fatalf("%d RTOs in 10 s, want many", len(fired))
			}
			prev := time.Duration(0)
			for i := 1; i < len(fired); i++ {
				d := fired[i].Sub(fired[i-1])
				if d > limit || d < prev {
					t.Fatalf("RTO interval #%d = %v after %v; want non-decreasing, at most %v", i, d, prev, limit)
				}
				prev = d
			}
			if last := fired[len(fired)-1].Sub(fired[len(fired)-2]); last != limit {
				t.Fatalf("backed-off RTO interval %v, want the bound %v (estimate %v)", last, limit, base)
			}
			if s := l.a.Stats(); s.RTO != limit {
				t.Fatalf("Stats.RTO = %v, want %v", s.RTO, limit)
			}
			// The path heals: the next retransmission gets through and
			// its ACK ends the back-off.
			l.ab.drop = nil
			if !l.run(l.now.Add(time.Second), l.delivered(5)) {
				t.Fatalf("not delivered after the path healed")
			}
			if l.a.backoff != 0 || l.a.rto != l.a.rtoBase {
				t.Fatalf("after an ACK: backoff %d, RTO %v; want 0, %v", l.a.backoff, l.a.rto, l.a.rtoBase)
			}
		})
	}
}

// TestSACKAcrossWrap: holes and SACK blocks that straddle the 32-bit
// seqno wrap are repaired like any other.
func TestSACKAcrossWrap(t *testing.T) {
	isn := ^uint32(0) - 5
	l := newLink(t, Config{Mode: Reliable, Window: 16, ISN: isn, MinRTO: ms(200), AckDelay: ms(1)}, ms(5))
	l.ab.drop = dropOnce(isn+3, isn+6, isn+9) // ..fffffffe+..., 0, 3
	l.write(16)
	if !l.run(t0.Add(time.Second), l.delivered(16)) {
		t.Fatalf("not delivered across the wrap: %d of 16", len(l.got))
	}
	checkInOrder(t, l.got, 16)
	if s := l.a.Stats(); s.Timeouts != 0 || s.FastRetransmits != 3 {
		t.Fatalf("stats %+v: want 3 fast retransmits and no timeout", s)
	}
}

// TestSACKBlocks: the receiver reports the blocks of the latest arrivals
// first, most recent first, then the lowest others, at most
// MaxSackBlocks, and only as many as the packet buffer holds.
func TestSACKBlocks(t *testing.T) {
	type blk = [2]uint32
	tests := []struct {
		name   string
		recv   []uint32
		room   int // packet buffer beyond the header
		ack    uint32
		blocks []blk
	}{
		{"in order", []uint32{0, 1, 2}, 64, 3, nil},
		{"one hole", []uint32{0, 2, 3}, 64, 1, []blk{{2, 4}}},
		{"latest first", []uint32{0, 5, 2, 3, 7}, 64, 1, []blk{{7, 8}, {2, 4}, {5, 6}}},
		{"latest in the middle", []uint32{0, 5, 2, 7, 3}, 64, 1, []blk{{2, 4}, {7, 8}, {5, 6}}},
		{"at most MaxSackBlocks", evens(200), MaxSackBlocks * SackBlockSize, 1, atMost()},
		{"small buffer", []uint32{0, 2, 4, 6}, 2*SackBlockSize + 3, 1, []blk{{6, 7}, {4, 5}}},
		{"no room", []uint32{0, 2}, SackBlockSize - 1, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustNew(t, Config{Mode: Reliable, Window: 256})
			b := mustNew(t, Config{Mode: Reliable, Window: 256})
			var pkts [][]byte
			for range 256 {
				pkts = append(pkts, send(t, a, t0, "x"))
			}
			for _, s := range tc.recv {
				b.Receive(t0, pkts[s])
			}
			pkt := make([]byte, HeaderSize+tc.room)
			n := b.Poll(t0, pkt)
			p := PCI(pkt[:n])
			if !p.IsValid() || p.Ackno() != tc.ack {
				t.Fatalf("ACK valid %v, ackno %d; want valid, %d", p.IsValid(), p.Ackno(), tc.ack)
			}
			var got []blk
			for i := range p.SackBlocks() {
				s, e := p.SackBlock(i)
				got = append(got, blk{s, e})
			}
			if len(got) != len(tc.blocks) {
				t.Fatalf("SACK blocks %v, want %v", got, tc.blocks)
			}
			for i := range got {
				if got[i] != tc.blocks[i] {
					t.Fatalf("SACK blocks %v, want %v", got, tc.blocks)
				}
			}
			// The sender's scoreboard takes them: SACKed slots are never
			// sent again.
			a.Receive(t0, p)
			for _, bl := range tc.blocks {
				for s := bl[0]; s != bl[1]; s++ {
					if !a.tx[s&a.mask].sacked {
						t.Fatalf("seqno %d not SACKed at the sender", s)
					}
				}
			}
		})
	}
}

// evens returns 0 and the even seqnos from 2 up to n: a block per seqno.
func evens(n uint32) []uint32 {
	r := []uint32{0}
	for s := uint32(2); s < n; s += 2 {
		r = append(r, s)
	}
	return r
}

// atMost is what a receiver of evens(200) reports: the blocks of the four
// latest arrivals, then the lowest, MaxSackBlocks in all.
func atMost() [][2]uint32 {
	b := [][2]uint32{{198, 199}, {196, 197}, {194, 195}, {192, 193}}
	for s := uint32(2); len(b) < MaxSackBlocks; s += 2 {
		b = append(b, [2]uint32{s, s + 1})
	}
	return b
}

// TestSACKReportsEveryBlock: with more blocks open than an ACK holds and
// several arriving between two ACKs (the flow's ACKs go out from a timer,
// after the arrivals that asked for them), every packet received is
// SACKed at the sender by one ACK or another. Reporting only the latest
// arrival's block and the lowest others left the blocks in between
// unreported until RACK declared them lost: across three hops losing 5%
// each, half the retransmissions arrived as duplicates.
func TestSACKReportsEveryBlock(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, Window: 512})
	b := mustNew(t, Config{Mode: Reliable, Window: 512})
	var pkts [][]byte
	for range 400 {
		pkts = append(pkts, send(t, a, t0, "x"))
	}
	// Every third packet is lost: blocks of two; an ACK every three arrivals.
	var recv []uint32
	for s := uint32(2); s < 400; s++ {
		if s%3 != 1 {
			recv = append(recv, s)
		}
	}
	pkt := make([]byte, HeaderSize+MaxSackBlocks*SackBlockSize)
	for i, s := range recv {
		b.Receive(t0, pkts[s])
		if i%3 == 2 || i == len(recv)-1 {
			if n := b.Poll(t0, pkt); n > 0 {
				a.Receive(t0, pkt[:n])
			}
		}
	}
	for _, s := range recv {
		if !a.tx[s&a.mask].sacked {
			t.Errorf("seqno %d was received but never SACKed", s)
		}
	}
}

// TestDSACK: a duplicate arrival is reported in a D-SACK block (RFC 2883)
// and the sender counts the retransmission spurious and widens its
// reordering window; a SACK of news is not taken for one.
func TestDSACK(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, Window: 16})
	b := mustNew(t, Config{Mode: Reliable, Window: 16})
	a.sampleRTT(ms(1))
	var pkts [][]byte
	for range 6 {
		pkts = append(pkts, send(t, a, t0, "x"))
	}
	pkt := make([]byte, HeaderSize+64)
	// 0 and 2 arrive; the ACK SACKs 2 (news, not a D-SACK).
	b.Receive(t0, pkts[0])
	b.Receive(t0, pkts[2])
	n := b.Poll(t0, pkt)
	a.Receive(t0, pkt[:n])
	if a.stats.Spurious != 0 || a.reordered {
		t.Fatalf("a SACK of news taken for a D-SACK: spurious %d", a.stats.Spurious)
	}
	// 2 again (above the ACK), then 0 again (below it): each is reported.
	for _, dup := range []uint32{2, 0} {
		b.Receive(t0.Add(ms(2)), pkts[dup])
		n = b.Poll(t0.Add(ms(2)), pkt)
		p := PCI(pkt[:n])
		if p.SackBlocks() == 0 {
			t.Fatalf("duplicate %d: no SACK blocks", dup)
		}
		if s, e := p.SackBlock(0); s != dup || e != dup+1 {
			t.Fatalf("duplicate %d: first block [%d,%d)", dup, s, e)
		}
		before := a.stats.Spurious
		a.Receive(t0.Add(ms(2)), p)
		if a.stats.Spurious != before+1 {
			t.Fatalf("duplicate %d: the sender did not count a spurious retransmission", dup)
		}
	}
	if !a.reordered || a.reoMult < 2 {
		t.Fatalf("reordering window not widened: reordered %v, mult %d", a.reordered, a.reoMult)
	}
	if b.stats.DSacks != 2 {
		t.Fatalf("receiver reported %d D-SACKs, want 2", b.stats.DSacks)
	}
	// No duplicate since: the next ACK has no D-SACK block.
	b.Receive(t0.Add(ms(3)), pkts[4])
	n = b.Poll(t0.Add(ms(3)), pkt)
	if a.isDSack(PCI(pkt[:n]), PCI(pkt[:n]).Ackno()) {
		t.Fatalf("a D-SACK block repeated")
	}
}

// FuzzSACK feeds a sender with packets in flight arbitrary ACKs with SACK
// blocks, and checks the scoreboard's invariants.
func FuzzSACK(f *testing.F) {
	f.Add(uint32(0), uint32(2), uint32(5), uint32(3), uint32(9), uint8(3))
	f.Add(uint32(1), uint32(0xffffffff), uint32(4), uint32(6), uint32(6), uint8(1))
	f.Fuzz(func(t *testing.T, ack, s1, e1, s2, e2 uint32, nsend uint8) {
		cfg := Config{Mode: Reliable, Window: 8, MaxSDU: 64}
		c := mustNew(t, cfg)
		pkt := make([]byte, HeaderSize+64)
		now := t0
		for range nsend % 9 {
			c.Send(now, []byte("x"), pkt)
		}
		p := make(PCI, HeaderSize+2*SackBlockSize)
		p.Encode(FlagAck|FlagFC|FlagSack, 8, 0, ack)
		p.PutSackBlock(0, s1, e1)
		p.PutSackBlock(1, s2, e2)
		for i := range 20 {
			now = now.Add(time.Millisecond)
			c.Receive(now, p)
			for c.Poll(now, pkt) > 0 {
			}
			c.Next(now)
			lost := 0
			for seq := c.sndUna; seq != c.sndNext; seq++ {
				s := &c.tx[seq&c.mask]
				if s.lost {
					lost++
				}
				if s.lost && s.sacked {
					t.Fatalf("step %d: seqno %d both lost and SACKed", i, seq)
				}
			}
			if lost != c.nLost {
				t.Fatalf("step %d: %d slots lost, nLost %d", i, lost, c.nLost)
			}
			if d := c.sndNext - c.sndUna; d > c.w {
				t.Fatalf("step %d: %d unacked, more than the window", i, d)
			}
			p.Encode(FlagAck|FlagFC|FlagSack, 8, 0, ack+uint32(i%3))
		}
	})
}

// TestZeroAllocsRecovery: loss recovery allocates nothing either: a hole,
// its SACK, the scoreboard update and the retransmission.
func TestZeroAllocsRecovery(t *testing.T) {
	a, b := mustNew(t, Config{Mode: Reliable}), mustNew(t, Config{Mode: Reliable})
	sdu := make([]byte, 1000)
	pkt := make([]byte, HeaderSize+DefaultMaxSDU)
	ack := make([]byte, HeaderSize+DefaultMaxSDU)
	buf := make([]byte, DefaultMaxSDU)
	now := t0
	step := func() {
		for i := range 4 {
			now = now.Add(time.Millisecond)
			n, err := a.Send(now, sdu, pkt)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if i != 1 { // the second is lost
				b.Receive(now, pkt[:n])
			}
			for m := b.Poll(now, ack); m > 0; m = b.Poll(now, ack) {
				a.Receive(now, ack[:m])
			}
		}
		for m := a.Poll(now, pkt); m > 0; m = a.Poll(now, pkt) {
			b.Receive(now, pkt[:m])
		}
		for m := b.Poll(now, ack); m > 0; m = b.Poll(now, ack) {
			a.Receive(now, ack[:m])
		}
		for {
			if _, err := b.Read(now, buf); err != nil {
				break
			}
		}
		for m := b.Poll(now.Add(DefaultAckDelay), ack); m > 0; m = b.Poll(now.Add(DefaultAckDelay), ack) {
			a.Receive(now, ack[:m])
		}
		if a.Unacked() != 0 {
			t.Fatalf("%d unacked after recovery", a.Unacked())
		}
	}
	step()
	if allocs := testing.AllocsPerRun(200, step); allocs != 0 {
		t.Fatalf("%v allocations per recovery, want 0", allocs)
	}
	if s := a.Stats(); s.FastRetransmits == 0 || s.Sacked == 0 {
		t.Fatalf("stats %+v: the loss was not repaired through SACK", s)
	}
}

// TestOrderedNoRecovery: partial reliability stays partial: an Ordered
// flow (QoS loss > 0) sends no SACK blocks, never retransmits, and skips a
// hole after max_gap.
func TestOrderedNoRecovery(t *testing.T) {
	l := newLink(t, Config{Mode: Ordered, Window: 16, MaxGap: ms(30), AckDelay: ms(1)}, ms(5))
	l.ab.drop = dropOnce(3, 7)
	var blog []sentPkt
	l.ba.log = &blog
	l.write(10)
	l.run(t0.Add(time.Second), func() bool { return len(l.got) == 8 && l.a.Unacked() == 0 })
	if len(l.got) != 8 {
		t.Fatalf("delivered %v, want the 8 SDUs that arrived", l.got)
	}
	if s := l.a.Stats(); s.Retransmits != 0 || s.Probes != 0 || s.Timeouts != 0 {
		t.Fatalf("sender stats %+v: an Ordered flow retransmitted", s)
	}
	if s := l.b.Stats(); s.Lost != 2 {
		t.Fatalf("receiver counted %d lost, want 2 (skipped after max_gap)", s.Lost)
	}
	for _, p := range blog {
		if p.flags&FlagSack != 0 {
			t.Fatalf("an Ordered receiver sent SACK blocks: %+v", p)
		}
	}
	if len(blog) == 0 {
		t.Fatalf("the receiver sent nothing")
	}
}

// TestReorderingNotLoss: on a path that reorders (jitter larger than the
// gap between packets) but loses nothing, the sender learns that it
// reorders (a packet sent once delivered below a later one, and
// retransmissions acknowledged too soon to have been needed) and widens
// its reordering window instead of retransmitting most of the flow.
func TestReorderingNotLoss(t *testing.T) {
	for _, jitter := range []int{2, 15} {
		t.Run(fmt.Sprintf("jitter%dms", jitter), func(t *testing.T) {
			a, b := simulate(t, simConfig{mode: Reliable, n: 2000, delay: ms(10), jitter: ms(jitter), window: 64, seed: 1})
			checkInOrder(t, b.got, 2000)
			s := a.c.Stats()
			if !a.c.reordered {
				t.Fatalf("stats %+v: reordering not detected", s)
			}
			if s.Retransmits > s.SentSDUs/20 {
				t.Fatalf("stats %+v: %d retransmissions of %d SDUs with no loss, want at most 5%%", s, s.Retransmits, s.SentSDUs)
			}
		})
	}
}

// TestNoReorderingFromBlockOrder: an ACK whose SACK blocks come most
// recent first (a higher block before a lower one, after a lost ACK) is
// not reordering: only an ACK delivering a packet below what earlier ACKs
// delivered is.
func TestNoReorderingFromBlockOrder(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, Window: 16})
	for range 10 {
		send(t, a, t0, "x")
	}
	p := make(PCI, HeaderSize+2*SackBlockSize)
	p.Encode(FlagAck|FlagFC|FlagSack, 16, 0, 1)
	p.PutSackBlock(0, 6, 8) // the latest arrival first
	p.PutSackBlock(1, 3, 5)
	a.Receive(at(ms(1)), p)
	if a.reordered {
		t.Fatalf("blocks [6,8) then [3,5) in one ACK taken for reordering")
	}
	// A later ACK delivering 2, sent before 7 and never sent again:
	// that is reordering.
	p.PutSackBlock(0, 2, 5)
	p.PutSackBlock(1, 6, 8)
	a.Receive(at(ms(2)), p)
	if !a.reordered {
		t.Fatalf("seqno 2 delivered after 7: reordering not seen")
	}
}

// TestRTOResendsOne: a timeout resends the oldest packet not SACKed, not
// the whole window: FRCT has no congestion window to pace a window's
// resend, and a timeout is more often a queue in front of the path than
// the loss of everything in flight. (Marking the window lost resent
// every SDU five to six times on a lossless path behind the unicast
// layer's pacing.)
func TestRTOResendsOne(t *testing.T) {
	l := newLink(t, Config{Mode: Reliable, MinRTO: ms(5), AckDelay: ms(1)}, 100*time.Microsecond)
	l.warmUp(4)
	l.ab.drop = func(PCI) bool { return true }
	l.write(8)
	before := l.a.Stats()
	l.run(l.now.Add(l.a.rtoBase+ms(1)), func() bool { return l.a.Stats().Timeouts > before.Timeouts })
	s := l.a.Stats()
	if s.Timeouts != before.Timeouts+1 {
		t.Fatalf("%d timeouts, want 1", s.Timeouts-before.Timeouts)
	}
	if got := s.Retransmits - before.Retransmits - (s.Probes - before.Probes); got != 1 {
		t.Fatalf("the timeout resent %d packets (besides %d probes), want 1", got, s.Probes-before.Probes)
	}
	l.ab.drop = nil
	if !l.run(l.now.Add(time.Second), l.delivered(4+8)) {
		t.Fatal("not all delivered once the path healed")
	}
}

// TestNoLossFromAnAmbiguousACK: behind a queue that suddenly drains ten
// times slower (pacing cut, as in the unicast layer), ACKs come further
// apart than the RTO, which sends the oldest packet again; the original
// then arrives and its ACK comes back a few milliseconds after the
// retransmission, longer than the path's least round trip. That ACK is
// ambiguous: taken as the retransmission's, it made RACK's reference the
// latest send of all, and every packet still queued in front of it was
// declared lost and sent again, each time the queue did this.
func TestNoLossFromAnAmbiguousACK(t *testing.T) {
	l := newLink(t, Config{Mode: Reliable}, 100*time.Microsecond)
	l.size = 1300
	l.warmUp(16)
	l.ab.rateAt = func(time.Time) float64 { return 100e3 } // 13 ms per packet
	const n = 48
	l.write(n)
	if !l.run(l.now.Add(10*time.Second), l.delivered(16+n)) {
		t.Fatalf("%d of %d SDUs delivered", len(l.got), 16+n)
	}
	checkInOrder(t, l.got, 16+n)
	s := l.a.Stats()
	t.Logf("%d retransmissions (%d fast, %d probes, %d timeouts, %d found spurious)", s.Retransmits, s.FastRetransmits, s.Probes, s.Timeouts, s.Spurious)
	if s.FastRetransmits > 0 {
		t.Errorf("%d fast retransmissions on a lossless path, want 0 (timeouts and probes: %d)", s.FastRetransmits, s.Timeouts+s.Probes)
	}
}

// TestNoRTTSampleFromAPokedACK: an ACK that arrives after a tail-loss
// probe may be the probe's answer (the path held the ACK back until
// something else came by), so packets sent before the probe give no RTT
// sample. Taken as one, a 100 ms stall on a 1 ms path raised SRTT to
// 13 ms and the RTO with it, and every stall after that was longer.
func TestNoRTTSampleFromAPokedACK(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, Window: 16})
	b := mustNew(t, Config{Mode: Reliable, Window: 16})
	a.sampleRTT(ms(1))
	p0 := send(t, a, t0, "x")
	p1 := send(t, a, t0, "y")
	probes := a.stats.Probes
	poll(a, at(ms(3))) // the probe: lost
	if a.stats.Probes != probes+1 {
		t.Fatalf("no tail-loss probe by 3 ms (next %v)", a.Next(at(ms(3))).Sub(t0))
	}
	b.Receive(at(ms(100)), p0)
	b.Receive(at(ms(100)), p1)
	for _, p := range poll(b, at(ms(100))) {
		a.Receive(at(ms(100)), p)
	}
	if a.Unacked() != 0 {
		t.Fatalf("%d unacked", a.Unacked())
	}
	if a.srtt > ms(2) {
		t.Fatalf("SRTT %v after the stall: the stall was taken for a round trip", a.srtt)
	}
	// A packet sent after the probe samples again.
	p2 := send(t, a, at(ms(101)), "z")
	b.Receive(at(ms(102)), p2)
	for _, p := range poll(b, at(ms(104))) {
		a.Receive(at(ms(104)), p)
	}
	if a.srtt == ms(1) {
		t.Fatalf("no RTT sample from a packet sent after the probe")
	}
}
