package node

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/shmring"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
)

// runPort is the splice's side of a flow (an irm.RingPort) that records
// the largest run the splice pushed and popped at once.
type runPort struct {
	*irm.RingPort
	mu              sync.Mutex
	maxPush, maxPop int
}

func (p *runPort) PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	p.mu.Lock()
	p.maxPush = max(p.maxPush, len(bufs))
	p.mu.Unlock()
	return p.RingPort.PushBufs(bufs, deadline)
}

func (p *runPort) PopBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	p.mu.Lock()
	p.maxPop = max(p.maxPop, len(bufs))
	p.mu.Unlock()
	return p.RingPort.PopBufs(bufs, deadline)
}

func (p *runPort) runs() (push, pop int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxPush, p.maxPop
}

// TestShmSpliceRuns: the splice moves a deep ring's worth of SDUs (what
// a program wrote in one run, what queued for it) in one run each way,
// not in runs of a shallow ring's 16: each run costs a wake-up on both
// sides of the ring (docs/benchmarks.md, "Waits that do not spin").
func TestShmSpliceRuns(t *testing.T) {
	const n = shmDeepSlots
	pd := kerneltest.PD(t, "session", kernel.Budget{Bufs: 4 * n, Objects: 1 << 12})
	toFlow, err := pd.NewRing(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	toProg, err := pd.NewRing(2 * n)
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
	splice := &runPort{RingPort: irm.NewRingPort(pd, mint(toProg, kernel.Read), mint(toFlow, kernel.Write))}
	flowSide := irm.NewRingPort(pd, mint(toFlow, kernel.Read), mint(toProg, kernel.Write))
	node, prog, err := shmring.Pair(shmring.Geometry{Slots: n, MaxSDU: flow.MaxSDU})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Release()

	// Both runs wait before the splice starts: a whole ring each way.
	sdus := make([][]byte, n)
	for i := range sdus {
		sdus[i] = []byte{byte(i), 1, 2, 3}
	}
	if k, err := prog.SendBatch(sdus, time.Now().Add(time.Second)); k != n {
		t.Fatalf("program wrote %d of %d: %v", k, n, err)
	}
	for done := 0; done < n; {
		k, err := flowSide.WriteBatch(sdus[done:], time.Now().Add(time.Second))
		if k == 0 {
			t.Fatalf("flow side wrote %d of %d: %v", done, n, err)
		}
		done += k
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); shmToBufs(splice, node, slog.New(slog.DiscardHandler)) }()
	go func() { defer wg.Done(); bufsToShm(splice, node) }()

	bufs, sizes := make([][]byte, n), make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, flow.MaxSDU)
	}
	for got := 0; got < n; {
		k, err := prog.RecvBatch(bufs[got:], sizes[got:], time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("program read %d of %d: %v", got, n, err)
		}
		got += k
	}
	for got := 0; got < n; {
		k, err := flowSide.ReadBatch(bufs[got:], sizes[got:], time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("flow side read %d of %d: %v", got, n, err)
		}
		got += k
	}
	push, pop := splice.runs()
	prog.Shutdown()
	splice.Close()
	flowSide.Close()
	wg.Wait()
	node.Release()
	if push != n || pop != n {
		t.Errorf("the splice moved runs of at most %d to the flow and %d to the program, want %d each way", push, pop, n)
	}
}
