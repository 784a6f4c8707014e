package engine

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/layertest"
)

// loopWire hands each data packet the engine sends back to it as
// received, from the same peer: a flow talking to itself, which a
// sealed flow whose two directions share one key can open.
type loopWire struct {
	e    *Engine[peer]
	sent atomic.Uint64
}

func (w *loopWire) Send(pkt []byte, dst peer, eid uint32) error {
	w.sent.Add(1)
	if eid != 0 {
		w.e.Input(pkt[headroom:], dst, eid)
	}
	return nil
}

// countPort counts what the engine writes to it and checks the bytes.
type countPort struct {
	n    atomic.Uint64
	want []byte
	bad  atomic.Uint64
}

func (p *countPort) Read([]byte, time.Time) (int, error) { return 0, flow.ErrClosed }
func (p *countPort) Write(b []byte, _ time.Time) error {
	if !bytes.Equal(b, p.want) {
		p.bad.Add(1)
	}
	p.n.Add(1)
	return nil
}
func (p *countPort) Close() error { return nil }

// sealedLoop is an engine with one sealed flow whose SDUs come back to
// it (loopWire).
func sealedLoop(t testing.TB, want []byte) (*Engine[peer], *flowEntry[peer], *countPort) {
	w := &loopWire{}
	e, err := New(Config[peer]{Kind: "test", Wire: w, Headroom: headroom, Runner: layertest.Runner{}, Upcalls: flowtest.NewUpcalls(1), IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.e = e
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	s, err := seal.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	o, err := seal.NewOpener(key)
	if err != nil {
		t.Fatal(err)
	}
	port := &countPort{want: want}
	f := &flowEntry[peer]{local: 5, remote: 5, peer: "p", port: port, sl: &sealing{sealer: s, opener: o}}
	e.mu.Lock()
	e.install(f)
	e.mu.Unlock()
	e.wg.Done() // no transmit goroutine: the test sends
	t.Cleanup(func() { e.Stop(); e.Wait() })
	return e, f, port
}

// Sealing on the way out and opening on the way in allocate nothing per
// SDU, and what is opened is what was sealed.
func TestSealedSDUAllocs(t *testing.T) {
	for _, size := range []int{64, SealedMaxSDU} {
		sdu := bytes.Repeat([]byte{'s'}, size)
		e, f, port := sealedLoop(t, sdu)
		buf := make([]byte, headroom+flow.MaxSDU)
		allocs := testing.AllocsPerRun(1000, func() {
			copy(e.sduRoom(f, buf), sdu)
			e.sendSDU(f, buf, len(sdu))
		})
		if allocs != 0 {
			t.Fatalf("%d B: %v allocations per sealed SDU (out and in), want 0", size, allocs)
		}
		if port.n.Load() < 1000 || port.bad.Load() != 0 || e.C.Tampered.Load() != 0 {
			t.Fatalf("%d B: %d SDUs delivered, %d wrong, %d tampered", size, port.n.Load(), port.bad.Load(), e.C.Tampered.Load())
		}
		// Drops (a replay, a forgery) allocate nothing either.
		copy(e.sduRoom(f, buf), sdu)
		pkt := make([]byte, 0, flow.MaxSDU)
		pkt, _ = f.sl.sealer.Seal(pkt, sdu, nil)
		keep := bytes.Clone(pkt)
		e.Input(pkt, "p", 5)
		allocs = testing.AllocsPerRun(1000, func() {
			copy(pkt, keep)
			e.Input(pkt, "p", 5) // replayed
			pkt[len(pkt)-1] ^= 1
			e.Input(pkt, "p", 5) // forged (or replayed: counted either way)
		})
		if allocs != 0 {
			t.Fatalf("%d B: %v allocations per dropped SDU, want 0", size, allocs)
		}
		if e.C.Replayed.Load() < 1000 {
			t.Fatalf("%d B: %d replays counted", size, e.C.Replayed.Load())
		}
	}
}
