package eth

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// slowStart starts a shim whose every slow answer to "not here" is the
// query timeout (5 s): the negative wait too, and the announcement period
// (2 s, the default) makes the engine's own warm-up 3 s.
func slowStart(t *testing.T, name string, dev Device) *node {
	t.Helper()
	up := ipcptest.NewUpcalls(16)
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "eth.test", Name: name, Device: dev,
		QueryTimeout: 5 * time.Second, NegativeWait: 5 * time.Second, RetryBase: 5 * time.Millisecond}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &node{p, up}
}

// TestNotHere: on a segment of shims that answer "not here", a query for
// a name nobody holds ends flow.ErrNotFound as soon as every holder the
// asker knows has said so: well below the query timeout, although every
// slow path (negative wait, deadline) is that timeout here and the asker
// started only 150 ms earlier (it learnt the holders from its start
// solicit, not from 1.5 announcement periods). A holder that does not
// answer "not here" (a shim that predates it, played by a raw port) puts
// the asker back on the slow path: nothing is declared absent while a
// known holder has not answered. Fails without the absent answers (the
// query waits its 5 s).
func TestNotHere(t *testing.T) {
	hub := ethtest.NewHub()
	b := slowStart(t, "b", hub.NewPort())
	if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	slowStart(t, "c", hub.NewPort()) // holds nothing
	a := slowStart(t, "a", hub.NewPort())
	time.Sleep(150 * time.Millisecond)

	// srv: heard from b's answer to a's solicit, found without a query.
	ctlOut := a.ipcp.Stats().CtlOut
	if err := a.ipcp.Query(context.Background(), "srv"); err != nil {
		t.Fatalf("query srv: %v", err)
	}
	if d := a.ipcp.Stats().CtlOut - ctlOut; d != 0 {
		t.Errorf("a sent %d control messages to find srv, want it heard from b's answer to its solicit", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	err := a.ipcp.Query(ctx, "nobody")
	took := time.Since(t0)
	if !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("query nobody: %v, want ErrNotFound", err)
	}
	if took > time.Second || ctx.Err() != nil {
		t.Fatalf("query nobody took %v of its 5 s, want well below (every holder answers not here)", took)
	}
	t.Logf("query nobody: not found in %v", took)
	if q := a.ipcp.Stats().QuickNotFound; q != 1 {
		t.Fatalf("quick_not_found %d, want 1", q)
	}
	// An allocation to it fails the same way.
	_, port := flowtest.Pipe(1)
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if _, err := a.ipcp.AllocPeer(actx, ipcp.AllocReq{ID: 1, Dst: "nobody"}, port); !errors.Is(err, flow.ErrNotFound) || actx.Err() != nil {
		t.Fatalf("alloc nobody: %v (deadline %v), want ErrNotFound before the deadline", err, actx.Err())
	}

	// A raw port on the segment: its queries are answered "not here" by
	// a and c (b holds srv and answers that one with a name reply)...
	raw := hub.NewPort()
	defer raw.Close()
	src, _ := MACFrom(raw.MAC())
	query := func(name string) {
		h := layer.HashName(layer.SHA3_256, name)
		p, _ := engine.EncodeMsg(nil, &engine.Msg{Type: engine.MsgNameQuery, Hash: h[:]})
		raw.WriteFrame(rawFrame(Broadcast, src, CtlEID, p))
	}
	h := layer.HashName(layer.SHA3_256, "srv")
	query("srv")
	absentFrom := map[MAC]bool{}
	replied := false
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(2 * time.Second); (len(absentFrom) < 2 || !replied) && time.Now().Before(deadline); {
		n, err := readFrame(raw, buf, time.Second)
		if err != nil {
			break
		}
		f := Frame(buf[:n])
		if f.Dst() != src || f.EID() != CtlEID {
			continue
		}
		if typ, ah, err := decodeCtl(f.Payload()); err == nil && typ == ctlAbsent {
			if ah != h {
				t.Fatalf("absent answer for hash %x, want srv's", ah)
			}
			absentFrom[f.Src()] = true
			continue
		}
		if m, err := engine.DecodeMsg(f.Payload()); err == nil && m.Type == engine.MsgNameReply && f.Src() == b.ipcp.MAC() {
			replied = true
		}
	}
	if !replied || len(absentFrom) != 2 || absentFrom[b.ipcp.MAC()] || !absentFrom[a.ipcp.MAC()] {
		t.Fatalf("query for srv: name reply from b %v, not here from %v; want the reply and not here from a and c", replied, absentFrom)
	}

	// ... and once it announces a name (a holder that never answers
	// "not here"), a query for a name nobody holds waits again.
	lh := layer.HashName(layer.SHA3_256, "legacy")
	p, _ := engine.EncodeMsg(nil, &engine.Msg{Type: engine.MsgNameReply, Hash: lh[:]})
	raw.WriteFrame(rawFrame(Broadcast, src, CtlEID, p))
	waitFor(t, func() bool { return len(a.ipcp.Heard([]string{"legacy"})) == 1 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := a.ipcp.Query(ctx2, "nobody2"); !errors.Is(err, flow.ErrNotFound) || ctx2.Err() == nil {
		t.Fatalf("query with a silent holder: %v (deadline %v), want ErrNotFound at the deadline", err, ctx2.Err())
	}
	if q := a.ipcp.Stats().QuickNotFound; q != 2 {
		t.Fatalf("quick_not_found %d after the silent holder, want 2 (the alloc's only)", q)
	}
}

// readFrame reads one frame from d within d.
func readFrame(dev Device, buf []byte, wait time.Duration) (int, error) {
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, 1)
	go func() { n, err := dev.ReadFrame(buf); ch <- res{n, err} }()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-time.After(wait):
		dev.Close()
		<-ch
		return 0, errors.New("no frame")
	}
}

// TestCtlCodec: the eth-only control messages decode to what was encoded,
// and nothing else decodes.
func TestCtlCodec(t *testing.T) {
	h := layer.HashName(layer.SHA3_256, "x")
	for _, typ := range []byte{ctlAbsent, ctlSolicit} {
		b := encodeCtl(nil, typ, h)
		if !isEthCtl(b) {
			t.Fatalf("type %d: %x not told apart from the engine's messages", typ, b)
		}
		gt, gh, err := decodeCtl(b)
		if err != nil || gt != typ || (typ == ctlAbsent && gh != h) {
			t.Fatalf("type %d: decoded %d %x %v", typ, gt, gh, err)
		}
		for cut := range len(b) {
			if _, _, err := decodeCtl(b[:cut]); err == nil {
				t.Fatalf("type %d cut to %d bytes decoded", typ, cut)
			}
		}
		bad := bytes.Clone(b)
		bad[1] = 7
		if _, _, err := decodeCtl(bad); err == nil {
			t.Fatalf("type 7 decoded")
		}
	}
	m, _ := engine.EncodeMsg(nil, &engine.Msg{Type: engine.MsgNameQuery, Hash: h[:]})
	k, _ := engine.EncodeKex(nil, &engine.KexMsg{Type: engine.MsgKex, Src: 1, Step: engine.StepHello, Parts: 1, Data: []byte{1}})
	if isEthCtl(m) || isEthCtl(k) {
		t.Fatal("an engine message taken for an eth-only one")
	}
}

func FuzzDecodeCtl(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "x")
	f.Add(encodeCtl(nil, ctlAbsent, h))
	f.Add(encodeCtl(nil, ctlSolicit, h))
	f.Add([]byte{0x82, 8, 0x58, 31})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, h, err := decodeCtl(b)
		if err != nil {
			return
		}
		if got := encodeCtl(nil, typ, h); !bytes.Equal(got, b) {
			t.Fatalf("decoded %x as %d %x, which encodes to %x", b, typ, h, got)
		}
	})
}

// TestAbsentBounded: a flood of name queries (forged sources would make
// it a reflection) is answered "not here" at most absentBurst times per
// absentWindow. Fails without the bound (every one of the 500 queries is
// answered).
func TestAbsentBounded(t *testing.T) {
	hub := ethtest.NewHub()
	b := slowStart(t, "b", hub.NewPort())
	raw := hub.NewPort()
	defer raw.Close()
	src, _ := MACFrom(raw.MAC())
	const flood = 500
	t0 := time.Now()
	for i := range flood {
		h := layer.HashName(layer.SHA3_256, string(rune('a'+i%26))+time.Duration(i).String())
		p, _ := engine.EncodeMsg(nil, &engine.Msg{Type: engine.MsgNameQuery, Hash: h[:]})
		raw.WriteFrame(rawFrame(Broadcast, src, CtlEID, p))
	}
	waitFor(t, func() bool { return b.ipcp.Stats().CtlIn >= flood })
	windows := int(time.Since(t0)/absentWindow) + 1
	answers := 0
	buf := make([]byte, 2048)
	for {
		n, err := readFrame(raw, buf, 200*time.Millisecond)
		if err != nil {
			break
		}
		if f := Frame(buf[:n]); f.Dst() == src {
			if typ, _, err := decodeCtl(f.Payload()); err == nil && typ == ctlAbsent {
				answers++
			}
		}
	}
	if answers == 0 || answers > windows*absentBurst || (windows == 1 && answers != absentBurst) {
		t.Fatalf("%d queries in %d windows of %v: %d answered not here, want at most %d a window", flood, windows, absentWindow, answers, absentBurst)
	}
	t.Logf("%d queries in %d window(s): %d answered", flood, windows, answers)
}
