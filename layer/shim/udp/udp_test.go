package udp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("cannot bind %s: %v", addr, err)
	}
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// node is one UDP shim under test with its fake IRM.
type node struct {
	ipcp *IPCP
	up   *ipcptest.Upcalls
	addr netip.AddrPort
}

// pair starts two shims that know each other as "a" and "b"; b serves "srv".
func pair(t testing.TB, loopback string, imp impair.Config) (a, b *node) {
	t.Helper()
	ca, cb := listen(t, "udp", loopback), listen(t, "udp", loopback)
	dir := map[string]netip.AddrPort{"a": addrOf(ca), "b": addrOf(cb), "srv": addrOf(cb), "nobody": addrOf(cb)}
	mk := func(name string, c *net.UDPConn) *node {
		up := ipcptest.NewUpcalls(256)
		p, err := New(Config{Runner: layertest.Runner{}, Layer: "udp.test", Name: name, Dir: dir, Device: c, Impair: imp, RetryBase: 5 * time.Millisecond}, up)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		return &node{ipcp: p, up: up, addr: addrOf(c)}
	}
	a, b = mk("a", ca), mk("b", cb)
	if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// dial allocates a flow from a to name and returns both programs' ends.
func dial(t testing.TB, a, b *node, name string) (client, server flow.Port) {
	t.Helper()
	app, ipcpEnd := flowtest.Pipe(256)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{ID: 1, Dst: name, QoS: flow.BestEffort()}, ipcpEnd); err != nil {
		t.Fatalf("alloc %q: %v", name, err)
	}
	select {
	case acc := <-b.up.Accepted:
		t.Cleanup(func() { acc.Port.Close() })
		t.Cleanup(func() { app.Close() })
		return app, acc.Port
	case <-ctx.Done():
		t.Fatal("no flow accepted")
	}
	return nil, nil
}

func roundTrip(t testing.TB, from, to flow.Port, msg string) {
	t.Helper()
	if err := from.Write([]byte(msg), time.Now().Add(2*time.Second)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := to.Read(buf, time.Now().Add(2*time.Second))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := string(buf[:n]); got != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
}

func TestAllocDataDealloc(t *testing.T) {
	for _, tc := range []struct{ name, loopback string }{{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t, tc.loopback, impair.Config{})
			client, server := dial(t, a, b, "srv")
			if reqs := b.up.Requests(); len(reqs) != 1 || reqs[0].Dst != "srv" {
				t.Fatalf("got requests %+v, want one to srv", reqs)
			}
			roundTrip(t, client, server, "ping")
			roundTrip(t, server, client, "pong")
			if got := len(a.ipcp.Flows()); got != 1 {
				t.Fatalf("got %d flows at a, want 1", got)
			}
			client.Close()
			buf := make([]byte, 16)
			if _, err := server.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
				t.Fatalf("server read after client close: got %v, want ErrClosed", err)
			}
			waitFor(t, func() bool { return len(a.ipcp.Flows()) == 0 && len(b.ipcp.Flows()) == 0 })
			// Counters move just after the SDU is handed over: wait.
			waitFor(t, func() bool {
				st := a.ipcp.Stats()
				return st.PacketsOut == 1 && st.PacketsIn == 1 && st.FlowsOut == 1
			})
		})
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached")
}

func TestAllocErrors(t *testing.T) {
	a, b := pair(t, "127.0.0.1:0", impair.Config{})
	silent := listen(t, "udp", "127.0.0.1:0")
	defer silent.Close()
	a.ipcp.dir["silent"] = addrOf(silent)
	for _, tc := range []struct {
		name, dst string
		refuse    error
		timeout   time.Duration
		want      error
	}{
		{"not in directory", "nowhere", nil, time.Second, flow.ErrNotFound},
		{"not registered at peer", "nobody", nil, time.Second, flow.ErrNotFound},
		{"refused by IRM", "srv", flow.ErrRefused, time.Second, flow.ErrRefused},
		{"not found by IRM", "srv", flow.ErrNotFound, time.Second, flow.ErrNotFound},
		{"peer silent", "silent", nil, 100 * time.Millisecond, flow.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.up.Refuse(tc.refuse)
			defer b.up.Refuse(nil)
			_, port := flowtest.Pipe(1)
			defer port.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := a.ipcp.Alloc(ctx, ipcp.AllocReq{Dst: tc.dst}, port)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := a.ipcp.Query(context.Background(), "srv"); err != nil {
		t.Errorf("query srv: %v", err)
	}
	if err := a.ipcp.Query(context.Background(), "nowhere"); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("query nowhere: got %v, want ErrNotFound", err)
	}
	if err := b.ipcp.Register(context.Background(), "srv"); !errors.Is(err, flow.ErrExists) {
		t.Errorf("register twice: got %v, want ErrExists", err)
	}
}

func TestAllocUnderLoss(t *testing.T) {
	// 50% loss each way: requests and responses are retransmitted.
	a, b := pair(t, "127.0.0.1:0", impair.Config{Seed: 7, Loss: 50})
	for i := range 5 {
		client, server := dial(t, a, b, "srv")
		_ = server
		_ = client
		_ = i
	}
	if a.ipcp.Stats().AllocRetries == 0 {
		t.Errorf("no retransmissions at 50%% loss")
	}
	if got, want := len(b.up.Requests()), 5; got != want {
		t.Errorf("got %d flow requests at b, want %d (duplicates must be idempotent)", got, want)
	}
}

// raw is a test peer speaking the wire format by hand.
type raw struct {
	t *testing.T
	c *net.UDPConn
}

func (r raw) send(to netip.AddrPort, eid uint32, payload []byte) {
	r.t.Helper()
	pkt := append(make([]byte, HeaderLen), payload...)
	Header(pkt).SetEID(eid)
	if _, err := r.c.WriteToUDPAddrPort(pkt, to); err != nil {
		r.t.Fatal(err)
	}
}

func (r raw) sendMsg(to netip.AddrPort, m *engine.Msg) {
	r.t.Helper()
	b, err := engine.EncodeMsg(nil, m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(to, CtlEID, b)
}

func (r raw) recvMsg() engine.Msg {
	r.t.Helper()
	buf := make([]byte, 2048)
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, _, err := r.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			r.t.Fatalf("raw peer: %v", err)
		}
		h := Header(buf[:n])
		if !h.IsValid() || h.EID() != CtlEID {
			continue
		}
		m, err := engine.DecodeMsg(h.Payload())
		if err != nil {
			r.t.Fatalf("raw peer: %v", err)
		}
		return m
	}
}

func TestRawPeer(t *testing.T) {
	_, b := pair(t, "127.0.0.1:0", impair.Config{})
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	h := layer.HashName(layer.SHA3_256, "srv")
	req := &engine.Msg{Type: engine.MsgAllocReq, ReqID: 42, Src: 7, Hash: h[:]}

	// A duplicated request gets the same answer and one flow.
	r.sendMsg(b.addr, req)
	resp := r.recvMsg()
	r.sendMsg(b.addr, req)
	resp2 := r.recvMsg()
	if resp.Type != engine.MsgAllocResp || resp.Result != engine.ResOK || resp.Dst != 7 || resp.Src == 0 {
		t.Fatalf("got response %+v, want OK to eid 7", resp)
	}
	if resp2.Src != resp.Src || resp2.Result != resp.Result {
		t.Fatalf("duplicate answered %+v, first %+v", resp2, resp)
	}
	if got := len(b.up.Requests()); got != 1 {
		t.Fatalf("got %d flow requests, want 1", got)
	}
	acc := <-b.up.Accepted
	defer acc.Port.Close()

	// Data for the flow arrives; data for an unknown eid gets no-such-flow.
	r.send(b.addr, resp.Src, []byte("hello"))
	buf := make([]byte, 64)
	n, err := acc.Port.Read(buf, time.Now().Add(2*time.Second))
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("got %q, %v, want hello", buf[:n], err)
	}
	r.send(b.addr, resp.Src+1000, []byte("stale"))
	if m := r.recvMsg(); m.Type != engine.MsgNoSuchFlow || m.Src != resp.Src+1000 {
		t.Fatalf("got %+v, want no-such-flow for eid %d", m, resp.Src+1000)
	}

	// The program's data reaches the raw peer with its eid.
	if err := acc.Port.Write([]byte("back"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err = r.c.ReadFromUDPAddrPort(buf)
	if err != nil || Header(buf[:n]).EID() != 7 || string(Header(buf[:n]).Payload()) != "back" {
		t.Fatalf("raw peer got %x, %v", buf[:n], err)
	}

	// The peer says it lost the flow (it restarted): the port closes.
	r.sendMsg(b.addr, &engine.Msg{Type: engine.MsgNoSuchFlow, Src: 7})
	if _, err := acc.Port.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("after no-such-flow: got %v, want ErrClosed", err)
	}

	// Malformed packets are counted, never fatal.
	before := b.ipcp.Stats().Drops.Malformed
	for _, p := range [][]byte{{}, {0}, {0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0, 0xff}, {0, 0, 0, 0, 0x80}} {
		if _, err := r.c.WriteToUDPAddrPort(p, b.addr); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return b.ipcp.Stats().Drops.Malformed-before == 6 })
}

func TestStopDeallocates(t *testing.T) {
	a, b := pair(t, "127.0.0.1:0", impair.Config{})
	client, _ := dial(t, a, b, "srv")
	b.ipcp.Stop()
	buf := make([]byte, 16)
	if _, err := client.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("client read after peer stop: got %v, want ErrClosed", err)
	}
	if got := b.ipcp.Info().State; got != "shutdown" {
		t.Fatalf("got state %q, want shutdown", got)
	}
}

func TestConfigErrors(t *testing.T) {
	up := ipcptest.NewUpcalls(1)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no layer", Config{Name: "x"}},
		{"no name", Config{Layer: "x"}},
		{"bad dir", Config{Layer: "l", Name: "n", Dir: map[string]netip.AddrPort{"x": {}}}},
		{"bad impair", Config{Layer: "l", Name: "n", Impair: impair.Config{Loss: 101}}},
		{"no runner", Config{Layer: "l", Name: "n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no runner" {
				tc.cfg.Runner = layertest.Runner{}
			}
			if _, err := New(tc.cfg, up); !errors.Is(err, flow.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "n"}, up)
	if err != nil {
		t.Fatal(err)
	}
	_, port := flowtest.Pipe(1)
	if err := p.Alloc(context.Background(), ipcp.AllocReq{Dst: "x"}, port); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("alloc before start: got %v, want ErrInvalid", err)
	}
	p.Stop()
}

// TestFlood blasts one flow faster than its reader drains it, then checks
// that a new flow still allocates and pings and that the drops were counted.
func TestFlood(t *testing.T) {
	a, b := pair(t, "127.0.0.1:0", impair.Config{})
	client, _ := dial(t, a, b, "srv") // the server side never reads
	// Stale traffic for unknown endpoints rides along.
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	pkt := make([]byte, 1000)
	stop := time.Now().Add(2 * time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		junk := append(make([]byte, HeaderLen), make([]byte, 500)...)
		Header(junk).SetEID(0xdeadbeef)
		for time.Now().Before(stop) {
			r.c.WriteToUDPAddrPort(junk, b.addr)
		}
	}()
	for time.Now().Before(stop) {
		if err := client.Write(pkt, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("flood write: %v", err)
		}
	}
	<-done
	c2, s2 := dial(t, a, b, "srv")
	roundTrip(t, c2, s2, "still alive")
	roundTrip(t, s2, c2, "yes")
	st := b.ipcp.Stats()
	t.Logf("b after flood: in %d, drops %+v", st.PacketsIn, st.Drops)
	if st.Drops.RxFull == 0 || st.Drops.UnknownFlow == 0 {
		t.Fatalf("drops not counted: %+v", st.Drops)
	}
}

// sink is a Port that accepts everything and allocates nothing; its Read
// blocks until Close.
type sink struct {
	n      atomic.Int64
	once   sync.Once
	closed chan struct{}
}

func newSink() *sink { return &sink{closed: make(chan struct{})} }

func (s *sink) Read(p []byte, _ time.Time) (int, error) { <-s.closed; return 0, flow.ErrClosed }
func (s *sink) Write(p []byte, _ time.Time) error       { s.n.Add(int64(len(p))); return nil }
func (s *sink) Close() error                            { s.once.Do(func() { close(s.closed) }); return nil }

func TestInputAllocs(t *testing.T) {
	a, b := pair(t, "127.0.0.1:0", impair.Config{})
	s := newSink()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{Dst: "srv"}, s); err != nil {
		t.Fatal(err)
	}
	acc := <-b.up.Accepted
	defer acc.Port.Close()
	fi := a.ipcp.Flows()[0]
	pkt := make([]byte, HeaderLen+1400)
	allocs := testing.AllocsPerRun(1000, func() {
		Header(pkt).SetEID(uint32(fi.LocalEID))
		a.ipcp.input(pkt, b.addr)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per packet, want 0", allocs)
	}
	if s.n.Load() == 0 {
		t.Fatal("sink got nothing")
	}
	// Drops are allocation-free too.
	allocs = testing.AllocsPerRun(1000, func() {
		a.ipcp.input(pkt[:2], b.addr)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per malformed packet, want 0", allocs)
	}
	s.Close()
}

func TestHeader(t *testing.T) {
	h := Header(make([]byte, HeaderLen+3))
	h.SetEID(0x01020304)
	if !bytes.Equal(h[:4], []byte{1, 2, 3, 4}) || h.EID() != 0x01020304 || len(h.Payload()) != 3 {
		t.Fatalf("got %x", h)
	}
	if Header([]byte{1, 2, 3}).IsValid() {
		t.Fatal("3 bytes valid")
	}
}

func FuzzHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h := Header(b)
		if !h.IsValid() {
			return
		}
		_ = h.EID()
		if len(h.Payload()) != len(b)-HeaderLen {
			t.Fatal("payload length")
		}
	})
}

// FuzzInput feeds arbitrary datagrams through the receive dispatch,
// control-message decoding included.
func FuzzInput(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "srv")
	for _, m := range []engine.Msg{
		{Type: engine.MsgAllocReq, ReqID: 1, Src: 5, Hash: h[:]},
		{Type: engine.MsgAllocResp, ReqID: 1, Src: 5, Dst: 6},
		{Type: engine.MsgDealloc, Src: 5, Dst: 6},
		{Type: engine.MsgNoSuchFlow, Src: 5},
	} {
		b, _ := engine.EncodeMsg(make([]byte, HeaderLen), &m)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 9, 1, 2, 3})
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		f.Skip(err)
	}
	up := ipcptest.NewUpcalls(4)
	up.Refuse(flow.ErrRefused)
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "n", Device: c}, up)
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Start(); err != nil {
		f.Fatal(err)
	}
	defer p.Stop()
	p.Register(context.Background(), "srv")
	from := netip.MustParseAddrPort("127.0.0.1:9") // discard
	f.Fuzz(func(t *testing.T, b []byte) {
		p.input(b, from)
	})
}

// TestPacketConnDevice runs the shim over the net.PacketConn adapter (the
// route to gVisor's gonet.UDPConn) on one side.
func TestPacketConnDevice(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	cb := listen(t, "udp", "127.0.0.1:0")
	da := NewPacketConn(pc)
	aAddr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	dir := map[string]netip.AddrPort{"srv": addrOf(cb), "a": aAddr}
	mk := func(name string, d Device) *node {
		up := ipcptest.NewUpcalls(16)
		p, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: name, Dir: dir, Device: d}, up)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		return &node{p, up, p.Addr()}
	}
	a, b := mk("a", da), mk("b", cb)
	b.ipcp.Register(context.Background(), "srv")
	client, server := dial(t, a, b, "srv")
	roundTrip(t, client, server, "over a PacketConn")
	roundTrip(t, server, client, "and back")
	if got := a.ipcp.Addr(); got != aAddr {
		t.Fatalf("got address %v, want %v", got, aAddr)
	}
}

// muteConn drops every write once muted: a crash, as seen from the peer.
type muteConn struct {
	*net.UDPConn
	mute atomic.Bool
}

func (m *muteConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if m.mute.Load() {
		return len(b), nil
	}
	return m.UDPConn.WriteToUDPAddrPort(b, a)
}

// TestPeerRestart: b crashes (its dealloc never leaves) and restarts on
// the same address; a's next SDU on the old flow draws a no-such-flow and
// a closes the flow, while new flows work.
func TestPeerRestart(t *testing.T) {
	ca, cb := listen(t, "udp", "127.0.0.1:0"), listen(t, "udp", "127.0.0.1:0")
	bAddr := addrOf(cb)
	dir := map[string]netip.AddrPort{"srv": bAddr}
	upA, upB := ipcptest.NewUpcalls(16), ipcptest.NewUpcalls(16)
	a, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "a", Dir: dir, Device: ca}, upA)
	if err != nil {
		t.Fatal(err)
	}
	mb := &muteConn{UDPConn: cb}
	b, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "b", Device: mb}, upB)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*IPCP{a, b} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer a.Stop()
	b.Register(context.Background(), "srv")
	na, nb := &node{a, upA, addrOf(ca)}, &node{b, upB, bAddr}
	client, _ := dial(t, na, nb, "srv")

	mb.mute.Store(true)
	b.Stop() // the dealloc is lost
	cb2 := listen(t, "udp", bAddr.String())
	b2, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "b", Device: cb2}, upB)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Start(); err != nil {
		t.Fatal(err)
	}
	defer b2.Stop()
	b2.Register(context.Background(), "srv")

	if err := client.Write([]byte("anyone?"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := client.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("old flow after peer restart: got %v, want ErrClosed", err)
	}
	c2, s2 := dial(t, na, &node{b2, upB, bAddr}, "srv")
	roundTrip(t, c2, s2, "new life")
}
