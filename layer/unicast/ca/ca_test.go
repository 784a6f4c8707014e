package ca_test

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/unicast/ca"
)

const flowMaxSDU = 1400

// noShares runs the simulated paths without ca.Shares, to show what they
// do (go test -run BehindAFullBuffer -args -noshares: the late flows
// fall short).
var noShares = flag.Bool("noshares", false, "simulate queues that do not weigh marks by each flow's share")

func mustNew(t *testing.T, cfg ca.Config) *ca.CA {
	t.Helper()
	c, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMarkECN(t *testing.T) {
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, MarkFrom: 4})
	if got := mustNew(t, ca.Config{Kind: ca.MultiBitECN}).MarkECN(100/ca.DefaultMarkFrom, 100); got != 0 {
		t.Errorf("default MarkECN at the threshold = %d, want 0", got)
	}
	for _, tc := range []struct {
		n, capacity int
		want        uint8
	}{
		{0, 100, 0}, {25, 100, 0}, {26, 100, 3}, {50, 100, 85}, {99, 100, 251}, {100, 100, 255}, {150, 100, 255}, {5, 0, 0},
	} {
		if got := c.MarkECN(tc.n, tc.capacity); got != tc.want {
			t.Errorf("MarkECN(%d, %d) = %d, want %d", tc.n, tc.capacity, got, tc.want)
		}
	}
	nop := mustNew(t, ca.Config{})
	if got := nop.MarkECN(100, 100); got != 0 {
		t.Errorf("Nop MarkECN(full) = %d, want 0", got)
	}
	if n := testing.AllocsPerRun(100, func() { c.MarkECN(60, 100) }); n != 0 {
		t.Errorf("MarkECN allocates %v, want 0", n)
	}
}

func TestNopFlow(t *testing.T) {
	f := mustNew(t, ca.Config{Kind: ca.Nop}).NewFlow(time.Unix(0, 0))
	if w := f.OnSend(1<<30, time.Unix(0, 0)); w != 0 {
		t.Errorf("Nop OnSend wait = %v, want 0", w)
	}
	if _, ok := f.OnReceive(255, 1000, time.Unix(9, 0)); ok {
		t.Error("Nop OnReceive gave feedback")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]ca.Config{
		"unknown":      {Kind: 7},
		"min over max": {Kind: ca.MultiBitECN, MinRate: 10, MaxRate: 5},
	} {
		if _, err := ca.New(cfg); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func TestProportionalDecrease(t *testing.T) {
	t0 := time.Unix(0, 0)
	// The first congestion ends slow start with a cut of at least a
	// quarter, whatever the level.
	if f := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 1 << 20, MinRate: 1}).NewFlow(t0); true {
		f.OnFeedback(ca.Feedback{ECE: 64}, t0.Add(time.Second))
		if got, want := f.Rate(), uint64(1<<20-1<<20*128/512); got != want {
			t.Errorf("end of slow start at ECE 64: rate %d, want %d", got, want)
		}
	}
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 1 << 20, MinRate: 1, SlowStart: -1})
	for _, tc := range []struct {
		ece  uint8
		want uint64
	}{{0, 1 << 20}, {64, 1<<20 - 1<<20*64/512}, {255, 1<<20 - 1<<20*255/512}} {
		f := c.NewFlow(t0)
		f.OnFeedback(ca.Feedback{ECE: tc.ece}, t0.Add(time.Second))
		if got := f.Rate(); got != tc.want {
			t.Errorf("ECE %d: rate %d, want %d", tc.ece, got, tc.want)
		}
	}
	// One decrease per Hold Intervals.
	f := c.NewFlow(t0)
	now := t0.Add(time.Second)
	f.OnFeedback(ca.Feedback{ECE: 255}, now)
	r := f.Rate()
	f.OnFeedback(ca.Feedback{ECE: 255}, now.Add(ca.DefaultInterval))
	if got := f.Rate(); got != r {
		t.Errorf("second feedback within Hold: rate %d, want %d", got, r)
	}
	f.OnFeedback(ca.Feedback{ECE: 255}, now.Add(ca.DefaultHold*ca.DefaultInterval))
	if got := f.Rate(); got >= r {
		t.Errorf("feedback after Hold: rate %d, want below %d", got, r)
	}
}

// TestFullQueueReportedSooner: the receiver reports the average every
// Interval, but a packet that met a full queue (level 255: the next one
// there is lost) a quarter Interval after the last report, not before.
func TestFullQueueReportedSooner(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN})
	quarter := ca.DefaultInterval / 4
	for _, tc := range []struct {
		name string
		ecn  uint8
		at   time.Duration // after the last report
		want bool
	}{
		{"high level, a quarter Interval on", 254, quarter, false},
		{"full queue, too soon", 255, quarter - time.Microsecond, false},
		{"full queue, a quarter Interval on", 255, quarter, true},
		{"any level, an Interval on", 1, ca.DefaultInterval, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := c.NewFlow(t0)
			last := t0.Add(ca.DefaultInterval)
			if _, ok := f.OnReceive(10, 1000, last); !ok {
				t.Fatal("no report an Interval after the flow began")
			}
			fb, ok := f.OnReceive(tc.ecn, 1000, last.Add(tc.at))
			if ok != tc.want {
				t.Fatalf("report %v, want %v", ok, tc.want)
			}
			if ok && fb.ECE != tc.ecn {
				t.Errorf("reported ECE %d, want %d (the one packet since the last report)", fb.ECE, tc.ecn)
			}
		})
	}
}

func TestPacing(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 100_000, Increase: 1, MaxRate: 100_000})
	f := c.NewFlow(t0)
	sent := 0
	now := t0
	for now.Before(t0.Add(10 * time.Second)) {
		if w := f.OnSend(1000, now); w == 0 {
			sent += 1000
		} else {
			now = now.Add(w)
		}
	}
	// 10 s at 100 kB/s, plus the initial burst.
	if sent < 990_000 || sent > 1_010_000 {
		t.Errorf("sent %d bytes in 10 s at 100 kB/s, want about 1 MB", sent)
	}
}

// TestPacingJumbo: packets larger than two of flow.MaxSDU (a layer over
// jumbo frames) are paced at the flow's rate like any: the bucket holds
// two of the largest sent (before, it held 2,800 bytes at a low rate,
// and an 8,000-byte packet waited until the sender gave up pacing it).
func TestPacingJumbo(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 100_000, Increase: 1, MaxRate: 100_000})
	f := c.NewFlow(t0)
	sent, now := 0, t0
	for now.Before(t0.Add(10 * time.Second)) {
		if w := f.OnSend(8000, now); w == 0 {
			sent += 8000
		} else if w > 200*time.Millisecond {
			t.Fatalf("an 8,000-byte packet told to wait %v at 100 kB/s (80 ms of tokens)", w)
		} else {
			now = now.Add(w)
		}
	}
	if sent < 960_000 || sent > 1_040_000 {
		t.Errorf("sent %d bytes of 8,000-byte packets in 10 s at 100 kB/s, want about 1 MB", sent)
	}
}

// bottleneck simulates senders sharing one link of capacity bytes/s with
// a queue of qcap packets, one-way delay d each way, for dur, and returns
// per-flow bytes delivered in the second half, drops and the mean queue.
func bottleneck(t *testing.T, kind ca.Kind, flows int, capacity float64, qcap int, d, dur time.Duration) (got []float64, drops int, meanQ float64) {
	return bottleneckCfg(t, ca.Config{Kind: kind}, flows, capacity, qcap, d, dur)
}

func bottleneckCfg(t *testing.T, cfg ca.Config, flows int, capacity float64, qcap int, d, dur time.Duration) (got []float64, drops int, meanQ float64) {
	r := simulate(t, sim{cfg: cfg, flows: flows, capacity: capacity, qcap: qcap, d: d, dur: dur, standing: true, atHead: true})
	return r.half, r.drops, r.meanQ
}

// sim is a simulated path: flows share a link of capacity bytes/s behind
// a marking queue of qcap packets; hidden > 0 puts a FIFO of that many
// packets between the two that marks nothing and pushes back when full
// (a shim's ring and socket buffer in front of a tbf qdisc: the marking
// queue only grows once it is full); standing marks by the least length
// of the queue over the last CA interval or two (dt.Scheduler.Standing)
// instead of its length. start delays flows' first packets.
type sim struct {
	cfg      ca.Config
	flows    int
	capacity float64
	qcap     int
	ring     int // a FIFO below the queue that marking counts (a RingPort's)
	hidden   int // a FIFO below that, in front of the link, that it does not (a socket's)
	standing bool
	atHead   bool // mark as a packet leaves the queue, not as it joins it
	block    bool // a full queue holds senders back (the first hop's), not drops
	d, dur   time.Duration
	start    []time.Duration
	stop     []time.Duration // when flows' applications stop sending (0: never)
	markCap  int             // the capacity MarkECN is told (0: qcap)
	// local: the queue is the senders' own node's, so its marks go to
	// the senders at once (ca.Flow.OnLocal), not in the packets.
	local bool
	// noShares: the queue does not weigh each packet's mark by its
	// flow's share of what leaves it (ca.Shares), as a node's transmit
	// loop does.
	noShares bool
	// stalls: the link (a receiving program) takes nothing for the
	// first Len of each Every, from the time it ends (a process waiting
	// for a CPU); the stalls repeat in turn.
	stalls []stall
	trace  bool
}

// stall is a pause of the reader at the end of a simulated path.
type stall struct{ Every, Len time.Duration }

type simResult struct {
	half     []float64   // bytes/s per flow over the second half
	perSec   [][]float64 // bytes per flow per whole second
	drops    int
	meanQ    float64 // marking queue, second half
	maxDelay time.Duration
	stalled  time.Duration // how long the reader stalled
	sent     int           // packets the senders sent
}

func simulate(t *testing.T, s sim) simResult {
	t.Helper()
	const pkt = 1000
	const dt = 100 * time.Microsecond
	c := mustNew(t, s.cfg)
	t0 := time.Unix(1000, 0)
	type inflight struct {
		at   time.Time
		flow int
		ecn  uint8
		sent time.Time
	}
	type fbMsg struct {
		at   time.Time
		flow int
		fb   ca.Feedback
	}
	flows := s.flows
	send := make([]ca.Flow, flows)
	recv := make([]ca.Flow, flows)
	next := make([]time.Time, flows)
	offer := make([]float64, flows) // the application offers twice the link rate
	for i := range flows {
		begin := t0
		if i < len(s.start) {
			begin = t0.Add(s.start[i])
		}
		send[i], recv[i], next[i] = c.NewFlow(begin), c.NewFlow(begin), begin
	}
	var queue []inflight  // the forwarder's queue
	var ring []inflight   // below it, counted in marking
	var hidden []inflight // below that, in front of the link
	var wire []inflight   // after the link, towards receivers
	var fbs []fbMsg
	res := simResult{half: make([]float64, flows), perSec: make([][]float64, flows)}
	for i := range res.perSec {
		res.perSec[i] = make([]float64, int(s.dur/time.Second)+1)
	}
	credit := 0.0
	var stallEnd, stallNext time.Time // the current stall's end; when the next one starts
	stallI := 0
	if len(s.stalls) > 0 {
		stallNext = t0.Add(s.stalls[0].Every)
	}
	var qsum float64
	steps := 0
	// The standing queue: the least length over this window and the last.
	win := cmpOr(s.cfg.Interval, ca.DefaultInterval)
	var winStart time.Time
	low, prev := 0, 0
	depth := func() int { return len(queue) + len(ring) }
	level := func() uint8 {
		n := depth()
		if s.standing {
			n = min(prev, low, n)
		}
		return c.MarkECN(n, cmp.Or(s.markCap, s.qcap))
	}
	var clock time.Time // the loop's now, for move
	// atQueue marks p as it leaves the queue: in the packet, or (local)
	// straight to its sender.
	var sh ca.Shares
	atQueue := func(p *inflight) {
		l := level()
		if !s.noShares {
			sh.See(uint64(p.flow), pkt, clock.UnixNano(), win)
			l = sh.Weigh(l, uint64(p.flow))
		}
		if !s.local {
			p.ecn = l
			return
		}
		send[p.flow].OnLocal(l, 1, clock)
	}
	// move drains each stage into the next while it has room.
	move := func() {
		for len(ring) > 0 && len(hidden) < s.hidden {
			hidden, ring = append(hidden, ring[0]), ring[1:]
		}
		for len(queue) > 0 && len(ring) < s.ring {
			p := queue[0]
			if s.atHead {
				atQueue(&p)
			}
			ring, queue = append(ring, p), queue[1:]
		}
		low = min(low, depth())
	}
	for now := t0; now.Before(t0.Add(s.dur)); now = now.Add(dt) {
		clock = now
		if now.Sub(winStart) >= win {
			prev, low, winStart = low, depth(), now
		}
		for i := range flows {
			if i < len(s.stop) && s.stop[i] > 0 && !now.Before(t0.Add(s.stop[i])) {
				continue // this flow's application stopped sending
			}
			offer[i] = min(offer[i]+2*s.capacity*dt.Seconds(), max(4*pkt, 4*s.capacity*dt.Seconds()))
			for !now.Before(next[i]) && offer[i] >= pkt {
				if s.block && len(queue) >= s.qcap {
					break // a local sender waits for room
				}
				if w := send[i].OnSend(pkt, now); w != 0 {
					next[i] = now.Add(w)
					break
				}
				offer[i] -= pkt
				res.sent++
				if len(queue) >= s.qcap {
					res.drops++
					continue
				}
				p := inflight{flow: i, sent: now}
				if !s.atHead {
					atQueue(&p)
				}
				queue = append(queue, p)
				low = min(low, depth())
			}
		}
		move()
		front := &queue
		switch {
		case s.hidden > 0:
			front = &hidden
		case s.ring > 0:
			front = &ring
		}
		if len(s.stalls) > 0 && !now.Before(stallNext) {
			st := s.stalls[stallI%len(s.stalls)]
			stallEnd, stallI = now.Add(st.Len), stallI+1
			stallNext = stallEnd.Add(s.stalls[stallI%len(s.stalls)].Every)
		}
		if now.Before(stallEnd) {
			res.stalled += dt
		} else {
			credit += s.capacity * dt.Seconds()
		}
		for len(*front) > 0 && credit >= pkt {
			credit -= pkt
			p := (*front)[0]
			*front = (*front)[1:]
			if front == &queue && s.atHead {
				atQueue(&p)
			}
			res.maxDelay = max(res.maxDelay, now.Sub(p.sent))
			p.at = now.Add(s.d)
			wire = append(wire, p)
		}
		if len(*front) == 0 {
			credit = min(credit, pkt)
		}
		move()
		for len(wire) > 0 && !wire[0].at.After(now) {
			p := wire[0]
			wire = wire[1:]
			if now.Sub(t0) > s.dur/2 {
				res.half[p.flow] += pkt
			}
			res.perSec[p.flow][int(now.Sub(t0)/time.Second)] += pkt
			if fb, ok := recv[p.flow].OnReceive(p.ecn, pkt, now); ok {
				fbs = append(fbs, fbMsg{now.Add(s.d), p.flow, fb})
			}
		}
		for len(fbs) > 0 && !fbs[0].at.After(now) {
			send[fbs[0].flow].OnFeedback(fbs[0].fb, now)
			fbs = fbs[1:]
		}
		if s.trace && now.Sub(t0)%(10*time.Millisecond) == 0 && now.Sub(t0) < 3*time.Second {
			t.Logf("%v rate %.1f Mbit/s queue %d ring %d hidden %d", now.Sub(t0), float64(send[0].Rate())*8/1e6, len(queue), len(ring), len(hidden))
		}
		if now.Sub(t0) > s.dur/2 {
			qsum += float64(len(queue))
			steps++
		}
	}
	for i := range res.half {
		res.half[i] /= (s.dur / 2).Seconds()
	}
	res.meanQ = qsum / float64(steps)
	return res
}

func cmpOr(d, def time.Duration) time.Duration {
	if d != 0 {
		return d
	}
	return def
}

func TestBottleneckConverges(t *testing.T) {
	const capacity = 1.25e6 // 10 Mbit/s
	for _, tc := range []struct {
		name  string
		flows int
	}{{"one flow", 1}, {"two flows", 2}, {"four flows", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			got, drops, meanQ := bottleneck(t, ca.MultiBitECN, tc.flows, capacity, 100, 10*time.Millisecond, 20*time.Second)
			total := 0.0
			for _, g := range got {
				total += g
			}
			t.Logf("throughput %.0f%% of the link, shares %v, %d drops, mean queue %.1f of 100", 100*total/capacity, got, drops, meanQ)
			if total < 0.80*capacity {
				t.Errorf("throughput %.0f B/s, want >= 80%% of %.0f", total, capacity)
			}
			if sent := capacity * 20 / 1000; float64(drops) > 0.005*sent { // 20 s of 1000-byte packets
				t.Errorf("%d drops at the bottleneck, want < 0.5%% of %.0f", drops, sent)
			}
			if meanQ > 50 {
				t.Errorf("mean queue %.1f packets, want <= 50 of 100", meanQ)
			}
			for i, g := range got {
				if share := g / total; share < 0.5/float64(tc.flows) || share > 1.5/float64(tc.flows) {
					t.Errorf("flow %d share %.2f, want within 50%% of %.2f", i, share, 1/float64(tc.flows))
				}
			}
		})
	}
	t.Run("nop overflows", func(t *testing.T) {
		_, drops, _ := bottleneck(t, ca.Nop, 1, capacity, 100, 10*time.Millisecond, time.Second)
		if drops == 0 {
			t.Error("Nop: no drops at a bottleneck, want the queue to overflow")
		}
	})
}

// TestSlowStart: one flow on a fast link (1 Gbit/s, 1 ms each way, a
// 1000-packet queue) reaches most of it within its first second with the
// default slow start, losslessly; additive increase alone (SlowStart
// -1) from the same initial rate gets nowhere near in that time (the
// measured default before slow start: 53 Mbit/s after 8 s on loopback).
func TestSlowStart(t *testing.T) {
	const capacity = 125e6
	for _, tc := range []struct {
		name string
		cfg  ca.Config
		ok   func(share float64) bool
	}{
		{"slow start", ca.Config{Kind: ca.MultiBitECN}, func(s float64) bool { return s >= 0.8 }},
		{"additive only", ca.Config{Kind: ca.MultiBitECN, SlowStart: -1}, func(s float64) bool { return s < 0.2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := simulate(t, sim{cfg: tc.cfg, flows: 1, capacity: capacity, qcap: 1000, d: time.Millisecond, dur: 2 * time.Second, standing: true, atHead: true})
			got, drops, meanQ := r.half, r.drops, r.meanQ
			share := got[0] / capacity
			t.Logf("second second: %.0f%% of 1 Gbit/s, %d drops, mean queue %.1f of 1000", 100*share, drops, meanQ)
			if !tc.ok(share) || float64(drops) > 0.005*capacity*2/1000 {
				t.Errorf("%.0f%% of the link, %d drops", 100*share, drops)
			}
		})
	}
}

// TestBehindAFullBuffer: the path of tools/bench/fair.sh, simulated. A 50
// Mbit/s link (tbf) behind a buffer that marks nothing (the shim's
// socket, 90 packets) behind what the forwarder marks by: its queue (256)
// and the N-1 port's ring (256), by their standing length against the
// queue's 256, each packet's mark weighed by its flow's share (ca.Shares,
// as mark.go does); flows start 2 s apart. Each flow must get within 20%
// of its fair share from 2 s after the last one started, with no drop,
// and the last flow 80% of it in its second and third seconds (issue
// 13: a late flow at its share within 2 s). The same with the queue's
// marks told to the senders at once (Config.Local, the queue being the
// senders' own node's, the default policy mb-ecn-local): a lone flow
// then fills the link. Without the shares (noShares), the late flow
// falls short in its second second: 74% of its share (marks in the
// packets), 68% (told at once), the level the running flows hold the
// queue at ending its slow start.
func TestBehindAFullBuffer(t *testing.T) {
	const capacity = 6.25e6
	for _, local := range []bool{false, true} {
		for _, n := range []int{1, 2, 4} {
			name := fmt.Sprintf("%d flows", n)
			if local {
				name += ", marks to the senders at once"
			}
			t.Run(name, func(t *testing.T) {
				s := sim{cfg: ca.Config{Kind: ca.MultiBitECN, Local: local}, flows: n, capacity: capacity, qcap: 256, ring: 256, hidden: 90, markCap: 512, atHead: true, block: true,
					standing: true, d: 100 * time.Microsecond, dur: time.Duration(2*n+6) * time.Second, local: local, noShares: *noShares}
				for i := range n {
					s.start = append(s.start, time.Duration(2*i)*time.Second)
				}
				r := simulate(t, s)
				from := 2*(n-1) + 2 // whole seconds from when every flow had 2 s
				for sec := range int(s.dur / time.Second) {
					var line []string
					for i := range n {
						line = append(line, fmt.Sprintf("%.1f", r.perSec[i][sec]*8/1e6))
					}
					t.Logf("second %d: Mbit/s %s", sec+1, strings.Join(line, " "))
				}
				t.Logf("%d drops, longest queueing %v", r.drops, r.maxDelay)
				if r.drops != 0 {
					t.Errorf("%d drops, want 0", r.drops)
				}
				if n == 1 && local {
					// Told at once, a lone flow keeps the link full
					// (marks in the packets: 94% from the third second).
					var sum float64
					for sec := 2; sec < int(s.dur/time.Second); sec++ {
						sum += r.perSec[0][sec]
					}
					if share := sum / float64(int(s.dur/time.Second)-2) / capacity; share < 0.97 {
						t.Errorf("a lone flow told at once: %.0f%% of the link from second 3, want >= 97%%", 100*share)
					}
				}
				if n > 1 {
					// The late flow in its second and third whole seconds
					// (82-83% and 98-100% of its share in its second: marks in
					// the packets, told at once).
					last, sec := n-1, 2*(n-1)+1
					for i := range 2 {
						if share := r.perSec[last][sec+i] / (capacity / float64(n)); share < 0.8 {
							t.Errorf("late flow: %.0f%% of its fair share in its second %d, want >= 80%%", 100*share, i+2)
						}
					}
				}
				for i := range n {
					var sum float64
					secs := 0
					for sec := from; sec < int(s.dur/time.Second); sec++ {
						sum += r.perSec[i][sec]
						secs++
					}
					if share := sum / float64(secs) / (capacity / float64(n)); share < 0.8 || share > 1.2 {
						t.Errorf("flow %d: %.0f%% of its fair share from second %d, want 80-120%%", i, 100*share, from+1)
					}
				}
			})
		}
	}
}

// TestNoDecreaseWhileFalling: after a decrease, a level lower than the one
// before means the queue drains: no second cut for it, however long after;
// a level that holds or rises is cut again once Hold has passed.
func TestNoDecreaseWhileFalling(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 1 << 20, MinRate: 1, SlowStart: -1})
	hold := ca.DefaultHold * ca.DefaultInterval
	for _, tc := range []struct {
		name string
		next uint8
		cut  bool
	}{{"falling", 100, false}, {"same", 200, true}, {"rising", 255, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := c.NewFlow(t0)
			f.OnFeedback(ca.Feedback{ECE: 200}, t0.Add(time.Second))
			r := f.Rate()
			f.OnFeedback(ca.Feedback{ECE: tc.next}, t0.Add(time.Second+hold))
			if got := f.Rate(); (got < r) != tc.cut {
				t.Errorf("level 200 then %d after Hold: rate %d from %d, want a cut: %v", tc.next, got, r, tc.cut)
			}
		})
	}
}

// TestBackToWhereItFell: after a decrease, a flow that wants more grows
// back towards the rate it was cut from much faster than Increase, then
// additively around it.
func TestBackToWhereItFell(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 100 << 20, MinRate: 1, SlowStart: -1})
	f := c.NewFlow(t0)
	f.OnFeedback(ca.Feedback{ECE: 255}, t0)
	cut := f.Rate()
	now := t0
	// 50 Intervals of a sender that always wants more, no congestion.
	for range 50 {
		now = now.Add(ca.DefaultInterval)
		for f.OnSend(flowMaxSDU, now) == 0 {
		}
	}
	now = now.Add(ca.DefaultInterval)
	f.OnSend(flowMaxSDU, now)
	additive := cut + 50*ca.DefaultIncrease
	if got := f.Rate(); got < (100<<20)*9/10 || got <= additive {
		t.Errorf("after 50 Intervals: rate %d from %d cut from %d, want >= 90%% of %d (additive alone: %d)", got, cut, 100<<20, 100<<20, additive)
	}
}

// TestSlowStartMeetsOthers: a flow in slow start hearing a level that
// stays low (within a few steps of the last) stops growing but is not cut
// before Hold Intervals, then by the level; a level that rises ends slow
// start at once with a cut of at least a quarter.
func TestSlowStartMeetsOthers(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: 1 << 20, MinRate: 1})
	f := c.NewFlow(t0)
	t1 := t0.Add(time.Second)
	for i, ece := range []uint8{3, 5, 5} { // one feedback per Interval
		now := t1.Add(time.Duration(i) * ca.DefaultInterval)
		f.OnSend(1<<20, now) // wants more
		f.OnFeedback(ca.Feedback{ECE: ece}, now)
		if got := f.Rate(); got != 1<<20 {
			t.Fatalf("low level %d within Hold: rate %d, want %d (no growth, no cut)", ece, got, 1<<20)
		}
	}
	f.OnFeedback(ca.Feedback{ECE: 5}, t1.Add(ca.DefaultHold*ca.DefaultInterval))
	if got, want := f.Rate(), uint64(1<<20-1<<20*5/512); got != want {
		t.Errorf("low level for Hold: rate %d, want %d (a cut by the level)", got, want)
	}
	g := c.NewFlow(t0)
	g.OnFeedback(ca.Feedback{ECE: 3}, t0.Add(time.Second))
	g.OnFeedback(ca.Feedback{ECE: 40}, t0.Add(time.Second+ca.DefaultInterval))
	if got, want := g.Rate(), uint64(1<<20-1<<20*128/512); got != want {
		t.Errorf("rising level: rate %d, want %d (slow start left with a quarter cut)", got, want)
	}
}

// TestShareOfAFlowThatStopped: of two flows sharing the path of
// TestBehindAFullBuffer, one stops sending at 6 s; the other takes the
// whole link within 2 s (a flow that stops does not keep its share).
func TestShareOfAFlowThatStopped(t *testing.T) {
	const capacity = 6.25e6
	s := sim{cfg: ca.Config{Kind: ca.MultiBitECN}, flows: 2, capacity: capacity, qcap: 256, ring: 256, hidden: 90,
		markCap: 512, atHead: true, block: true, standing: true, d: 100 * time.Microsecond, dur: 10 * time.Second,
		stop: []time.Duration{0, 6 * time.Second}}
	r := simulate(t, s)
	for sec := range 10 {
		t.Logf("second %d: Mbit/s %.1f %.1f", sec+1, r.perSec[0][sec]*8/1e6, r.perSec[1][sec]*8/1e6)
	}
	if got := r.perSec[0][4] / capacity; got > 0.65 {
		t.Fatalf("flow 0 had %.0f%% of the link in its fifth second, want about half (both sending)", 100*got)
	}
	if got := r.perSec[0][7] / capacity; got < 0.8 {
		t.Errorf("flow 0: %.0f%% of the link 2 s after the other stopped, want >= 80%%", 100*got)
	}
}

// TestStallingReader: the path of tools/bench/ca.sh, simulated. The
// bottleneck is the receiving program, which reads 640 Mbit/s but now and
// then waits 2-8 ms for a CPU (10% of the time); in front of it wait the
// delivery queue and the ring to it (768 + 256 packets), marked by their
// standing depth as packets join. mb-ecn must deliver at least 80% of
// what the reader could take and lose under 1%: a stall is not
// congestion that lasts, and a flow cut a little by one must be back
// before the next. Growing by Increase alone past the rate of the last
// cut (no scaleInc) it settles at 78% (73% behind 512 packets, the
// delivery queue of 256); with scaleInc at 91%.
func TestStallingReader(t *testing.T) {
	const capacity = 80e6 // bytes/s: 80,000 packets/s
	ms := time.Millisecond
	stalls := []stall{{40 * ms, 5 * ms}, {25 * ms, 2 * ms}, {70 * ms, 8 * ms}, {30 * ms, 3 * ms}, {50 * ms, 6 * ms}, {45 * ms, 4 * ms}}
	r := simulate(t, sim{cfg: ca.Config{Kind: ca.MultiBitECN}, flows: 1, capacity: capacity, qcap: 1024, standing: true,
		d: 100 * time.Microsecond, dur: 4 * time.Second, stalls: stalls})
	var line []string
	for sec := range 4 {
		line = append(line, fmt.Sprintf("%.0f", r.perSec[0][sec]*8/1e6))
	}
	can := capacity * (1 - r.stalled.Seconds()/4) // what the reader could take over the second half
	lost := float64(r.drops) / float64(r.sent)
	t.Logf("Mbit/s per second %s; second half %.0f Mbit/s, %.0f%% of the %.0f the reader could take; %d of %d lost (%.2f%%); reader stalled %v",
		strings.Join(line, " "), r.half[0]*8/1e6, 100*r.half[0]/can, can*8/1e6, r.drops, r.sent, 100*lost, r.stalled)
	if r.half[0] < 0.8*can {
		t.Errorf("second half: %.0f%% of what the reader could take, want >= 80%%", 100*r.half[0]/can)
	}
	if lost >= 0.01 {
		t.Errorf("%.2f%% lost, want < 1%%", 100*lost)
	}
}

// TestBurstAfterWaiting: a sender that comes back after waiting longer
// than an Interval (a process waiting for a CPU) may send at once no
// more than an eighth of an Interval at its rate (at least two SDUs),
// not a whole Interval's: a burst of some 1,000 SDUs at loopback rates
// filled the receiving node's queues. It keeps its rate when it asks in
// time. With the bucket of an Interval, it sent 80 SDUs at once here.
func TestBurstAfterWaiting(t *testing.T) {
	t0 := time.Unix(0, 0)
	const rate = 8_000_000 // bytes/s: 80,000 bytes an Interval
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN, InitialRate: rate, MaxRate: rate, SlowStart: -1})
	f := c.NewFlow(t0)
	now := t0.Add(time.Second) // a second without sending: the bucket is full
	burst := 0
	for f.OnSend(1000, now) == 0 {
		burst += 1000
	}
	want := rate * ca.DefaultInterval.Seconds() / 8
	if float64(burst) > want {
		t.Errorf("sent %d bytes at once after waiting, want at most %.0f (an eighth of an Interval at the rate)", burst, want)
	}
	sent := 0
	end := now.Add(time.Second)
	for now.Before(end) {
		if w := f.OnSend(1000, now); w == 0 {
			sent += 1000
		} else {
			now = now.Add(w)
		}
	}
	if sent < 0.99*rate || sent > 1.01*rate {
		t.Errorf("sent %d bytes in the second after, want about %d (the rate)", sent, rate)
	}
}

// TestSharesWeigh: a lone flow and flows that send alike are marked as
// the queue is; a trickle beside a bulk flow does not raise the bulk
// flow's marks much; a flow under three quarters of an even share is not marked,
// and one over it more than the queue.
func TestSharesWeigh(t *testing.T) {
	const win = 10 * time.Millisecond
	send := func(s *ca.Shares, now int64, bytes map[uint64]int) {
		// Interleaved in packets of 1,000 bytes, as a queue's output is.
		left := maps.Clone(bytes)
		for more := true; more; {
			more = false
			for _, k := range slices.Sorted(maps.Keys(left)) {
				if left[k] > 0 {
					s.See(k, 1000, now, win)
					left[k] -= 1000
					more = true
				}
			}
		}
	}
	var s ca.Shares
	send(&s, 1, map[uint64]int{1: 100_000})
	if got := s.Weigh(100, 1); got != 100 {
		t.Errorf("lone flow: level 100 weighed to %d, want 100", got)
	}
	s = ca.Shares{}
	send(&s, 1, map[uint64]int{1: 50_000, 2: 50_000})
	if a, b := s.Weigh(100, 1), s.Weigh(100, 2); a != 100 || b != 100 {
		t.Errorf("two even flows: %d and %d, want 100 and 100", a, b)
	}
	s = ca.Shares{}
	send(&s, 1, map[uint64]int{1: 200_000, 2: 2_000})
	if got := s.Weigh(100, 1); got < 100 || got > 104 {
		t.Errorf("bulk flow beside a trickle: %d, want 100-104", got)
	}
	s = ca.Shares{}
	send(&s, 1, map[uint64]int{1: 90_000, 2: 10_000})
	if a, b := s.Weigh(100, 1), s.Weigh(100, 2); b != 0 || a <= 100 {
		t.Errorf("running flow 90%%, new flow 10%%: %d and %d, want over 100 and 0", a, b)
	}
	if got := s.Weigh(200, 1); got != 255 && got <= 200 {
		t.Errorf("running flow at level 200: %d", got)
	}
	// The window before the current one still counts; the one before
	// that no longer does.
	s = ca.Shares{}
	send(&s, 1, map[uint64]int{1: 90_000, 2: 10_000})
	send(&s, 1+int64(win), map[uint64]int{2: 50_000})
	if got := s.Weigh(100, 2); got == 0 {
		t.Errorf("flow 2 over two windows (60 of 140 kB): not marked")
	}
	send(&s, 1+2*int64(win), map[uint64]int{2: 50_000})
	send(&s, 1+3*int64(win), map[uint64]int{2: 50_000})
	if got := s.Weigh(100, 2); got != 100 {
		t.Errorf("flow 2 alone for two windows: %d, want 100", got)
	}
	if got := s.Weigh(0, 2); got != 0 {
		t.Errorf("level 0 weighed to %d", got)
	}
}

// TestPeak: the most counted in one window over the last PeakWindows,
// the current one included; windows that pass empty count as zero, so a
// peak is forgotten PeakWindows windows after it, and a stall of a few
// windows does not lower it.
func TestPeak(t *testing.T) {
	const w = 10 * time.Millisecond
	var p ca.Peak
	at := int64(time.Hour) // any monotonic origin
	for range 30 {
		p.Add(1, at, w)
	}
	if got := p.Add(0, at, w); got != 30 {
		t.Fatalf("one window of 30: peak %d, want 30", got)
	}
	at += int64(w)
	if got := p.Add(5, at, w); got != 30 {
		t.Errorf("the next window at 5: peak %d, want 30 (the last one's)", got)
	}
	// A stall: 20 windows with nothing counted.
	at += 20 * int64(w)
	if got := p.Add(1, at, w); got != 30 {
		t.Errorf("after a stall of 20 windows: peak %d, want 30", got)
	}
	for range 10 {
		p.Add(40, at, w)
	}
	if got := p.Add(0, at, w); got != 401 {
		t.Errorf("a window of 401: peak %d, want 401 (the current one counts)", got)
	}
	// Forgotten after PeakWindows windows.
	for range ca.PeakWindows + 1 {
		at += int64(w)
		p.Add(2, at, w)
	}
	if got := p.Add(0, at, w); got != 2 {
		t.Errorf("after %d windows of 2: peak %d, want 2", ca.PeakWindows+1, got)
	}
	// A gap longer than the memory forgets at once.
	at += 1000 * int64(w)
	if got := p.Add(3, at, w); got != 3 {
		t.Errorf("after a gap of 1000 windows: peak %d, want 3", got)
	}
	if n := testing.AllocsPerRun(100, func() { at += int64(w); p.Add(1, at, w) }); n != 0 {
		t.Errorf("Add allocates %v times, want 0", n)
	}
}

// TestSlowStartLargePackets: in slow start, a flow of 64 KB packets
// grows as fast as one of 1,400-byte packets, and a new flow's first
// large packets go at once. Before, the bucket held two 1,400-byte SDUs
// when the first 64 KB packet came, which then waited half a second at
// the initial rate, and that wait counted as one Interval of wanting
// more: after 300 ms the large packets' flow was still at its initial
// rate, the other at about 34 times it. Now the bucket deepens full, a wait
// is at most an Interval (the sender comes back while its rate climbs),
// and each Interval a longer wait spanned counts.
func TestSlowStartLargePackets(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := mustNew(t, ca.Config{Kind: ca.MultiBitECN})
	if f := c.NewFlow(t0); f.OnSend(64000, t0) != 0 {
		t.Error("a new flow's first 64,000-byte packet waits")
	}
	rateAfter := func(size int, d time.Duration) uint64 {
		f := c.NewFlow(t0)
		for now := t0; now.Before(t0.Add(d)); {
			if w := f.OnSend(size, now); w > 0 {
				if w > ca.DefaultInterval {
					t.Fatalf("told to wait %v, more than an Interval", w)
				}
				now = now.Add(w)
			}
		}
		return f.Rate()
	}
	small, large := rateAfter(1400, 300*time.Millisecond), rateAfter(64000, 300*time.Millisecond)
	t.Logf("after 300 ms of slow start: %d B/s with 1,400-byte packets, %d B/s with 64,000-byte ones", small, large)
	if large < small/2 {
		t.Errorf("64,000-byte packets: %d B/s after 300 ms, 1,400-byte ones %d: want at least half", large, small)
	}
}
