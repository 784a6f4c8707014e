package capture

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

func TestPointOffAllocs(t *testing.T) {
	var p Point
	pkt := make([]byte, 100)
	n := testing.AllocsPerRun(1000, func() {
		if s := p.Session(); s != nil {
			s.Add(In, PDU, 1, pkt)
		}
	})
	if n != 0 {
		t.Errorf("got %v allocs per packet with no capture, want 0", n)
	}
}

// TestSessionAddAllocs: keeping a record and dropping one (full ring)
// allocate nothing. (AllocsPerRun rounds down, so each run keeps every
// packet, or drops every packet.)
func TestSessionAddAllocs(t *testing.T) {
	var p Point
	s, err := p.Start(LayerUnicast, Config{Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 1400)
	page := make([]byte, 0, MaxPage)
	n := testing.AllocsPerRun(1000, func() {
		p.Session().Add(Out, PDU, 7, pkt)
		page, _ = s.Drain(page[:0], MaxPage)
	})
	if n != 0 {
		t.Errorf("kept: got %v allocs per packet, want 0", n)
	}
	if s.Kept.Load() < 1000 || s.Dropped.Load() != 0 {
		t.Errorf("kept %d, dropped %d: want all kept", s.Kept.Load(), s.Dropped.Load())
	}
	for range 4 {
		p.Session().Add(Out, PDU, 7, pkt)
	}
	n = testing.AllocsPerRun(1000, func() { p.Session().Add(Out, PDU, 7, pkt) })
	if n != 0 {
		t.Errorf("dropped: got %v allocs per packet, want 0", n)
	}
	if s.Dropped.Load() < 1000 {
		t.Errorf("dropped %d, want all", s.Dropped.Load())
	}
}

func TestRingRoundTrip(t *testing.T) {
	var p Point
	s, err := p.Start(LayerUDP, Config{Slots: 8, Snap: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start(LayerUDP, Config{}); !errors.Is(err, flow.ErrExists) {
		t.Errorf("second Start: got %v, want ErrExists", err)
	}
	for i := range 10 {
		s.Add(Dir(i&1), SDU, uint64(i), []byte{byte(i), 1, 2, 3, 4, 5})
	}
	if got, want := s.Dropped.Load(), uint64(2); got != want {
		t.Errorf("dropped %d, want %d", got, want)
	}
	var all []Record
	for {
		page, k := s.Drain(nil, 3*(recHead+HeaderLen+4))
		if k == 0 {
			break
		}
		rs, err := DecodePage(page)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != k {
			t.Fatalf("page of %d records decodes to %d", k, len(rs))
		}
		all = append(all, rs...)
	}
	if len(all) != 8 {
		t.Fatalf("got %d records, want 8", len(all))
	}
	for i, r := range all {
		h := r.Header
		if h.Dir() != Dir(i&1) || h.Layer() != LayerUDP || h.Content() != SDU || h.Port() != uint64(i) {
			t.Errorf("record %d: header %x", i, []byte(h))
		}
		if r.Len != 6 || !bytes.Equal(r.Data, []byte{byte(i), 1, 2, 3}) {
			t.Errorf("record %d: len %d data %x, want 6 and the first 4 bytes", i, r.Len, r.Data)
		}
		if time.Since(r.Time) > time.Minute || time.Since(r.Time) < 0 {
			t.Errorf("record %d: time %v", i, r.Time)
		}
	}
	// Room again after the drain.
	s.Add(In, SDU, 1, []byte{1})
	if s.Pending() != 1 {
		t.Errorf("pending %d after one Add, want 1", s.Pending())
	}
}

func TestFilter(t *testing.T) {
	var p Point
	s, err := p.Start(LayerUnicast, Config{Filter: Filter{Dir: Out, HasDir: true, Port: 5, HasPort: true}})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(In, PDU, 5, []byte{1})
	s.Add(Out, PDU, 4, []byte{1})
	s.Add(Out, PDU, 5, []byte{1})
	if s.Kept.Load() != 1 || s.Filtered.Load() != 2 {
		t.Errorf("kept %d filtered %d, want 1 and 2", s.Kept.Load(), s.Filtered.Load())
	}
}

// TestConcurrentAdd checks that records from many producers all arrive
// whole (run under -race).
func TestConcurrentAdd(t *testing.T) {
	var p Point
	s, err := p.Start(LayerUnicast, Config{Slots: 64, Snap: 8})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				b := bytes.Repeat([]byte{byte(g)}, 8)
				s.Add(In, PDU, uint64(g), b)
				_ = i
			}
		})
	}
	got := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	check := func() int {
		page, _ := s.Drain(nil, MaxPage)
		rs, err := DecodePage(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if !bytes.Equal(r.Data, bytes.Repeat([]byte{byte(r.Header.Port())}, 8)) {
				t.Fatalf("torn record: port %d data %x", r.Header.Port(), r.Data)
			}
		}
		got += len(rs)
		return len(rs)
	}
	for {
		select {
		case <-done:
			// Drain what is left: a page holds fewer records than the
			// ring (it took two pages, and sometimes three).
			for check() > 0 {
			}
			if total := uint64(got) + s.Dropped.Load(); total != 2000 {
				t.Errorf("kept %d + dropped %d = %d, want 2000", got, s.Dropped.Load(), total)
			}
			return
		default:
			check()
		}
	}
}

func TestIdleStops(t *testing.T) {
	var p Point
	s, err := p.Start(LayerUnicast, Config{Idle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	s.Add(In, PDU, 1, []byte{1})
	if p.Session() != nil {
		t.Error("an undrained session is still armed after its idle time")
	}
}

func TestMgmt(t *testing.T) {
	var p Point
	if _, err := p.Mgmt("x", LayerUnicast, map[string]string{ArgOp: OpRead}); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("read before start: got %v, want ErrNotFound", err)
	}
	for _, bad := range []map[string]string{
		{ArgOp: OpStart, ArgSnap: "5000"}, {ArgOp: OpStart, ArgDir: "up"}, {ArgOp: OpStart, ArgSnap: "1024", ArgSlots: "16384"}, {ArgOp: OpStart, ArgPort: "-1"}, {ArgOp: "go"},
	} {
		if _, err := p.Mgmt("x", LayerUnicast, bad); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("%v: got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := p.Mgmt("x", LayerUnicast, map[string]string{ArgOp: OpStart, ArgDir: "out", ArgSnap: "1024"}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1400)
	for range 5 {
		p.Session().Add(Out, PDU, 3, big)
	}
	p.Session().Add(In, PDU, 3, big)
	total := 0
	for range 10 {
		r, err := p.Mgmt("x", LayerUnicast, map[string]string{ArgOp: OpRead})
		if err != nil {
			t.Fatal(err)
		}
		if r.Next != 0 {
			t.Errorf("read answer has Next %d, want one page", r.Next)
		}
		b, err := base64.StdEncoding.DecodeString(r.Text)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxPage {
			t.Errorf("page of %d bytes, want at most %d", len(b), MaxPage)
		}
		rs, err := DecodePage(b)
		if err != nil {
			t.Fatal(err)
		}
		total += len(rs)
		if enc, err := flow.NewCodec().Marshal(r); err != nil || len(enc) > 2048 {
			t.Errorf("answer encodes to %d bytes (%v), want at most kernel.MaxPayload", len(enc), err)
		}
	}
	if total != 5 {
		t.Errorf("read %d records, want 5 (the in one filtered)", total)
	}
	if _, err := p.Mgmt("x", LayerUnicast, map[string]string{ArgOp: OpStop}); err != nil {
		t.Fatal(err)
	}
	if p.Session() != nil {
		t.Error("armed after stop")
	}
}

func FuzzDecodePage(f *testing.F) {
	var p Point
	s, _ := p.Start(LayerEth, Config{Slots: 4})
	s.Add(In, SDU, 9, []byte("hello"))
	s.Add(Out, ShimCtl, 0, []byte{0x87, 1})
	page, _ := s.Drain(nil, MaxPage)
	f.Add(page)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodePage(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.Header.IsValid() || len(r.Data) > r.Len || len(r.Data) > MaxSnap {
				t.Fatalf("accepted record %+v", r)
			}
		}
	})
}

// BenchmarkPointOff is what a data path pays per packet with no capture.
func BenchmarkPointOff(b *testing.B) {
	var p Point
	pkt := make([]byte, 1000)
	for b.Loop() {
		if s := p.Session(); s != nil {
			s.Add(In, PDU, 1, pkt)
		}
	}
}

// BenchmarkSessionAdd is what it pays with one running: kept (the ring
// drained as it goes, by the same goroutine) and dropped (full).
func BenchmarkSessionAdd(b *testing.B) {
	for _, size := range []int{64, 1000} {
		b.Run(fmt.Sprintf("kept/%dB", size), func(b *testing.B) {
			var p Point
			s, _ := p.Start(LayerUnicast, Config{Slots: 64})
			pkt := make([]byte, size)
			page := make([]byte, 0, MaxPage)
			i := 0
			for b.Loop() {
				p.Session().Add(In, PDU, 1, pkt)
				if i++; i%4 == 0 {
					page, _ = s.Drain(page[:0], MaxPage)
				}
			}
		})
	}
	b.Run("dropped", func(b *testing.B) {
		var p Point
		s, _ := p.Start(LayerUnicast, Config{Slots: 1})
		pkt := make([]byte, 1000)
		s.Add(In, PDU, 1, pkt)
		for b.Loop() {
			p.Session().Add(In, PDU, 1, pkt)
		}
	})
}
