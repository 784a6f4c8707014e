package irm_test

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
)

var noTime time.Time

// bootPD boots a kernel with one component and returns its PD.
func bootPD(t *testing.T, bufs int) *kernel.PD {
	t.Helper()
	k := kernel.New(kernel.Config{})
	ch := make(chan *kernel.PD, 1)
	sys := &kernel.System{Components: []kernel.ComponentSpec{{
		Name:   "app",
		Budget: kernel.Budget{Bufs: bufs, Objects: 1 << 12},
	}}}
	err := k.Boot(sys, map[string]kernel.Program{"app": func(pd *kernel.PD) error {
		ch <- pd
		<-pd.Context().Done()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	return <-ch
}

// ringPair returns two RingPorts connected by two fresh rings.
func ringPair(t *testing.T, pd *kernel.PD, size int) (flow.Port, flow.Port) {
	t.Helper()
	r1, err := pd.NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := pd.NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(c kernel.Cap, r kernel.Rights) kernel.Cap {
		m, err := pd.Mint(c, r, 0)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := irm.NewRingPort(pd, mint(r2, kernel.Read), mint(r1, kernel.Write))
	b := irm.NewRingPort(pd, mint(r1, kernel.Read), mint(r2, kernel.Write))
	pd.Delete(r1)
	pd.Delete(r2)
	return a, b
}

// TestRingPortQueued: Queued counts what the port wrote and the other end
// has not read, drops as it reads, and allocates nothing (the unicast
// transmit loop calls it per batch).
func TestRingPortQueued(t *testing.T) {
	pd := bootPD(t, 1024)
	pa, b := ringPair(t, pd, 64)
	defer pa.Close()
	defer b.Close()
	a := pa.(*irm.RingPort)
	msg := make([]byte, 100)
	for range 5 {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Queued(); got != 5 {
		t.Errorf("after 5 writes: Queued %d, want 5", got)
	}
	buf := make([]byte, flow.MaxSDU)
	if _, err := b.Read(buf, noTime); err != nil {
		t.Fatal(err)
	}
	// The reader pops a batch at once: what is left in the ring is what
	// it has not taken.
	if got := a.Queued(); got >= 5 {
		t.Errorf("after a read: Queued %d, want < 5", got)
	}
	if n := testing.AllocsPerRun(100, func() { a.Queued() }); n != 0 {
		t.Errorf("Queued allocates %v, want 0", n)
	}
}

// TestRingPortDepth: QueueCap and BacklogCap are the rings' sizes (a
// power of two at least the size asked), Backlog counts what the other
// end wrote that this end has not popped, and none of them allocates
// (the unicast IPCP calls them per batch and per delivery).
func TestRingPortDepth(t *testing.T) {
	pd := bootPD(t, 1024)
	pa, pb := ringPair(t, pd, 48)
	defer pa.Close()
	defer pb.Close()
	a, b := pa.(*irm.RingPort), pb.(*irm.RingPort)
	if got := a.QueueCap(); got != 64 {
		t.Errorf("QueueCap %d, want 64 (48 rounded up)", got)
	}
	if got := b.BacklogCap(); got != 64 {
		t.Errorf("BacklogCap %d, want 64", got)
	}
	msg := make([]byte, 100)
	for range 7 {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Backlog(); got != 7 {
		t.Errorf("after 7 writes: Backlog %d, want 7", got)
	}
	if got := a.Backlog(); got != 0 {
		t.Errorf("the writer's own Backlog %d, want 0 (nothing came its way)", got)
	}
	buf := make([]byte, flow.MaxSDU)
	if _, err := b.Read(buf, noTime); err != nil {
		t.Fatal(err)
	}
	if got := b.Backlog(); got != 0 {
		t.Errorf("after a read (the reader pops the batch): Backlog %d, want 0", got)
	}
	for name, f := range map[string]func() int{"QueueCap": a.QueueCap, "Backlog": b.Backlog, "BacklogCap": b.BacklogCap} {
		if n := testing.AllocsPerRun(100, func() { f() }); n != 0 {
			t.Errorf("%s allocates %v, want 0", name, n)
		}
	}
	a.Close()
	if got := a.QueueCap(); got != 0 {
		t.Errorf("QueueCap after Close %d, want 0", got)
	}
}

func TestRingPortConformance(t *testing.T) {
	pd := bootPD(t, 1<<14)
	flowtest.TestPort(t, func() (flow.Port, flow.Port) { return ringPair(t, pd, 64) })
}

func TestRingPortZeroAllocs(t *testing.T) {
	pd := bootPD(t, 1024)
	a, b := ringPair(t, pd, 64)
	defer a.Close()
	defer b.Close()
	msg := make([]byte, 1400)
	buf := make([]byte, flow.MaxSDU)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Read(buf, noTime); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per write+read, want 0", allocs)
	}
}

func TestRingPortBatch(t *testing.T) {
	pd := bootPD(t, 1<<14)
	flowtest.TestBatchPort(t, func() (flow.BatchPort, flow.BatchPort) {
		a, b := ringPair(t, pd, 16)
		return a.(flow.BatchPort), b.(flow.BatchPort)
	})
}

func TestRingPortBatchZeroAllocs(t *testing.T) {
	pd := bootPD(t, 1024)
	a, b := ringPair(t, pd, 64)
	defer a.Close()
	defer b.Close()
	wa, rb := a.(flow.BatchPort), b.(flow.BatchPort)
	msgs := flowtest.BatchSDUs(32, 0)
	bufs, sizes := flowtest.BatchBufs(32, flow.MaxSDU)
	allocs := testing.AllocsPerRun(1000, func() {
		if n, err := wa.WriteBatch(msgs, noTime); n != len(msgs) || err != nil {
			t.Fatal(n, err)
		}
		for got := 0; got < len(msgs); {
			n, err := rb.ReadBatch(bufs, sizes, noTime)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per batch of 32 written and read, want 0", allocs)
	}
}
