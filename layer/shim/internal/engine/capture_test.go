package engine

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
)

// TestCaptureInputAllocs: a data packet's way through Input allocates
// nothing, with no capture and with one running; the capture sees the
// control messages and the data, with their endpoint ids.
func TestCaptureInputAllocs(t *testing.T) {
	up := ipcptest.NewUpcalls(16)
	e, w := newEngine(t, Config[peer]{Upcalls: up})
	allocReq(t, e, "p", 1)
	acc := <-up.Accepted
	defer acc.Port.Close()
	var eid uint32
	waitFor(t, "flow installed", func() bool {
		fs := e.Flows()
		if len(fs) == 1 {
			eid = uint32(fs[0].LocalEID)
		}
		return len(fs) == 1
	})
	// The answer goes out after the flow is listed: let it, before the
	// capture starts (else it is captured too, as a second answer).
	waitFor(t, "the first answer sent", func() bool { return len(w.msgs(MsgAllocResp)) == 1 })
	pkt := make([]byte, 1000)
	buf := make([]byte, flow.MaxSDU)
	step := func() {
		e.Input(pkt, "p", eid)
		if _, err := acc.Port.Read(buf, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(500, step); n != 0 {
		t.Errorf("no capture: got %v allocs per packet, want 0", n)
	}
	s, err := e.CapturePoint().Start(e.layerKind(), capture.Config{Slots: 64})
	if err != nil {
		t.Fatal(err)
	}
	allocReq(t, e, "p", 2) // a control message in, its answer out
	<-up.Accepted
	waitFor(t, "answer captured", func() bool { return s.Pending() >= 2 })
	var rs []capture.Record
	drain := func() { // records point into their pages: a fresh page each
		for {
			page, k := s.Drain(nil, capture.MaxPage)
			if k == 0 {
				return
			}
			r, err := capture.DecodePage(page)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r...)
		}
	}
	drain()
	// Every packet kept (AllocsPerRun rounds down: a run must not mix).
	page2 := make([]byte, 0, capture.MaxPage)
	if n := testing.AllocsPerRun(500, func() { step(); page2, _ = s.Drain(page2[:0], capture.MaxPage) }); n != 0 {
		t.Errorf("capture running: got %v allocs per packet, want 0", n)
	}
	if s.Dropped.Load() != 0 || s.Kept.Load() < 500 {
		t.Errorf("kept %d, dropped %d: want all kept", s.Kept.Load(), s.Dropped.Load())
	}
	for range 100 { // more than the ring holds: the rest are counted drops
		step()
	}
	if s.Dropped.Load() != 100-64 {
		t.Errorf("dropped %d of 100 into a ring of 64, want %d", s.Dropped.Load(), 100-64)
	}
	drain()
	var ctlIn, ctlOut, data int
	for _, r := range rs {
		switch h := r.Header; {
		case h.Content() == capture.ShimCtl && h.Dir() == capture.In && h.Port() == 0:
			ctlIn++
		case h.Content() == capture.ShimCtl && h.Dir() == capture.Out && h.Port() == 0:
			ctlOut++
		case h.Content() == capture.SDU && h.Dir() == capture.In && h.Port() == uint64(eid) && r.Len == len(pkt):
			data++
		}
	}
	if ctlIn != 1 || ctlOut != 1 || data != 64 {
		t.Errorf("captured %d control messages in, %d out and %d SDUs in, want 1, 1 and 64", ctlIn, ctlOut, data)
	}
}
