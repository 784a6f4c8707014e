package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
)

// peer is a test address.
type peer string

func (p peer) String() string { return string(p) }

// sent is a packet the engine put on the wire.
type sent struct {
	to  peer
	eid uint32
	msg Msg // if eid is 0
}

// wire records what the engine sends.
type wire struct {
	mu   sync.Mutex
	sent []sent
}

func (w *wire) Send(pkt []byte, dst peer, eid uint32) error {
	s := sent{to: dst, eid: eid}
	if eid == 0 {
		m, err := DecodeMsg(pkt[headroom:])
		if err != nil {
			return err
		}
		s.msg = m
	}
	w.mu.Lock()
	w.sent = append(w.sent, s)
	w.mu.Unlock()
	return nil
}

// msgs returns the control messages of type typ sent so far.
func (w *wire) msgs(typ MsgType) []sent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []sent
	for _, s := range w.sent {
		if s.eid == 0 && s.msg.Type == typ {
			out = append(out, s)
		}
	}
	return out
}

const headroom = 4

func newEngine(t *testing.T, cfg Config[peer]) (*Engine[peer], *wire) {
	t.Helper()
	w := &wire{}
	cfg.Kind, cfg.Wire, cfg.Headroom, cfg.Runner = "test", w, headroom, layertest.Runner{}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() { e.Stop(); e.Wait() })
	if err := e.Register("srv"); err != nil {
		t.Fatal(err)
	}
	return e, w
}

func allocReq(t *testing.T, e *Engine[peer], from peer, id uint64) {
	t.Helper()
	h := layer.HashName(layer.SHA3_256, "srv")
	b, err := EncodeMsg(nil, &Msg{Type: MsgAllocReq, ReqID: id, Src: uint32(id), Hash: h[:]})
	if err != nil {
		t.Fatal(err)
	}
	e.Input(b, from, 0)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not reached", what)
}

func TestNeedsRunner(t *testing.T) {
	if _, err := New(Config[peer]{Kind: "test", Wire: &wire{}}); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("no runner: got %v, want ErrInvalid", err)
	}
}

// TestIdleExpiry: a flow with no traffic either way is deallocated after
// IdleTimeout (the peer is told, the program's end closes); a flow that
// receives SDUs is not, even when its program does not read them.
func TestIdleExpiry(t *testing.T) {
	up := ipcptest.NewUpcalls(16)
	e, w := newEngine(t, Config[peer]{Upcalls: up, IdleTimeout: 100 * time.Millisecond})
	allocReq(t, e, "idle", 1)
	allocReq(t, e, "busy", 2)
	var progs []flow.Port
	for range 2 {
		acc := <-up.Accepted
		defer acc.Port.Close()
		progs = append(progs, acc.Port)
	}
	waitFor(t, "two flows", func() bool { return len(e.Flows()) == 2 })
	var busyEID uint32
	for _, f := range e.Flows() {
		if f.Peer == "busy" {
			busyEID = uint32(f.LocalEID)
		}
	}
	// 40 SDUs over 400 ms: more than the program's pipe holds, so the
	// last ones are drops at a full port, which count as traffic too.
	for start := time.Now(); time.Since(start) < 400*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		e.Input([]byte("keep me"), "busy", busyEID)
	}
	fs := e.Flows()
	if len(fs) != 1 || fs[0].Peer != "busy" {
		t.Fatalf("after 400 ms: flows %+v, want only busy's", fs)
	}
	if got := e.C.FlowsExpired.Load(); got != 1 {
		t.Fatalf("%d expired, want 1", got)
	}
	if d := w.msgs(MsgDealloc); len(d) != 1 || d[0].to != "idle" || d[0].msg.Dst != 1 {
		t.Fatalf("deallocs sent: %+v, want one to idle's endpoint 1", d)
	}
	// busy's program finds its SDUs; idle's end is closed.
	closed := 0
	for _, p := range progs {
		buf := make([]byte, 16)
		for {
			_, err := p.Read(buf, time.Now().Add(10*time.Millisecond))
			if errors.Is(err, flow.ErrClosed) {
				closed++
			}
			if err != nil {
				break
			}
		}
	}
	if closed != 1 {
		t.Fatalf("%d program ends closed, want 1 (the idle flow's)", closed)
	}
	// Without traffic, busy's flow goes too.
	waitFor(t, "busy's flow to expire", func() bool { return len(e.Flows()) == 0 })
}

// gate is an IRM whose programs accept a flow request only when the test
// grants it.
type gate struct {
	grant   chan struct{}
	waiting atomic.Int64
	ends    chan flow.Port // the programs' ends of granted flows
}

func newGate() *gate { return &gate{grant: make(chan struct{}), ends: make(chan flow.Port, 64)} }

func (g *gate) FlowReq(ctx context.Context, _ ipcp.AllocReq) (flow.Port, error) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.grant:
		mine, theirs := flowtest.Pipe(4)
		g.ends <- theirs
		return mine, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// accept grants n waiting requests.
func (g *gate) accept(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case g.grant <- struct{}{}:
		case <-time.After(3 * time.Second):
			t.Fatal("no request waiting")
		}
	}
}

func (g *gate) closeAll() {
	for {
		select {
		case p := <-g.ends:
			p.Close()
		default:
			return
		}
	}
}

// TestPeerLimits: one peer's incoming flows and requests in progress are
// bounded; its extra requests are refused as busy and counted, another
// peer is not affected, and a freed share can be used again.
func TestPeerLimits(t *testing.T) {
	g := newGate()
	e, w := newEngine(t, Config[peer]{Upcalls: g, IdleTimeout: -1, MaxFlowsPerPeer: 5, MaxPendingPerPeer: 2})
	t.Cleanup(g.closeAll)
	id := uint64(0)
	flood := func(n int) {
		for range n {
			id++
			allocReq(t, e, "flooder", id)
		}
	}
	waiting := func(n int64) { waitFor(t, fmt.Sprint(n, " waiting"), func() bool { return g.waiting.Load() == n }) }
	flows := func(n int) { waitFor(t, fmt.Sprint(n, " flows"), func() bool { return len(e.Flows()) == n }) }

	flood(50)
	waiting(2)
	if got := e.C.PeerLimit.Load(); got != 48 {
		t.Fatalf("%d refused at the peer limit, want 48 (2 may wait)", got)
	}
	if r := w.msgs(MsgAllocResp); len(r) != 48 || r[0].msg.Result != ResBusy || r[0].to != "flooder" {
		t.Fatalf("%d answers, first %+v: want 48 busy to the flooder", len(r), r[0])
	}
	// Flows and requests in progress share MaxFlowsPerPeer.
	g.accept(t, 2)
	flows(2)
	flood(10)
	waiting(2)
	g.accept(t, 2)
	flows(4)
	flood(10)
	waiting(1) // 4 flows + 1 in progress = 5
	g.accept(t, 1)
	flows(5)
	before := e.C.PeerLimit.Load()
	flood(10)
	if got := e.C.PeerLimit.Load() - before; got != 10 || g.waiting.Load() != 0 {
		t.Fatalf("at 5 flows: %d of 10 refused, %d waiting; want all refused", got, g.waiting.Load())
	}
	// Another peer is not limited by the flooder's share.
	allocReq(t, e, "honest", 1)
	waiting(1)
	g.accept(t, 1)
	flows(6)
	// The flooder's peer deallocates one flow: its share frees.
	for _, f := range e.Flows() {
		if f.Peer == "flooder" {
			e.Input(encode(t, &Msg{Type: MsgDealloc, Src: uint32(f.RemoteEID), Dst: uint32(f.LocalEID)}), "flooder", 0)
			break
		}
	}
	flows(5)
	flood(1)
	waiting(1)
	g.accept(t, 1)
	flows(6)
	e.mu.Lock()
	peers := len(e.peers)
	e.mu.Unlock()
	if peers != 2 {
		t.Fatalf("%d peers tracked, want 2", peers)
	}
}

func encode(t *testing.T, m *Msg) []byte {
	t.Helper()
	b, err := EncodeMsg(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRefusalsBounded: refusals are remembered to answer retransmitted
// requests, but no more than maxRefusals of them, however fast a peer
// makes the IRM refuse.
func TestRefusalsBounded(t *testing.T) {
	up := ipcptest.NewUpcalls(1)
	up.Refuse(flow.ErrRefused)
	e, w := newEngine(t, Config[peer]{Upcalls: up, IdleTimeout: -1})
	const n = 3 * maxRefusals
	for i := range n {
		allocReq(t, e, peer(fmt.Sprint("p", i%7)), uint64(i+1))
		if i%8 == 7 { // let the accept goroutines finish: a peer has 16 in progress at most
			waitFor(t, "refusals", func() bool { return len(w.msgs(MsgAllocResp)) == i+1 })
		}
	}
	waitFor(t, "every answer", func() bool { return len(w.msgs(MsgAllocResp)) == n })
	e.mu.Lock()
	kept, counted, peers := len(e.inbound), e.refused, len(e.peers)
	e.mu.Unlock()
	if kept > maxRefusals || kept != counted {
		t.Fatalf("%d refusals remembered (%d counted), want at most %d", kept, counted, maxRefusals)
	}
	if peers != 0 {
		t.Fatalf("%d peers tracked with nothing held, want 0", peers)
	}
	// The newest is still answered from memory, without asking the IRM.
	reqs := len(up.Requests())
	allocReq(t, e, peer(fmt.Sprint("p", (n-1)%7)), n)
	if got := len(up.Requests()); got != reqs {
		t.Fatalf("a retransmitted request reached the IRM again (%d requests, want %d)", got, reqs)
	}
	if got := len(w.msgs(MsgAllocResp)); got != n+1 {
		t.Fatalf("%d answers, want %d (the retransmission answered)", got, n+1)
	}
}
