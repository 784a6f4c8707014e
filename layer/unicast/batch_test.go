package unicast_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// bareChain3 is chain3 with the N-1 flows as bare flowtest pipes, which
// read and write in batches (flow.BatchPort) as the RingPorts of a node
// do; unicasttest's links wrap their ports (to cut and freeze them) and
// so hide the batch calls.
// mods, if any, change node i's configuration.
func bareChain3(tb testing.TB, caPolicy string, mods ...func(i int, c *unicast.Config)) (a, z flow.Port, nodes []*unicast.IPCP) {
	return bareChain(tb, 4, caPolicy, mods...)
}

// bareChain is bareChain3 over k nodes (k-1 hops): a flow from an
// application at the first node to "sink" at the last.
func bareChain(tb testing.TB, k int, caPolicy string, mods ...func(i int, c *unicast.Config)) (a, z flow.Port, nodes []*unicast.IPCP) {
	return chainOver(tb, k, caPolicy, nil, mods...)
}

// ringChain3 is bareChain3 with every flow, N-1 and N+1, a ringPipe
// (bench_test.go): moved a batch per lock with a wake-up only for a side
// that waits, as the node's rings move them.
func ringChain3(tb testing.TB, caPolicy string) (a, z flow.Port, nodes []*unicast.IPCP) {
	return chainOver(tb, 4, caPolicy, ringPipe)
}

// chainOver is bareChain over flowtest pipes, or, where pipe is not nil,
// with every flow, N-1 and N+1, one of pipe's.
func chainOver(tb testing.TB, k int, caPolicy string, pipe func(capacity int) (a, b flow.Port), mods ...func(i int, c *unicast.Config)) (a, z flow.Port, nodes []*unicast.IPCP) {
	fake := flowtest.NewBroker(unicasttest.PipeCap)
	program := func(name string) flow.Broker { return fake.Program(name) }
	rings := pipe != nil
	if rings {
		program = newPipeBrokers(unicasttest.PipeCap, pipe)
	} else {
		pipe = flowtest.Pipe
	}
	var accepted chan ipcptest.Accepted
	for i := range k {
		cfg := unicast.Config{
			Runner: layertest.Runner{},
			Layer:  unicasttest.Layer, RoutingTick: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
			KeepAlive: 200 * time.Millisecond, FlowTimeout: time.Second,
			Directories: map[string]dir.Builder{"dht": dht.Policy(dht.Config{RPCTimeout: 200 * time.Millisecond})},
			Name:        unicasttest.NodeName(i),
			Bootstrap:   i == 0,
		}
		cfg.LayerConfig.CA = caPolicy
		cfg.LayerConfig.Admission = admission.Policy{Mode: admission.ModeOpen}
		if i > 0 {
			cfg.Enroll = unicasttest.NodeName(i - 1)
			cfg.Neighbours = []string{cfg.Enroll}
		}
		for _, m := range mods {
			m(i, &cfg)
		}
		var up ipcp.Upcalls
		if rings {
			r := &pipeUpcalls{accepted: make(chan ipcptest.Accepted, 16), capacity: unicasttest.PipeCap, pipe: pipe}
			up, accepted = r, r.accepted
		} else {
			u := ipcptest.NewUpcalls(unicasttest.PipeCap)
			up, accepted = u, u.Accepted
		}
		p, err := unicast.New(cfg, up, program(cfg.Name), nil)
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(p.Stop)
		nodes = append(nodes, p)
	}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		ok := true
		for _, p := range nodes {
			ok = ok && p.Operational() && len(p.Routes()) == len(nodes)-1
		}
		if ok {
			break
		}
		if time.Since(start) > 10*time.Second {
			tb.Fatal("chain not operational within 10s")
		}
	}
	if err := nodes[k-1].Register(context.Background(), "sink"); err != nil {
		tb.Fatal(err)
	}
	// Register stores the name in the DHT in the background: until the
	// store lands, a query from n0 may find nothing. Retry until it does.
	var app flow.Port
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		a, ipc := pipe(unicasttest.PipeCap)
		err := nodes[0].Alloc(ctxT(tb, 5*time.Second), ipcp.AllocReq{Dst: "sink", Src: "app", QoS: flow.BestEffort()}, ipc)
		if err == nil {
			app = a
			break
		}
		a.Close()
		if !errors.Is(err, flow.ErrNotFound) || time.Since(start) > 5*time.Second {
			tb.Fatal(err)
		}
	}
	var acc ipcptest.Accepted
	select {
	case acc = <-accepted: // the last node's
	case <-time.After(2 * time.Second):
		tb.Fatal("no flow accepted")
	}
	tb.Cleanup(func() { app.Close(); acc.Port.Close() })
	return app, acc.Port, nodes
}

// TestForwardBatchZeroAllocs is TestForwardZeroAllocs over N-1 flows
// that read and write in batches: one SDU at a time with mb-ecn, as there,
// and in bursts of 64 without congestion avoidance (bursts raise ECN
// marks, and mb-ecn's feedback is control traffic, which may allocate).
func TestForwardBatchZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, tc := range []struct {
		ca    string
		burst int
		runs  int
	}{
		{"mb-ecn", 1, 5000},
		{"nop", 64, 200},
	} {
		t.Run(fmt.Sprintf("%s/burst%d", tc.ca, tc.burst), func(t *testing.T) {
			a, z, _ := bareChain3(t, tc.ca)
			msg := make([]byte, 100)
			buf := make([]byte, flow.MaxSDU)
			send := func() {
				for range tc.burst {
					if err := a.Write(msg, time.Time{}); err != nil {
						t.Fatal(err)
					}
				}
				for range tc.burst {
					if _, err := z.Read(buf, time.Time{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for range 2000 / tc.burst { // warm the buffer pools and free lists
				send()
			}
			if allocs := quietAllocs(tc.runs, send); allocs != 0 {
				t.Errorf("%v allocations per %d SDUs over 3 hops, want 0", allocs, tc.burst)
			}
		})
	}
}

// TestForwardBatchBurst sends bursts of two batches and a half through
// the batch path (fewer SDUs than a queue holds, so nothing may be
// dropped) and checks that every SDU arrives, in order.
func TestForwardBatchBurst(t *testing.T) {
	a, z, nodes := bareChain3(t, "nop")
	const burst, bursts = 80, 25
	msg := make([]byte, 8)
	buf := make([]byte, flow.MaxSDU)
	for i := range bursts {
		for j := range burst {
			msg[0], msg[1] = byte(i), byte(j)
			if err := a.Write(msg, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for j := range burst {
			n, err := z.Read(buf, time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatalf("burst %d, SDU %d: %v", i, j, err)
			}
			if n != 8 || buf[0] != byte(i) || buf[1] != byte(j) {
				t.Fatalf("burst %d, SDU %d: got burst %d, SDU %d (%d bytes)", i, j, buf[0], buf[1], n)
			}
		}
	}
	if f := nodes[1].Stats().Forwarded; f < burst*bursts {
		t.Errorf("middle node forwarded %d, want >= %d", f, burst*bursts)
	}
}

// BenchmarkForward3HopsBatch is BenchmarkForward3Hops over N-1 flows
// that read and write in batches (bare pipes).
func BenchmarkForward3HopsBatch(b *testing.B) {
	for _, size := range []int{64, 1000} {
		b.Run(byteSize(size), func(b *testing.B) {
			a, z, _ := bareChain3(b, "nop")
			forwardBench(b, size, func(p []byte) error { return a.Write(p, time.Time{}) },
				readWithin(z, 300*time.Millisecond))
		})
	}
}

// BenchmarkForward3HopsRing is BenchmarkForward3Hops over ringPipes:
// what the chain costs when its flows cost what the node's rings do.
func BenchmarkForward3HopsRing(b *testing.B) {
	for _, size := range []int{64, 1000} {
		b.Run(byteSize(size), func(b *testing.B) {
			a, z, _ := ringChain3(b, "nop")
			forwardBench(b, size, func(p []byte) error { return a.Write(p, time.Time{}) },
				readWithin(z, 300*time.Millisecond))
		})
	}
}

// TestForwardRingZeroAllocs is TestForwardBatchZeroAllocs's burst case
// over ringPipes, whose reads and writes move whole batches.
func TestForwardRingZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a, z, _ := ringChain3(t, "nop")
	msg := make([]byte, 100)
	buf := make([]byte, flow.MaxSDU)
	send := func() {
		for range 64 {
			if err := a.Write(msg, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		for range 64 {
			if _, err := z.Read(buf, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 200 { // warm the buffer pools and free lists
		send()
	}
	if allocs := quietAllocs(200, send); allocs != 0 {
		t.Errorf("%v allocations per 64 SDUs over 3 hops, want 0", allocs)
	}
}

// TestForwardBatchRefusalsFreed overflows short queues (QueueLen 4) on
// the batch path, where a receive batch's packets for a next hop are
// queued at once (Scheduler.EnqueueBatch) and those that do not fit are
// refused: each refused buffer must go back to the pool. Far more are
// refused than the IPCPs' budget (Bufs 300) holds, so a buffer lost per
// refusal would empty the pool and the layer would drop for want of a
// buffer (no_buf), which it never needs to here.
func TestForwardBatchRefusalsFreed(t *testing.T) {
	const bufs = 300
	a, z, nodes := bareChain3(t, "nop", func(_ int, c *unicast.Config) { c.QueueLen, c.Bufs = 4, bufs })
	msg := make([]byte, 100)
	buf := make([]byte, flow.MaxSDU)
	refused := func() (n uint64) {
		for _, p := range nodes[1:] {
			n += p.Stats().Drops["queue_full"]
		}
		return n
	}
	for k := 0; k < 1000 && refused() < 3*bufs; k++ {
		for range 64 {
			if err := a.Write(msg, time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for { // drain what arrived
			if _, err := z.Read(buf, time.Now().Add(time.Millisecond)); err != nil {
				break
			}
		}
	}
	var noBuf0 uint64
	for _, p := range nodes {
		noBuf0 += p.Stats().Drops["no_buf"]
	}
	// One SDU at a time now: none may be dropped for want of a buffer.
	for i := range 200 {
		msg[0] = byte(i)
		if err := a.Write(msg, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := z.Read(buf, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("SDU %d after the overflow: %v", i, err)
		}
	}
	var noBuf uint64
	for _, p := range nodes {
		s := p.Stats()
		noBuf += s.Drops["no_buf"]
		if s.BufAllocs > bufs {
			t.Errorf("%d buffers made, budget %d", s.BufAllocs, bufs)
		}
	}
	t.Logf("refused %d; no_buf %d during the overflow, %d after", refused(), noBuf0, noBuf-noBuf0)
	// Each IPCP holds at most about 230 buffers here (read batches and
	// spares of 64 per loop, a transmit batch of 32 per next hop, queues
	// of 4 per cube): within the budget of 300, none may lack one.
	if noBuf != 0 {
		t.Errorf("%d SDUs dropped for want of a buffer (%d after the overflow)", noBuf, noBuf-noBuf0)
	}
	if r := refused(); r < 3*bufs {
		t.Errorf("only %d packets refused by full queues, want >= %d for the test to mean anything", r, 3*bufs)
	}
}

// quietAllocs is testing.AllocsPerRun at its least of three
// measurements. AllocsPerRun counts every goroutine's allocations, and
// the chain's control plane (hellos, routing ticks, directory refreshes)
// allocates now and then while the data path runs: on a loaded machine a
// measurement of 200 bursts sometimes caught one of those per burst. An
// allocation made per packet shows in every measurement, so the least of
// three still finds it.
func quietAllocs(runs int, f func()) float64 {
	least := testing.AllocsPerRun(runs, f)
	for range 2 {
		if least == 0 {
			break
		}
		least = min(least, testing.AllocsPerRun(runs, f))
	}
	return least
}

// BenchmarkPingPong1Hop is one SDU's round trip between two programs
// across a unicast layer of two IPCPs in one process (flowtest pipes
// below and above): ns/op is the round trip, the in-process hand-offs
// without the process crossings that dominate between router processes.
func BenchmarkPingPong1Hop(b *testing.B) {
	a, z, _ := bareChain(b, 2, "mb-ecn")
	msg := make([]byte, 64)
	buf := make([]byte, flow.MaxSDU)
	deadline := func() time.Time { return time.Now().Add(time.Second) }
	b.ResetTimer()
	for range b.N {
		if err := a.Write(msg, deadline()); err != nil {
			b.Fatal(err)
		}
		if _, err := z.Read(buf, deadline()); err != nil {
			b.Fatal(err)
		}
		if err := z.Write(msg, deadline()); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Read(buf, deadline()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOriginWaitsForRoom sends far more SDUs at once than the first
// hop's queue holds (QueueLen 4 at n0): the IPCP waits for room for
// what it originates (its transmit loop says when: dt.Port.Space)
// instead of dropping it, so every SDU arrives and n0 counts no
// queue_full. The rest of the chain holds the whole burst (queues of
// 2000, pipes, the delivery queue and the pipe to the reader), so
// nothing may be dropped there either.
func TestOriginWaitsForRoom(t *testing.T) {
	const sdus = 1000
	a, z, nodes := bareChain3(t, "nop", func(i int, c *unicast.Config) {
		c.QueueLen = 2 * sdus // a forwarder drops what its queue cannot hold
		if i == 0 {
			c.QueueLen = 4
		}
	})
	msg := make([]byte, 100)
	for i := range sdus {
		msg[0], msg[1] = byte(i>>8), byte(i)
		if err := a.Write(msg, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, flow.MaxSDU)
	for i := range sdus {
		if _, err := z.Read(buf, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("SDU %d of %d: %v (n0 dropped %d as queue_full)", i, sdus, err, nodes[0].Stats().Drops["queue_full"])
		}
		if got := int(buf[0])<<8 | int(buf[1]); got != i {
			for j, p := range nodes {
				t.Logf("n%d: %v", j, p.Stats().Drops)
			}
			t.Fatalf("SDU %d arrived as the %dth", got, i)
		}
	}
	if d := nodes[0].Stats().Drops["queue_full"]; d != 0 {
		t.Errorf("n0 dropped %d of its own SDUs as queue_full, want 0 (it waits for room)", d)
	}
}
