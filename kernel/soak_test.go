package kernel

import (
	"errors"
	"runtime"
	"testing"
)

// TestFlowSoak runs the IRM's flow life cycle many times, as a long-lived
// node does: the IRM makes two rings per flow, mints a Read and a Write
// cap for each end, moves them to the application and the IPCP in
// messages, the ends exchange a buffer, close the rings and delete their
// caps, and the IRM revokes and deletes its originals. Live objects,
// kernel tables, budgets and the heap must come back to where they were.
// 100k flows take about 1.5 s; under the race detector (ten times slower)
// and with -short it runs 10k.
func TestFlowSoak(t *testing.T) {
	flows := 100_000
	if testing.Short() || raceEnabled {
		flows = 10_000
	}
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "to-app"}, {Name: "to-ipcp"}},
		Components: []ComponentSpec{
			// The IRM makes the rings, so what they queue is charged to
			// it: at most one buffer each way per flow here.
			{Name: "irm", Budget: Budget{Objects: 2, Bufs: 2}, Caps: []CapSpec{
				{Name: "app", Object: "to-app", Rights: Write | Grant},
				{Name: "ipcp", Object: "to-ipcp", Rights: Write | Grant},
			}},
			{Name: "app", Budget: Budget{Bufs: 2}, Caps: []CapSpec{{Name: "ep", Object: "to-app", Rights: Read}}},
			{Name: "ipcp", Budget: Budget{Bufs: 2}, Caps: []CapSpec{{Name: "ep", Object: "to-ipcp", Rights: Read}}},
		},
	}
	// end serves flow ends: it receives (rx, tx), pushes one buffer into
	// tx, pops what is in rx (the IPCP only on even words, so that half the
	// flows are destroyed with a buffer still queued), closes both rings,
	// deletes its caps and replies.
	end := func(pd *PD) error {
		ep := mustSlot(t, pd, "ep")
		var m, r Msg
		var reply Cap
		bufs := make([]*Buf, 2)
		for {
			info, err := pd.ReplyRecv(ep, reply, &r, &m)
			if err != nil {
				return nil // stopped
			}
			reply = info.Reply
			r = Msg{}
			if m.NCaps != 2 {
				r.Label = 1
				continue
			}
			rx, tx := m.Caps[0], m.Caps[1]
			if _, err := pd.AllocBufs(bufs[:1]); err != nil {
				return err
			}
			if n, err := pd.Push(tx, bufs[:1]); n != 1 {
				pd.FreeBufs(bufs[:1])
				if !errors.Is(err, ErrClosed) {
					return err
				}
			}
			if pd.Name() == "app" || m.Words[0]%2 == 0 {
				n, _ := pd.Pop(rx, bufs)
				pd.FreeBufs(bufs[:n])
			}
			pd.CloseRing(rx)
			pd.CloseRing(tx)
			if pd.Delete(rx) != nil || pd.Delete(tx) != nil {
				r.Label = 2
			}
		}
	}
	k, pds := harness(t, sys, map[string]Program{"app": end, "ipcp": end})
	irm := pds["irm"]
	appEP, ipcpEP := mustSlot(t, irm, "app"), mustSlot(t, irm, "ipcp")
	comps := map[string]*PD{"irm": irm}
	flow := func(i int) {
		r1, err1 := irm.NewRing(4) // app → IPCP
		r2, err2 := irm.NewRing(4) // IPCP → app
		if err1 != nil || err2 != nil {
			t.Fatalf("flow %d: NewRing: %v, %v", i, err1, err2)
		}
		for _, end := range []struct {
			ep       Cap
			rx, tx   Cap
			rxR, txR Cap
		}{{ep: appEP, rx: r2, tx: r1}, {ep: ipcpEP, rx: r1, tx: r2}} {
			rx, _ := irm.Mint(end.rx, Read, 0)
			tx, err := irm.Mint(end.tx, Write, 0)
			if err != nil {
				t.Fatalf("flow %d: Mint: %v", i, err)
			}
			m := Msg{Words: [MaxWords]uint64{uint64(i)}, NCaps: 2, Caps: [MaxCaps]Cap{rx, tx}}
			if err := irm.Call(end.ep, &m); err != nil || m.Label != 0 {
				t.Fatalf("flow %d: Call: %v, label %d", i, err, m.Label)
			}
		}
		for _, r := range []Cap{r1, r2} {
			if err := irm.Revoke(r); err != nil {
				t.Fatalf("flow %d: Revoke: %v", i, err)
			}
			if err := irm.Delete(r); err != nil {
				t.Fatalf("flow %d: Delete: %v", i, err)
			}
		}
	}
	type snapshot struct {
		objects, names, comps int
		used                  map[string]Usage
		heap                  uint64
	}
	snap := func() snapshot {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		k.mu.Lock()
		s := snapshot{objects: len(k.objs), names: len(k.byName), comps: len(k.comps), used: map[string]Usage{}, heap: ms.HeapInuse}
		k.mu.Unlock()
		for n, pd := range pds {
			comps[n] = pd
			s.used[n] = pd.Budget()
		}
		return s
	}
	for i := range 1000 { // warm up pools, free lists and maps
		flow(i)
	}
	before := snap()
	for i := range flows {
		flow(i)
	}
	after := snap()
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"live objects", after.objects, before.objects},
		{"named objects", after.names, before.names},
		{"components", after.comps, before.comps},
		{"irm objects used", after.used["irm"].Objects, 0},
		{"irm buffers used (queued in its rings)", after.used["irm"].Bufs, 0},
		{"irm object limit", after.used["irm"].Limit.Objects, 2},
		{"app buffers used", after.used["app"].Bufs, 0},
		{"ipcp buffers used", after.used["ipcp"].Bufs, 0},
		{"irm CSpace slots", len(irm.cs.slots), 1 + 2 + 4}, // null, two endpoints, one flow
	} {
		if c.got != c.want {
			t.Errorf("after %d flows, %s: got %d, want %d", flows, c.what, c.got, c.want)
		}
	}
	// A leaked flow costs over 1 KiB (two rings, names, tree nodes), so
	// 100k leaked flows would show as 100 MiB; allow 4 MiB of noise.
	if grow := int64(after.heap) - int64(before.heap); grow > 4<<20 {
		t.Errorf("after %d flows, heap in use grew by %d bytes, want roughly flat", flows, grow)
	}
}
