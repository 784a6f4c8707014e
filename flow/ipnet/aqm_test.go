package ipnet

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

// TestCoDel: the drop schedule of RFC 8289. A wait above the target
// drops nothing for the first interval, then one packet, then more often
// (interval/√count apart); a wait below the target ends it at once.
func TestCoDel(t *testing.T) {
	c := codel{target: 5 * time.Millisecond, interval: 100 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	var drops []time.Duration
	for ms := 0; ms <= 400; ms++ {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if c.drop(now, 20*time.Millisecond) {
			drops = append(drops, now.Sub(t0))
		}
	}
	// First at 100 ms (the wait stood above target a whole interval),
	// then 100/√1, 100/√2, 100/√3... after the one before.
	want := []time.Duration{100, 200, 271, 329}
	if len(drops) < len(want) {
		t.Fatalf("drops at %v, want them at %v ms and on", drops, want)
	}
	for i, w := range want {
		if d := drops[i] - w*time.Millisecond; d < 0 || d > time.Millisecond {
			t.Errorf("drop %d at %v, want %v ms", i, drops[i], w)
		}
	}
	now := t0.Add(401 * time.Millisecond)
	if c.drop(now, time.Millisecond) || c.dropping {
		t.Fatal("still dropping with the wait below target")
	}
	for ms := 402; ms < 500; ms++ {
		if c.drop(t0.Add(time.Duration(ms)*time.Millisecond), 20*time.Millisecond) {
			t.Fatalf("a drop %d ms after the wait rose again, want none for an interval", ms-402)
		}
	}
}

// TestCoDelWait: the wait is what stands in the queues over the rate the
// flow's reader takes bytes at; nothing standing is no wait, however slow
// the rate (a ping every 200 ms must never be dropped).
func TestCoDelWait(t *testing.T) {
	c := codel{target: 5 * time.Millisecond, interval: 100 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	if w := c.wait(t0, 0, 0); w != 0 {
		t.Fatalf("first wait %v, want 0", w)
	}
	// 1,000 SDUs of 1,000 bytes written in 10 ms, 100 of them still
	// queued in the ring: 900 KB taken, 90 MB a second.
	c.written(1000, 1000*1000)
	w := c.wait(t0.Add(10*time.Millisecond), 80*1000, 100)
	if want := 2 * time.Millisecond; w < want-10*time.Microsecond || w > want+10*time.Microsecond {
		t.Fatalf("wait %v, want %v (80 KB waiting and 100 SDUs queued at 90 MB a second)", w, want)
	}
	// A sparse flow: one SDU each 200 ms, taken at once.
	s := codel{target: 5 * time.Millisecond, interval: 100 * time.Millisecond}
	for i := range 10 {
		now := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		if w := s.wait(now, 0, 0); w != 0 || s.drop(now, w) {
			t.Fatalf("packet %d of a sparse flow: wait %v, dropped %v", i, w, s.drop(now, w))
		}
		s.written(1, 84)
	}
}

// TestCoDelWaitSupers: TCP super-packets waiting in the peer's queue
// weigh as the bytes they carry, not as one SDU each: four of 60,000
// bytes in front of a flow that takes 1,300-byte SDUs at 13 MB a second
// are 18 ms of waiting, above the target. Counted as four SDUs (the
// estimate before: queue entries over SDUs a second) they were 0.4 ms,
// and a queue of super-packets 64 ms deep was never managed.
func TestCoDelWaitSupers(t *testing.T) {
	c := codel{target: 5 * time.Millisecond, interval: 100 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	c.wait(t0, 0, 0)
	c.written(100, 100*1300) // 10 ms at 10,000 SDUs, 13 MB, a second
	w := c.wait(t0.Add(10*time.Millisecond), 4*60000, 0)
	if want := 240000 * time.Second / 13e6; w < want-50*time.Microsecond || w > want+50*time.Microsecond || w < c.target {
		t.Fatalf("wait %v behind four 60,000-byte super-packets, want %v (above the target %v)", w, want, c.target)
	}
}

// ipv4Sum is the IPv4 header checksum of h, computed afresh.
func ipv4Sum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// ecnPacket is an IPv4 packet to 10.9.9.1 with ECN field ecn, its first
// payload byte b (markedPort's mark) and its header checksum right.
func ecnPacket(ecn, b byte) []byte {
	p := v4("10.9.9.1", 100)
	p[1], p[8], p[20] = ecn, 64, b
	binary.BigEndian.PutUint16(p[10:], ipv4Sum(p[:20]))
	return p
}

func TestMarkCE(t *testing.T) {
	for _, ecn := range []byte{0, 1, 2, 3} {
		p := v4("10.9.9.1", 10)
		p[1] = 0xb8 | ecn // DSCP EF
		p[8] = 64
		binary.BigEndian.PutUint16(p[10:], ipv4Sum(p[:20]))
		marked := markCE(p)
		if marked != (ecn != 0) {
			t.Errorf("IPv4 ECN %d: marked %v", ecn, marked)
		}
		want := byte(0xb8 | ecn)
		if ecn != 0 {
			want = 0xbb
		}
		if p[1] != want {
			t.Errorf("IPv4 ECN %d: TOS %#x, want %#x", ecn, p[1], want)
		}
		if got, sum := binary.BigEndian.Uint16(p[10:]), ipv4Sum(p[:20]); got != sum {
			t.Errorf("IPv4 ECN %d: checksum %#x, want %#x", ecn, got, sum)
		}
		q := v6("fd00::1")
		q[0], q[1] = 0x6b, 0x80|ecn<<4 // traffic class 0xb8|ecn
		if markCE(q) != (ecn != 0) || (ecn != 0 && (q[1]>>4)&3 != 3) || q[0] != 0x6b {
			t.Errorf("IPv6 ECN %d: %x", ecn, q[:2])
		}
	}
	if markCE([]byte{0x45, 1}) {
		t.Error("marked a truncated packet")
	}
}

// aqmCase is one case of the AQM tests: packets with ECN field ecn
// through bridges whose aqm_target is target.
type aqmCase struct {
	name   string
	ecn    byte
	target time.Duration
}

// aqmCases are the AQM tests' cases: ECN-capable packets (ecn) marked,
// others dropped, both at target; and the AQM off (the behaviour
// before), with ECN-capable packets.
func aqmCases(ecn byte, target time.Duration) []aqmCase {
	return []aqmCase{
		{"ECT marked", ecn, target},
		{"not-ECT dropped", 0, target},
		{"off", ecn, -1},
	}
}

// TestBridgeAQM: a flow whose reader takes 2,000 SDUs a second, and a
// device that reads packets for it much faster: once the packets have
// waited more than the target for an interval, the Bridge marks ECN-
// capable ones CE (they arrive marked, their checksums right) and drops
// the others, counted apart from the drops of a full queue. With the AQM
// off (a negative target, the behaviour before) it does neither: only
// the full queue drops.
func TestBridgeAQM(t *testing.T) {
	for _, tc := range aqmCases(2, 2*time.Millisecond) {
		t.Run(tc.name, func(t *testing.T) {
			fake := flowtest.NewBroker(64)
			peer := fake.Program("pb")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := peer.Bind(ctx, "ip.b"); err != nil {
				t.Fatal(err)
			}
			if _, ok := func() flow.Port { a, _ := flowtest.Pipe(1); return a }().(queueReporter); !ok {
				t.Fatal("flowtest's pipes do not report their queue: the test would not see the ring")
			}
			dev := newDev()
			a, err := New(Config{Broker: fake.Program("pa"), Dev: dev, Runner: goRunner{}, Name: "ip.a",
				AQMTarget: tc.target, AQMInterval: 20 * time.Millisecond,
				Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.9.0/24"), Name: "ip.b"}}})
			if err != nil {
				t.Fatal(err)
			}
			runBridge(t, a, dev)
			var got, ce, badSum atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the flow's reader: 2,000 SDUs a second
				defer wg.Done()
				port, _, err := peer.Accept(ctx)
				if err != nil {
					return
				}
				defer port.Close()
				buf := make([]byte, 2048)
				tick := time.NewTicker(500 * time.Microsecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					n, err := port.Read(buf, time.Now().Add(10*time.Millisecond))
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						continue
					}
					got.Add(1)
					if buf[1]&3 == 3 {
						ce.Add(1)
					}
					if n >= 20 && binary.BigEndian.Uint16(buf[10:]) != ipv4Sum(buf[:20]) {
						badSum.Add(1)
					}
				}
			}()
			// 4,000 packets a second for 400 ms.
			for i := 0; i < 1600; i++ {
				dev.in <- ecnPacket(tc.ecn, 0)
				if i%4 == 3 {
					time.Sleep(time.Millisecond)
				}
			}
			time.Sleep(50 * time.Millisecond)
			cancel()
			wg.Wait()
			r, _, _, _, _ := a.Stats()
			s := r[0]
			t.Logf("%d read, %d of them CE; drops %d, of which the AQM's %d; marks %d", got.Load(), ce.Load(), s.Drops, s.AQMDrops, s.AQMMarks)
			if badSum.Load() != 0 {
				t.Errorf("%d packets arrived with a wrong header checksum", badSum.Load())
			}
			switch {
			case tc.target < 0:
				if s.AQMDrops+s.AQMMarks != 0 || ce.Load() != 0 {
					t.Fatalf("AQM off: %d dropped, %d marked, %d arrived CE", s.AQMDrops, s.AQMMarks, ce.Load())
				}
			case tc.ecn != 0:
				if s.AQMMarks == 0 || s.AQMDrops != 0 {
					t.Fatalf("ECN-capable packets: %d marked, %d dropped by the AQM; want marks only", s.AQMMarks, s.AQMDrops)
				}
				if ce.Load() == 0 {
					t.Fatal("no packet arrived marked CE")
				}
			default:
				if s.AQMDrops == 0 || s.AQMMarks != 0 {
					t.Fatalf("packets without ECN: %d dropped, %d marked by the AQM; want drops only", s.AQMDrops, s.AQMMarks)
				}
			}
		})
	}
}

// markedPort is a flow end that says of each SDU it reads a mark, as the
// node's ring ports say the mark a delivering unicast layer left on its
// buffer: here the packet's first payload byte, which the test sets.
type markedPort struct{ flow.BatchPort }

func (p markedPort) ReadMarked(bufs [][]byte, sizes []int, marks []uint8, deadline time.Time) (int, error) {
	n, err := p.ReadBatch(bufs[:min(len(bufs), len(marks))], sizes, deadline)
	for i := range n {
		marks[i] = 0
		if sizes[i] > 20 {
			marks[i] = bufs[i][20]
		}
	}
	return n, err
}

// TestReceiveMarks: the receiving bridge maps the layer's congestion
// marks: of packets marked at level 180, one in 64*255/180 is marked CE
// (ECN-capable) or dropped, counted as the "in" row's; unmarked packets
// pass as they came. With the AQM off (the behaviour before) every
// packet is written as it came.
func TestReceiveMarks(t *testing.T) {
	for _, tc := range aqmCases(1, 5*time.Millisecond) {
		t.Run(tc.name, func(t *testing.T) {
			fake := flowtest.NewBrokerPipes(256, func() (flow.Port, flow.Port) {
				a, b := flowtest.Pipe(256)
				return markedPort{a.(flow.BatchPort)}, markedPort{b.(flow.BatchPort)}
			})
			dev := newBatchDev(1500, 0)
			b, err := New(Config{Broker: fake.Program("pb"), Dev: dev, Runner: goRunner{}, Name: "ip.b",
				AQMTarget: tc.target, AQMInterval: 20 * time.Millisecond,
				Routes: []Route{{Prefix: netip.MustParsePrefix("10.8.0.0/16"), Name: "ip.a"}}})
			if err != nil {
				t.Fatal(err)
			}
			runBridge(t, b, dev)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var written, ce atomic.Int64
			go func() {
				for {
					select {
					case pkts := <-dev.Batches:
						for _, p := range pkts {
							written.Add(1)
							if p[1]&3 == 3 {
								ce.Add(1)
							}
						}
					case <-ctx.Done():
						return
					}
				}
			}()
			time.Sleep(20 * time.Millisecond) // the name bound
			port, _, err := fake.Alloc(ctx, "ip.b", flow.BestEffort())
			if err != nil {
				t.Fatal(err)
			}
			defer port.Close()
			send := func(n int, mark byte) {
				for range n {
					if err := port.Write(ecnPacket(tc.ecn, mark), time.Now().Add(time.Second)); err != nil {
						t.Fatal(err)
					}
				}
			}
			send(200, 180) // 200*180/(64*255): 2 picked
			waitFor(t, func() bool { d, _ := b.InAQM(); return written.Load()+int64(d) >= 200 })
			drops, marks := b.InAQM()
			send(100, 0) // unmarked: nothing more
			waitFor(t, func() bool { return written.Load()+int64(drops) >= 300 })
			d2, m2 := b.InAQM()
			t.Logf("written %d, %d CE; the AQM dropped %d, marked %d", written.Load(), ce.Load(), d2, m2)
			if d2 != drops || m2 != marks {
				t.Errorf("after the marks stopped: %d more dropped, %d more marked", d2-drops, m2-marks)
			}
			switch {
			case tc.target < 0:
				if drops+marks != 0 || ce.Load() != 0 || written.Load() != 300 {
					t.Fatalf("AQM off: %d dropped, %d marked, %d written CE of %d", drops, marks, ce.Load(), written.Load())
				}
			case tc.ecn != 0:
				if marks != 2 || drops != 0 || ce.Load() != int64(marks) || written.Load() != 300 {
					t.Fatalf("ECN-capable: %d marked (%d written CE), %d dropped, %d written; want marks only, all written", marks, ce.Load(), drops, written.Load())
				}
			default:
				if drops != 2 || marks != 0 || written.Load() != 300-int64(drops) {
					t.Fatalf("without ECN: %d dropped, %d marked, %d written; want drops only", drops, marks, written.Load())
				}
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}

// TestPassMarkedSupers: the receiving side weighs a TCP super-packet's
// mark by the segments it carries: 64 super-packets of 50 segments, each
// at the highest level, are 50 segments' worth of marks each, about 50
// CE marks where plain packets at that level get one in 64 (before, one
// decision per SDU whatever it carried: 1 of the 64). A super-packet
// that says a segment size of 0 weighs as one packet.
func TestPassMarkedSupers(t *testing.T) {
	ip := ecnPacket(1, 0) // ECT(1): marked, not dropped
	ip = append(ip, make([]byte, 60000-len(ip))...)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[10:], ipv4Sum(ip[:20]))
	super := func(mss int) []byte {
		sdu := make([]byte, superHdrLen+len(ip))
		putSuperHdr(sdu, mss)
		copy(sdu[superHdrLen:], ip)
		return sdu
	}
	var b Bridge
	var acc uint32
	for range 64 {
		sdu := super(1200)
		if !b.passMarked(&acc, 255, sdu) {
			t.Fatal("an ECN-capable super-packet dropped")
		}
	}
	if _, marks := b.InAQM(); marks < 45 || marks > 51 {
		t.Errorf("64 super-packets of 50 segments at level 255: %d marked CE, want about 50", marks)
	}
	var z Bridge
	acc = 0
	for range 64 {
		z.passMarked(&acc, 255, super(0))
	}
	if _, marks := z.InAQM(); marks != 1 {
		t.Errorf("64 super-packets saying segment size 0: %d marked, want 1 (each weighs as a packet)", marks)
	}
}
