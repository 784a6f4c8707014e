package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
)

// batchIRM accepts every flow with a pipe whose IPCP end counts the
// batch writes it gets.
type batchIRM struct {
	mu     sync.Mutex
	ipcp   []*countingPort
	progs  chan flow.Port
	plain  bool // hand out ends that are not flow.BatchPorts
	pipeSz int
}

type countingPort struct {
	flow.BatchPort
	mu      sync.Mutex
	batches []int // sizes of the WriteBatch calls
	writes  int   // single Writes
}

func (c *countingPort) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	c.mu.Lock()
	c.batches = append(c.batches, len(sdus))
	c.mu.Unlock()
	return c.BatchPort.WriteBatch(sdus, deadline)
}

func (c *countingPort) Write(p []byte, deadline time.Time) error {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.BatchPort.Write(p, deadline)
}

// plainPort hides the batch methods.
type plainPort struct{ flow.Port }

func (b *batchIRM) FlowReq(_ context.Context, _ ipcp.AllocReq) (flow.Port, error) {
	mine, theirs := flowtest.Pipe(b.pipeSz)
	c := &countingPort{BatchPort: mine.(flow.BatchPort)}
	b.mu.Lock()
	b.ipcp = append(b.ipcp, c)
	b.mu.Unlock()
	b.progs <- theirs
	if b.plain {
		return plainPort{c}, nil
	}
	return c, nil
}

// TestRxBatch: a receive batch's SDUs for one flow reach its port in one
// write per run (a run ends where another flow's SDU, a control message
// or Flush comes), in order, each counted once; SDUs beyond what the
// port holds are dropped and counted as rx_full; a port that cannot
// batch gets single writes. Delivering one SDU per Write, or losing a
// run's end at Flush, fails here.
func TestRxBatch(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			up := &batchIRM{progs: make(chan flow.Port, 4), plain: plain, pipeSz: 64}
			e, _ := newEngine(t, Config[peer]{Upcalls: up})
			// One after the other: up.ipcp[0] and progs[0] are x's.
			allocReq(t, e, "x", 1)
			progs := []flow.Port{<-up.progs}
			allocReq(t, e, "y", 2)
			progs = append(progs, <-up.progs)
			waitFor(t, "two flows", func() bool { return len(e.Flows()) == 2 })
			eids := map[peer]uint32{}
			for _, f := range e.Flows() {
				eids[peer(f.Peer)] = uint32(f.LocalEID)
			}
			rb := e.NewRxBatch(8)
			sdu := func(p peer, i int) []byte { return []byte(fmt.Sprintf("%s%03d", p, i)) }
			// x×5, y×2, x×12 (a full run of 8, then 4), control, x×1, Flush.
			var order []struct {
				p peer
				i int
			}
			in := func(p peer, n int) {
				for range n {
					i := len(order)
					order = append(order, struct {
						p peer
						i int
					}{p, i})
					rb.Input(sdu(p, i), p, eids[p])
				}
			}
			in("x", 5)
			in("y", 2)
			in("x", 12)
			b, _ := EncodeMsg(nil, &Msg{Type: MsgAllocReq, ReqID: 9, Src: 9, Hash: make([]byte, 32)})
			rb.Input(b, "z", 0)
			in("x", 1)
			rb.Flush()

			buf := make([]byte, 64)
			for _, pi := range []peer{"x", "y"} {
				prog := progs[0]
				if pi == "y" {
					prog = progs[1]
				}
				for _, o := range order {
					if o.p != pi {
						continue
					}
					n, err := prog.Read(buf, time.Now().Add(time.Second))
					if err != nil || string(buf[:n]) != string(sdu(o.p, o.i)) {
						t.Fatalf("%s: read %q, %v; want %q", pi, buf[:n], err, sdu(o.p, o.i))
					}
				}
			}
			if st := e.C.Snapshot(); st.PacketsIn != 20 {
				t.Errorf("%d packets in, want 20", st.PacketsIn)
			}
			x, y := up.ipcp[0], up.ipcp[1]
			if plain {
				if x.writes != 18 || y.writes != 2 || len(x.batches)+len(y.batches) != 0 {
					t.Errorf("a plain port got %d+%d writes and batches %v %v; want 18+2 writes", x.writes, y.writes, x.batches, y.batches)
				}
				return
			}
			if fmt.Sprint(x.batches) != "[5 8 4 1]" || fmt.Sprint(y.batches) != "[2]" || x.writes+y.writes != 0 {
				t.Errorf("batch writes x %v, y %v, single writes %d; want x [5 8 4 1], y [2], none", x.batches, y.batches, x.writes+y.writes)
			}

			// A run delivered allocates nothing (the pipe's Read copies).
			one := [][]byte{sdu("x", 1), sdu("x", 2), sdu("x", 3)}
			allocs := testing.AllocsPerRun(100, func() {
				for _, s := range one {
					rb.Input(s, "x", eids["x"])
				}
				rb.Flush()
				for range one {
					progs[0].Read(buf, time.Now().Add(time.Second))
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per run of 3, want 0", allocs)
			}
			in0 := e.C.Snapshot().PacketsIn

			// A full port: the pipe holds 64; 70 SDUs, 6 dropped.
			for i := range 70 {
				rb.Input(sdu("x", i), "x", eids["x"])
				if i%8 == 7 {
					rb.Flush()
				}
			}
			rb.Flush()
			if st := e.C.Snapshot(); st.PacketsIn != in0+64 || st.Drops.RxFull != 6 {
				t.Errorf("after overfilling: %d in, %d rx_full; want %d, 6", st.PacketsIn, st.Drops.RxFull, in0+64)
			}
		})
	}
}
