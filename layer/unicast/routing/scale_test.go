package routing_test

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
	"github.com/ouronet/ouro/layer/unicast/routing"
	"github.com/ouronet/ouro/layer/unicast/routing/routingtest"
)

// scaleResult is what one convergence of a large network measured.
type scaleResult struct {
	nodes, links       int
	rounds, msgs       int
	bytes              int
	lsusSent           uint64
	flood, compute     time.Duration
	heapPerNode        uint64
	routesPerNodeCheck int
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// converge builds a random connected network of n nodes (average degree
// 4, metrics 1..10), floods until quiet and computes every table.
func converge(tb testing.TB, n int, policy pff.Kind) (*routingtest.Net, scaleResult) {
	rng := rand.New(rand.NewPCG(42, uint64(n)))
	edges := routingtest.RandomTopology(rng, n, 4, 10, false)
	before := heapInUse()
	net := routingtest.NewNet(policy)
	if err := net.Build(n, edges); err != nil {
		tb.Fatal(err)
	}
	res := scaleResult{nodes: n, links: len(edges)}
	start := time.Now()
	res.rounds = net.Flood()
	res.flood = time.Since(start)
	start = time.Now()
	for _, nd := range net.Nodes() {
		nd.Router.Recompute(false)
	}
	res.compute = time.Since(start)
	res.msgs, res.bytes = net.Msgs, net.Bytes
	for _, nd := range net.Nodes() {
		res.lsusSent += nd.Router.Stats().LSUsSent
	}
	res.heapPerNode = (heapInUse() - before) / uint64(n)
	res.routesPerNodeCheck = len(net.Node(1).Router.Routes())
	return net, res
}

// TestScale converges a 1000-node network in one process (150 under the
// race detector: every member checks every origin's signed LSU, so the
// cost grows with the square) and reports the figures for docs/benchmarks.md:
//
//	go test -run TestScale -v ./layer/unicast/routing
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 1000
	if raceEnabled {
		n = 150
	}
	net, r := converge(t, n, pff.Alternate)
	if r.routesPerNodeCheck != n-1 {
		t.Fatalf("node 1 has %d routes, want %d", r.routesPerNodeCheck, n-1)
	}
	for _, nd := range net.Nodes() {
		if got := nd.Router.Stats().Entries; got != n {
			t.Fatalf("node %d has %d LSUs, want %d", nd.Addr, got, n)
		}
	}
	t.Logf("%d nodes, %d links: %d flood rounds, %d messages (%d LSUs, %.1f MB), flood %v, all tables %v (%v per node), heap %d KiB per node",
		r.nodes, r.links, r.rounds, r.msgs, r.lsusSent, float64(r.bytes)/1e6,
		r.flood.Round(time.Millisecond), r.compute.Round(time.Millisecond),
		(r.compute / time.Duration(n)).Round(time.Microsecond), r.heapPerNode/1024)
}

// BenchmarkRecompute1000 times one node's route computation (SPF from
// itself and from each neighbour, LFAs, ECMP sets, table install) in a
// converged 1000-node network.
func BenchmarkRecompute1000(b *testing.B) {
	net, _ := converge(b, 1000, pff.Alternate)
	r := net.Node(1).Router
	b.ReportAllocs()
	for b.Loop() {
		r.Recompute(true)
	}
}

// BenchmarkHandleMessage times decoding and installing a full message of
// new LSUs.
func BenchmarkHandleMessage(b *testing.B) {
	net := newLineNet(b, 2)
	r := net.Node(1).Router
	var lsus []routing.LSU
	for i := range 16 {
		lsus = append(lsus, routing.LSU{Origin: layer.Addr(1000 + i), Seq: 1, Links: []routing.Link{{Neighbour: 3, Metric: 1}, {Neighbour: 4, Metric: 2}, {Neighbour: 5, Metric: 3}, {Neighbour: 6, Metric: 4}}})
	}
	b.ReportAllocs()
	seq := uint64(1)
	for b.Loop() {
		b.StopTimer() // the origins sign; the receiver's work is timed
		seq++
		for i := range lsus {
			lsus[i].Seq = seq
			lsus[i] = signed(b, lsus[i])
		}
		msg, _ := routing.Marshal(routing.Msg{Version: routing.Version, LSUs: lsus})
		b.StartTimer()
		if err := r.HandleMessage(2, msg); err != nil {
			b.Fatal(err)
		}
		r.Flush() // checks the held LSUs and installs them
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lsus)), "ns/LSU")
}
