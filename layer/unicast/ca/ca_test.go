package ca_test

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/unicast/ca"
)

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

// bottleneck simulates senders sharing one link of capacity bytes/s with
// a queue of qcap packets, one-way delay d each way, for dur, and returns
// per-flow bytes delivered in the second half, drops and the mean queue.
func bottleneck(t *testing.T, kind ca.Kind, flows int, capacity float64, qcap int, d, dur time.Duration) (got []float64, drops int, meanQ float64) {
	return bottleneckCfg(t, ca.Config{Kind: kind}, flows, capacity, qcap, d, dur)
}

func bottleneckCfg(t *testing.T, cfg ca.Config, flows int, capacity float64, qcap int, d, dur time.Duration) (got []float64, drops int, meanQ float64) {
	const pkt = 1000
	const dt = 100 * time.Microsecond
	c := mustNew(t, cfg)
	t0 := time.Unix(1000, 0)
	type inflight struct {
		at   time.Time
		flow int
		ecn  uint8
	}
	type fbMsg struct {
		at   time.Time
		flow int
		fb   ca.Feedback
	}
	send := make([]ca.Flow, flows)
	recv := make([]ca.Flow, flows)
	next := make([]time.Time, flows)
	offer := make([]float64, flows) // the application offers twice the link rate
	for i := range flows {
		send[i], recv[i], next[i] = c.NewFlow(t0), c.NewFlow(t0), t0
	}
	var queue []inflight // at the bottleneck; at = marked level in ecn
	var wire []inflight  // after the bottleneck, towards receivers
	var fbs []fbMsg
	got = make([]float64, flows)
	credit := 0.0
	var qsum float64
	steps := 0
	for now := t0; now.Before(t0.Add(dur)); now = now.Add(dt) {
		for i := range flows {
			offer[i] = min(offer[i]+2*capacity*dt.Seconds(), max(4*pkt, 4*capacity*dt.Seconds()))
			for !now.Before(next[i]) && offer[i] >= pkt {
				if w := send[i].OnSend(pkt, now); w != 0 {
					next[i] = now.Add(w)
					break
				}
				offer[i] -= pkt
				if len(queue) >= qcap {
					drops++
					continue
				}
				queue = append(queue, inflight{flow: i, ecn: c.MarkECN(len(queue), qcap)})
			}
		}
		credit += capacity * dt.Seconds()
		for len(queue) > 0 && credit >= pkt {
			credit -= pkt
			p := queue[0]
			queue = queue[1:]
			p.at = now.Add(d)
			wire = append(wire, p)
		}
		if len(queue) == 0 {
			credit = min(credit, pkt)
		}
		for len(wire) > 0 && !wire[0].at.After(now) {
			p := wire[0]
			wire = wire[1:]
			if now.Sub(t0) > dur/2 {
				got[p.flow] += pkt
			}
			if fb, ok := recv[p.flow].OnReceive(p.ecn, pkt, now); ok {
				fbs = append(fbs, fbMsg{now.Add(d), p.flow, fb})
			}
		}
		for len(fbs) > 0 && !fbs[0].at.After(now) {
			send[fbs[0].flow].OnFeedback(fbs[0].fb, now)
			fbs = fbs[1:]
		}
		if now.Sub(t0) > dur/2 {
			qsum += float64(len(queue))
			steps++
		}
	}
	for i := range got {
		got[i] /= (dur / 2).Seconds()
	}
	return got, drops, qsum / float64(steps)
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
			if drops != 0 {
				t.Errorf("%d drops at the bottleneck, want 0", drops)
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
			got, drops, meanQ := bottleneckCfg(t, tc.cfg, 1, capacity, 1000, time.Millisecond, 2*time.Second)
			share := got[0] / capacity
			t.Logf("second second: %.0f%% of 1 Gbit/s, %d drops, mean queue %.1f of 1000", 100*share, drops, meanQ)
			if !tc.ok(share) || drops != 0 {
				t.Errorf("%.0f%% of the link, %d drops", 100*share, drops)
			}
		})
	}
}
