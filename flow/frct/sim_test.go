package frct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// channel is a simulated, seeded, lossy one-way network path on a fake
// clock: each packet is lost, duplicated and delayed (base plus jitter,
// which reorders) independently.
type channel struct {
	rng              *rand.Rand
	loss, dup        float64
	delay, jitter    time.Duration
	inflight         []inflight
	sent, lost, dups int
	// drop, when set, decides instead of loss: true drops the packet.
	drop func(p PCI) bool
	// log, when set, records every packet sent (dropped or not).
	log *[]sentPkt
	// rateAt, when set, is a bottleneck in front of the delay: packets
	// leave one after another at rateAt(t) bytes/s from a FIFO with no
	// bound (a paced sender's queue), so the round trip grows with it.
	rateAt func(time.Time) float64
	busy   time.Time // when the bottleneck is next free
}

// sentPkt is a packet a channel was given, for tests to inspect.
type sentPkt struct {
	at      time.Time
	flags   Flags
	seq     uint32
	ack     uint32
	sack    [][2]uint32
	dropped bool
}

type inflight struct {
	at  time.Time
	seq int // tie-break: equal times arrive in sending order
	pkt []byte
}

func (ch *channel) send(now time.Time, pkt []byte) {
	ch.sent++
	lost := false
	if ch.drop != nil {
		lost = ch.drop(PCI(pkt))
	} else {
		lost = ch.rng.Float64() < ch.loss
	}
	if ch.log != nil {
		p := PCI(pkt)
		sp := sentPkt{at: now, flags: p.Flags(), seq: p.Seqno(), ack: p.Ackno(), dropped: lost}
		for i := range p.SackBlocks() {
			s, e := p.SackBlock(i)
			sp.sack = append(sp.sack, [2]uint32{s, e})
		}
		*ch.log = append(*ch.log, sp)
	}
	if lost {
		ch.lost++
		return
	}
	copies := 1
	if ch.rng.Float64() < ch.dup {
		ch.dups++
		copies = 2
	}
	if ch.rateAt != nil {
		if ch.busy.Before(now) {
			ch.busy = now
		}
		ch.busy = ch.busy.Add(time.Duration(float64(len(pkt)) / ch.rateAt(ch.busy) * float64(time.Second)))
		now = ch.busy
	}
	for range copies {
		d := ch.delay
		if ch.jitter > 0 {
			d += time.Duration(ch.rng.Int64N(int64(ch.jitter)))
		}
		ch.inflight = append(ch.inflight, inflight{at: now.Add(d), seq: ch.sent, pkt: slices.Clone(pkt)})
	}
}

// next returns when the next packet arrives (zero if none in flight).
func (ch *channel) next() time.Time {
	var t time.Time
	for _, f := range ch.inflight {
		if t.IsZero() || f.at.Before(t) {
			t = f.at
		}
	}
	return t
}

// deliver hands every packet due by now to c, earliest first.
func (ch *channel) deliver(now time.Time, c *Conn) {
	slices.SortStableFunc(ch.inflight, func(a, b inflight) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	i := 0
	for ; i < len(ch.inflight) && !ch.inflight[i].at.After(now); i++ {
		c.Receive(ch.inflight[i].at, ch.inflight[i].pkt)
	}
	ch.inflight = ch.inflight[i:]
}

// endpoint is one side of a simulation: a Conn, its outgoing channel, the
// SDUs it still has to send and what it received.
type endpoint struct {
	c        *Conn
	out      *channel
	toSend   int
	sent     int
	got      []int
	finished bool
	pkt, buf []byte
}

// simSDU is SDU i: its index and a length that varies with it.
func simSDU(i int, maxSDU int) []byte {
	b := make([]byte, 4+i*37%(maxSDU-4))
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

func (e *endpoint) step(t *testing.T, now time.Time) {
	for e.sent < e.toSend {
		n, err := e.c.Send(now, simSDU(e.sent, e.c.cfg.MaxSDU), e.pkt)
		if errors.Is(err, ErrWindowFull) {
			break
		}
		if err != nil {
			t.Fatalf("Send #%d: %v", e.sent, err)
		}
		e.out.send(now, e.pkt[:n])
		e.sent++
	}
	if e.sent == e.toSend {
		e.c.Close(now)
	}
	for {
		n, err := e.c.Read(now, e.buf)
		if errors.Is(err, ErrNoData) {
			break
		}
		if errors.Is(err, ErrFinished) {
			e.finished = true
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		i := int(binary.BigEndian.Uint32(e.buf))
		if want := simSDU(i, e.c.cfg.MaxSDU); string(e.buf[:n]) != string(want) {
			t.Fatalf("SDU #%d corrupted: %d bytes, want %d", i, n, len(want))
		}
		e.got = append(e.got, i)
	}
	for n := e.c.Poll(now, e.pkt); n > 0; n = e.c.Poll(now, e.pkt) {
		e.out.send(now, e.pkt[:n])
	}
}

type simConfig struct {
	mode          Mode
	n             int // SDUs each way
	loss, dup     float64
	delay, jitter time.Duration
	window        int
	seed          uint64
	isn           uint32
}

// simulate runs two Conns against each other over two simulated channels
// until both sent everything, both saw the other's FIN and both are Done.
func simulate(t *testing.T, sc simConfig) (a, b *endpoint) {
	t.Helper()
	rng := rand.New(rand.NewPCG(sc.seed, sc.seed^0x9e3779b97f4a7c15))
	cfg := Config{Mode: sc.mode, Window: sc.window, MaxGap: 3 * (sc.delay + sc.jitter), AckDelay: ms(2), ISN: sc.isn}
	mk := func() *endpoint {
		return &endpoint{
			c:      mustNew(t, cfg),
			out:    &channel{rng: rng, loss: sc.loss, dup: sc.dup, delay: sc.delay, jitter: sc.jitter},
			toSend: sc.n,
			pkt:    make([]byte, HeaderSize+DefaultMaxSDU),
			buf:    make([]byte, DefaultMaxSDU),
		}
	}
	a, b = mk(), mk()
	now := t0
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			t.Fatalf("no end after %d steps at +%v: a sent %d got %d, b sent %d got %d", steps, now.Sub(t0), a.sent, len(a.got), b.sent, len(b.got))
		}
		a.out.deliver(now, b.c)
		b.out.deliver(now, a.c)
		a.step(t, now)
		b.step(t, now)
		if a.c.Done() && b.c.Done() && a.finished && b.finished {
			return a, b
		}
		if !sc.mode.reliable() && a.c.Done() && b.c.Done() && a.out.next().IsZero() && b.out.next().IsZero() && a.c.Next(now).IsZero() {
			return a, b // a lost FIN is not retransmitted: done when quiet
		}
		next := time.Time{}
		for _, n := range []time.Time{a.out.next(), b.out.next(), a.c.Next(now), b.c.Next(now)} {
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
		}
		if next.IsZero() {
			if !sc.mode.reliable() {
				return a, b
			}
			t.Fatalf("stuck at +%v: nothing scheduled; a sent %d got %d, b sent %d got %d", now.Sub(t0), a.sent, len(a.got), b.sent, len(b.got))
		}
		if next.After(now) {
			now = next
		}
		if a.c.Err() != nil || b.c.Err() != nil {
			t.Fatalf("a dead Conn: %v, %v", a.c.Err(), b.c.Err())
		}
	}
}

func TestSimulatedReliable(t *testing.T) {
	for _, loss := range []float64{0, 0.01, 0.1, 0.2, 0.3} {
		for _, mode := range []Mode{Reliable, ReliableUnordered} {
			for seed := uint64(1); seed <= 3; seed++ {
				name := fmt.Sprintf("%v/loss%.0f%%/seed%d", mode, loss*100, seed)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					a, b := simulate(t, simConfig{mode: mode, n: 500, loss: loss, dup: 0.05, delay: ms(10), jitter: ms(15), window: 16, seed: seed})
					for _, e := range []*endpoint{a, b} {
						got := e.got
						if mode == ReliableUnordered {
							got = slices.Clone(got)
							slices.Sort(got)
						}
						for i, g := range got {
							if g != i {
								t.Fatalf("delivery #%d is SDU %d, want %d (every SDU exactly once, in order)", i, g, i)
							}
						}
						if len(got) != 500 {
							t.Fatalf("delivered %d SDUs, want 500", len(got))
						}
					}
					if loss > 0 && a.c.Stats().Retransmits == 0 {
						t.Fatalf("no retransmissions with %.0f%% loss", loss*100)
					}
				})
			}
		}
	}
}

func TestSimulatedOrdered(t *testing.T) {
	for _, loss := range []float64{0, 0.1, 0.3} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("loss%.0f%%/seed%d", loss*100, seed), func(t *testing.T) {
				t.Parallel()
				a, b := simulate(t, simConfig{mode: Ordered, n: 500, loss: loss, dup: 0.05, delay: ms(10), jitter: ms(15), window: 16, seed: seed})
				for _, e := range []*endpoint{a, b} {
					if !slices.IsSorted(e.got) || len(slices.Compact(slices.Clone(e.got))) != len(e.got) {
						t.Fatalf("delivered out of order or twice: %v", e.got)
					}
					if loss == 0 && len(e.got) != 500 {
						t.Fatalf("no loss: delivered %d SDUs, want 500", len(e.got))
					}
					if min := 500 * (1 - 2*loss); float64(len(e.got)) < min {
						t.Fatalf("delivered %d SDUs with %.0f%% loss, want at least %.0f", len(e.got), loss*100, min)
					}
				}
			})
		}
	}
}

// FuzzReceiver feeds arbitrary packets to a Conn, interleaved with reads
// and polls, and checks it neither panics nor breaks its invariants.
func FuzzReceiver(f *testing.F) {
	good := make(PCI, HeaderSize+3)
	good.Encode(FlagData|FlagAck|FlagFC, 64, 0, 0)
	f.Add(uint8(Reliable), []byte(good))
	f.Add(uint8(Ordered), append(append([]byte{}, good...), good...))
	f.Add(uint8(ReliableUnordered), []byte{0, 0x13, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		m := Mode(mode%3 + 1)
		c, err := New(Config{Mode: m, Window: 8, MaxSDU: 64, Timeout: time.Second}, t0)
		if err != nil {
			t.Fatal(err)
		}
		pkt := make([]byte, HeaderSize+64)
		buf := make([]byte, 64)
		now := t0
		// Packets are length-prefixed by one byte; between them the
		// Conn also sends, reads and polls.
		for len(data) > 0 {
			n := int(data[0])
			data = data[1:]
			if n > len(data) {
				n = len(data)
			}
			now = now.Add(time.Duration(n) * time.Millisecond)
			c.Receive(now, data[:n])
			data = data[n:]
			c.Send(now, buf[:n%65], pkt)
			for c.Readable(now) {
				if _, err := c.Read(now, buf); err != nil && !errors.Is(err, ErrTruncated) {
					if errors.Is(err, ErrNoData) {
						t.Fatalf("Readable but Read = %v", err)
					}
					break
				}
			}
			for c.Poll(now, pkt) > 0 {
			}
			c.Next(now)
			if d := c.rcvAck - c.rcvNext; d > c.w {
				t.Fatalf("rcvAck %d more than a window past rcvNext %d", c.rcvAck, c.rcvNext)
			}
			if d := c.sndNext - c.sndUna; m.reliable() && d > c.w {
				t.Fatalf("%d unacked, more than the window", d)
			}
			if c.readyLen < 0 || c.readyLen > int(c.w) {
				t.Fatalf("ready queue length %d", c.readyLen)
			}
		}
	})
}

// FuzzSimulated is the property test: for any seed, loss up to 40 %,
// duplication, jitter and window, a reliable flow delivers every SDU
// exactly once, in order, both ways.
func FuzzSimulated(f *testing.F) {
	f.Add(uint64(1), uint8(10), uint8(5), uint8(15), uint8(4))
	f.Add(uint64(2), uint8(40), uint8(20), uint8(50), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, lossPct, dupPct, jitterMS, windowLog uint8) {
		sc := simConfig{
			mode:   Reliable,
			n:      100,
			loss:   float64(lossPct%41) / 100,
			dup:    float64(dupPct%31) / 100,
			delay:  ms(5),
			jitter: ms(int(jitterMS % 100)),
			window: 2 << (windowLog % 7),
			seed:   seed,
		}
		a, b := simulate(t, sc)
		for _, e := range []*endpoint{a, b} {
			if len(e.got) != sc.n {
				t.Fatalf("%+v: delivered %d SDUs, want %d", sc, len(e.got), sc.n)
			}
			for i, g := range e.got {
				if g != i {
					t.Fatalf("%+v: delivery #%d is SDU %d", sc, i, g)
				}
			}
		}
	})
}

// TestSimulatedWrap runs reliable flows whose seqnos wrap mid-transfer
// under random loss, duplication and reordering: SACK blocks and holes
// across the wrap.
func TestSimulatedWrap(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			a, b := simulate(t, simConfig{mode: Reliable, n: 300, loss: 0.1, dup: 0.05, delay: ms(10), jitter: ms(5), window: 32, seed: seed, isn: ^uint32(0) - 100})
			for _, e := range []*endpoint{a, b} {
				for i, g := range e.got {
					if g != i {
						t.Fatalf("delivery #%d is SDU %d, want %d", i, g, i)
					}
				}
				if len(e.got) != 300 {
					t.Fatalf("delivered %d SDUs, want 300", len(e.got))
				}
			}
			if s := a.c.Stats(); s.Sacked == 0 || s.FastRetransmits == 0 {
				t.Fatalf("stats %+v: want SACKed packets and fast retransmits", s)
			}
		})
	}
}
