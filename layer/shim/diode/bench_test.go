package diode

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/shim/impair"
)

// sinkPort is a flow.Port that takes every SDU and counts it: the
// receiving program of the allocation tests, which must not allocate
// for the receiver's sake.
type sinkPort struct{ n int }

func (s *sinkPort) Read([]byte, time.Time) (int, error) { return 0, flow.ErrTimeout }
func (s *sinkPort) Write([]byte, time.Time) error       { s.n++; return nil }
func (s *sinkPort) Close() error                        { return nil }

// receiver returns a receiving end that is not started: the tests feed
// its handle directly.
func receiver(t testing.TB, peer []byte) (*IPCP, *rx) {
	t.Helper()
	p, err := New(Config{Layer: "diode", Name: "b.diode", Runner: nopRunner{}, Flows: flows, K: 16, Parity: 4,
		Rx: newLink(), Peer: peer}, ipcptest.NewUpcalls(1))
	if err != nil {
		t.Fatal(err)
	}
	return p, newRx(p)
}

type nopRunner struct{}

func (nopRunner) Go(func()) {}

// TestRxShardAllocs proves the per-shard receive path (parse, proof,
// window, copy) allocates nothing, and neither does a block's rebuild and
// delivery once its buffers exist; only the first shard of a block pays a
// signature check (which allocates its labelled message).
func TestRxShardAllocs(t *testing.T) {
	a := ident(t)
	l := newLink()
	s, _, _ := pair(t, l, newLink(), a, a, nil)
	shards := captureBlock(t, l, s, 16)
	p, r := receiver(t, a.Public())
	f := p.rxFlows[7]
	f.port = &sinkPort{}
	r.handle(Shard(shards[0]))
	b := f.find(Shard(shards[0]).Block())
	if b == nil {
		t.Fatal("first shard not taken")
	}
	perShard := testing.AllocsPerRun(100, func() {
		for i := 1; i < 15; i++ {
			b.present[i] = false
		}
		b.have = 1
		for _, sh := range shards[1:15] {
			r.handle(Shard(sh))
		}
	}) / 14
	if perShard != 0 {
		t.Errorf("got %v allocations per shard, want 0", perShard)
	}
	if p.FEC().Forged != 0 || p.FEC().ShardsIn == 0 {
		t.Fatalf("got %+v, want shards taken and none forged", p.FEC())
	}
	// The rebuild: the last data shard missing, two parity shards make up.
	block := func() {
		b.id = Shard(shards[0]).Block()
		f.done[f.doneAt] = 0
		f.floor = 0
		clear(f.done)
		for i := 1; i < 20; i++ {
			b.present[i] = false
		}
		b.have = 1
		for _, sh := range shards[1:15] {
			r.handle(Shard(sh))
		}
		r.handle(Shard(shards[16]))
	}
	block() // the decoder's first use builds its tables
	perBlock := testing.AllocsPerRun(50, block)
	if p.FEC().Repaired == 0 {
		t.Fatalf("got %+v, want repaired blocks", p.FEC())
	}
	// The decoder (klauspost/reedsolomon's ReconstructData) allocates
	// per repaired block, not per shard: docs/benchmarks.md.
	t.Logf("%v allocations per repaired block of 16 data shards (the decoder)", perBlock)
}

// TestTxAllocs proves the sender allocates nothing per SDU or shard: a
// block of 80 shards costs as many allocations as one of 20 (what it
// allocates is the block's signature and its deadline).
func TestTxAllocs(t *testing.T) {
	a := ident(t)
	perBlock := func(k, m int) float64 {
		p, err := New(Config{Layer: "diode", Name: "a.diode", Runner: nopRunner{}, Flows: flows, K: k, Parity: m,
			Tx: discard{}, Signer: a, Rate: -1}, ipcptest.NewUpcalls(1))
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.newTxBlock()
		if err != nil {
			t.Fatal(err)
		}
		f := p.byName["files"]
		return testing.AllocsPerRun(100, func() {
			for i := range k {
				b.lens[i] = 1000
			}
			b.count = k
			p.flush(f, b)
		})
	}
	small, big := perBlock(16, 4), perBlock(64, 16)
	if big != small {
		t.Errorf("got %v allocations for a block of 80 shards and %v for 20, want equal (none per shard)", big, small)
	}
	t.Logf("%v allocations per block (the signature)", small)
}

type discard struct{}

func (discard) Send([]byte) error { return nil }
func (discard) Close() error      { return nil }

// BenchmarkDiode moves SDUs of the largest size from a sending to a
// receiving end over an in-memory one-way link (no loss): throughput of
// the FEC, Merkle and signature work, with parity sized for 5% loss
// against none (the baseline). overhead is wire bytes per payload byte.
func BenchmarkDiode(b *testing.B) {
	for _, bc := range []struct {
		name string
		loss float64
	}{{"parity0", 0}, {"loss5", 5}} {
		b.Run(bc.name, func(b *testing.B) {
			benchLink(b, newLink(), newLinkPair, bc.loss, impair.Config{})
		})
	}
}

// BenchmarkDiodeUDP is BenchmarkDiode over a loopback UDP socket with 5%
// of the shards lost in the impairment stage, paced at 200 Mbit/s.
func BenchmarkDiodeUDP(b *testing.B) {
	rx, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		b.Fatal(err)
	}
	tx, err := DialUDP(netip.AddrPort{}, rx.Addr())
	if err != nil {
		b.Fatal(err)
	}
	benchLink(b, nil, func(*link) (Sender, Receiver) { return tx, rx }, 5, impair.Config{Seed: 3, Loss: 5})
}

func newLinkPair(l *link) (Sender, Receiver) { return l, l }

func benchLink(b *testing.B, l *link, ends func(*link) (Sender, Receiver), loss float64, imp impair.Config) {
	a := ident(b)
	tx, rx := ends(l)
	s, r, up := pair(b, tx, rx, a, a, func(c *Config) {
		c.Parity, c.Loss, c.Impair = 0, loss, imp
		if imp.Enabled() {
			c.Rate = 25_000_000
		}
	})
	app := dial(b, s)
	sdu := bytes.Repeat([]byte{0xa5}, s.MaxSDU())
	done := make(chan int)
	go func() {
		acc := <-up.Accepted
		defer acc.Port.Close()
		buf := make([]byte, flow.MaxSDU)
		n := 0
		for {
			_, err := acc.Port.Read(buf, time.Now().Add(10*time.Second))
			if errors.Is(err, flow.ErrClosed) || err != nil {
				done <- n
				return
			}
			n++
		}
	}()
	b.SetBytes(int64(len(sdu)))
	b.ResetTimer()
	for range b.N {
		if err := app.Write(sdu, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	app.Close()
	got := <-done
	b.StopTimer()
	fs := s.FEC()
	if fr := r.FEC(); fr.Forged != 0 {
		b.Fatalf("got %d forged shards", fr.Forged)
	}
	wire := float64(fs.ShardsOut) * float64(ShardSize(int(fs.DataShards+fs.Parity), s.MaxSDU()+SlotHdrLen))
	b.ReportMetric(wire/float64(b.N*len(sdu)), "overhead")
	b.ReportMetric(float64(fs.Parity), "m")
	b.ReportMetric(float64(b.N-got)/float64(b.N)*100, "%lost")
}
