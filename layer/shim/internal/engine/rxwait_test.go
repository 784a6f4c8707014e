package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// rxFlow starts an engine with rxWait and one incoming flow whose port is
// a pipe of 64; it returns the engine, a receive batch, the flow's
// endpoint id and the program's end.
func rxFlow(t *testing.T, rxWait time.Duration) (*Engine[peer], *RxBatch[peer], uint32, flow.Port) {
	t.Helper()
	up := &batchIRM{progs: make(chan flow.Port, 1), pipeSz: 64}
	e, _ := newEngine(t, Config[peer]{Upcalls: up, RxWait: rxWait})
	allocReq(t, e, "x", 1)
	prog := <-up.progs
	waitFor(t, "the flow", func() bool { return len(e.Flows()) == 1 })
	return e, e.NewRxBatch(8), uint32(e.Flows()[0].LocalEID), prog
}

// deliver hands n SDUs for eid to rb in runs of 8.
func deliver(rb *RxBatch[peer], eid uint32, n int) {
	for i := range n {
		rb.Input([]byte(fmt.Sprintf("sdu%04d", i)), "x", eid)
		if i%8 == 7 {
			rb.Flush()
		}
	}
	rb.Flush()
}

// TestRxWaitsForReader: a burst larger than the flow's port (200 SDUs
// into a pipe of 64, as one read of a UDP socket brings hundreds of
// SDUs for a ring of 256) reaches a reader that drains the port more
// slowly than the burst comes, whole: a delivery waits for room while
// the reader takes SDUs. With RxWait negative (the behaviour before: a
// full port drops at once) most of the burst is lost (130-136 of 200
// here), which this test also checks (at least 50), so that it shows
// what the wait does.
func TestRxWaitsForReader(t *testing.T) {
	for _, wait := range []time.Duration{5 * time.Second, -1} {
		t.Run(fmt.Sprint("rxwait=", wait), func(t *testing.T) {
			e, rb, eid, prog := rxFlow(t, wait)
			read := make(chan int)
			go func() {
				buf := make([]byte, 64)
				n := 0
				for {
					if _, err := prog.Read(buf, time.Now().Add(time.Second)); err != nil {
						read <- n
						return
					}
					n++
					time.Sleep(100 * time.Microsecond) // slower than the burst
				}
			}()
			deliver(rb, eid, 200)
			got := <-read
			st := e.C.Snapshot()
			if wait > 0 {
				if got != 200 || st.Drops.RxFull != 0 || st.RxStalls != 0 {
					t.Errorf("read %d of 200, rx_full %d, rx_stalls %d; want all, 0, 0", got, st.Drops.RxFull, st.RxStalls)
				}
				return
			}
			t.Logf("without waiting: %d read, %d dropped", got, st.Drops.RxFull)
			if got+int(st.Drops.RxFull) != 200 || st.Drops.RxFull < 50 {
				t.Errorf("without waiting: read %d, rx_full %d; want at least 50 of 200 dropped", got, st.Drops.RxFull)
			}
		})
	}
}

// TestRxStalledReader: a reader that stops costs the receive loop one
// wait, not one per delivery: with its port full, the first delivery
// waits RxWait and is dropped (rx_stalls 1); the next 19 are dropped at
// once. Once the reader takes its port's SDUs and a delivery goes
// through whole, a full port is waited for again (rx_stalls 2). Waiting
// for every delivery, as an RxWait without the stall would, takes 20
// waits here (2 s) and fails.
func TestRxStalledReader(t *testing.T) {
	const wait = 100 * time.Millisecond
	e, rb, eid, prog := rxFlow(t, wait)
	deliver(rb, eid, 64) // the pipe is full
	start := time.Now()
	for range 20 {
		deliver(rb, eid, 8)
	}
	took := time.Since(start)
	st := e.C.Snapshot()
	if st.Drops.RxFull != 160 || st.RxStalls != 1 {
		t.Errorf("20 runs into a full port: rx_full %d, rx_stalls %d; want 160, 1", st.Drops.RxFull, st.RxStalls)
	}
	if took < wait || took > 10*wait {
		t.Errorf("20 runs into a stalled port took %v; want one wait (%v), not 20", took, wait)
	}

	buf := make([]byte, 64)
	for range 64 {
		if _, err := prog.Read(buf, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	deliver(rb, eid, 8) // taken whole: the reader is back
	deliver(rb, eid, 56)
	start = time.Now()
	deliver(rb, eid, 8) // full again: waited for, then stalled
	if took := time.Since(start); took < wait {
		t.Errorf("a full port after the reader came back: dropped after %v, want a wait of %v", took, wait)
	}
	if st := e.C.Snapshot(); st.Drops.RxFull != 168 || st.RxStalls != 2 || st.PacketsIn != 128 {
		t.Errorf("after the reader came back: rx_full %d, rx_stalls %d, in %d; want 168, 2, 128", st.Drops.RxFull, st.RxStalls, st.PacketsIn)
	}
}
