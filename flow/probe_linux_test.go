package flow_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
)

// probeConn adapts a *flow.Flow to probe.Conn as the ouro tool does (a
// deadline per call), with its batch calls and its in-place calls.
// Plain reads are refused: what it reads, it reads in place.
type probeConn struct {
	f     *flow.Flow
	withs atomic.Int64 // ReadWiths that returned an SDU
}

var (
	_ probe.BatchReader   = (*probeConn)(nil)
	_ probe.BatchWriter   = (*probeConn)(nil)
	_ probe.InPlaceReader = (*probeConn)(nil)
	_ probe.InPlaceWriter = (*probeConn)(nil)
)

func (c *probeConn) Read([]byte, time.Time) (int, error) {
	return 0, errors.New("a plain read where the flow reads in place")
}

func (c *probeConn) Write(p []byte, deadline time.Time) error {
	c.f.SetWriteDeadline(deadline)
	_, err := c.f.Write(p)
	return err
}

func (c *probeConn) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	c.f.SetReadDeadline(deadline)
	return c.f.ReadBatch(bufs, sizes)
}

func (c *probeConn) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	c.f.SetWriteDeadline(deadline)
	return c.f.WriteBatch(sdus)
}

func (c *probeConn) WriteWith(n int, fill func(sdu []byte), deadline time.Time) error {
	c.f.SetWriteDeadline(deadline)
	return c.f.WriteWith(n, fill)
}

func (c *probeConn) ReadWith(use func(sdu []byte), deadline time.Time) error {
	c.f.SetReadDeadline(deadline)
	err := c.f.ReadWith(use)
	if err == nil {
		c.withs.Add(1)
	}
	return err
}

// TestProbePingReadsInPlace: probe.Ping from a program's raw flow over
// shared rings, the node's end echoing, writes its pings into the ring
// and reads every reply where it lies in the ring (Flow.ReadWith), and
// each reply matches its ping.
func TestProbePingReadsInPlace(t *testing.T) {
	prog, node := flow.ShmPair(t, 16)
	f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
	if err != nil {
		t.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() { probe.Echo(node, nil); close(echoed) }()
	defer func() { f.Close(); node.Close(); <-echoed }()
	c := &probeConn{f: f}
	const count = 20
	sum, err := probe.Ping(context.Background(), c, probe.PingConfig{Name: "node", Count: count, Size: 64, Timeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if sum.Transmitted != count || sum.Received != count || c.withs.Load() != count {
		t.Errorf("summary %+v, %d replies read in place; want %d sent, received and read in place", sum, c.withs.Load(), count)
	}
}

// BenchmarkEchoShm: probe.Echo in a program over shared rings, per
// 1,400-byte SDU of a flood the node's end writes in runs of 16 and
// reads back in runs; Echo reads and writes runs (ReadBatch, WriteBatch)
// though the Conn reads and writes in place too: in place, one SDU per
// call, it took 2.5 times as long (docs/benchmarks.md, "Reading in
// place").
func BenchmarkEchoShm(b *testing.B) {
	const size, run = 1400, 16
	msgs := make([][]byte, run)
	for i := range msgs {
		msgs[i] = make([]byte, size)
	}
	prog, node := flow.ShmPair(b, 16)
	f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	echoed := make(chan struct{})
	go func() { probe.Echo(&probeConn{f: f}, stop); close(echoed) }()
	defer func() { close(stop); f.Close(); <-echoed }()
	nb := node.(flow.BatchPort)
	go writeRuns(nb, msgs, run, b.N)
	bufs, sizes := benchBufs(32, flow.MaxSDU)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuNS()
	for got := 0; got < b.N; {
		n, err := nb.ReadBatch(bufs, sizes, time.Now().Add(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	b.ReportMetric(float64(cpuNS()-cpu)/float64(b.N), "cpu-ns/SDU")
}
