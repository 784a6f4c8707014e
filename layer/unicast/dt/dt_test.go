package dt_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

func TestPCIRoundTrip(t *testing.T) {
	f := dt.Fields{Dst: 0x0102030405060708, Cube: flow.CubeVideo, TTL: 60, ECN: 7, EID: 0x1112131415161718}
	buf := make([]byte, 64)
	start, ok := dt.Prepend(buf, 40, f)
	if !ok || start != 40-dt.PCILen {
		t.Fatalf("Prepend = %d, %v; want %d, true", start, ok, 40-dt.PCILen)
	}
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 1, 60, 7, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}
	if got := buf[start : start+dt.PCILen]; !bytes.Equal(got, want) {
		t.Fatalf("wire bytes\n got %x\nwant %x", got, want)
	}
	p := dt.PCI(buf[start:])
	if !p.IsValid() {
		t.Fatal("IsValid = false")
	}
	if got := p.Decode(); got != f {
		t.Fatalf("Decode = %+v, want %+v", got, f)
	}
	if got := len(p.Payload()); got != 64-40 {
		t.Fatalf("len(Payload) = %d, want %d", got, 64-40)
	}
	p.RaiseECN(3)
	if p.ECN() != 7 {
		t.Errorf("RaiseECN(3) over 7: ECN = %d, want 7", p.ECN())
	}
	p.RaiseECN(9)
	if p.ECN() != 9 {
		t.Errorf("RaiseECN(9): ECN = %d, want 9", p.ECN())
	}
}

func TestPrependNoHeadroom(t *testing.T) {
	buf := make([]byte, 64)
	for _, start := range []int{0, dt.PCILen - 1, 65} {
		if _, ok := dt.Prepend(buf, start, dt.Fields{}); ok {
			t.Errorf("Prepend(start=%d): ok, want false", start)
		}
	}
}

func TestIsValid(t *testing.T) {
	if dt.PCI(make([]byte, dt.PCILen-1)).IsValid() {
		t.Error("short PCI is valid")
	}
	if !dt.PCI(make([]byte, dt.PCILen)).IsValid() {
		t.Error("PCILen bytes not valid")
	}
}

func newForwarder(t testing.TB) *dt.Forwarder {
	t.Helper()
	tb, err := pff.New(pff.Simple)
	if err != nil {
		t.Fatal(err)
	}
	tb.Replace(pff.Routes{2: {20}})
	f, err := dt.NewForwarder(dt.ForwarderConfig{Self: 1, PFF: tb})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func pkt(f dt.Fields) []byte {
	b := make([]byte, dt.PCILen+4)
	dt.PCI(b).Encode(f)
	return b
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    dt.Result
		wantTTL uint8
	}{
		{"deliver", pkt(dt.Fields{Dst: 1, TTL: 5}), dt.Result{Verdict: dt.Deliver}, 5},
		{"deliver last hop", pkt(dt.Fields{Dst: 1, TTL: 1}), dt.Result{Verdict: dt.Deliver}, 1},
		{"forward", pkt(dt.Fields{Dst: 2, TTL: 5}), dt.Result{Verdict: dt.Forward, NextHop: 20}, 4},
		{"ttl would expire", pkt(dt.Fields{Dst: 2, TTL: 1}), dt.Result{Reason: dt.TTLExpired}, 1},
		{"ttl zero", pkt(dt.Fields{Dst: 1, TTL: 0}), dt.Result{Reason: dt.TTLExpired}, 0},
		{"no route", pkt(dt.Fields{Dst: 3, TTL: 5}), dt.Result{Reason: dt.NoRoute}, 5},
		{"bad cube", pkt(dt.Fields{Dst: 1, TTL: 5, Cube: flow.NumCubes}), dt.Result{Reason: dt.BadHeader}, 5},
		{"short", make([]byte, dt.PCILen-1), dt.Result{Reason: dt.BadHeader}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newForwarder(t)
			got := f.Decide(tc.pkt)
			if got != tc.want {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
			if len(tc.pkt) >= dt.PCILen {
				if ttl := dt.PCI(tc.pkt).TTL(); ttl != tc.wantTTL {
					t.Errorf("TTL after = %d, want %d", ttl, tc.wantTTL)
				}
			}
			c := f.Counters()
			switch tc.want.Verdict {
			case dt.Drop:
				if n := c.Drops[tc.want.Reason].Load(); n != 1 {
					t.Errorf("Drops[%v] = %d, want 1", tc.want.Reason, n)
				}
			case dt.Deliver:
				if n := c.Delivered.Load(); n != 1 {
					t.Errorf("Delivered = %d, want 1", n)
				}
			case dt.Forward:
				if n := c.Forwarded.Load(); n != 1 {
					t.Errorf("Forwarded = %d, want 1", n)
				}
			}
		})
	}
}

func TestNewForwarderInvalid(t *testing.T) {
	if _, err := dt.NewForwarder(dt.ForwarderConfig{Self: 1}); err == nil {
		t.Error("no PFF: got nil error")
	}
}

func TestStrictPriority(t *testing.T) {
	s, err := dt.NewScheduler[int](dt.SchedConfig{Kind: dt.StrictPriority, QueueLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	s.Enqueue(flow.CubeRaw, 40)
	s.Enqueue(flow.CubeData, 20)
	s.Enqueue(flow.CubeVoice, 0)
	s.Enqueue(flow.CubeData, 21)
	var got []int
	for {
		v, _, ok := s.Dequeue()
		if !ok {
			break
		}
		got = append(got, v)
	}
	want := []int{0, 20, 21, 40}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueFull(t *testing.T) {
	s, _ := dt.NewScheduler[int](dt.SchedConfig{QueueLen: 2})
	for i := range 3 {
		ok := s.Enqueue(flow.CubeData, i)
		if want := i < 2; ok != want {
			t.Errorf("Enqueue #%d = %v, want %v", i, ok, want)
		}
	}
	if n := s.Counters().Drops[flow.CubeData].Load(); n != 1 {
		t.Errorf("Drops[data] = %d, want 1", n)
	}
	if s.Len(flow.CubeData) != 2 || s.Total() != 2 || s.Cap() != 2 {
		t.Errorf("Len, Total, Cap = %d, %d, %d; want 2, 2, 2", s.Len(flow.CubeData), s.Total(), s.Cap())
	}
	if s.Enqueue(flow.NumCubes, 9) {
		t.Error("Enqueue on cube 5 succeeded")
	}
}

func TestWRRShares(t *testing.T) {
	s, err := dt.NewScheduler[flow.Cube](dt.SchedConfig{Kind: dt.WeightedRoundRobin, QueueLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Keep every cube backlogged; count what 160 dequeues serve.
	for c := range flow.Cube(flow.NumCubes) {
		for range 500 {
			s.Enqueue(c, c)
		}
	}
	var served [flow.NumCubes]int
	batch := make([]flow.Cube, 16)
	for range 10 {
		n := s.DequeueBatch(batch)
		for _, c := range batch[:n] {
			served[c]++
		}
	}
	// Weights 8,4,2,1,1 sum to 16: ten rounds.
	want := [flow.NumCubes]int{80, 40, 20, 10, 10}
	if served != want {
		t.Fatalf("served per cube = %v, want %v", served, want)
	}
	// A lone cube gets everything.
	s2, _ := dt.NewScheduler[int](dt.SchedConfig{Kind: dt.WeightedRoundRobin, QueueLen: 100})
	for i := range 50 {
		s2.Enqueue(flow.CubeRaw, i)
	}
	for i := range 50 {
		if v, c, ok := s2.Dequeue(); !ok || v != i || c != flow.CubeRaw {
			t.Fatalf("Dequeue #%d = %d, %v, %v; want %d, raw, true", i, v, c, ok, i)
		}
	}
}

func TestSchedConfigInvalid(t *testing.T) {
	for name, cfg := range map[string]dt.SchedConfig{
		"negative queue": {QueueLen: -1},
		"zero weight":    {Kind: dt.WeightedRoundRobin, Weights: [flow.NumCubes]int{1, 0, 1, 1, 1}},
		"unknown kind":   {Kind: 7},
	} {
		if _, err := dt.NewScheduler[int](cfg); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

// TestZeroAllocs proves the per-packet path allocates nothing: decode,
// forward decision, enqueue and dequeue.
func TestZeroAllocs(t *testing.T) {
	f := newForwarder(t)
	b := pkt(dt.Fields{Dst: 2, TTL: 255, EID: 9})
	s, _ := dt.NewScheduler[[]byte](dt.SchedConfig{Kind: dt.WeightedRoundRobin})
	var sink dt.Fields
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"decode", func() { sink = dt.PCI(b).Decode() }},
		{"decide", func() { dt.PCI(b).SetTTL(255); f.Decide(b) }},
		{"enqueue+dequeue", func() { s.Enqueue(flow.CubeData, b); s.Dequeue() }},
		{"prepend", func() { dt.Prepend(b, dt.PCILen, sink) }},
		{"standing", func() { s.Standing(flow.CubeData, 1, time.Millisecond) }},
	} {
		if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs per packet, want 0", tc.name, n)
		}
	}
}

func FuzzPCI(f *testing.F) {
	f.Add(pkt(dt.Fields{Dst: 2, TTL: 5, EID: 3}))
	f.Add([]byte{})
	f.Add(make([]byte, dt.PCILen))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := dt.PCI(b)
		if !p.IsValid() {
			if len(b) >= dt.PCILen {
				t.Fatalf("%d bytes not valid", len(b))
			}
			return
		}
		fl := p.Decode()
		q := make([]byte, len(b))
		dt.PCI(q).Encode(fl)
		copy(q[dt.PCILen:], b[dt.PCILen:])
		if !bytes.Equal(q, b) {
			t.Fatalf("re-encode\n got %x\nwant %x", q, b)
		}
		tb, _ := pff.New(pff.Multipath)
		tb.Replace(pff.Routes{fl.Dst: {1, 2}})
		fw, _ := dt.NewForwarder(dt.ForwarderConfig{Self: layer.Addr(fl.EID) | 1, PFF: tb})
		r := fw.Decide(b)
		if r.Verdict == dt.Forward && p.TTL() != fl.TTL-1 {
			t.Fatalf("forwarded with TTL %d, was %d", p.TTL(), fl.TTL)
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	f := newForwarder(b)
	p := pkt(dt.Fields{Dst: 2, TTL: 255, EID: 9})
	b.ReportAllocs()
	for b.Loop() {
		p[9] = 255
		f.Decide(p)
	}
}

func BenchmarkSchedEnqueueDequeue(b *testing.B) {
	for _, k := range []dt.SchedKind{dt.StrictPriority, dt.WeightedRoundRobin} {
		b.Run(k.String(), func(b *testing.B) {
			s, _ := dt.NewScheduler[[]byte](dt.SchedConfig{Kind: k})
			p := make([]byte, 64)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				s.Enqueue(flow.Cube(i%flow.NumCubes), p)
				s.Dequeue()
			}
		})
	}
}

// TestStanding shows what a forwarder marks by: a batch enqueued at once
// and drained within a window leaves no standing queue (marking it, as
// marking by Len did, held a paced sender far below its path: its own
// bursts of 32 marked it), a queue that does not drain for a window
// stands at its least length, and one that drains stops standing within
// a window.
func TestStanding(t *testing.T) {
	const w = 10 * time.Millisecond
	ms := func(n int) int64 { return int64(n) * int64(time.Millisecond) }
	s, _ := dt.NewScheduler[int](dt.SchedConfig{})
	c := flow.CubeData
	step := func(now int64, in, out int) int {
		for range in {
			s.Enqueue(c, 0)
		}
		got := s.Standing(c, now, w) // as the last of the burst is enqueued
		for range out {
			s.Dequeue()
		}
		return got
	}
	// Bursts of 32 every millisecond, drained before the next: Len
	// says 32 at every enqueue, nothing stands.
	for i := range 50 {
		if got := step(ms(i), 32, 32); got != 0 {
			t.Fatalf("burst %d: standing %d, want 0 (len at enqueue was 32)", i, got)
		}
	}
	// 40 more in than out each millisecond for 30 ms: the queue fills
	// (256) and stays full.
	var got int
	for i := 50; i < 80; i++ {
		got = step(ms(i), 50, 10)
	}
	if want := s.Cap(); got < want-50 {
		t.Errorf("persistent queue: standing %d, want about %d (the queue stayed full)", got, want)
	}
	// Drained at once and quiet: nothing stands within two windows.
	for range s.Len(c) {
		s.Dequeue()
	}
	if got := s.Standing(c, ms(80)+2*int64(w), w); got != 0 {
		t.Errorf("after draining: standing %d, want 0", got)
	}
	// What waits below counts in front of the queue, and stops counting
	// once it drained.
	s.SetBelow(100)
	s.Standing(c, ms(200), w)
	if got := s.Standing(c, ms(200)+int64(w), w); got != 100 {
		t.Errorf("100 below for a window: standing %d, want 100", got)
	}
	s.SetBelow(0)
	if got := s.Standing(c, ms(200)+int64(w)+1, w); got != 0 {
		t.Errorf("below drained: standing %d, want 0", got)
	}
}

// TestEnqueueBatch checks that a batch lands in its cubes' queues in
// order, that what does not fit (and what names no cube) is handed back
// in order, and that the counters count each packet once.
func TestEnqueueBatch(t *testing.T) {
	s, err := dt.NewScheduler[int](dt.SchedConfig{Kind: dt.StrictPriority, QueueLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	be := flow.Cube(3) // best_effort
	cubes := []flow.Cube{be, be, flow.Cube(200), be, 0}
	items := []int{1, 2, 3, 4, 5}
	if r := s.EnqueueBatch(cubes, items); r != 2 || items[0] != 3 || items[1] != 4 {
		t.Fatalf("refused %d, items %v; want 2 refused: 3 (no cube), 4 (full)", r, items)
	}
	var got []int
	for {
		x, _, ok := s.Dequeue()
		if !ok {
			break
		}
		got = append(got, x)
	}
	if !slices.Equal(got, []int{5, 1, 2}) { // cube 0 first (strict)
		t.Fatalf("dequeued %v, want [5 1 2]", got)
	}
	c := s.Counters()
	if c.Enqueued[be].Load() != 2 || c.Enqueued[0].Load() != 1 || c.Drops[be].Load() != 1 {
		t.Fatalf("enqueued %d/%d, drops %d; want 2/1, 1", c.Enqueued[be].Load(), c.Enqueued[0].Load(), c.Drops[be].Load())
	}
	if n := testing.AllocsPerRun(100, func() {
		items[0], items[1] = 1, 2
		s.EnqueueBatch(cubes[:2], items[:2])
		s.Dequeue()
		s.Dequeue()
	}); n != 0 {
		t.Errorf("%v allocations per batch", n)
	}
}

// TestDequeueBatchMatchesDequeue drives two schedulers of each
// discipline through the same random enqueues (queues of 5, so the
// rings wrap and fill): one drained by DequeueBatch in random batch
// sizes, the other by Dequeue one at a time. Both must give the same
// items in the same order, and count the same.
func TestDequeueBatchMatchesDequeue(t *testing.T) {
	for _, kind := range []dt.SchedKind{dt.StrictPriority, dt.WeightedRoundRobin} {
		t.Run(kind.String(), func(t *testing.T) {
			cfg := dt.SchedConfig{Kind: kind, QueueLen: 5}
			a, _ := dt.NewScheduler[int](cfg)
			b, _ := dt.NewScheduler[int](cfg)
			rng := rand.New(rand.NewPCG(1, 2))
			next := 0
			var batch [7]int
			for step := range 2000 {
				for range rng.IntN(9) {
					c := flow.Cube(rng.IntN(int(flow.NumCubes)))
					if oka, okb := a.Enqueue(c, next), b.Enqueue(c, next); oka != okb {
						t.Fatalf("step %d: Enqueue of %d: %v and %v", step, next, oka, okb)
					}
					next++
				}
				n := a.DequeueBatch(batch[:1+rng.IntN(len(batch))])
				for i, got := range batch[:n] {
					want, _, ok := b.Dequeue()
					if !ok || got != want {
						t.Fatalf("step %d: DequeueBatch's item %d is %d, Dequeue gave %d (ok %v)", step, i, got, want, ok)
					}
				}
				if a.Total() != b.Total() {
					t.Fatalf("step %d: %d and %d left", step, a.Total(), b.Total())
				}
			}
			for c := range flow.NumCubes {
				ca, cb := a.Counters(), b.Counters()
				if ca.Dequeued[c].Load() != cb.Dequeued[c].Load() || ca.Drops[c].Load() != cb.Drops[c].Load() {
					t.Errorf("cube %d: dequeued %d and %d, dropped %d and %d", c,
						ca.Dequeued[c].Load(), cb.Dequeued[c].Load(), ca.Drops[c].Load(), cb.Drops[c].Load())
				}
			}
		})
	}
}

// TestQueueRoom: a cube's queue takes forwarded packets (Queue, Enqueue)
// up to its length and its room (Room times the length), counting a
// refusal past that as a drop; the node's own only up to its length,
// uncounted while the sender waits (TryQueue), counted at its last try
// (QueueOwn); Cap is the length.
func TestQueueRoom(t *testing.T) {
	const qlen, factor = 4, 3
	const room = qlen * factor
	s, err := dt.NewScheduler[*dt.Buf](dt.SchedConfig{QueueLen: qlen, Room: factor})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cap() != qlen {
		t.Errorf("Cap %d, want the length %d", s.Cap(), qlen)
	}
	p := dt.NewPort(1, 1, "n", nil, s)
	c := flow.CubeData
	for i := range qlen {
		if !p.TryQueue(c, new(dt.Buf), nil) {
			t.Fatalf("own packet %d of %d refused", i, qlen)
		}
	}
	if p.TryQueue(c, new(dt.Buf), nil) {
		t.Error("an own packet past the length was taken")
	}
	if d := s.Counters().Drops[c].Load(); d != 0 {
		t.Errorf("drops %d after a TryQueue refused, want 0 (its sender waits)", d)
	}
	if p.QueueOwn(c, new(dt.Buf), nil) {
		t.Error("an own packet's last try past the length was taken (into the room)")
	}
	for i := range room {
		if !p.Queue(c, new(dt.Buf), nil) {
			t.Fatalf("forwarded packet %d of the room %d refused", i, room)
		}
	}
	if p.Queue(c, new(dt.Buf), nil) {
		t.Error("a forwarded packet past the room was taken")
	}
	if d := s.Counters().Drops[c].Load(); d != 2 {
		t.Errorf("drops %d, want 2 (the own last try and the forwarded refusal)", d)
	}
	if _, err := dt.NewScheduler[int](dt.SchedConfig{Room: -1}); err == nil {
		t.Error("a negative room accepted")
	}
}
