package eth

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type node struct {
	ipcp *IPCP
	up   *ipcptest.Upcalls
}

func start(t testing.TB, name string, dev Device, imp impair.Config) *node {
	t.Helper()
	up := ipcptest.NewUpcalls(256)
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "eth.test", Name: name, Device: dev, Impair: imp,
		QueryTimeout: 300 * time.Millisecond, RetryBase: 5 * time.Millisecond}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &node{p, up}
}

// pairOn starts shims a and b on two devices; b serves "srv".
func pairOn(t testing.TB, da, db Device, imp impair.Config) (a, b *node) {
	t.Helper()
	a, b = start(t, "a", da, imp), start(t, "b", db, imp)
	if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

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

func roundTrip(t testing.TB, from, to flow.Port, msg []byte) {
	t.Helper()
	if err := from.Write(msg, time.Now().Add(2*time.Second)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := to.Read(buf, time.Now().Add(2*time.Second))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Fatalf("got %d bytes %.16x, want %d bytes %.16x", n, buf[:n], len(msg), msg)
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

// exchange allocates, moves SDUs of several sizes both ways and checks
// that closing one end deallocates the other.
func exchange(t *testing.T, a, b *node) {
	t.Helper()
	if err := a.ipcp.Query(context.Background(), "srv"); err != nil {
		t.Fatalf("query srv: %v", err)
	}
	client, server := dial(t, a, b, "srv")
	for _, n := range []int{1, 10, 42, 43, 100, flow.MaxSDU} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		roundTrip(t, client, server, msg)
		roundTrip(t, server, client, msg)
	}
	client.Close()
	buf := make([]byte, 16)
	if _, err := server.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("server read after client close: got %v, want ErrClosed", err)
	}
	waitFor(t, func() bool { return len(a.ipcp.Flows()) == 0 && len(b.ipcp.Flows()) == 0 })
}

func TestHub(t *testing.T) {
	da, db := ethtest.NewPair()
	a, b := pairOn(t, da, db, impair.Config{})
	exchange(t, a, b)
	if err := a.ipcp.Query(context.Background(), "nobody"); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("query nobody: got %v, want ErrNotFound", err)
	}
	_, port := flowtest.Pipe(1)
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "nobody"}, port); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("alloc nobody: got %v, want ErrNotFound", err)
	}
	b.up.Refuse(flow.ErrRefused)
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, port); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("alloc refused: got %v, want ErrRefused", err)
	}
	waitFor(t, func() bool { // counters move just after the SDU is handed over
		st := a.ipcp.Stats()
		return st.FlowsOut == 1 && st.AllocFailed == 2 && st.PacketsOut == 6 && st.PacketsIn == 6
	})
}

func TestHubLossy(t *testing.T) {
	da, db := ethtest.NewPair()
	a, b := pairOn(t, da, db, impair.Config{Seed: 3, Loss: 40})
	for range 3 {
		dial(t, a, b, "srv")
	}
	if a.ipcp.Stats().AllocRetries == 0 {
		t.Error("no retransmissions at 40% loss")
	}
	if got := len(b.up.Requests()); got != 3 {
		t.Errorf("got %d flow requests, want 3", got)
	}
}

func TestQEMUStream(t *testing.T) {
	ld, err := ListenQEMU("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dd, err := DialQEMU(ctx, ld.Addr().String(), nil)
	if err != nil {
		ld.Close()
		t.Fatal(err)
	}
	a, b := pairOn(t, dd, ld, impair.Config{})
	exchange(t, a, b)
}

// raw is a hub port the test writes frames on by hand.
func rawFrame(dst, src MAC, eid uint16, payload []byte) []byte {
	f := make(Frame, HeaderLen+len(payload))
	f.SetHeader(dst, src, eid, len(payload))
	copy(f[HeaderLen:], payload)
	return f
}

func TestMalformed(t *testing.T) {
	hub := ethtest.NewHub()
	a := start(t, "a", hub.NewPort(), impair.Config{})
	raw := hub.NewPort()
	defer raw.Close()
	src, _ := MACFrom(raw.MAC())
	me := a.ipcp.MAC()
	other := MAC{2, 9, 9, 9, 9, 9}
	long := rawFrame(me, src, 5, []byte("abc"))
	long[offLen+1] = 200 // length beyond the frame
	wrongType := rawFrame(me, src, 5, []byte("abc"))
	wrongType[offType] = 0x08
	for _, tc := range []struct {
		name      string
		frame     []byte
		malformed uint64
		notForUs  uint64
	}{
		{"empty", []byte{}, 1, 0},
		{"short ethernet", make([]byte, 10), 1, 0},
		{"header only partly", rawFrame(me, src, 5, nil)[:16], 1, 0},
		{"length beyond frame", long, 1, 0},
		{"bad control", rawFrame(me, src, CtlEID, []byte{0xff, 0x00}), 1, 0},
		{"data broadcast", rawFrame(Broadcast, src, 5, []byte("x")), 1, 0},
		{"multicast source", rawFrame(me, Broadcast, 5, []byte("x")), 1, 0},
		{"wrong ethertype", wrongType, 0, 1},
		{"other destination", rawFrame(other, src, 5, []byte("x")), 0, 1},
		{"own source", rawFrame(Broadcast, me, CtlEID, []byte("x")), 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.ipcp.Stats().Drops
			if err := raw.WriteFrame(tc.frame); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				d := a.ipcp.Stats().Drops
				return d.Malformed-before.Malformed == tc.malformed && d.NotForUs-before.NotForUs == tc.notForUs
			})
		})
	}
}

func TestRawProtocol(t *testing.T) {
	hub := ethtest.NewHub()
	b := start(t, "b", hub.NewPort(), impair.Config{})
	b.ipcp.Register(context.Background(), "srv")
	raw := hub.NewPort()
	defer raw.Close()
	src, _ := MACFrom(raw.MAC())
	buf := make([]byte, 2048)
	var recv, recvAny func() Frame
	recvAny = func() Frame {
		t.Helper()
		type res struct {
			n   int
			err error
		}
		ch := make(chan res, 1)
		go func() { n, err := raw.ReadFrame(buf); ch <- res{n, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if f := Frame(buf[:r.n]); f.EID() == CtlEID && isEthCtl(f.Payload()) {
				return recvAny() // b's start solicits: absent_test.go
			}
			return Frame(buf[:r.n])
		case <-time.After(2 * time.Second):
			raw.Close()
			<-ch
			t.Fatal("no frame")
		}
		return nil
	}
	ctl := func(dst MAC, m *engine.Msg) {
		t.Helper()
		p, _ := engine.EncodeMsg(nil, m)
		raw.WriteFrame(rawFrame(dst, src, CtlEID, p))
	}
	h := layer.HashName(layer.SHA3_256, "srv")
	isAnnouncement := func(f Frame) bool {
		m, err := engine.DecodeMsg(f.Payload())
		return err == nil && f.Dst() == Broadcast && m.Type == engine.MsgNameReply && bytes.Equal(m.Hash, h[:])
	}
	// Registering announces the name to the segment: a broadcast name
	// reply nobody asked for.
	if f := recvAny(); !isAnnouncement(f) {
		t.Fatalf("got frame %x, want the announcement of srv", []byte(f))
	}
	recv = func() Frame { // what follows, past the periodic announcements
		t.Helper()
		for {
			if f := recvAny(); !isAnnouncement(f) {
				return f
			}
		}
	}
	// A broadcast query is answered to us, unicast, padded to 60 bytes.
	ctl(Broadcast, &engine.Msg{Type: engine.MsgNameQuery, Hash: h[:]})
	f := recv()
	m, err := engine.DecodeMsg(f.Payload())
	if err != nil || m.Type != engine.MsgNameReply || f.Dst() != src || len(f) < MinFrame {
		t.Fatalf("got frame %x (%+v, %v), want a name reply to us of >= 60 bytes", []byte(f), m, err)
	}
	// Alloc, then data for an unknown eid: no-such-flow.
	ctl(b.ipcp.MAC(), &engine.Msg{Type: engine.MsgAllocReq, ReqID: 1, Src: 9, Hash: h[:]})
	m, _ = engine.DecodeMsg(recv().Payload())
	if m.Type != engine.MsgAllocResp || m.Result != engine.ResOK || m.Dst != 9 {
		t.Fatalf("got %+v, want OK response", m)
	}
	acc := <-b.up.Accepted
	defer acc.Port.Close()
	raw.WriteFrame(rawFrame(b.ipcp.MAC(), src, uint16(m.Src)+1, []byte("stale")))
	if m2, _ := engine.DecodeMsg(recv().Payload()); m2.Type != engine.MsgNoSuchFlow || m2.Src != m.Src+1 {
		t.Fatalf("got %+v, want no-such-flow", m2)
	}
	// A dealloc closes the port.
	ctl(b.ipcp.MAC(), &engine.Msg{Type: engine.MsgDealloc, Src: 9, Dst: m.Src})
	if _, err := acc.Port.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("after dealloc: got %v, want ErrClosed", err)
	}
}

type sink struct {
	n      atomic.Int64
	once   sync.Once
	closed chan struct{}
}

func (s *sink) Read(p []byte, _ time.Time) (int, error) { <-s.closed; return 0, flow.ErrClosed }
func (s *sink) Write(p []byte, _ time.Time) error       { s.n.Add(int64(len(p))); return nil }
func (s *sink) Close() error                            { s.once.Do(func() { close(s.closed) }); return nil }

func TestInputAllocs(t *testing.T) {
	da, db := ethtest.NewPair()
	a, b := pairOn(t, da, db, impair.Config{})
	s := &sink{closed: make(chan struct{})}
	defer s.Close()
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, s); err != nil {
		t.Fatal(err)
	}
	acc := <-b.up.Accepted
	defer acc.Port.Close()
	fi := a.ipcp.Flows()[0]
	frame := rawFrame(a.ipcp.MAC(), b.ipcp.MAC(), uint16(fi.LocalEID), make([]byte, 1400))
	rb := a.ipcp.eng.NewRxBatch(rxBatch)
	if allocs := testing.AllocsPerRun(1000, func() { a.ipcp.input(frame, nil, rb); rb.Flush() }); allocs != 0 {
		t.Fatalf("got %v allocations per frame, want 0", allocs)
	}
	if s.n.Load() == 0 {
		t.Fatal("sink got nothing")
	}
	if allocs := testing.AllocsPerRun(1000, func() { a.ipcp.input(frame[:20], nil, rb); rb.Flush() }); allocs != 0 {
		t.Fatalf("got %v allocations per malformed frame, want 0", allocs)
	}
}

func TestFrame(t *testing.T) {
	f := Frame(make([]byte, HeaderLen+3+10)) // 10 bytes of padding
	dst, src := MAC{2, 1, 1, 1, 1, 1}, MAC{2, 2, 2, 2, 2, 2}
	f.SetHeader(dst, src, 0x1234, 3)
	want := []byte{2, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0xa0, 0x00, 0x12, 0x34, 0x00, 0x03}
	if !bytes.Equal(f[:HeaderLen], want) {
		t.Fatalf("got header %x, want %x", []byte(f[:HeaderLen]), want)
	}
	if !f.IsValid() || f.Dst() != dst || f.Src() != src || f.EID() != 0x1234 || len(f.Payload()) != 3 {
		t.Fatal("accessors disagree")
	}
	if _, err := MACFrom(net.HardwareAddr{1, 2}); err == nil {
		t.Fatal("2-byte MAC accepted")
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(rawFrame(Broadcast, MAC{2}, 0, []byte("x")))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := Frame(b)
		if !fr.IsValid() {
			return
		}
		_, _, _, _ = fr.Dst(), fr.Src(), fr.EtherType(), fr.EID()
		if p := fr.Payload(); len(p) != int(fr.Len()) {
			t.Fatal("payload length")
		}
	})
}

// FuzzInput feeds arbitrary frames through the receive filter and
// dispatch, control-message decoding included.
func FuzzInput(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "srv")
	me := MAC{2, 0, 0, 0, 0, 1}
	for _, m := range []engine.Msg{
		{Type: engine.MsgAllocReq, ReqID: 1, Src: 5, Hash: h[:]},
		{Type: engine.MsgAllocResp, ReqID: 1, Src: 5, Dst: 6},
		{Type: engine.MsgNameQuery, Hash: h[:]},
		{Type: engine.MsgNameReply, Hash: h[:]},
		{Type: engine.MsgDealloc, Src: 5, Dst: 6},
	} {
		p, _ := engine.EncodeMsg(nil, &m)
		f.Add(rawFrame(me, MAC{2, 0, 0, 0, 0, 2}, CtlEID, p))
	}
	f.Add(rawFrame(me, MAC{2, 0, 0, 0, 0, 2}, 7, []byte("data")))
	da, _ := ethtest.NewPair()
	up := ipcptest.NewUpcalls(4)
	up.Refuse(flow.ErrRefused)
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "l", Name: "n", Device: da}, up)
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Start(); err != nil {
		f.Fatal(err)
	}
	defer p.Stop()
	p.Register(context.Background(), "srv")
	rb := p.eng.NewRxBatch(rxBatch)
	f.Fuzz(func(t *testing.T, b []byte) { p.input(b, nil, rb); rb.Flush() })
}

func TestConfigErrors(t *testing.T) {
	up := ipcptest.NewUpcalls(1)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no layer", Config{Name: "x", Interface: "eth0"}},
		{"no device", Config{Layer: "l", Name: "n"}},
		{"bad impair", Config{Layer: "l", Name: "n", Interface: "eth0", Impair: impair.Config{Reorder: -1}}},
		{"no runner", Config{Layer: "l", Name: "n", Interface: "eth0"}},
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
}

// downDevice is a Device that reports its interface going down once,
// as an AF_PACKET socket does (ENETDOWN), when down is closed.
type downDevice struct {
	Device
	down chan struct{}
	once sync.Once
}

func (d *downDevice) ReadFrame(b []byte) (int, error) {
	select {
	case <-d.down:
		first := false
		d.once.Do(func() { first = true })
		if first {
			return 0, &net.OpError{Op: "read", Err: syscall.ENETDOWN}
		}
	default:
	}
	return d.Device.ReadFrame(b)
}

// TestLinkDown: when the device reports its interface down, the link's
// flows close at once, so an upper layer can fail over without waiting
// for its hellos; flows can be allocated again afterwards.
func TestLinkDown(t *testing.T) {
	da, db := ethtest.NewPair()
	dd := &downDevice{Device: da, down: make(chan struct{})}
	a, b := pairOn(t, dd, db, impair.Config{})
	client, _ := dial(t, a, b, "srv")
	close(dd.down)
	// ReadFrame is blocked in the pair's read until a frame comes: send
	// one from b so the shim's loop turns and sees the error.
	go b.ipcp.Query(context.Background(), "nothing")
	buf := make([]byte, flow.MaxSDU)
	start := time.Now()
	if _, err := client.Read(buf, time.Now().Add(2*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("read on a flow whose link went down: got %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("flow closed %v after the link went down, want at once", d)
	}
	if got := a.ipcp.Stats().FlowsActive; got != 0 {
		t.Errorf("%d flows active after link down, want 0", got)
	}
	client2, server2 := dial(t, a, b, "srv")
	roundTrip(t, client2, server2, []byte("after"))
}

// TestAnnounce: shims announce the names registered in them. A shim that
// heard b announce "srv" resolves it from what it heard (no query goes
// out); once it has listened for 1.5 announcement periods, a query for a
// name nobody announced ends "not found" after the short negative wait,
// long before the caller's deadline (counted as quick_not_found). With
// announcements off the same query waits for the deadline.
func TestAnnounce(t *testing.T) {
	startWith := func(name string, dev Device, every time.Duration) *node {
		t.Helper()
		up := ipcptest.NewUpcalls(16)
		p, err := New(Config{Runner: layertest.Runner{}, Layer: "eth.test", Name: name, Device: dev,
			QueryTimeout: 5 * time.Second, RetryBase: 5 * time.Millisecond, Announce: every}, up)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		return &node{p, up}
	}
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			every := 100 * time.Millisecond
			if !on {
				every = -1
			}
			hub := ethtest.NewHub()
			a, b := startWith("a", hub.NewPort(), every), startWith("b", hub.NewPort(), every)
			if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // a has listened 1.5 periods and heard b
			// Heard: the names a's segment announced, of those asked.
			if got, want := a.ipcp.Heard([]string{"nobody", "srv"}), map[bool][]string{true: {"srv"}}[on]; !slices.Equal(got, want) {
				t.Fatalf("a heard %q of nobody, srv; want %q", got, want)
			}
			retries := a.ipcp.Stats().AllocRetries
			ctlOut := a.ipcp.Stats().CtlOut
			if err := a.ipcp.Query(context.Background(), "srv"); err != nil {
				t.Fatalf("query srv: %v", err)
			}
			s := a.ipcp.Stats()
			if on && (s.NamesHeard == 0 || s.CtlOut != ctlOut || s.AllocRetries != retries) {
				t.Fatalf("srv was announced: a heard %d announcements and sent %d control messages to find it, want it found from what it heard", s.NamesHeard, s.CtlOut-ctlOut)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			err := a.ipcp.Query(ctx, "nobody")
			if !errors.Is(err, flow.ErrNotFound) {
				t.Fatalf("query nobody: %v, want ErrNotFound", err)
			}
			quick := a.ipcp.Stats().QuickNotFound
			if on && (quick != 1 || ctx.Err() != nil) {
				t.Fatalf("announcements on: quick_not_found %d, deadline reached %v; want the early answer", quick, ctx.Err())
			}
			if !on && (quick != 0 || ctx.Err() == nil || s.NamesAnnounced != 0) {
				t.Fatalf("announcements off: quick_not_found %d, deadline reached %v, announced %d; want the wait for the deadline", quick, ctx.Err(), s.NamesAnnounced)
			}
		})
	}
}
