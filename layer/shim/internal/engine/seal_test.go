package engine

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
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
// it (loopWire), sealed with a.
func sealedLoop(t testing.TB, a seal.AEAD, want []byte) (*Engine[peer], *flowEntry[peer], *countPort) {
	w := &loopWire{}
	e, err := New(Config[peer]{Kind: "test", Wire: w, Headroom: headroom, Runner: layertest.Runner{}, Upcalls: ipcptest.NewUpcalls(1), IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.e = e
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	s, err := seal.NewSealer(a, key)
	if err != nil {
		t.Fatal(err)
	}
	o, err := seal.NewOpener(a, key)
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
// SDU, and what is opened is what was sealed: with either AEAD.
func TestSealedSDUAllocs(t *testing.T) {
	for _, a := range seal.AEADs {
		t.Run(a.String(), func(t *testing.T) { testSealedSDUAllocs(t, a) })
	}
}

func testSealedSDUAllocs(t *testing.T, a seal.AEAD) {
	for _, size := range []int{64, SealedMaxSDU} {
		sdu := bytes.Repeat([]byte{'s'}, size)
		e, f, port := sealedLoop(t, a, sdu)
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

// sealedReq sends a sealed alloc request for srv from a peer.
func sealedReq(t *testing.T, e *Engine[peer], from peer, id uint64) {
	t.Helper()
	h := layer.HashName(layer.SHA3_256, "srv")
	e.Input(encode(t, &Msg{Type: MsgAllocReq, ReqID: id, Src: uint32(id), Hash: h[:], QoS: flow.QoS{Sealed: true}}), from, 0)
}

// A sealed request whose requester never sends its key exchange (or
// goes quiet) holds its peer's place only until the allocation timeout:
// then it is dropped and counted, and the place is free again; the
// program never hears of it.
func TestSealedHandshakeExpires(t *testing.T) {
	id, err := identity.FromSeed(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	up := ipcptest.NewUpcalls(4)
	e, w := newEngine(t, Config[peer]{Upcalls: up, IdleTimeout: -1, MaxPendingPerPeer: 1,
		Seal: &SealConfig{Layer: "l", Signer: id, Name: "n"}})
	sealedReq(t, e, "quiet", 1)
	sealedReq(t, e, "quiet", 2) // its place is taken: busy
	if r := w.msgs(MsgAllocResp); len(r) != 1 || r[0].msg.Result != ResBusy || r[0].msg.ReqID != 2 {
		t.Fatalf("answers %+v, want one busy to request 2", r)
	}
	e.expire(time.Now()) // not yet
	if e.C.KexFailed.Load() != 0 {
		t.Fatal("a handshake expired early")
	}
	e.expire(time.Now().Add(e.cfg.Timeout + time.Second))
	if e.C.KexFailed.Load() != 1 {
		t.Fatalf("%d handshakes dropped, want 1", e.C.KexFailed.Load())
	}
	e.mu.Lock()
	hs, inFlight, peers := len(e.hs), e.inFlight, len(e.peers)
	e.mu.Unlock()
	if hs != 0 || inFlight != 0 || peers != 0 {
		t.Fatalf("after expiry: %d handshakes, %d in flight, %d peers held", hs, inFlight, peers)
	}
	sealedReq(t, e, "quiet", 3) // the place is free again
	if r := w.msgs(MsgAllocResp); len(r) != 1 {
		t.Fatalf("request 3 answered %+v, want held for its key exchange", r[1:])
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("%d requests reached the program", n)
	}
}

// A shim without a signer refuses a sealed request at once, counted.
func TestSealedRequestWithoutSigner(t *testing.T) {
	up := ipcptest.NewUpcalls(4)
	e, w := newEngine(t, Config[peer]{Upcalls: up, IdleTimeout: -1})
	sealedReq(t, e, "p", 1)
	if r := w.msgs(MsgAllocResp); len(r) != 1 || r[0].msg.Result != ResRefused {
		t.Fatalf("answers %+v, want one refusal", r)
	}
	if e.C.KexFailed.Load() != 1 || len(up.Requests()) != 0 {
		t.Fatalf("kex_failed %d, %d requests to the program", e.C.KexFailed.Load(), len(up.Requests()))
	}
}

// loopBatch is a BatchSender over a loopWire; fail makes packet fail
// (index in the call) return an error.
type loopBatch struct {
	w    *loopWire
	fail int
}

func (s loopBatch) SendBatch(pkts [][]byte, dst peer, eid uint32) (int, error) {
	for i, p := range pkts {
		if i == s.fail {
			return i, flow.ErrBusy
		}
		s.w.Send(p, dst, eid)
	}
	return len(pkts), nil
}

// A transmit batch is sealed SDU by SDU, sent, opened and delivered whole
// and counted, allocating nothing; a packet the sender fails is counted
// as a transmit error and the rest of the batch still goes.
func TestSealedBatchAllocs(t *testing.T) {
	sdu := bytes.Repeat([]byte{'b'}, 200)
	e, f, port := sealedLoop(t, seal.ChaCha20Poly1305, sdu)
	b := e.newTxBatch(f)
	for i := range TxBatch {
		copy(b.rooms[i], sdu)
		b.sizes[i] = len(sdu)
	}
	lw := e.cfg.Wire.(*loopWire)
	var s BatchSender[peer] = loopBatch{w: lw, fail: -1}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range TxBatch {
			copy(b.rooms[i], sdu) // sealing works in place
		}
		e.sendBatch(f, b, TxBatch, s)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
	if n := port.n.Load(); n != 101*TxBatch || port.bad.Load() != 0 || e.C.PacketsOut.Load() != n {
		t.Fatalf("%d SDUs delivered (%d wrong), %d counted out; want %d", n, port.bad.Load(), e.C.PacketsOut.Load(), 101*TxBatch)
	}
	for i := range TxBatch {
		copy(b.rooms[i], sdu)
	}
	before := port.n.Load()
	e.sendBatch(f, b, TxBatch, loopBatch{w: lw, fail: 3})
	// The sender fails pkts[3] of each call: 3 of 32, then 3 of 28, ...
	if got := port.n.Load() - before; got == 0 || got+e.C.TxError.Load() != TxBatch {
		t.Fatalf("%d delivered, %d tx errors; want them to add up to %d", got, e.C.TxError.Load(), TxBatch)
	}
}

// An engine that can seal makes key pairs ahead from Start, whether it
// seals every flow (Require) or only the flows that ask, so its first
// sealed allocation does not make them inline; one that cannot seal
// makes none.
func TestKeysAheadFromStart(t *testing.T) {
	id, err := identity.FromSeed(bytes.Repeat([]byte{4}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, require := range []bool{true, false} {
		e, _ := newEngine(t, Config[peer]{Upcalls: ipcptest.NewUpcalls(4), IdleTimeout: -1,
			Seal: &SealConfig{Layer: "l", Signer: id, Name: "n", Require: require}})
		deadline := time.Now().Add(10 * time.Second)
		for len(e.seal.ephs) < ephAhead || len(e.seal.rkeys) < ephAhead {
			if time.Now().After(deadline) {
				t.Fatalf("Require %v: %d key pairs and %d resumption pairs made 10 s after Start, want %d each", require, len(e.seal.ephs), len(e.seal.rkeys), ephAhead)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	e, _ := newEngine(t, Config[peer]{Upcalls: ipcptest.NewUpcalls(4), IdleTimeout: -1})
	if e.seal != nil {
		t.Fatal("an engine without a SealConfig has sealing state")
	}
}
