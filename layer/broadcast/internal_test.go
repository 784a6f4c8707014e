package broadcast

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/layertest"
)

func TestWindow(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint32
		want []bool
	}{
		{"in order", []uint32{1, 2, 3}, []bool{true, true, true}},
		{"duplicate", []uint32{5, 5}, []bool{true, false}},
		{"reordered", []uint32{10, 8, 9, 8, 10}, []bool{true, true, true, false, false}},
		{"jump within window", []uint32{1, 200, 1, 2}, []bool{true, true, false, true}},
		{"across words", []uint32{1, 65, 129, 64, 65, 130, 2}, []bool{true, true, true, true, false, true, true}},
		{"too old", []uint32{300, 44, 45}, []bool{true, false, true}},
		{"far jump clears", []uint32{1, 1000, 999, 1}, []bool{true, true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSeenSet(4)
			for i, seq := range tt.seqs {
				if got := s.fresh(7, seq); got != tt.want[i] {
					t.Errorf("seq %d (#%d): got fresh %v, want %v", seq, i, got, tt.want[i])
				}
			}
		})
	}
}

func TestSeenSetEviction(t *testing.T) {
	s := newSeenSet(2)
	s.fresh(1, 1)
	s.fresh(2, 1)
	s.fresh(1, 2) // 2 is now the least recently used
	s.fresh(3, 1) // evicts 2
	if len(s.origins) != 2 || s.origins[2] != nil {
		t.Fatalf("got origins %v, want 1 and 3", s.origins)
	}
	if s.fresh(1, 2) {
		t.Error("origin 1 forgot seq 2")
	}
	if !s.fresh(2, 1) {
		t.Error("evicted origin 2 still remembered")
	}
}

// feed is a port that returns the same packet on every Read, with a
// fresh sequence number, and discards writes.
type feed struct {
	pkt []byte
	seq uint32
}

func (f *feed) Read(p []byte, _ time.Time) (int, error) {
	f.seq++
	binary.BigEndian.PutUint32(f.pkt[offSeq:], f.seq)
	return copy(p, f.pkt), nil
}
func (f *feed) Write([]byte, time.Time) error { return nil }
func (f *feed) Close() error                  { return nil }

type sink struct{ n int }

func (s *sink) Read([]byte, time.Time) (int, error) { return 0, flow.ErrClosed }
func (s *sink) Write([]byte, time.Time) error       { s.n++; return nil }
func (s *sink) Close() error                        { return nil }

// TestForwardAllocs: forwarding a packet from a neighbour to two
// neighbours and two programs allocates nothing.
func TestForwardAllocs(t *testing.T) {
	p, err := New(Config{Layer: "b", Name: "x", Runner: layertest.Runner{}}, flowtest.NewBroker(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, HeaderLen+1000)
	Header(pkt).Encode(8, 0, 99)
	src := &port{p: &feed{pkt: pkt}, neighbour: true}
	sinks := []*sink{{}, {}, {}, {}}
	p.add(src)
	for i, s := range sinks {
		p.add(&port{p: s, neighbour: i%2 == 0})
	}
	buf := make([]byte, HeaderLen+flow.MaxSDU)
	for range 10 {
		p.fromNeighbour(src, buf)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.fromNeighbour(src, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per forwarded packet, want 0", allocs)
	}
	if sinks[0].n != 1010+1 || sinks[1].n != 1010+1 { // AllocsPerRun runs once more to warm up
		t.Errorf("got %d and %d writes, want %d", sinks[0].n, sinks[1].n, 1011)
	}
	if s := p.Stats(); s.Duplicates != 0 || s.Invalid != 0 {
		t.Errorf("got %+v", s)
	}
}

func FuzzFromNeighbour(f *testing.F) {
	pkt := make([]byte, HeaderLen+4)
	Header(pkt).Encode(3, 1, 5)
	f.Add(pkt)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > flow.MaxSDU {
			return
		}
		p, _ := New(Config{Layer: "b", Name: "x", Runner: layertest.Runner{}}, flowtest.NewBroker(1), nil)
		src := &port{p: &fixed{b: b}, neighbour: true}
		out := &sink{}
		p.add(src)
		p.add(&port{p: out, neighbour: true})
		p.fromNeighbour(src, make([]byte, HeaderLen+flow.MaxSDU))
		h := Header(b)
		valid := h.IsValid() && h.TTL() > 0 && h.Seq() != 0
		if want := valid && h.TTL() > 1; (out.n == 1) != want {
			t.Fatalf("got %d forwards of %x, want forwarded=%v", out.n, b, want)
		}
	})
}

type fixed struct{ b []byte }

func (f *fixed) Read(p []byte, _ time.Time) (int, error) { return copy(p, f.b), nil }
func (f *fixed) Write([]byte, time.Time) error           { return nil }
func (f *fixed) Close() error                            { return nil }

// TestForwardCaptureAllocs is TestForwardAllocs with a capture running:
// the packet in and its copies out to the two neighbours are recorded
// (the ring drained after each, so every run keeps them: AllocsPerRun
// rounds down), and nothing allocates.
func TestForwardCaptureAllocs(t *testing.T) {
	p, err := New(Config{Layer: "b", Name: "x", Runner: layertest.Runner{}}, flowtest.NewBroker(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, HeaderLen+1000)
	Header(pkt).Encode(8, 0, 99)
	src := &port{p: &feed{pkt: pkt}, neighbour: true}
	p.add(src)
	for i := range 4 {
		p.add(&port{p: &sink{}, neighbour: i%2 == 0})
	}
	buf := make([]byte, HeaderLen+flow.MaxSDU)
	for range 10 {
		p.fromNeighbour(src, buf)
	}
	s, err := p.capt.Start(capture.LayerBroadcast, capture.Config{Slots: 8, Snap: 64})
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 0, capture.MaxPage)
	var k int
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.fromNeighbour(src, buf); err != nil {
			t.Fatal(err)
		}
		page, k = s.Drain(page[:0], capture.MaxPage)
		if k != 3 {
			t.Fatalf("drained %d records after a forwarded packet, want 3 (in, and out to 2 neighbours)", k)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per forwarded packet with a capture, want 0", allocs)
	}
	rs, err := capture.DecodePage(page)
	if err != nil {
		t.Fatal(err)
	}
	if h := rs[0].Header; h.Dir() != capture.In || h.Port() != src.id || h.Content() != capture.Bcast || rs[0].Len != len(pkt) {
		t.Errorf("first record %x (%d bytes), want the packet in from port %d", []byte(h), rs[0].Len, src.id)
	}
	if rs[1].Header.Dir() != capture.Out || Header(rs[1].Data).TTL() != 7 {
		t.Errorf("second record %x: want the packet out with TTL 7", rs[1].Data[:2])
	}
}
