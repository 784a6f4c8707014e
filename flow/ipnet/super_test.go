package ipnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// mkSuper returns a TCP super-packet from 10.8.0.1 to 10.9.9.5 (IPv6:
// fd08::1 to fd09::5) with a 32-byte TCP header (options), segs
// segments of mss bytes and a last one of last bytes (0: none), the
// flags ACK, PSH and CWR, its TCP checksum field holding junk (what a
// peer's super-packet may arrive with).
func mkSuper(v6 bool, mss, segs, last int) []byte {
	payload := segs*mss + last
	iph := 20
	if v6 {
		iph = 40
	}
	p := make([]byte, iph+32+payload)
	if v6 {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
		p[6], p[7] = 6, 64
		a, b := netip.MustParseAddr("fd08::1").As16(), netip.MustParseAddr("fd09::5").As16()
		copy(p[8:], a[:])
		copy(p[24:], b[:])
	} else {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], 0x1234) // identification
		p[6] = 0x40                               // DF
		p[8], p[9] = 64, 6
		copy(p[12:], []byte{10, 8, 0, 1, 10, 9, 9, 5})
	}
	tcp := p[iph:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // wraps within the packet
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = 8 << 4
	tcp[13] = 0x10 | tcpPSH | tcpCWR
	binary.BigEndian.PutUint16(tcp[14:], 512)
	tcp[16], tcp[17] = 0xde, 0xad
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP timestamps
	r := rand.New(rand.NewPCG(uint64(payload), 7))
	for i := range tcp[32:] {
		tcp[32+i] = byte(r.Uint32())
	}
	return p
}

// verifySegment checks seg's IPv4 header checksum and its TCP checksum,
// computed here from RFC 793's pseudo-header, not with the code under
// test.
func verifySegment(t *testing.T, seg []byte) {
	t.Helper()
	verifySegmentAt(t, seg, 40)
}

// verifySegmentAt is verifySegment for an IPv6 segment whose TCP header
// is at tcpOff (behind extension headers).
func verifySegmentAt(t *testing.T, seg []byte, tcpOff int) {
	t.Helper()
	var ph []byte
	iph := tcpOff
	if seg[0]>>4 == 4 {
		iph = 20
		if checksum.Checksum(seg[:20], 0) != 0xffff {
			t.Fatalf("IPv4 header checksum does not verify: %x", seg[:20])
		}
		ph = append(ph, seg[12:20]...)
		ph = append(ph, 0, 6, byte((len(seg)-20)>>8), byte(len(seg)-20))
	} else {
		ph = append(ph, seg[8:40]...)
		n := len(seg) - iph
		ph = append(ph, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, 6)
	}
	if checksum.Checksum(seg[iph:], checksum.Checksum(ph, 0)) != 0xffff {
		t.Fatalf("TCP checksum of a %d-byte segment does not verify", len(seg))
	}
}

// segmentsOf cuts pkt into plain segments with cutSuper.
func segmentsOf(t *testing.T, pkt []byte, mss int) [][]byte {
	t.Helper()
	s, ok := parseSuper(pkt, mss)
	if !ok {
		t.Fatalf("parseSuper of a %d-byte super-packet failed", len(pkt))
	}
	out, sizes := make([][]byte, s.segments()), make([]int, s.segments())
	for i := range out {
		out[i] = make([]byte, s.hdrs()+mss)
	}
	n := cutSuper(pkt, s, 1, out, sizes, 0)
	if n != s.segments() {
		t.Fatalf("cutSuper: %d pieces, want %d", n, s.segments())
	}
	for i := range n {
		out[i] = out[i][:sizes[i]]
	}
	return out
}

// TestCutSuper: a super-packet cut into segments gives what the kernel's
// segmentation would: each segment's checksums verify, sequence numbers
// and IPv4 identifications advance, PSH only on the last, CWR only on
// the first, and the payloads put together are the super-packet's. Cut
// into pieces of several segments, each piece is a super-packet whose
// partial checksum completes to a valid one, and cutting the pieces
// again gives the same segments byte for byte.
func TestCutSuper(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, last := range []int{0, 333} {
			const mss = 1000
			pkt := mkSuper(v6, mss, 10, last)
			s, _ := parseSuper(pkt, mss)
			h := s.hdrs()
			segs := segmentsOf(t, bytes.Clone(pkt), mss)
			var payload []byte
			for i, seg := range segs {
				verifySegment(t, seg)
				tcp := seg[s.iph:]
				if got, want := binary.BigEndian.Uint32(tcp[4:]), 0xfffff000+uint32(i*mss); got != want {
					t.Fatalf("v6 %v segment %d: seq %#x, want %#x", v6, i, got, want)
				}
				if !v6 {
					if id := binary.BigEndian.Uint16(seg[4:]); id != 0x1234+uint16(i) {
						t.Fatalf("segment %d: IPv4 id %#x", i, id)
					}
				}
				lastSeg := i == len(segs)-1
				if (tcp[13]&tcpPSH != 0) != lastSeg || (tcp[13]&tcpCWR != 0) != (i == 0) || tcp[13]&0x10 == 0 {
					t.Fatalf("segment %d of %d: flags %#x", i, len(segs), tcp[13])
				}
				if !lastSeg && len(seg) != h+mss {
					t.Fatalf("segment %d: %d bytes, want %d", i, len(seg), h+mss)
				}
				payload = append(payload, seg[h:]...)
			}
			if want := 10 + min(last, 1); len(segs) != want || !bytes.Equal(payload, pkt[h:]) {
				t.Fatalf("v6 %v: %d segments, payload equal %v", v6, len(segs), bytes.Equal(payload, pkt[h:]))
			}

			// Pieces of 3 segments, then each cut again.
			n := (s.segments() + 2) / 3
			out, sizes := make([][]byte, n), make([]int, n)
			for i := range out {
				out[i] = make([]byte, 8+h+3*mss)
			}
			if got := cutSuper(bytes.Clone(pkt), s, 3, out, sizes, 8); got != n {
				t.Fatalf("pieces of 3: %d, want %d", got, n)
			}
			var again [][]byte
			for i := range n {
				piece := out[i][8 : 8+sizes[i]]
				ps, ok := parseSuper(piece, mss)
				if !ok {
					t.Fatalf("piece %d is not a super-packet", i)
				}
				if ps.segments() > 1 {
					// Complete the partial checksum as the kernel does and
					// check it.
					c := bytes.Clone(piece)
					at := ps.iph + 16
					init := binary.BigEndian.Uint16(c[at:])
					c[at], c[at+1] = 0, 0
					binary.BigEndian.PutUint16(c[at:], ^checksum.Checksum(c[ps.iph:], init))
					verifySegment(t, c)
				} else {
					verifySegment(t, piece)
				}
				again = append(again, segmentsOf(t, bytes.Clone(piece), mss)...)
			}
			if len(again) != len(segs) {
				t.Fatalf("re-cut: %d segments, want %d", len(again), len(segs))
			}
			for i := range segs {
				if !bytes.Equal(again[i], segs[i]) {
					t.Fatalf("v6 %v: segment %d cut from a piece differs from the one cut at once", v6, i)
				}
			}
		}
	}
}

// TestParseSuperRefuses: what parseSuper takes is exactly what the
// Bridge can cut.
func TestParseSuperRefuses(t *testing.T) {
	good4, good6 := mkSuper(false, 1000, 3, 0), mkSuper(true, 1000, 3, 0)
	if _, ok := parseSuper(good4, 1000); !ok {
		t.Fatal("IPv4 super-packet refused")
	}
	if _, ok := parseSuper(good6, 1000); !ok {
		t.Fatal("IPv6 super-packet refused")
	}
	bad := map[string]func() ([]byte, int){
		"mss below 536":       func() ([]byte, int) { return good4, 535 },
		"fragment (MF)":       func() ([]byte, int) { p := bytes.Clone(good4); p[6] |= 0x20; return p, 1000 },
		"fragment offset":     func() ([]byte, int) { p := bytes.Clone(good4); p[7] = 1; return p, 1000 },
		"IPv4 length":         func() ([]byte, int) { return good4[:len(good4)-1], 1000 },
		"IPv4 UDP":            func() ([]byte, int) { p := bytes.Clone(good4); p[9] = 17; return p, 1000 },
		"IHL below 5":         func() ([]byte, int) { p := bytes.Clone(good4); p[0] = 0x44; return p, 1000 },
		"IPv6 no such header": func() ([]byte, int) { p := bytes.Clone(good6); p[6] = 0; return p, 1000 },
		"IPv6 length":         func() ([]byte, int) { return good6[:len(good6)-1], 1000 },
		"TCP offset 4":        func() ([]byte, int) { p := bytes.Clone(good4); p[32] = 4 << 4; return p, 1000 },
		"TCP offset long": func() ([]byte, int) {
			p := bytes.Clone(good4[:60])
			binary.BigEndian.PutUint16(p[2:], 60)
			p[32] = 15 << 4
			return p, 1000
		},
		"not IP": func() ([]byte, int) { return []byte{0x10, 0, 0, 0}, 1000 },
		"short":  func() ([]byte, int) { return good4[:19], 1000 },
	}
	for name, f := range bad {
		if p, mss := f(); func() bool { _, ok := parseSuper(p, mss); return ok }() {
			t.Errorf("%s: taken", name)
		}
	}
}

// TestCutterPieces: what a flow carries of a super-packet, by its limit
// and by what the peer said it takes.
func TestCutterPieces(t *testing.T) {
	const mss = 1000
	pkt := mkSuper(false, mss, 10, 100) // 11 segments, 52 bytes of headers
	item := make([]byte, superHdrLen+len(pkt))
	putSuperHdr(item, mss)
	copy(item[superHdrLen:], pkt)
	var c cutter
	count := func(sdus [][]byte) (supers, plain int) {
		for _, x := range sdus {
			if _, ok := superMSS(x); ok {
				supers++
			} else {
				verifySegment(t, x)
				plain++
			}
		}
		return
	}
	cases := []struct {
		name          string
		limit, takes  int
		supers, plain int
		whole         bool
	}{
		{"the peer takes it whole", 65000, 65000, 1, 0, true},
		{"the peer said nothing", 65000, 0, 0, 11, false},
		// (3200-4-52)/1000 = 3 segments a piece: 3, 3, 3, then the last
		// two (1000 + 100 bytes) as one more super-packet.
		{"pieces of 3 segments", 3200, 65000, 4, 0, false},
		{"a 1,400-byte flow", 1400, 1400, 0, 11, false},
	}
	for _, tc := range cases {
		sdus, big := c.pieces(item, mss, tc.limit, tc.takes)
		if big || sdus == nil {
			t.Fatalf("%s: nil (big %v)", tc.name, big)
		}
		if tc.whole && (len(sdus) != 1 || !bytes.Equal(sdus[0], item)) {
			t.Fatalf("%s: not the item itself", tc.name)
		}
		supers, plain := count(sdus)
		for _, x := range sdus {
			if len(x) > tc.limit {
				t.Fatalf("%s: an SDU of %d bytes on a flow of %d", tc.name, len(x), tc.limit)
			}
		}
		if supers != tc.supers || plain != tc.plain {
			t.Fatalf("%s: %d super-packet SDUs and %d segments, want %d and %d", tc.name, supers, plain, tc.supers, tc.plain)
		}
	}
	if sdus, big := c.pieces(item, mss, 1000, 1000); !big || sdus != nil {
		t.Fatalf("a segment longer than the flow: %d SDUs, big %v", len(sdus), big)
	}
}

// FuzzSuperSDU: whatever a peer sends as a super-packet SDU, the
// receiving side's checks and cutting neither panic nor lose or invent
// payload bytes.
func FuzzSuperSDU(f *testing.F) {
	for _, p := range [][]byte{mkSuper(false, 1000, 3, 10), mkSuper(true, 600, 2, 0)} {
		sdu := make([]byte, superHdrLen+len(p))
		putSuperHdr(sdu, 1000)
		copy(sdu[superHdrLen:], p)
		f.Add(sdu)
	}
	f.Add([]byte{superTag, 0, 0, 0})
	f.Add(hello(9000))
	f.Fuzz(func(t *testing.T, sdu []byte) {
		helloMax(sdu)
		mss, ok := superMSS(sdu)
		if !ok {
			return
		}
		pkt := sdu[superHdrLen:]
		s, ok := parseSuper(pkt, mss)
		if !ok || s.segments() > maxPieces {
			return
		}
		out, sizes := make([][]byte, s.segments()), make([]int, s.segments())
		for i := range out {
			out[i] = make([]byte, s.hdrs()+mss)
		}
		n := cutSuper(bytes.Clone(pkt), s, 1, out, sizes, 0)
		var payload []byte
		for i := range n {
			seg := out[i][:sizes[i]]
			if _, ok := parseSuper(seg, mss); !ok {
				t.Fatalf("segment %d does not parse", i)
			}
			payload = append(payload, seg[s.hdrs():]...)
		}
		if n != s.segments() || !bytes.Equal(payload, pkt[s.hdrs():]) {
			t.Fatalf("%d segments of %d; payload kept: %v", n, s.segments(), bytes.Equal(payload, pkt[s.hdrs():]))
		}
	})
}

// superDev is a SuperDevice: ReadSuper returns what is put on in, what
// the Bridge writes arrives on out (a super-packet with its mss).
type superDev struct {
	in     chan written
	out    chan written
	closed chan struct{}
}

type written struct {
	pkt []byte
	mss int
}

func newSuperDev() *superDev {
	return &superDev{in: make(chan written, 16), out: make(chan written, 256), closed: make(chan struct{})}
}

func (d *superDev) Close() {
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
}
func (d *superDev) BatchSize() int { return 128 }
func (d *superDev) MTU() int       { return 1500 }
func (d *superDev) Headroom() int  { return vnetHdrLen }
func (d *superDev) Read(p []byte) (int, error) {
	n, _, err := d.ReadSuper(p)
	return n, err
}
func (d *superDev) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n, err := d.Read(bufs[0])
	sizes[0] = n
	return 1, err
}
func (d *superDev) ReadSuper(p []byte) (int, int, error) {
	select {
	case w := <-d.in:
		return copy(p, w.pkt), w.mss, nil
	case <-d.closed:
		return 0, 0, flow.ErrClosed
	}
}
func (d *superDev) Write(p []byte) (int, error) {
	d.out <- written{pkt: bytes.Clone(p)}
	return len(p), nil
}
func (d *superDev) WriteBatch(bufs [][]byte) (int, error) {
	for _, b := range bufs {
		d.out <- written{pkt: bytes.Clone(b[vnetHdrLen:])}
	}
	return len(bufs), nil
}
func (d *superDev) WriteSuper(b []byte, mss int) error {
	pkt := b[vnetHdrLen:]
	s, ok := parseSuper(pkt, mss)
	if !ok {
		return errSuper
	}
	fixHeaders(pkt, s)
	d.out <- written{pkt: bytes.Clone(pkt), mss: mss}
	return nil
}

// senderBeside runs a Bridge "ip.a" reading da, routing 10.9.9.0/24 to
// "ip.b", which a program of broker named prog binds: it accepts the
// Bridge's flows and is the test's (an older bridge that says no hello,
// or one that never reads). It returns the Bridge and that program.
func senderBeside(t *testing.T, broker *flowtest.Broker, da *superDev, prog string) (*Bridge, *flowtest.Broker) {
	t.Helper()
	a, err := New(Config{Broker: broker.Program("pa"), Dev: da, Runner: goRunner{}, Name: "ip.a",
		Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.9.0/24"), Name: "ip.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	peer := broker.Program(prog)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := peer.Bind(ctx, "ip.b"); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(run) }()
	t.Cleanup(func() { stop(); da.Close(); <-done })
	return a, peer
}

// TestBridgeSupers: a super-packet read from one side's device crosses
// as one SDU where the flow carries it and the accepting Bridge said it
// takes super-packets, and reaches a device that takes super-packets
// whole; a device that does not gets its segments, checksums complete;
// toward a peer that never says hello (an older Bridge), and over a
// flow of 1,400 bytes, only plain segments cross.
func TestBridgeSupers(t *testing.T) {
	const mss = 1000
	pkt := mkSuper(false, mss, 20, 500) // 21 segments
	h := 52
	wantSegs := segmentsOf(t, bytes.Clone(pkt), mss)

	run := func(t *testing.T, broker *flowtest.Broker, da *superDev, db Device) (*Bridge, *Bridge) {
		t.Helper()
		a, err := New(Config{Broker: broker.Program("pa"), Dev: da, Runner: goRunner{}, Name: "ip.a",
			Routes: []Route{{Prefix: netip.MustParsePrefix("10.9.9.0/24"), Name: "ip.b"}}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Config{Broker: broker.Program("pb"), Dev: db, Runner: goRunner{}, Name: "ip.b"})
		if err != nil {
			t.Fatal(err)
		}
		runPair(t, a, b, da, db.(interface{ Close() }))
		time.Sleep(20 * time.Millisecond)
		return a, b
	}
	// send gives a's device the super-packet.
	send := func(da *superDev) {
		da.in <- written{pkt: pkt, mss: mss}
	}

	t.Run("whole", func(t *testing.T) {
		da, db := newSuperDev(), newSuperDev()
		a, b := run(t, flowtest.NewBrokerSized(64, 65000), da, db)
		deadline := time.Now().Add(3 * time.Second)
		for {
			send(da)
			w := <-db.out
			if w.mss == 0 {
				// Before b's hello arrived: segments. Take the rest.
				for range len(wantSegs) - 1 {
					<-db.out
				}
				if time.Now().After(deadline) {
					t.Fatal("no super-packet crossed whole")
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if w.mss != mss || len(w.pkt) != len(pkt) || !bytes.Equal(w.pkt[h:], pkt[h:]) {
				t.Fatalf("b's device got a super-packet of %d bytes, mss %d", len(w.pkt), w.mss)
			}
			break
		}
		if b.SupersIn() == 0 {
			t.Error("SupersIn 0")
		}
		if r, _, _, _, _ := a.Stats(); r[0].Supers == 0 {
			t.Errorf("route counters %+v: no super-packet", r[0])
		}
	})

	t.Run("device without super-packets", func(t *testing.T) {
		da, db := newSuperDev(), newDev()
		_, b := run(t, flowtest.NewBrokerSized(64, 65000), da, db)
		// Until b's hello arrives a cuts; after, a super-packet crosses
		// whole and b, whose device takes none, cuts it: the same
		// segments either way, and b must have cut one.
		deadline := time.Now().Add(3 * time.Second)
		for b.SupersIn() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no super-packet reached b whole")
			}
			send(da)
			for i := range wantSegs {
				got := recv(t, db)
				verifySegment(t, got)
				if !bytes.Equal(got, wantSegs[i]) {
					t.Fatalf("segment %d differs", i)
				}
			}
		}
	})

	t.Run("1400-byte flow", func(t *testing.T) {
		da, db := newSuperDev(), newSuperDev()
		run(t, flowtest.NewBroker(64), da, db)
		for range 2 {
			send(da)
			for i := range wantSegs {
				w := <-db.out
				if w.mss != 0 || !bytes.Equal(w.pkt, wantSegs[i]) {
					t.Fatalf("segment %d: mss %d, equal %v", i, w.mss, bytes.Equal(w.pkt, wantSegs[i]))
				}
			}
		}
	})

	t.Run("peer without hello", func(t *testing.T) {
		broker := flowtest.NewBrokerSized(64, 65000)
		da := newSuperDev()
		_, old := senderBeside(t, broker, da, "old")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for range 2 {
			send(da)
		}
		port, _, err := old.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer port.Close()
		buf := make([]byte, 65000)
		for i := range 2 * len(wantSegs) {
			n, err := port.Read(buf, time.Now().Add(3*time.Second))
			if err != nil {
				t.Fatalf("SDU %d: %v", i, err)
			}
			if !bytes.Equal(buf[:n], wantSegs[i%len(wantSegs)]) {
				t.Fatalf("SDU %d: %d bytes, not the plain segment", i, n)
			}
		}
	})
}

// TestSuperBuffersBounded: super-packets for a peer that takes nothing
// hold at most maxBigOut 64 KB buffers; the rest are dropped, counted
// (before, each queued one held its buffer: the queue's 256 of them,
// 16 MB, per peer).
func TestSuperBuffersBounded(t *testing.T) {
	da := newSuperDev()
	a, _ := senderBeside(t, flowtest.NewBrokerSized(4, 65000), da, "stuck") // accepts, never reads
	pkt := mkSuper(false, 1000, 20, 0)
	const n = 600
	for range n {
		da.in <- written{pkt: pkt, mss: 1000}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, _, _, _, _ := a.Stats()
		if r[0].Supers == n {
			if out := a.bigOut.Load(); out > maxBigOut+1 {
				t.Fatalf("%d super-packet buffers out, at most %d", out, maxBigOut+1)
			}
			if r[0].Drops == 0 {
				t.Fatalf("%+v: nothing dropped", r[0])
			}
			t.Logf("%d read: %d dropped, %d buffers out", n, r[0].Drops, a.bigOut.Load())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d super-packets read", r[0].Supers, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// withOptions returns the IPv6 super-packet p with a destination options
// header (8 bytes: PadN) between the IPv6 header and TCP; next is what
// the IPv6 header says comes next (60: destination options, 43: a
// routing header, which the Bridge refuses).
func withOptions(p []byte, next byte) []byte {
	q := make([]byte, 0, len(p)+8)
	q = append(q, p[:40]...)
	q = append(q, 6, 0, 1, 4, 0, 0, 0, 0) // next header TCP, length 0 (8 bytes), PadN of 4
	q = append(q, p[40:]...)
	q[6] = next
	binary.BigEndian.PutUint16(q[4:], uint16(len(q)-40))
	return q
}

// TestSuperIPv6Options: an IPv6 super-packet with hop-by-hop or
// destination options before its TCP header is cut like any (the
// options copied into every segment, its checksums right); one with a
// routing header, or more than maxExtHdrs extension headers, is
// refused.
func TestSuperIPv6Options(t *testing.T) {
	const mss = 1000
	pkt := withOptions(mkSuper(true, mss, 5, 10), 60)
	s, ok := parseSuper(pkt, mss)
	if !ok || s.iph != 48 {
		t.Fatalf("parseSuper: ok %v, IP headers %d bytes; want 48", ok, s.iph)
	}
	segs := segmentsOf(t, bytes.Clone(pkt), mss)
	var payload []byte
	for _, seg := range segs {
		if !bytes.Equal(seg[40:48], pkt[40:48]) {
			t.Fatal("a segment lost its options header")
		}
		verifySegmentAt(t, seg, 48)
		payload = append(payload, seg[s.hdrs():]...)
	}
	if len(segs) != 6 || !bytes.Equal(payload, pkt[s.hdrs():]) {
		t.Fatalf("%d segments, payload kept %v", len(segs), bytes.Equal(payload, pkt[s.hdrs():]))
	}
	if _, ok := parseSuper(withOptions(mkSuper(true, mss, 5, 10), 43), mss); ok {
		t.Error("a routing header taken")
	}
	many := mkSuper(true, mss, 5, 10)
	for range maxExtHdrs + 1 {
		many = withOptions(many, 60)
		many[40] = 60 // each options header says another follows...
	}
	many[40+8*maxExtHdrs] = 6 // ...but the last, which says TCP
	if _, ok := parseSuper(many, mss); ok {
		t.Errorf("%d extension headers taken", maxExtHdrs+1)
	}
}
