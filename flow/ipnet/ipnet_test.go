package ipnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

type goRunner struct{}

func (goRunner) Go(f func()) { go f() }

// fakeDev is a device: Inject makes Read return a packet; what the
// Bridge writes arrives on Out.
type fakeDev struct {
	in     chan []byte
	Out    chan []byte
	closed chan struct{}
	once   sync.Once
}

func newDev() *fakeDev {
	return &fakeDev{in: make(chan []byte, 16), Out: make(chan []byte, 16), closed: make(chan struct{})}
}

func (d *fakeDev) Read(p []byte) (int, error) {
	select {
	case b := <-d.in:
		return copy(p, b), nil
	case <-d.closed:
		return 0, errors.New("closed")
	}
}

func (d *fakeDev) Write(p []byte) (int, error) {
	d.Out <- append([]byte(nil), p...)
	return len(p), nil
}

func (d *fakeDev) Close() { d.once.Do(func() { close(d.closed) }) }

// v4 is an IPv4 packet to dst (header only, and a payload).
func v4(dst string, payload int) []byte {
	p := make([]byte, 20+payload)
	p[0] = 0x45
	a := netip.MustParseAddr(dst).As4()
	copy(p[16:20], a[:])
	return p
}

func v6(dst string) []byte {
	p := make([]byte, 40)
	p[0] = 0x60
	a := netip.MustParseAddr(dst).As16()
	copy(p[24:40], a[:])
	return p
}

func TestParseRouteAndDst(t *testing.T) {
	for _, tc := range []struct {
		in, prefix, name string
		ok               bool
	}{
		{"10.1.0.0/16=gw", "10.1.0.0/16", "gw", true},
		{"10.1.2.3=h", "10.1.2.3/32", "h", true},
		{"fd00::/8=v6.gw", "fd00::/8", "v6.gw", true},
		{"10.1.2.3/16=x", "10.1.0.0/16", "x", true},
		{"10.1.0.0/16", "", "", false},
		{"nonsense=x", "", "", false},
		{"10.0.0.0/8=", "", "", false},
		{"10.1.0.0/16=gw@voice", "10.1.0.0/16", "gw", true},
		{"10.1.0.0/16=gw@video", "10.1.0.0/16", "gw", true},
		{"10.1.0.0/16=gw@gold", "", "", false},
		{"10.1.0.0/16=@voice", "", "", false},
		{"10.1.0.0/16=gw@default", "", "", false},
	} {
		r, err := ParseRoute(tc.in)
		if (err == nil) != tc.ok || tc.ok && (r.Prefix.String() != tc.prefix || r.Name != tc.name || strings.Contains(tc.in, "@") && !strings.HasSuffix(tc.in, "@"+r.Class.String())) {
			t.Errorf("ParseRoute(%q) = %v %q, %v", tc.in, r.Prefix, r.Name, err)
		}
	}
	if a, ok := Dst(v4("192.0.2.7", 0)); !ok || a.String() != "192.0.2.7" {
		t.Errorf("Dst v4: %v %v", a, ok)
	}
	if a, ok := Dst(v6("2001:db8::9")); !ok || a.String() != "2001:db8::9" {
		t.Errorf("Dst v6: %v %v", a, ok)
	}
	for _, bad := range [][]byte{nil, {0x45, 0}, {0x60}, {0x10, 1, 2}} {
		if _, ok := Dst(bad); ok {
			t.Errorf("Dst(%x) ok", bad)
		}
	}
}

// bridges makes two Bridges over one in-memory broker: a routes
// 10.9.0.0/16 (and 10.9.9.0/24 more specifically) to b.
func bridges(t *testing.T, q flow.QoS) (da, db *fakeDev, a, b *Bridge) {
	t.Helper()
	fake := flowtest.NewBroker(64)
	da, db = newDev(), newDev()
	var err error
	a, err = New(Config{Broker: fake.Program("pa"), Dev: da, Runner: goRunner{}, Name: "ip.a", QoS: q, Idle: 200 * time.Millisecond,
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Name: "ip.nowhere"}, {Prefix: netip.MustParsePrefix("10.9.9.0/24"), Name: "ip.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err = New(Config{Broker: fake.Program("pb"), Dev: db, Runner: goRunner{}, Name: "ip.b",
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.8.0.0/16"), Name: "ip.a"}}})
	if err != nil {
		t.Fatal(err)
	}
	runPair(t, a, b, da, db)
	time.Sleep(20 * time.Millisecond) // both names bound
	return da, db, a, b
}

func recv(t *testing.T, d *fakeDev) []byte {
	t.Helper()
	select {
	case p := <-d.Out:
		return p
	case <-time.After(3 * time.Second):
		t.Fatal("no packet")
		return nil
	}
}

// TestBridge: packets cross both ways on flows allocated on demand by
// the longest matching prefix; packets with no route, for a name nobody
// serves, or larger than the flow carries are dropped and counted; an
// idle flow is closed and allocated again for the next packet.
func TestBridge(t *testing.T) {
	da, db, a, _ := bridges(t, flow.QoS{})
	p := v4("10.9.9.5", 100)
	da.in <- p
	if got := recv(t, db); !bytes.Equal(got, p) {
		t.Fatalf("b's device got %x", got)
	}
	back := v4("10.8.0.1", 50)
	db.in <- back
	if got := recv(t, da); !bytes.Equal(got, back) {
		t.Fatalf("a's device got %x", got)
	}
	da.in <- v4("192.0.2.1", 10)       // no route
	da.in <- []byte{0x10, 0, 0}        // not IP
	da.in <- v4("10.9.1.1", 10)        // ip.nowhere: nobody serves it
	big := v4("10.9.9.6", flow.MaxSDU) // too big for the flow
	big[6] = 0x40                      // DF: answered with ICMP
	da.in <- big
	if icmp := recv(t, da); icmp[9] != 1 || icmp[20] != 3 || icmp[21] != 4 {
		t.Fatalf("a's device got %x, want ICMP fragmentation needed", icmp[:28])
	}
	time.Sleep(300 * time.Millisecond) // past Idle: the flow to ip.b closes
	da.in <- p
	if got := recv(t, db); !bytes.Equal(got, p) {
		t.Fatalf("after idle: b's device got %x", got)
	}
	routes, noRoute, _, _, _ := a.Stats()
	if noRoute != 2 {
		t.Errorf("no route: %d, want 2", noRoute)
	}
	for _, r := range routes {
		switch r.Name {
		case "ip.b":
			if r.PktsOut != 2 || r.TooBig != 1 || r.Allocs != 2 {
				t.Errorf("route to ip.b: %+v; want 2 sent, 1 too big, 2 allocations (idle close)", r)
			}
		case "ip.nowhere":
			if r.AllocErrors != 1 || r.Drops != 1 {
				t.Errorf("route to ip.nowhere: %+v; want 1 allocation error, 1 drop", r)
			}
		}
	}
}

func TestConfigChecks(t *testing.T) {
	fake := flowtest.NewBroker(4)
	if _, err := New(Config{Broker: fake, Dev: newDev(), Runner: goRunner{}, Name: "x", QoS: flow.Data()}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("reliable QoS: %v, want ErrInvalid", err)
	}
	if _, err := New(Config{Dev: newDev(), Runner: goRunner{}, Name: "x"}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no broker: %v", err)
	}
}

// TestTooBig: an oversized IPv4 packet with DF set, or IPv6 packet, is
// answered with the ICMP message that lowers the sender's path MTU,
// with valid checksums, addressed back to the sender; none for IPv4
// without DF nor for an ICMP error.
func TestTooBig(t *testing.T) {
	p4 := v4("10.9.9.5", 1500)
	copy(p4[12:16], []byte{10, 8, 0, 1}) // the sender
	p4[6] = 0x40                         // DF
	m := tooBig(p4, 1357)
	if len(m) != 576 || m[9] != 1 || m[20] != 3 || m[21] != 4 || binary.BigEndian.Uint16(m[26:]) != 1357 {
		t.Fatalf("ICMPv4: %d bytes, %x", len(m), m[:28])
	}
	if !bytes.Equal(m[12:16], p4[16:20]) || !bytes.Equal(m[16:20], p4[12:16]) || !bytes.Equal(m[28:48], p4[:20]) {
		t.Fatalf("ICMPv4 addresses or quote: %x", m[:48])
	}
	if checksum.Checksum(m[:20], 0) != 0xffff || checksum.Checksum(m[20:], 0) != 0xffff {
		t.Fatal("ICMPv4 checksums do not verify")
	}
	p4[6] = 0
	if tooBig(p4, 1357) != nil {
		t.Error("an answer for IPv4 without DF")
	}
	p4[6], p4[9], p4[20] = 0x40, 1, 3 // an ICMP error itself
	if tooBig(p4, 1357) != nil {
		t.Error("an answer to an ICMP error")
	}
	p6 := append(v6("2001:db8::9"), make([]byte, 1460)...)
	copy(p6[8:24], netip.MustParseAddr("2001:db8::1").AsSlice())
	p6[6] = 17
	m = tooBig(p6, 1280)
	if len(m) != 1280 || m[6] != 58 || m[40] != 2 || binary.BigEndian.Uint32(m[44:]) != 1280 {
		t.Fatalf("ICMPv6: %d bytes, %x", len(m), m[:48])
	}
	if !bytes.Equal(m[8:24], p6[24:40]) || !bytes.Equal(m[24:40], p6[8:24]) {
		t.Fatal("ICMPv6 addresses")
	}
	if checksum.Checksum(m[40:], pseudo6(m[8:24], m[24:40], len(m)-40)) != 0xffff {
		t.Fatal("ICMPv6 checksum does not verify")
	}
}

// recBroker records the QoS of every allocation.
type recBroker struct {
	flow.Broker
	mu   sync.Mutex
	qoss []flow.QoS
}

func (r *recBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	r.mu.Lock()
	r.qoss = append(r.qoss, q)
	r.mu.Unlock()
	return r.Broker.Alloc(ctx, name, q)
}

func (r *recBroker) cubes() []flow.Cube {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cs []flow.Cube
	for _, q := range r.qoss {
		if q.NeedsFRCT() {
			return nil
		}
		cs = append(cs, q.Cube())
	}
	return cs
}

// withDSCP sets an IPv4 packet's DSCP.
func withDSCP(p []byte, dscp uint8) []byte {
	p[1] = dscp << 2
	return p
}

// TestClasses: with DSCP on, EF packets travel on a voice-cube flow,
// AF41 on a video one, the rest on the Bridge's QoS, each class its own
// flow to the same name; a route that names a class uses it whatever
// the DSCP; none asks for ordering or retransmission, and a sealed
// Bridge's classes stay sealed.
func TestClasses(t *testing.T) {
	fake := flowtest.NewBroker(64)
	rec := &recBroker{Broker: fake.Program("pa")}
	da, db := newDev(), newDev()
	q := flow.BestEffort()
	a, err := New(Config{Broker: rec, Dev: da, Runner: goRunner{}, Name: "ip.a", DSCP: true, QoS: q,
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Name: "ip.b"}, {Prefix: netip.MustParsePrefix("10.9.7.0/24"), Name: "ip.b", Class: ClassVideo}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Broker: fake.Program("pb"), Dev: db, Runner: goRunner{}, Name: "ip.b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		da.Close()
		db.Close()
		<-done
		<-done
	}()
	time.Sleep(20 * time.Millisecond) // both names bound
	for _, p := range [][]byte{
		withDSCP(v4("10.9.1.1", 10), 46), // EF: voice
		withDSCP(v4("10.9.1.2", 10), 34), // AF41: video
		withDSCP(v4("10.9.1.3", 10), 0),  // default
		withDSCP(v4("10.9.7.1", 10), 0),  // the route's class: video
		withDSCP(v4("10.9.1.4", 10), 46), // voice again: the same flow
	} {
		da.in <- p
		if got := recv(t, db); !bytes.Equal(got, p) {
			t.Fatalf("b got %x, want %x", got, p)
		}
	}
	want := []flow.Cube{flow.CubeVoice, flow.CubeVideo, flow.CubeBestEffort}
	if got := rec.cubes(); !slices.Equal(got, want) {
		t.Fatalf("flows allocated in cubes %v, want %v (one per class, none reliable)", got, want)
	}
	for c := range numClasses {
		sq := Class(c).qos(flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: true})
		if !sq.Sealed || sq.NeedsFRCT() {
			t.Errorf("class %v of a sealed bridge: %+v", Class(c), sq)
		}
	}
	if d, ok := DSCP(v6("fd00::1")); !ok || d != 0 {
		t.Errorf("DSCP of a v6 packet: %d %v", d, ok)
	}
	p6 := v6("fd00::1")
	p6[0], p6[1] = 0x6b, 0x80 // traffic class 0xb8: EF
	if d, _ := DSCP(p6); ClassOfDSCP(d) != ClassVoice {
		t.Errorf("v6 EF: DSCP %d, class %v", d, ClassOfDSCP(d))
	}
}

// batchDev is a BatchDevice over a fakeDev: Inject makes one ReadBatch
// return several packets; each WriteBatch arrives on Batches, the
// packets without the headroom, and Write (ICMP) on the fakeDev's Out.
type batchDev struct {
	*fakeDev
	mtu, headroom int
	inject        chan [][]byte
	Batches       chan [][]byte
	errs          chan error // contract violations the device saw
}

func newBatchDev(mtu, headroom int) *batchDev {
	return &batchDev{fakeDev: newDev(), mtu: mtu, headroom: headroom,
		inject: make(chan [][]byte, 4), Batches: make(chan [][]byte, 16), errs: make(chan error, 16)}
}

func (d *batchDev) BatchSize() int { return 8 }
func (d *batchDev) MTU() int       { return d.mtu }
func (d *batchDev) Headroom() int  { return d.headroom }

func (d *batchDev) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) != d.BatchSize() || len(bufs[0]) < MaxPacket {
		d.errs <- fmt.Errorf("ReadBatch with %d buffers, the first %d bytes", len(bufs), len(bufs[0]))
	}
	select {
	case pkts := <-d.inject:
		for i, p := range pkts {
			if len(bufs[i]) < d.mtu {
				d.errs <- fmt.Errorf("ReadBatch buffer %d of %d bytes, MTU %d", i, len(bufs[i]), d.mtu)
			}
			sizes[i] = copy(bufs[i], p)
		}
		return len(pkts), nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *batchDev) WriteBatch(bufs [][]byte) (int, error) {
	var pkts [][]byte
	for _, b := range bufs {
		if d.headroom > 0 && cap(b) < d.headroom+MaxPacket {
			d.errs <- fmt.Errorf("WriteBatch buffer with capacity %d: no room to coalesce", cap(b))
		}
		pkts = append(pkts, slices.Clone(b[d.headroom:]))
	}
	d.Batches <- pkts
	return len(bufs), nil
}

// plainBroker hands out ports without batch calls (as a node socket's
// seqpacket ports are).
type plainBroker struct{ flow.Broker }

type plainPort struct{ flow.Port }

func (b plainBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	p, info, err := b.Broker.Alloc(ctx, name, q)
	if err != nil {
		return nil, info, err
	}
	return plainPort{p}, info, nil
}

func (b plainBroker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	p, info, err := b.Broker.Accept(ctx)
	if err != nil {
		return nil, info, err
	}
	return plainPort{p}, info, nil
}

// TestBridgeBatch: over devices that move batches, a batch read with a
// packet too big for the flow in its middle sends the others, in order
// (the runs around it written together), and answers the big one with
// ICMP; the far bridge writes what arrives in batches behind the
// device's headroom, in buffers with room to coalesce. The same over
// ports without batch calls (one SDU per call on the flow, still
// batches on the device).
func TestBridgeBatch(t *testing.T) {
	t.Run("batch ports", func(t *testing.T) { testBridgeBatch(t, false) })
	t.Run("plain ports", func(t *testing.T) { testBridgeBatch(t, true) })
}

func testBridgeBatch(t *testing.T, plain bool) {
	fake := flowtest.NewBroker(64)
	var pa, pb flow.Broker = fake.Program("pa"), fake.Program("pb")
	if plain {
		pa, pb = plainBroker{pa}, plainBroker{pb}
	}
	da, db := newBatchDev(9000, 0), newBatchDev(1400, 10)
	a, err := New(Config{Broker: pa, Dev: da, Runner: goRunner{}, Name: "ip.a",
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.9.0/24"), Name: "ip.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Broker: pb, Dev: db, Runner: goRunner{}, Name: "ip.b"})
	if err != nil {
		t.Fatal(err)
	}
	runPair(t, a, b, da, db)
	time.Sleep(20 * time.Millisecond)
	var want [][]byte
	for i := range 5 {
		p := v4("10.9.9.5", 100+i)
		p[20] = byte(i)
		want = append(want, p)
	}
	big := v4("10.9.9.6", 2000) // larger than any flow, smaller than a's MTU
	big[6] = 0x40
	da.inject <- [][]byte{want[0], want[1], big, want[2], v4("192.0.2.1", 10), want[3], want[4]}
	var got [][]byte
	for len(got) < len(want) {
		select {
		case batch := <-db.Batches:
			got = append(got, batch...)
		case err := <-da.errs:
			t.Fatal(err)
		case err := <-db.errs:
			t.Fatal(err)
		case <-time.After(3 * time.Second):
			t.Fatalf("b's device got %d of %d packets", len(got), len(want))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: got %x, want %x", i, got[i][:24], want[i][:24])
		}
	}
	if icmp := recv(t, da.fakeDev); icmp[9] != 1 || icmp[20] != 3 || icmp[21] != 4 || binary.BigEndian.Uint16(icmp[26:]) != flow.MaxSDU {
		t.Fatalf("a's device got %x, want ICMP fragmentation needed (MTU %d)", icmp[:28], flow.MaxSDU)
	}
	routes, noRoute, _, _, _ := a.Stats()
	if r := routes[0]; r.PktsOut != 5 || r.TooBig != 1 || r.Drops != 1 || noRoute != 1 {
		t.Errorf("a's counters: %+v, %d without route; want 5 sent, 1 too big (the only drop), 1 without route", r, noRoute)
	}
	// b counts a batch after its device write returns: wait for it.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		_, _, in, _, inDrops := b.Stats()
		if in == 5 && inDrops == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b received %d, dropped %d; want 5, 0", in, inDrops)
		}
	}
}

// flakyAccept fails its first Accepts with a transient error, then
// accepts as its Broker does.
type flakyAccept struct {
	flow.Broker
	fails atomic.Int32
}

func (f *flakyAccept) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, flow.Info{}, fmt.Errorf("flow: accept: the node could not hand the flow over: %w", flow.ErrBusy)
	}
	return f.Broker.Accept(ctx)
}

// TestAcceptRetried: an Accept that fails (a flow the node could not
// hand over) is counted and tried again, so a peer's allocation to the
// Bridge's name still reaches it; before, the first failure ended the
// accept loop for good and every later allocation to the name failed.
func TestAcceptRetried(t *testing.T) {
	fake := flowtest.NewBroker(64)
	da, db := newDev(), newDev()
	a, err := New(Config{Broker: fake.Program("pa"), Dev: da, Runner: goRunner{}, Name: "ip.a",
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Name: "ip.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	fb := &flakyAccept{Broker: fake.Program("pb")}
	fb.fails.Store(3)
	b, err := New(Config{Broker: fb, Dev: db, Runner: goRunner{}, Name: "ip.b"})
	if err != nil {
		t.Fatal(err)
	}
	runPair(t, a, b, da, db)
	time.Sleep(100 * time.Millisecond) // both bound; b's three failed Accepts behind it
	p := v4("10.9.0.5", 100)
	da.in <- p
	if got := recv(t, db); !bytes.Equal(got, p) {
		t.Fatalf("b's device got %x", got)
	}
	if n := b.AcceptErrors(); n != 3 {
		t.Errorf("accept errors %d, want 3", n)
	}
}

// runPair runs Bridges a and b until the test ends, then stops them
// (closing their devices) and checks that Run returned no error.
func runPair(t *testing.T, a, b *Bridge, da, db interface{ Close() }) {
	t.Helper()
	runBridge(t, a, da)
	runBridge(t, b, db)
}

// runBridge runs Bridge b until the test ends, then stops it (closing
// its device dev) and checks that Run returned no error.
func runBridge(t *testing.T, b *Bridge, dev interface{ Close() }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		dev.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
