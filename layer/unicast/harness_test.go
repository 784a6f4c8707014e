package unicast_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// line builds n0 - n1 - ... - n(k-1).
func line(k int) unicasttest.Graph {
	g := unicasttest.Graph{N: k}
	for i := 1; i < k; i++ {
		g.Edges = append(g.Edges, [2]int{i - 1, i})
	}
	return g
}

func TestChainMultiHop(t *testing.T) {
	n := unicasttest.New(t)
	n.Build(line(5), nil) // 4 hops end to end
	n.WaitOperational(10 * time.Second)
	first, last := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(4))
	last.Register("far")
	app, err := first.Alloc(ctxT(t, 5*time.Second), "far", flow.BestEffort())
	if err != nil {
		t.Fatalf("Alloc over 4 hops: %v", err)
	}
	acc, err := last.Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, app, acc.Port, 50)
	mid := n.Node(unicasttest.NodeName(2)).IPCP.Stats()
	if mid.Forwarded < 100 {
		t.Errorf("middle node forwarded %d packets, want >= 100", mid.Forwarded)
	}
	app.Close()
	acc.Port.Close()
}

// TestRandomTopologies checks, on seeded random connected graphs, that
// routing converges to shortest paths (Floyd–Warshall), that every
// installed alternate is loop free, that the directory finds every
// registered name from every member, and that a flow crosses the
// longest shortest path.
func TestRandomTopologies(t *testing.T) {
	sizes := []int{8, 12}
	if raceEnabled {
		sizes = []int{8}
	}
	for _, dirPolicy := range []string{"dht", "flood"} {
		for _, size := range sizes {
			for seed := uint64(1); seed <= 2; seed++ {
				t.Run(fmt.Sprintf("%s/%d/%d", dirPolicy, size, seed), func(t *testing.T) {
					randomTopology(t, dirPolicy, size, seed)
				})
			}
		}
	}
}

func randomTopology(t *testing.T, dirPolicy string, size int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(size)))
	g := unicasttest.RandomGraph(r, size, size/2)
	n := unicasttest.New(t)
	n.Template.LayerConfig.Dir = dirPolicy
	n.Build(g, nil)
	n.WaitOperational(20 * time.Second)
	dist := g.Distances()
	idx := map[layer.Addr]int{}
	for i := range g.N {
		idx[n.Node(unicasttest.NodeName(i)).IPCP.Addr()] = i
	}
	// Converged: metrics are the hop counts; alternates loop free.
	n.WaitFor(5*time.Second, "shortest paths", func() bool {
		for i := range g.N {
			for _, rt := range n.Node(unicasttest.NodeName(i)).IPCP.Routes() {
				if int(rt.Metric) != dist[i][idx[rt.Dst]] {
					return false
				}
			}
		}
		return true
	})
	for i := range g.N {
		for _, rt := range n.Node(unicasttest.NodeName(i)).IPCP.Routes() {
			if rt.Alternate == 0 {
				continue
			}
			nb, d := idx[rt.Alternate], idx[rt.Dst]
			if dist[i][nb] != 1 || !(dist[nb][d] < dist[nb][i]+dist[i][d]) {
				t.Errorf("node %d: alternate %d to %d is not a loop-free neighbour", i, nb, d)
			}
		}
	}
	for i := range g.N {
		n.Node(unicasttest.NodeName(i)).Register(unicasttest.NodeName(i) + ".svc")
	}
	for i := range g.N {
		for j := range g.N {
			name := unicasttest.NodeName(j) + ".svc"
			if err := n.Node(unicasttest.NodeName(i)).IPCP.Query(ctxT(t, 3*time.Second), name); err != nil {
				t.Errorf("node %d: query %s: %v", i, name, err)
			}
		}
	}
	// A flow across the diameter.
	var si, sj, best int
	for i := range g.N {
		for j := range g.N {
			if dist[i][j] > best {
				si, sj, best = i, j, dist[i][j]
			}
		}
	}
	app, err := n.Node(unicasttest.NodeName(si)).Alloc(ctxT(t, 5*time.Second), unicasttest.NodeName(sj)+".svc", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc %d → %d (%d hops): %v", si, sj, best, err)
	}
	acc, err := n.Node(unicasttest.NodeName(sj)).Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, app, acc.Port, 5)
	app.Close()
	acc.Port.Close()
}

// ring4 is n0 - n1 - n2 - n3 - n0.
func ring4() unicasttest.Graph {
	return unicasttest.Graph{N: 4, Edges: [][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 3}}}
}

// stream sends sequence-numbered SDUs on a every interval until stop and
// records the arrival time of each at b.
type stream struct {
	sent     atomic.Uint64
	mu       sync.Mutex
	arrivals []time.Time
	seqs     []uint64
}

func (s *stream) run(a, b flow.Port, interval time.Duration, stop <-chan struct{}) (done func()) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		t := time.NewTicker(interval)
		defer t.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			binary.BigEndian.PutUint64(buf, seq)
			if a.Write(buf, time.Now().Add(time.Second)) == nil {
				s.sent.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := b.Read(buf, time.Time{})
			if err != nil {
				return
			}
			if n >= 8 {
				s.mu.Lock()
				s.arrivals = append(s.arrivals, time.Now())
				s.seqs = append(s.seqs, binary.BigEndian.Uint64(buf))
				s.mu.Unlock()
			}
		}
	}()
	return wg.Wait
}

// gap returns the longest silence between arrivals after from.
func (s *stream) gap(from time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var worst time.Duration
	prev := from
	for _, at := range s.arrivals {
		if at.Before(from) {
			continue
		}
		worst = max(worst, at.Sub(prev))
		prev = at
	}
	return worst
}

func (s *stream) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// TestFailover cuts the primary link of a flow in a ring: traffic must
// move to the loop-free alternate at once (pff.PortDown), not after
// routing reconverges. It reports the delivery gap and the packets lost.
func TestFailover(t *testing.T) {
	gap, lost, sent := failover(t)
	t.Logf("failover: delivery gap %v, %d of %d packets lost (1 ms interval)", gap.Round(10*time.Microsecond), lost, sent)
	if gap > 50*time.Millisecond && !raceEnabled {
		t.Errorf("failover gap %v, want < 50 ms", gap)
	}
}

// failover runs a 1 kpps stream from n0 to n2 of a 4-ring, cuts n0's
// primary link to n2 and measures the longest delivery gap after the cut.
func failover(tb testing.TB) (gap time.Duration, lost int, sent uint64) {
	n := unicasttest.New(tb)
	n.Build(ring4(), nil)
	n.WaitOperational(10 * time.Second)
	src, dst := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(2))
	dst.Register("sink")
	var hops []string
	n.WaitFor(5*time.Second, "a primary and an alternate from n0 to n2", func() bool {
		hops = src.IPCP.NextHops(dst.IPCP.Addr())
		return len(hops) == 2
	})
	app, err := src.Alloc(ctxT(tb, 5*time.Second), "sink", flow.BestEffort())
	if err != nil {
		tb.Fatal(err)
	}
	acc, err := dst.Accept(2 * time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	var s stream
	stop := make(chan struct{})
	wait := s.run(app, acc.Port, time.Millisecond, stop)
	n.WaitFor(2*time.Second, "traffic", func() bool { return s.received() > 100 })
	cutAt := time.Now()
	n.Cut(src.Name, hops[0])
	n.WaitFor(2*time.Second, "traffic after the cut", func() bool { return s.gap(cutAt) > 0 && time.Since(cutAt) > 300*time.Millisecond })
	close(stop)
	time.Sleep(50 * time.Millisecond)
	app.Close()
	acc.Port.Close()
	wait()
	if now := src.IPCP.NextHops(dst.IPCP.Addr()); len(now) == 0 || now[0] != hops[1] {
		tb.Errorf("after the cut n0's next hops to n2 are %v, want %s first", now, hops[1])
	}
	return s.gap(cutAt), int(s.sent.Load()) - s.received(), s.sent.Load()
}

// TestSilentLinkFailure freezes a link (writes vanish, nothing closes):
// the hellos' absence must bring the adjacency down after Dead × Hello
// (3 × 100 ms) and traffic must move to the alternate.
func TestSilentLinkFailure(t *testing.T) {
	n := unicasttest.New(t)
	n.Build(ring4(), nil)
	n.WaitOperational(10 * time.Second)
	src, dst := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(2))
	var hops []string
	n.WaitFor(5*time.Second, "a primary and an alternate", func() bool {
		hops = src.IPCP.NextHops(dst.IPCP.Addr())
		return len(hops) == 2
	})
	n.Freeze(src.Name, hops[0])
	d := n.WaitFor(3*time.Second, "the silent neighbour declared dead", func() bool {
		now := src.IPCP.NextHops(dst.IPCP.Addr())
		return len(now) > 0 && now[0] == hops[1]
	})
	// Whichever end's hello timer fires first closes the flows; the other
	// end then sees them closed.
	if a, b := src.IPCP.Stats().DeadTimeouts, n.Node(hops[0]).IPCP.Stats().DeadTimeouts; a+b == 0 {
		t.Errorf("no dead timeout counted at either end")
	}
	t.Logf("silent link detected and routed around %v after the freeze", d.Round(time.Millisecond))
	// The last hello before the freeze came up to one period earlier:
	// dead is declared (Dead-1)×Hello to Dead×Hello after the freeze.
	if d < 200*time.Millisecond {
		t.Errorf("declared dead after %v, before 2 hello periods", d)
	}
}

// TestHellosLostBehindData: a neighbour whose hellos are all lost (as
// at a congested queue) while its data keeps arriving stays up; once
// nothing arrives from it, it is declared dead as before. Without the dt
// traffic counting as a sign of life (connmgr.Receiver) the adjacency
// went down within Dead × Hello and this failed.
func TestHellosLostBehindData(t *testing.T) {
	n := unicasttest.New(t)
	n.Build(line(2), nil)
	n.WaitOperational(10 * time.Second)
	a, b := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(1))
	sink := map[*unicasttest.Node]string{a: "sink.a", b: "sink.b"}
	a.Register(sink[a])
	b.Register(sink[b])
	var streams [2]stream
	stop := make(chan struct{})
	var waits []func()
	var ports []flow.Port
	for i, e := range [][2]*unicasttest.Node{{a, b}, {b, a}} {
		src, dst := e[0], e[1]
		p, err := src.Alloc(ctxT(t, 5*time.Second), sink[dst], flow.BestEffort())
		if err != nil {
			t.Fatal(err)
		}
		acc, err := dst.Accept(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p, acc.Port)
		waits = append(waits, streams[i].run(p, acc.Port, time.Millisecond, stop))
	}
	n.WaitFor(2*time.Second, "traffic both ways", func() bool { return streams[0].received() > 50 && streams[1].received() > 50 })
	dropHellos := func(pkt []byte) [][]byte {
		if m, err := connmgr.UnmarshalMsg(pkt); len(pkt) <= 4 && err == nil && m.Type == connmgr.MsgHello {
			return nil
		}
		return [][]byte{pkt}
	}
	n.Tamper(a.Name, b.Name, dropHellos)
	n.Tamper(b.Name, a.Name, dropHellos)
	time.Sleep(1500 * time.Millisecond) // 5 × Dead × Hello
	for _, nd := range []*unicasttest.Node{a, b} {
		if s := nd.IPCP.Stats(); s.Downs != 0 || s.DeadTimeouts != 0 || s.HeardByData == 0 {
			t.Errorf("%s, hellos lost but data flowing: downs %d, dead timeouts %d, silences bridged by data %d", nd.Name, s.Downs, s.DeadTimeouts, s.HeardByData)
		}
	}
	close(stop)
	for _, p := range ports {
		p.Close()
	}
	for _, w := range waits {
		w()
	}
	// The IPCPs' own dt keepalives still arrive and keep it up; once
	// nothing arrives at all, it is declared dead as before.
	dropAll := func([]byte) [][]byte { return nil }
	n.Tamper(a.Name, b.Name, dropAll)
	n.Tamper(b.Name, a.Name, dropAll)
	n.WaitFor(3*time.Second, "the silent neighbour declared dead once nothing arrives", func() bool {
		return a.IPCP.Stats().DeadTimeouts+b.IPCP.Stats().DeadTimeouts > 0
	})
}

// TestNodeKilled stops a node of a ring: the others reconverge on the
// remaining line and a flow that crossed the dead node is re-allocatable.
func TestNodeKilled(t *testing.T) {
	n := unicasttest.New(t)
	n.Build(ring4(), nil)
	n.WaitOperational(10 * time.Second)
	n.Node(unicasttest.NodeName(3)).Register("svc3")
	n.Kill(unicasttest.NodeName(1))
	d := n.WaitFor(5*time.Second, "reconvergence without n1", func() bool {
		for _, name := range []string{unicasttest.NodeName(0), unicasttest.NodeName(2), unicasttest.NodeName(3)} {
			rs := n.Node(name).IPCP.Routes()
			if len(rs) != 2 {
				return false
			}
		}
		return true
	})
	t.Logf("reconverged %v after the kill", d.Round(time.Millisecond))
	// n0 → n2 now goes through n3 (2 hops).
	for _, rt := range n.Node(unicasttest.NodeName(0)).IPCP.Routes() {
		if rt.Dst == n.Node(unicasttest.NodeName(2)).IPCP.Addr() && rt.Metric != 2 {
			t.Errorf("n0 → n2 metric %d, want 2", rt.Metric)
		}
	}
	app, err := n.Node(unicasttest.NodeName(2)).Alloc(ctxT(t, 5*time.Second), "svc3", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	acc, err := n.Node(unicasttest.NodeName(3)).Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, app, acc.Port, 3)
	app.Close()
	acc.Port.Close()
}

// TestPeerVanishes kills the accepting node: the allocating side's port
// is closed once the flow timeout passes without a word from the peer.
func TestPeerVanishes(t *testing.T) {
	n := unicasttest.New(t)
	n.Build(line(3), nil)
	n.WaitOperational(10 * time.Second)
	n.Node(unicasttest.NodeName(2)).Register("gone")
	app, err := n.Node(unicasttest.NodeName(0)).Alloc(ctxT(t, 5*time.Second), "gone", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	acc, err := n.Node(unicasttest.NodeName(2)).Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Port.Close()
	killed := time.Now()
	n.Kill(unicasttest.NodeName(2))
	buf := make([]byte, 16)
	if _, err := app.Read(buf, time.Now().Add(5*time.Second)); err == nil || flowTimeout(err) {
		t.Fatalf("Read on a flow whose peer vanished: %v, want ErrClosed", err)
	}
	t.Logf("flow closed %v after the peer vanished (flow timeout %v)", time.Since(killed).Round(time.Millisecond), n.Template.FlowTimeout)
	app.Close()
}

func flowTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return err != nil && errors.As(err, &te) && te.Timeout()
}

// TestRecursion runs a unicast layer over another unicast layer: the
// upper IPCPs' N-1 flows are flows of the lower layer.
func TestRecursion(t *testing.T) {
	lower := unicasttest.New(t)
	lower.Build(line(3), nil)
	lower.WaitOperational(10 * time.Second)
	// Upper IPCPs at the two ends of the lower line, with brokers that
	// allocate in the lower layer.
	upNet := unicasttest.NewOver(t, map[string]*unicasttest.Node{
		"top0.up": lower.Node(unicasttest.NodeName(0)),
		"top2.up": lower.Node(unicasttest.NodeName(2)),
	})
	upNet.Add("top0.up", true, nil, nil)
	upNet.Add("top2.up", false, []string{"top0.up"}, nil)
	upNet.WaitOperational(10 * time.Second)
	b := upNet.Node("top2.up")
	b.Register("deep")
	app, err := upNet.Node("top0.up").Alloc(ctxT(t, 5*time.Second), "deep", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	acc, err := b.Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, app, acc.Port, 10)
	app.Close()
	acc.Port.Close()
	if f := lower.Node(unicasttest.NodeName(1)).IPCP.Stats().Forwarded; f < 20 {
		t.Errorf("the lower layer's middle node forwarded %d packets, want >= 20", f)
	}
}
