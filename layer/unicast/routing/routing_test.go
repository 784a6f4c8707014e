package routing_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast/pff"
	"github.com/ouronet/ouro/layer/unicast/routing"
	"github.com/ouronet/ouro/layer/unicast/routing/routingtest"
)

func newLineNet(t testing.TB, n int) *routingtest.Net {
	t.Helper()
	net := routingtest.NewNet(pff.Alternate)
	var edges []routingtest.Edge
	for i := 1; i < n; i++ {
		edges = append(edges, routingtest.Edge{A: layer.Addr(i), B: layer.Addr(i + 1), AB: 1, BA: 1})
	}
	if err := net.Build(n, edges); err != nil {
		t.Fatal(err)
	}
	return net
}

func routeTo(t *testing.T, r *routing.Router, dst layer.Addr) (routing.Route, bool) {
	t.Helper()
	for _, rt := range r.Routes() {
		if rt.Dst == dst {
			return rt, true
		}
	}
	return routing.Route{}, false
}

func TestSmallGraphs(t *testing.T) {
	e := func(a, b layer.Addr, m uint32) routingtest.Edge { return routingtest.Edge{A: a, B: b, AB: m, BA: m} }
	type want struct {
		dst    layer.Addr
		metric uint64
		hops   []layer.Addr
		alt    layer.Addr
	}
	for _, tc := range []struct {
		name  string
		nodes int
		edges []routingtest.Edge
		want  []want // routes at node 1
	}{
		{"line", 4, []routingtest.Edge{e(1, 2, 1), e(2, 3, 1), e(3, 4, 1)}, []want{
			{2, 1, []layer.Addr{2}, 0}, {3, 2, []layer.Addr{2}, 0}, {4, 3, []layer.Addr{2}, 0},
		}},
		{"ring", 5, []routingtest.Edge{e(1, 2, 1), e(2, 3, 1), e(3, 4, 1), e(4, 5, 1), e(5, 1, 1)}, []want{
			// 1→3 via 2; via 5: D(5,3)=2 < D(5,1)+D(1,3)=1+2, loop-free.
			// 1→2 via 5: D(5,2)=3 < D(5,1)+D(1,2)=2 fails: no LFA.
			{2, 1, []layer.Addr{2}, 0}, {3, 2, []layer.Addr{2}, 5}, {4, 2, []layer.Addr{5}, 2}, {5, 1, []layer.Addr{5}, 0},
		}},
		{"diamond", 4, []routingtest.Edge{e(1, 2, 1), e(1, 3, 1), e(2, 4, 1), e(3, 4, 1)}, []want{
			// 1→2 via 3: D(3,2)=2 < D(3,1)+D(1,2)=2 fails: no LFA.
			{2, 1, []layer.Addr{2}, 0}, {3, 1, []layer.Addr{3}, 0}, {4, 2, []layer.Addr{2, 3}, 3},
		}},
		{"diamond with a detour", 4, []routingtest.Edge{e(1, 2, 1), e(1, 3, 5), e(2, 4, 1), e(3, 4, 1)}, []want{
			// 1→4 via 3: D(3,4)=1 < D(3,1)+D(1,4)=5+2: LFA.
			{4, 2, []layer.Addr{2}, 3},
			// 1→3 is cheaper round (2, 4: 3) than direct (5); direct is the LFA.
			{3, 3, []layer.Addr{2}, 3},
		}},
		{"ring of four: no LFA", 4, []routingtest.Edge{e(1, 2, 1), e(2, 3, 1), e(3, 4, 1), e(4, 1, 1)}, []want{
			// 1→2 alternate 4: D(4,2)=2 < D(4,1)+D(1,2)=2 fails.
			{2, 1, []layer.Addr{2}, 0}, {3, 2, []layer.Addr{2, 4}, 4},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := routingtest.NewNet(pff.Alternate)
			if err := net.Build(tc.nodes, tc.edges); err != nil {
				t.Fatal(err)
			}
			net.Converge()
			r := net.Node(1).Router
			if got := len(r.Routes()); got != tc.nodes-1 {
				t.Errorf("%d routes, want %d", got, tc.nodes-1)
			}
			for _, w := range tc.want {
				rt, ok := routeTo(t, r, w.dst)
				if !ok {
					t.Errorf("no route to %d", w.dst)
					continue
				}
				if rt.Metric != w.metric || !slices.Equal(rt.NextHops, w.hops) || rt.Alternate != w.alt {
					t.Errorf("route to %d = metric %d hops %v alt %d; want %d %v %d",
						w.dst, rt.Metric, rt.NextHops, rt.Alternate, w.metric, w.hops, w.alt)
				}
				// The installed table follows the route (Alternate policy).
				wantPorts := []pff.Port{pff.Port(w.hops[0])}
				if w.alt != 0 {
					wantPorts = append(wantPorts, pff.Port(w.alt))
				}
				if got := net.Node(1).PFF.NextHops(w.dst); !slices.Equal(got, wantPorts) {
					t.Errorf("pff next hops to %d = %v, want %v", w.dst, got, wantPorts)
				}
			}
		})
	}
}

// floyd returns all-pairs shortest distances over the directed metrics.
func floyd(n int, edges []routingtest.Edge, up func(a, b layer.Addr) bool) [][]uint64 {
	const inf = math.MaxUint64 / 4
	d := make([][]uint64, n+1)
	for i := range d {
		d[i] = make([]uint64, n+1)
		for j := range d[i] {
			if i != j {
				d[i][j] = inf
			}
		}
	}
	for _, e := range edges {
		if up(e.A, e.B) {
			d[e.A][e.B] = min(d[e.A][e.B], uint64(e.AB))
			d[e.B][e.A] = min(d[e.B][e.A], uint64(e.BA))
		}
	}
	for k := 1; k <= n; k++ {
		dk := d[k]
		for i := 1; i <= n; i++ {
			dik := d[i][k]
			if dik == inf {
				continue
			}
			di := d[i]
			for j := 1; j <= n; j++ {
				if s := dik + dk[j]; s < di[j] {
					di[j] = s
				}
			}
		}
	}
	for i := range d {
		for j := range d[i] {
			if d[i][j] == inf {
				d[i][j] = math.MaxUint64
			}
		}
	}
	return d
}

// verify checks every node's routes against Floyd–Warshall distances.
func verify(t *testing.T, net *routingtest.Net, n int, edges []routingtest.Edge, up func(a, b layer.Addr) bool) {
	t.Helper()
	d := floyd(n, edges, up)
	cost := make(map[[2]layer.Addr]uint64)
	for _, e := range edges {
		if up(e.A, e.B) {
			cost[[2]layer.Addr{e.A, e.B}] = uint64(e.AB)
			cost[[2]layer.Addr{e.B, e.A}] = uint64(e.BA)
		}
	}
	bad := 0
	for _, nd := range net.Nodes() {
		s := nd.Addr
		var nbrs []layer.Addr
		for k := range cost {
			if k[0] == s {
				nbrs = append(nbrs, k[1])
			}
		}
		slices.Sort(nbrs)
		routes := nd.Router.Routes()
		reach := 0
		for dst := 1; dst <= n; dst++ {
			if layer.Addr(dst) != s && d[s][dst] != math.MaxUint64 {
				reach++
			}
		}
		if len(routes) != reach {
			t.Errorf("node %d: %d routes, want %d reachable", s, len(routes), reach)
			bad++
		}
		for _, rt := range routes {
			D := rt.Dst
			if rt.Metric != d[s][D] {
				t.Errorf("node %d → %d: metric %d, want %d", s, D, rt.Metric, d[s][D])
				bad++
			}
			var ecmp, lfas []layer.Addr
			for _, nb := range nbrs {
				c := cost[[2]layer.Addr{s, nb}]
				if d[nb][D] != math.MaxUint64 && c+d[nb][D] == d[s][D] {
					ecmp = append(ecmp, nb)
				}
				if d[nb][D] != math.MaxUint64 && d[nb][D] < d[nb][s]+d[s][D] {
					lfas = append(lfas, nb)
				}
			}
			if !slices.Equal(rt.NextHops, ecmp) {
				t.Errorf("node %d → %d: ECMP set %v, want %v", s, D, rt.NextHops, ecmp)
				bad++
			}
			lfas = slices.DeleteFunc(lfas, func(a layer.Addr) bool { return a == rt.NextHops[0] })
			switch {
			case rt.Alternate == 0 && len(lfas) > 0:
				t.Errorf("node %d → %d: no alternate, but %v are loop-free", s, D, lfas)
				bad++
			case rt.Alternate != 0 && !slices.Contains(lfas, rt.Alternate):
				t.Errorf("node %d → %d: alternate %d is not loop-free (candidates %v)", s, D, rt.Alternate, lfas)
				bad++
			}
			// The installed table agrees (Multipath: the ECMP ports).
			var want []pff.Port
			for _, a := range ecmp {
				want = append(want, pff.Port(a))
			}
			if got := nd.PFF.NextHops(D); !slices.Equal(got, want) {
				t.Errorf("node %d → %d: pff %v, want %v", s, D, got, want)
				bad++
			}
		}
		if bad > 20 {
			t.Fatal("too many errors")
		}
	}
}

func TestRandomTopologies(t *testing.T) {
	sizes := []int{50, 100, 200}
	seeds := []uint64{1, 2, 3}
	if testing.Short() || raceEnabled {
		sizes, seeds = []int{50, 120}, []uint64{1, 2}
	}
	for _, n := range sizes {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("n=%d/seed=%d", n, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, uint64(n)))
				edges := routingtest.RandomTopology(rng, n, 4, 5, seed%2 == 0)
				net := routingtest.NewNet(pff.Multipath)
				if err := net.Build(n, edges); err != nil {
					t.Fatal(err)
				}
				rounds := net.Converge()
				links := map[[2]layer.Addr]bool{}
				for _, e := range edges {
					links[[2]layer.Addr{e.A, e.B}] = true
				}
				up := func(a, b layer.Addr) bool { return links[[2]layer.Addr{a, b}] }
				verify(t, net, n, edges, up)
				t.Logf("%d nodes, %d links, seed %d: %d rounds, %d messages, %d bytes", n, len(edges), seed, rounds, net.Msgs, net.Bytes)

				// Withdraw links (some may disconnect the graph) and reconverge.
				for range 3 {
					e := edges[rng.IntN(len(edges))]
					delete(links, [2]layer.Addr{e.A, e.B})
					net.Unlink(e.A, e.B)
				}
				net.Converge()
				verify(t, net, n, edges, up)
			})
		}
	}
}

func TestNeighbourDownSwitchesToAlternate(t *testing.T) {
	net := routingtest.NewNet(pff.Alternate)
	e := func(a, b layer.Addr) routingtest.Edge { return routingtest.Edge{A: a, B: b, AB: 1, BA: 1} }
	if err := net.Build(4, []routingtest.Edge{e(1, 2), e(1, 3), e(2, 4), e(3, 4)}); err != nil {
		t.Fatal(err)
	}
	net.Converge()
	tb := net.Node(1).PFF
	if p, _ := tb.Lookup(4, 0); p != 2 {
		t.Fatalf("before: next hop to 4 = %d, want 2", p)
	}
	net.Node(1).Router.NeighbourDown(2) // no flooding, no recomputation yet
	if p, ok := tb.Lookup(4, 0); !ok || p != 3 {
		t.Fatalf("right after NeighbourDown(2): next hop to 4 = %d, %v; want 3 (the LFA)", p, ok)
	}
	net.Unlink(1, 2)
	net.Converge()
	if p, _ := tb.Lookup(2, 0); p != 3 {
		t.Fatalf("after reconvergence: next hop to 2 = %d, want 3", p)
	}
}

func TestAgingAndRefresh(t *testing.T) {
	net := routingtest.NewNet(pff.Simple)
	net.Config = func(c *routing.Config) { c.Refresh, c.MaxAge = 10*time.Second, 30*time.Second }
	e := func(a, b layer.Addr) routingtest.Edge { return routingtest.Edge{A: a, B: b, AB: 1, BA: 1} }
	if err := net.Build(4, []routingtest.Edge{e(1, 2), e(2, 3), e(3, 4)}); err != nil {
		t.Fatal(err)
	}
	net.Converge()
	// Node 4 vanishes without its LSU being withdrawn: its neighbour's
	// LSU no longer lists it, so routes drop it at once (two-way check),
	// and its LSU ages out of every database after MaxAge.
	net.Remove(4)
	net.Converge()
	if _, ok := routeTo(t, net.Node(1).Router, 4); ok {
		t.Error("route to removed node 4 still there")
	}
	if got := net.Node(1).Router.Stats().Entries; got != 4 {
		t.Errorf("right after removal: %d LSUs at node 1, want 4 (4's not yet aged)", got)
	}
	for range 5 { // 50 s: refreshes keep 1..3 alive, 4 ages out
		net.Clock.Advance(10 * time.Second)
		for _, nd := range net.Nodes() {
			nd.Router.Tick()
		}
		net.Converge()
	}
	for _, nd := range net.Nodes() {
		db := nd.Router.Database()
		var origins []layer.Addr
		for _, l := range db {
			origins = append(origins, l.Origin)
		}
		if !slices.Equal(origins, []layer.Addr{1, 2, 3}) {
			t.Errorf("node %d: database origins %v, want [1 2 3]", nd.Addr, origins)
		}
		if got := len(nd.Router.Routes()); got != 2 {
			t.Errorf("node %d: %d routes, want 2", nd.Addr, got)
		}
	}
}

// signed returns l signed by its origin's routingtest key.
func signed(t testing.TB, l routing.LSU) routing.LSU {
	t.Helper()
	id, err := routingtest.Key(l.Origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := routing.Sign(context.Background(), id, routingtest.Layer, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReceiveSequenceNumbers(t *testing.T) {
	net := newLineNet(t, 3)
	net.Converge()
	r := net.Node(2).Router
	own := r.Database()[1] // node 2's own LSU
	lsu := func(o layer.Addr, seq uint64) routing.LSU {
		return signed(t, routing.LSU{Origin: o, Seq: seq, Links: []routing.Link{{Neighbour: 99, Metric: 1}}})
	}
	db := r.Database()
	seq1 := db[0].Seq
	for _, tc := range []struct {
		name        string
		from        layer.Addr
		lsu         routing.LSU
		wantFlood   []layer.Addr
		wantChanged bool
	}{
		{"newer from 1", 1, lsu(1, seq1+1), []layer.Addr{3}, true},
		{"duplicate", 3, lsu(1, seq1+1), nil, false},
		{"older", 3, lsu(1, seq1), nil, false},
		{"new origin", 3, lsu(50, 1), []layer.Addr{1}, true},
		{"own, newer (we restarted)", 1, signed(t, routing.LSU{Origin: 2, Seq: own.Seq + 100}), []layer.Addr{1, 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flood, changed, err := r.Receive(tc.from, tc.lsu)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(flood, tc.wantFlood) || changed != tc.wantChanged {
				t.Fatalf("Receive = %v, %v; want %v, %v", flood, changed, tc.wantFlood, tc.wantChanged)
			}
		})
	}
	if got := r.Database()[1].Seq; got != own.Seq+101 {
		t.Errorf("own seq after hearing a newer own LSU = %d, want %d", got, own.Seq+101)
	}
	if _, _, err := r.Receive(1, routing.LSU{}); err == nil {
		t.Error("Receive of origin 0: got nil error")
	}
}

func TestConfigAndNeighbourErrors(t *testing.T) {
	tb, _ := pff.New(pff.Simple)
	clk := routingtest.NewClock(time.Unix(0, 0))
	fl := routingtest.NewNet(pff.Simple)
	node, _ := fl.Add(9)
	id, _ := routingtest.Key(1)
	base := routing.Config{Self: 1, Flooder: node, PFF: tb, Clock: clk, Runner: layertest.Runner{}, Signer: id}
	for name, mod := range map[string]func(*routing.Config){
		"no signer":   func(c *routing.Config) { c.Signer = nil },
		"no self":     func(c *routing.Config) { c.Self = 0 },
		"no flooder":  func(c *routing.Config) { c.Flooder = nil },
		"no runner":   func(c *routing.Config) { c.Runner = nil },
		"bad policy":  func(c *routing.Config) { c.Policy = 9 },
		"age<refresh": func(c *routing.Config) { c.Refresh, c.MaxAge = time.Minute, time.Second },
	} {
		cfg := base
		mod(&cfg)
		if _, err := routing.New(cfg); err == nil {
			t.Errorf("%s: New: got nil error", name)
		}
	}
	r, err := routing.New(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []routing.Neighbour{{Addr: 0, Metric: 1}, {Addr: 1, Metric: 1}, {Addr: 2, Metric: 0}} {
		if err := r.NeighbourUp(n); err == nil {
			t.Errorf("NeighbourUp(%+v): got nil error", n)
		}
	}
	for i := range routing.MaxLinks {
		if err := r.NeighbourUp(routing.Neighbour{Addr: layer.Addr(100 + i), Metric: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.NeighbourUp(routing.Neighbour{Addr: 5, Metric: 1}); err == nil {
		t.Errorf("neighbour %d: got nil error", routing.MaxLinks+1)
	}
	// The own LSU with MaxLinks links fits one flow.MaxSDU message.
	r.Flush()
	if fl.Bytes/fl.Msgs > 1400 || fl.Msgs == 0 {
		t.Errorf("messages average %d bytes, want <= 1400", fl.Bytes/max(fl.Msgs, 1))
	}
}

func TestStartStop(t *testing.T) {
	net := newLineNet(t, 2)
	r := net.Node(1).Router
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err == nil {
		t.Error("second Start: got nil error")
	}
	// Wait for the timer goroutine to arm, fire it, and see it tick.
	for net.Clock.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	before := r.Stats().Computations
	net.Clock.Advance(routing.DefaultTick)
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Computations == before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r.Stats().Computations == before {
		t.Error("no recomputation after a tick")
	}
	r.Stop()
	r.Stop()
}

// TestStartedChecksAtOnce: a started Router checks and installs a
// received LSU without waiting for its next Tick (the clock does not
// move here), as it did when it checked LSUs on receipt: the IPCP's
// directory reads the members from the database. Without the kick of
// the Router's goroutine it failed (the LSU stayed held until a Tick).
func TestStartedChecksAtOnce(t *testing.T) {
	net := newLineNet(t, 2)
	r := net.Node(1).Router
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	msg, err := routing.Marshal(routing.Msg{Version: routing.Version, LSUs: []routing.LSU{signed(t, routing.LSU{Origin: 99, Seq: 1})}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.HandleMessage(2, msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.KeyOf(99) == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r.KeyOf(99) == nil {
		t.Fatal("the LSU was not installed without a Tick")
	}
}

// flakySigner fails its first n signatures.
type flakySigner struct {
	identity.Signer
	n int
}

func (s *flakySigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if s.n > 0 {
		s.n--
		return nil, errors.New("signer busy")
	}
	return s.Signer.Sign(ctx, msg)
}

// TestOwnLSUSentAfterSignFailure: an own LSU that could not be signed at
// a Flush stays queued and goes out at the next one, once signed; it used
// to be dropped from the queue, and went out only at the next refresh
// (15 s): the neighbour meanwhile kept the old one.
func TestOwnLSUSentAfterSignFailure(t *testing.T) {
	tb, _ := pff.New(pff.Simple)
	fl := routingtest.NewNet(pff.Simple)
	node, _ := fl.Add(9)
	id, _ := routingtest.Key(1)
	r, err := routing.New(routing.Config{Self: 1, Flooder: node, PFF: tb, Clock: routingtest.NewClock(time.Unix(0, 0)),
		Runner: layertest.Runner{}, Signer: &flakySigner{Signer: id, n: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.NeighbourUp(routing.Neighbour{Addr: 2, Metric: 1}); err != nil {
		t.Fatal(err)
	}
	r.Flush() // the signature fails: nothing to send yet
	if fl.Msgs != 0 || r.Stats().SignFailures != 1 {
		t.Fatalf("first flush: %d messages, %d sign failures; want 0 and 1", fl.Msgs, r.Stats().SignFailures)
	}
	r.Flush()
	if fl.Msgs != 1 {
		t.Fatalf("second flush, the signer working again: %d messages, want the own LSU sent", fl.Msgs)
	}
}
