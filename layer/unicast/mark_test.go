package unicast

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/ca"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

// TestRxMark: the receive loop marks what it reads from an N-1 port by
// the standing backlog of the ring it reads from (here a flowtest pipe,
// which says its depth as a node's RingPort does): nothing while the ring
// is shallow or only briefly deep, the level of its depth once it stays
// deep for a window, nothing again once it drains. A rise, however
// steep, is not marked until it stands: the shims deliver in bursts and
// wait for room (engine.Config.RxWait), so a burst on its way through is
// not congestion. (Before, a rise from empty to a quarter of the ring
// was marked at once, to half at 255: both fail here.) raise writes the
// level into each packet's PCI and counts them (marked.rx).
func TestRxMark(t *testing.T) {
	c, cak := markingCore(t)
	w, r := flowtest.Pipe(256)
	defer w.Close()
	defer r.Close()
	np := &nport{Flow: r}
	bl, ok := r.(backlogPort)
	if !ok {
		t.Fatal("a flowtest pipe does not say its backlog")
	}
	msg := make([]byte, 100)
	write := func(n int) {
		for range n {
			if err := w.Write(msg, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := make([]byte, flow.MaxSDU)
	read := func(n int) {
		for range n {
			if _, err := r.Read(buf, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	window := cak.Interval()
	if lvl := c.rxMark(np, bl, time.Now().UnixNano()); lvl != 0 {
		t.Errorf("empty ring: level %d, want 0", lvl)
	}
	write(60)
	if lvl := c.rxMark(np, bl, time.Now().UnixNano()); lvl != 0 {
		t.Errorf("a ring just filled to 60 (a rise short of a quarter, not yet standing): level %d, want 0", lvl)
	}
	time.Sleep(window)
	c.rxMark(np, bl, time.Now().UnixNano()) // a window in which it stayed at 60
	time.Sleep(window)
	want := cak.MarkECN(60, 256)
	if lvl := c.rxMark(np, bl, time.Now().UnixNano()); lvl != want || want == 0 {
		t.Errorf("a ring 60 deep for two windows: level %d, want %d (> 0)", lvl, want)
	}
	bs := []*pbuf{dt.NewBuf(), dt.NewBuf(), dt.NewBuf()}
	for _, b := range bs[:2] {
		b.Off, b.End = 0, dt.PCILen+10
	}
	bs[2].Off, bs[2].End = 0, dt.PCILen-1        // too short to carry a PCI: not marked
	c.raise(np, bs, want, time.Now().UnixNano()) // one flow: weighed as the ring is
	for i, b := range bs[:2] {
		if got := dt.PCI(b.Pkt()).ECN(); got != want {
			t.Errorf("packet %d: ECN %d after raise, want %d", i, got, want)
		}
	}
	if got := c.p.c.markedRx.Load(); got != 2 {
		t.Errorf("marked.rx %d, want 2", got)
	}
	write(60) // 120 deep, 60 above where it stood
	if lvl, want := c.rxMark(np, bl, time.Now().UnixNano()), cak.MarkECN(60, 256); lvl != want {
		t.Errorf("a ring standing at 60 that rises to 120: level %d, want %d (its standing depth)", lvl, want)
	}
	read(120)
	if lvl := c.rxMark(np, bl, time.Now().UnixNano()); lvl != 0 {
		t.Errorf("a drained ring: level %d, want 0", lvl)
	}
	time.Sleep(2 * window) // no standing depth left from before
	write(128)
	if lvl := c.rxMark(np, bl, time.Now().UnixNano()); lvl != 0 {
		t.Errorf("a burst from empty to half of the ring: level %d, want 0 (not standing)", lvl)
	}
	read(128)
	time.Sleep(2 * window)
	write(200)
	c.rxMark(np, bl, time.Now().UnixNano())
	time.Sleep(window)
	c.rxMark(np, bl, time.Now().UnixNano())
	time.Sleep(window)
	if lvl, want := c.rxMark(np, bl, time.Now().UnixNano()), cak.MarkECN(200, 256); lvl != want || want < 128 {
		t.Errorf("a ring standing at 200 of 256: level %d, want %d", lvl, want)
	}
	read(200)
}

// TestDeliveryGrows: a delivery queue starts at deliverQueueMin and
// doubles while full, up to deliverQueue, keeping its packets in order
// across the ring's wrap and each growth.
func TestDeliveryGrows(t *testing.T) {
	d := newDelivery()
	if len(d.buf) != deliverQueueMin {
		t.Fatalf("a new queue holds %d, want %d", len(d.buf), deliverQueueMin)
	}
	var in, out []*pbuf
	var got [7]*pbuf
	// Push more than is popped, so the head moves and the ring wraps
	// before each growth.
	for range deliverQueue { // net 3 a round: full in about a third of the rounds
		for range 10 {
			b := dt.NewBuf()
			if !d.push(b) {
				if len(in)-len(out) != deliverQueue {
					t.Fatalf("refused with %d queued, want refused only at %d", len(in)-len(out), deliverQueue)
				}
				goto full
			}
			in = append(in, b)
		}
		out = append(out, got[:d.pop(got[:])]...)
	}
	t.Fatal("the queue never filled")
full:
	if len(d.buf) != deliverQueue {
		t.Errorf("a full queue's ring holds %d, want %d", len(d.buf), deliverQueue)
	}
	for n := d.pop(got[:]); n > 0; n = d.pop(got[:]) {
		out = append(out, got[:n]...)
	}
	if len(out) != len(in) {
		t.Fatalf("popped %d of %d", len(out), len(in))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Fatalf("packet %d out of order", i)
		}
	}
}

// TestDeliveryClosed: once a flow's delivery loop has ended, its queue
// refuses what a receive loop that still finds the flow would push (the
// buffers would never go back to the pool), and pop hands out what was
// queued before, in order.
func TestDeliveryClosed(t *testing.T) {
	d := newDelivery()
	a, b, late := dt.NewBuf(), dt.NewBuf(), dt.NewBuf()
	if !d.push(a) || !d.push(b) {
		t.Fatal("an open queue refused a packet")
	}
	d.close()
	if d.push(late) {
		t.Error("a closed queue took a packet")
	}
	var out [4]*pbuf
	if n := d.pop(out[:]); n != 2 || out[0] != a || out[1] != b {
		t.Errorf("popped %d (%p %p), want a and b", n, out[0], out[1])
	}
	full := newDelivery()
	for i := range deliverQueue {
		if !full.push(dt.NewBuf()) {
			t.Fatalf("refused packet %d of %d", i, deliverQueue)
		}
	}
	if full.push(dt.NewBuf()) {
		t.Error("a full queue took a packet")
	}
}

// TestDeliverMarkRising: what waits in front of a program is marked by
// its standing depth, and by the depth it is heading for (its depth plus
// its rise above the standing depth) once that passes half of the
// delivery queue and ring: a program that stalls fills them in a few
// milliseconds and the next stall overflows them, before any depth
// stands for a window. A rise from empty is marked from a quarter, at
// 255 from half; a rise short of a quarter is not (a burst); a queue
// standing deep that rises a little is marked by its standing depth.
// Before, a rise was marked only once past half, at its depth's level.
func TestDeliverMarkRising(t *testing.T) {
	c, cak := markingCore(t)
	now := time.Now()
	ms := time.Millisecond
	// A flow this slow (a few SDUs a window) is judged against the
	// queue's first deliverMarkMin (TestDeliverMarkByRate).
	const m = deliverMarkMin
	f := &fa.Flow{}
	if lvl := c.deliverMark(f, nil, 0, deliverQueue, now); lvl != 0 {
		t.Fatalf("an empty queue: level %d, want 0", lvl)
	}
	short := m/4 - 1
	if lvl := c.deliverMark(f, nil, short, deliverQueue, now.Add(ms)); lvl != 0 {
		t.Errorf("a rise to %d of %d (short of a quarter): level %d, want 0", short, m, lvl)
	}
	quarter := m / 4
	want := cak.MarkECN(2*quarter, m)
	if lvl := c.deliverMark(f, nil, quarter, deliverQueue, now.Add(2*ms)); lvl != want || want == 0 {
		t.Errorf("a rise to a quarter of %d: level %d, want %d (> 0, at once)", m, lvl, want)
	}
	if lvl := c.deliverMark(f, nil, m/2, deliverQueue, now.Add(3*ms)); lvl != 255 {
		t.Errorf("a rise to half of %d: level %d, want 255", m, lvl)
	}
	if got := c.p.c.markedDeliver.Load(); got != 2 {
		t.Errorf("marked.deliver %d, want 2", got)
	}
	// A queue that stood at 300 for two windows and rises to 340 heads
	// for 380, short of half: marked by where it stands.
	g := &fa.Flow{}
	at := now
	for range 25 {
		c.deliverMark(g, nil, 300, deliverQueue, at)
		at = at.Add(ms)
	}
	if lvl, want := c.deliverMark(g, nil, 340, deliverQueue, at), cak.MarkECN(300, m); lvl != want || want == 0 {
		t.Errorf("a queue standing at 300 that rises to 340: level %d, want %d (its standing level)", lvl, want)
	}
}

// TestDeliverMarkByRate: what waits in front of a program is judged
// against deliverTime of the flow's peak rate of SDUs, at least
// deliverMarkMin and at most the queue's length (the port's ring added
// either way). A slow flow is marked at a standing depth at which a fast
// one is not, the fast one once the queue stands as deep in the time of
// its rate; a stall (windows with nothing) does not lower the peak.
func TestDeliverMarkByRate(t *testing.T) {
	c, cak := markingCore(t)
	iv := cak.Interval()
	ring := fakeDeliverPort{cap: 256}
	// stand feeds f perWindow SDUs a window for windows windows, each
	// seeing the queue at depth, and returns the level the last met.
	stand := func(f *fa.Flow, at *time.Time, perWindow, windows, depth int) uint8 {
		var lvl uint8
		for range windows {
			for range perWindow {
				lvl = c.deliverMark(f, ring, depth, deliverQueue, *at)
			}
			*at = at.Add(iv)
		}
		return lvl
	}
	now := time.Now()
	depth := 700 // standing: past 1/16 of the slow flow's capacity, short of the fast one's
	slow, fast := &fa.Flow{}, &fa.Flow{}
	at := now
	if lvl, want := stand(slow, &at, 10, 5, depth), cak.MarkECN(depth, deliverMarkMin+ring.cap); lvl != want || want == 0 {
		t.Errorf("a slow flow standing at %d: level %d, want %d (judged against %d)", depth, lvl, want, deliverMarkMin+ring.cap)
	}
	// Fast: deliverTime of its peak is the whole queue.
	perWindow := deliverQueue * int(iv) / int(deliverTime)
	at = now
	if lvl := stand(fast, &at, perWindow, 5, depth); lvl != 0 {
		t.Errorf("a flow of %d SDUs a window standing at %d: level %d, want 0 (judged against %d)", perWindow, depth, lvl, deliverQueue+ring.cap)
	}
	// A stall of 20 windows, then a trickle: still judged by its peak.
	at = at.Add(20 * iv)
	if lvl := stand(fast, &at, 1, 3, depth); lvl != 0 {
		t.Errorf("after a stall, the same flow standing at %d: level %d, want 0", depth, lvl)
	}
	deep := deliverQueue / 2
	if lvl, want := stand(fast, &at, 1, 3, deep), cak.MarkECN(deep, deliverQueue+ring.cap); lvl != want || want == 0 {
		t.Errorf("the fast flow standing at %d: level %d, want %d", deep, lvl, want)
	}
}

// fakeDeliverPort is a deliverPort with nothing queued and a ring of cap.
type fakeDeliverPort struct{ cap int }

func (fakeDeliverPort) Queued() int     { return 0 }
func (p fakeDeliverPort) QueueCap() int { return p.cap }

// localRec records what a flow of this node is told by its queues.
type localRec struct {
	pkts, sum, calls int
	level            uint8
}

func (r *localRec) LocalMark(ecn uint8, pkts int, _ int64) {
	r.pkts += pkts
	r.sum += int(ecn) * pkts
	r.calls++
	r.level = max(r.level, ecn)
}

// flowBatch returns a batch of 1,000-byte packets, one per entry of
// flows, each to the destination and endpoint of its entry's number.
func flowBatch(flows ...int) []*pbuf {
	var bs []*pbuf
	for _, f := range flows {
		b := dt.NewBuf()
		b.Off, b.End = 0, dt.PCILen+1000
		dt.PCI(b.Pkt()).Encode(dt.Fields{Dst: layer.Addr(f), EID: layer.EID(f), TTL: 1})
		bs = append(bs, b)
	}
	return bs
}

// markingCore returns a core marking with mb-ecn, and its policy.
func markingCore(t *testing.T) (*core, *ca.CA) {
	t.Helper()
	cak, err := ca.New(ca.Config{Kind: ca.MultiBitECN})
	if err != nil {
		t.Fatal(err)
	}
	return &core{p: &IPCP{}, ca: cak}, cak
}

// markingPort returns a core marking with mb-ecn and an N-1 port whose
// queue holds 256 and whose ring below holds below.
func markingPort(t *testing.T, below int) (*core, *nport) {
	t.Helper()
	c, _ := markingCore(t)
	sched, err := dt.NewScheduler[*pbuf](dt.SchedConfig{QueueLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	sched.SetBelow(below)
	return c, &nport{Sched: sched}
}

// TestMarkLocal: a batch leaving an N-1 port's queue that stands deep
// tells the flows this node made the queue's level at once
// (dt.LocalMarker, ca.Flow.OnLocal) and leaves their packets unmarked
// (the receiver must not report the same marks a round trip later);
// packets the node forwards are marked in their PCI as before. The
// packets' Origin is cleared, and so is a buffer's when it goes back to
// the pool.
func TestMarkLocal(t *testing.T) {
	c, np := markingPort(t, 200) // the ring below stands at 200
	cak := c.ca
	var mine, other localRec
	batch := func() []*pbuf {
		bs := []*pbuf{dt.NewBuf(), dt.NewBuf(), dt.NewBuf(), dt.NewBuf()}
		for _, b := range bs {
			b.Off, b.End = 0, dt.PCILen+10
		}
		bs[0].Origin, bs[1].Origin, bs[3].Origin = &mine, &mine, &other
		return bs
	}
	c.mark(np, batch(), 0)
	time.Sleep(2 * cak.Interval()) // the depth has stood for a window
	bs := batch()
	c.mark(np, bs, 0)
	want := cak.MarkECN(200, 256)
	if want == 0 {
		t.Fatal("a queue standing at 200 of 256 is not marked")
	}
	if got := dt.PCI(bs[2].Pkt()).ECN(); got != want {
		t.Errorf("a forwarded packet: ECN %d, want %d", got, want)
	}
	for _, i := range []int{0, 1, 3} {
		if got := dt.PCI(bs[i].Pkt()).ECN(); got != 0 {
			t.Errorf("packet %d, made here: ECN %d in its PCI, want 0 (told its flow instead)", i, got)
		}
		if bs[i].Origin != nil {
			t.Errorf("packet %d: Origin left set after marking", i)
		}
	}
	if mine.pkts != 4 || mine.level != want || other.pkts != 2 || other.level != want {
		t.Errorf("flows told %+v and %+v, want 4 and 2 packets at level %d", mine, other, want)
	}
	if n := c.p.c.markedLocal.Load(); n != 3 {
		t.Errorf("marked.local %d, want 3", n)
	}
	pool := dt.NewPool(4, nil, new(atomic.Uint64))
	b := pool.GetOne()
	b.Origin = &mine
	pool.PutOne(b)
	if b.Origin != nil {
		t.Error("a buffer back in the pool keeps its Origin")
	}
}

// TestMarkByShares: leaving a queue that stands deep, the packets of a
// flow that sends a tenth of what the queue carries are not marked (a
// flow starting beside a running one keeps its slow start), and those
// of the flow that sends the rest are marked above the queue's level;
// flows that send alike are marked at the queue's level.
func TestMarkByShares(t *testing.T) {
	c, np := markingPort(t, 100) // the ring below stands at 100
	cak := c.ca
	batch := flowBatch
	running := func(bs []*pbuf) (runMax, newMax uint8) {
		for _, b := range bs {
			p := dt.PCI(b.Pkt())
			if p.Dst() == 1 {
				runMax = max(runMax, p.ECN())
			} else {
				newMax = max(newMax, p.ECN())
			}
		}
		return
	}
	nine := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 2}
	c.mark(np, batch(nine...), 0)
	time.Sleep(2 * cak.Interval()) // the depth has stood for a window
	want := cak.MarkECN(100, 256)
	if want == 0 || want > 120 {
		t.Fatalf("a queue standing at 100 of 256 marked %d: the test needs 1-120", want)
	}
	bs := batch(nine...)
	c.mark(np, bs, 0)
	run, late := running(bs)
	if late != 0 || run <= want {
		t.Errorf("flow with a tenth: ECN %d, want 0; flow with the rest: %d, want over the queue's %d", late, run, want)
	}
	// The running flow's packets made here: told to it at once, their
	// levels (which differ a little as its share does) summed exactly,
	// in at most two calls. (Tried up to three times: the shares' window
	// may turn between the copy weighing the packets here and mark.)
	var mine localRec
	wantSum := 0
	for range 3 {
		shadow := np.TxShares // the same shares, to weigh the packets alike
		bs = batch(nine...)
		mine, wantSum = localRec{}, 0
		for _, b := range bs {
			p := dt.PCI(b.Pkt())
			key := shareKey(p)
			shadow.See(key, len(p), time.Now().UnixNano(), cak.Interval())
			if p.Dst() == 1 {
				b.Origin = &mine
				wantSum += int(shadow.Weigh(want, key))
			}
		}
		c.mark(np, bs, 0)
		if mine.sum == wantSum {
			break
		}
	}
	if mine.pkts != 9 || mine.sum != wantSum || mine.calls > 2 || wantSum <= 9*int(want) {
		t.Errorf("the running flow told %d packets, levels summing to %d in %d calls; want 9, %d (over 9 x %d), at most 2", mine.pkts, mine.sum, mine.calls, wantSum, want)
	}
	np.TxShares = ca.Shares{}
	even := []int{1, 2, 1, 2, 1, 2}
	for range 20 {
		c.mark(np, batch(even...), 0)
	}
	bs = batch(even...)
	c.mark(np, bs, 0)
	// Within a packet of even (one flow's packet goes before the other's).
	if a, b := running(bs); a < want || a > want+2 || b < want || b > want+2 {
		t.Errorf("two flows sending alike: ECN %d and %d, want the queue's %d (to 2 more)", a, b, want)
	}
}

// TestRaiseByShares: what a receive loop reads from a ring that stands
// deep is marked as a transmit queue's output is, by each flow's share:
// a flow with a tenth of what the ring brings is not marked, the rest
// above the ring's level.
func TestRaiseByShares(t *testing.T) {
	c, np := markingPort(t, 0)
	const lvl = 89
	batch := func() []*pbuf { return flowBatch(1, 1, 1, 1, 1, 1, 1, 1, 1, 2) }
	c.raise(np, batch(), lvl, time.Now().UnixNano()) // the shares so far
	bs := batch()
	c.raise(np, bs, lvl, time.Now().UnixNano())
	var run, late uint8
	for _, b := range bs {
		if p := dt.PCI(b.Pkt()); p.Dst() == 1 {
			run = max(run, p.ECN())
		} else {
			late = max(late, p.ECN())
		}
	}
	if late != 0 || run <= lvl {
		t.Errorf("flow with a tenth: ECN %d, want 0; flow with the rest: %d, want over the ring's %d", late, run, lvl)
	}
	if n := c.p.c.markedRx.Load(); n != 18 {
		t.Errorf("marked.rx %d, want 18 (the running flow's, twice)", n)
	}
}
